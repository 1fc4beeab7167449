//! Modifying user data: verified contact changes that keep roles, grants and seat intact.

use domain::identity::PersonId;
use domain::user::UserStatus;
use serde_json::{Value, json};
use system_tests::http::Answer;
use system_tests::world::{Backend, Client};
use time::Duration;

use crate::activation::{link_token, sms_code, subscribe_newcomer};
use crate::permissions::cast;

fn user_path(org: &str, user: &PersonId) -> String {
    format!("/v1/organizations/{org}/users/{}", user.as_str())
}

async fn read(client: &Client, org: &str, caller: &PersonId, user: &PersonId) -> Value {
    let answer = client.get(&user_path(org, user), &client.token_for(caller)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

async fn patch(client: &Client, org: &str, caller: &PersonId, user: &PersonId, mut body: Value) -> Answer {
    if body.get("version").is_none() {
        body["version"] = read(client, org, caller, user).await["version"].clone();
    }
    client.call("PATCH", &user_path(org, user), Some(&client.token_for(caller)), &[], Some(&body)).await
}

async fn verify(client: &Client, org: &str, caller: &PersonId, user: &PersonId, channel: &str, code: &str) -> Answer {
    client
        .post(
            &format!("{}/contact-verifications", user_path(org, user)),
            &client.token_for(caller),
            &json!({ "channel": channel, "code": code }),
        )
        .await
}

/// The story of the issue, end to end: the new address gets a code, messages keep going to
/// the old one until the user confirms, then they go to the new one and the old one gets a
/// notice. Grants and the seat do not move a byte.
async fn a_new_email_is_used_only_once_verified(backend: Backend) {
    let newcomer = subscribe_newcomer(system_tests::world::World::new(backend).await, "en").await;
    let (world, client) = (&newcomer.world, &newcomer.client);
    let org = "7000000404";
    let organization = domain::organization::OrganizationId::parse(org).unwrap();
    let manager = PersonId::parse(&newcomer.manager).unwrap();
    let user = newcomer.id().clone();
    let version =
        client.get(&format!("{}/permissions", user_path(org, &user)), &client.token_for(&manager)).await.json()["version"].clone();
    let grants = client
        .call(
            "PUT",
            &format!("{}/permissions", user_path(org, &user)),
            Some(&client.token_for(&manager)),
            &[],
            Some(&json!({ "version": version, "grants": { "1-10": ["iqama.renew"] } })),
        )
        .await;
    assert_eq!(grants.status, 200, "{}", grants.text());
    let before = world.user(&organization, &user).await;
    let old_email = before.email.clone();
    let new_email = world.unique_email("moved");

    let changed = patch(client, org, &manager, &user, json!({ "email": new_email.as_str(), "job_title": "مسؤول الموارد البشرية" })).await;
    assert_eq!(changed.status, 200, "{}", changed.text());
    let body = changed.json();
    assert_eq!(body["profile"]["email"], old_email.as_str(), "the old address stays in use");
    assert_eq!(body["profile"]["pending"]["email"]["value"], new_email.as_str());
    assert!(body["profile"]["pending"]["email"]["code_expires_at"].is_string());
    assert_eq!(body["profile"]["job_title"], "مسؤول الموارد البشرية", "the title applies at once");
    assert_eq!(body["verification_messages"], json!({ "email": "queued", "sms": "not_needed" }));
    let to_new = world.emails_to(&new_email).await;
    assert_eq!(to_new.len(), 1, "the code went to the new address");
    let code = sms_code(&to_new[0].1);

    // A message sent now still goes to the old address.
    assert_eq!(newcomer.resend(json!({ "email": true })).await.status, 200);
    assert_eq!(world.emails_to(&old_email).await.len(), 2, "the resend went to the old address");
    assert_eq!(world.emails_to(&new_email).await.len(), 1);

    let confirmed = verify(client, org, &user, &user, "email", &code).await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text());
    assert_eq!(confirmed.json()["email"], new_email.as_str());
    assert!(confirmed.json()["pending"]["email"].is_null());
    let notice = world.emails_to(&old_email).await;
    assert_eq!(notice.len(), 3, "the old address was told");
    assert!(notice[2].1.contains(&new_email.masked()) && !notice[2].1.contains(new_email.as_str()), "with the new one masked");

    // The next message goes to the new address.
    assert_eq!(newcomer.resend(json!({ "email": true })).await.status, 200);
    let to_new = world.emails_to(&new_email).await;
    assert_eq!(to_new.len(), 2);
    assert!(!link_token(&to_new[1].1).is_empty(), "the activation link now reaches the new address");

    let after = world.user(&organization, &user).await;
    assert_eq!(serde_json::to_vec(&after.grants).unwrap(), serde_json::to_vec(&before.grants).unwrap(), "grants unchanged");
    assert_eq!(after.grants_version, before.grants_version);
    assert_eq!(serde_json::to_vec(&after.seat).unwrap(), serde_json::to_vec(&before.seat).unwrap(), "seat unchanged");
    assert_eq!((after.role, after.establishments.clone()), (before.role, before.establishments.clone()));
}
both!(a_new_email_is_used_only_once_verified);

async fn a_new_mobile_is_verified_by_sms_and_the_old_number_told(backend: Backend) {
    let cast = cast(backend).await;
    let org = "7000000505";
    let (world, client) = (&cast.world, &cast.client);
    let organization = domain::organization::OrganizationId::parse(org).unwrap();
    let old = world.user(&organization, &cast.citizen_user).await.mobile;
    let old_messages = world.sms_to(&old).await.len();
    let new = world.unique_mobile();
    let changed = patch(client, org, &cast.admin, &cast.citizen_user, json!({ "mobile": format!("0{}", &new.as_str()[4..]) })).await;
    assert_eq!(changed.status, 200, "a delegated admin of the user's establishment: {}", changed.text());
    assert_eq!(changed.json()["profile"]["pending"]["mobile"]["value"], new.as_str(), "stored in E.164");
    let sms = world.sms_to(&new).await;
    assert_eq!(sms.len(), 1);
    let wrong = if sms_code(&sms[0]) == "000000" { "111111" } else { "000000" };
    let rejected = verify(client, org, &cast.citizen_user, &cast.citizen_user, "mobile", wrong).await;
    assert_eq!((rejected.status, rejected.code().as_str()), (422, "wrong_code"));
    assert_eq!(rejected.json()["error"]["remaining_tries"], 4);
    let by_admin = verify(client, org, &cast.admin, &cast.citizen_user, "mobile", &sms_code(&sms[0])).await;
    assert_eq!((by_admin.status, by_admin.code().as_str()), (403, "forbidden"), "only the user confirms");
    let confirmed = verify(client, org, &cast.citizen_user, &cast.citizen_user, "mobile", &sms_code(&sms[0])).await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text());
    assert_eq!(confirmed.json()["mobile"], new.as_str());
    let to_old = world.sms_to(&old).await;
    assert_eq!(to_old.len(), old_messages + 1, "the old number got one more message");
    assert!(
        to_old.last().unwrap().contains("was changed") || to_old.last().unwrap().contains("تم تغيير"),
        "the notice: {:?}",
        to_old.last()
    );
}
both!(a_new_mobile_is_verified_by_sms_and_the_old_number_told);

async fn conflicts_duplicates_and_forbidden_fields_write_nothing(backend: Backend) {
    let cast = cast(backend).await;
    let org = "7000000505";
    let (world, client) = (&cast.world, &cast.client);
    let organization = domain::organization::OrganizationId::parse(org).unwrap();
    let taken = world.user(&organization, &cast.resident_user).await;
    let version = read(client, org, &cast.manager, &cast.citizen_user).await["version"].clone();
    assert_eq!(patch(client, org, &cast.manager, &cast.citizen_user, json!({ "version": version, "language": "en" })).await.status, 200);

    let before = world.snapshot().await;
    let cases: Vec<(&str, &PersonId, &PersonId, Value, u16, &str)> = vec![
        ("stale version", &cast.manager, &cast.citizen_user, json!({ "version": version, "language": "ar" }), 409, "version_conflict"),
        ("another user's email", &cast.manager, &cast.citizen_user, json!({ "email": taken.email.as_str() }), 422, "contact_in_use"),
        ("another user's mobile", &cast.manager, &cast.citizen_user, json!({ "mobile": taken.mobile.as_str() }), 422, "contact_in_use"),
        (
            "not modifiable here",
            &cast.manager,
            &cast.citizen_user,
            json!({ "grants": {}, "nationality": "SA", "language": "en" }),
            422,
            "field_not_modifiable",
        ),
        ("invalid email", &cast.manager, &cast.citizen_user, json!({ "email": "nobody@" }), 422, "invalid_email"),
        ("invalid mobile", &cast.manager, &cast.citizen_user, json!({ "mobile": "+971501234567" }), 422, "invalid_mobile"),
        ("invalid language", &cast.manager, &cast.citizen_user, json!({ "language": "fr" }), 422, "invalid_field"),
        ("unknown field", &cast.manager, &cast.citizen_user, json!({ "favourite_colour": "green" }), 400, "invalid_request"),
        ("nothing to change", &cast.manager, &cast.citizen_user, json!({}), 400, "invalid_request"),
        // A user a delegated admin cannot see answers as one that does not exist.
        ("outside its establishments", &cast.admin, &cast.outsider, json!({ "job_title": "x" }), 404, "user_not_found"),
        ("a delegated admin on itself", &cast.admin, &cast.admin, json!({ "job_title": "x" }), 403, "cannot_manage_self"),
        ("a delegated admin on the manager", &cast.admin, &cast.manager, json!({ "job_title": "x" }), 403, "cannot_manage_manager"),
        ("a member", &cast.member, &cast.citizen_user, json!({ "job_title": "x" }), 403, "not_an_administrator"),
        ("a suspended user", &cast.manager, &cast.suspended, json!({ "job_title": "x" }), 422, "user_suspended"),
    ];
    for (case, caller, target, body, status, code) in cases {
        let body = if body.get("version").is_none() && status != 409 {
            let mut body = body;
            body["version"] = world.user(&organization, target).await.profile_version.into();
            body
        } else {
            body
        };
        let answer = client.call("PATCH", &user_path(org, target), Some(&client.token_for(caller)), &[], Some(&body)).await;
        assert_eq!((answer.status, answer.code().as_str()), (status, code), "{case}: {}", answer.text());
        if code == "field_not_modifiable" {
            assert_eq!(answer.json()["error"]["fields"], json!(["nationality", "grants"]), "names them");
        }
    }
    assert_eq!(world.snapshot().await, before, "nothing was written");
}
both!(conflicts_duplicates_and_forbidden_fields_write_nothing);

async fn a_newer_change_replaces_a_pending_one_and_an_admin_can_cancel(backend: Backend) {
    let cast = cast(backend).await;
    let org = "7000000505";
    let (world, client) = (&cast.world, &cast.client);
    let first = world.unique_email("first");
    let second = world.unique_email("second");
    let skipped = world.unique_email("skipped");
    assert_eq!(patch(client, org, &cast.manager, &cast.citizen_user, json!({ "email": first.as_str() })).await.status, 200);
    let first_code = sms_code(&world.emails_to(&first).await[0].1);
    // Replaced before its code went out: that code is never sent.
    assert_eq!(patch(client, org, &cast.manager, &cast.citizen_user, json!({ "email": skipped.as_str() })).await.status, 200);
    assert_eq!(patch(client, org, &cast.manager, &cast.citizen_user, json!({ "email": second.as_str() })).await.status, 200);
    let profile = read(client, org, &cast.manager, &cast.citizen_user).await;
    assert_eq!(profile["pending"]["email"]["value"], second.as_str(), "the newer change replaced the older");
    assert_eq!(profile["messages"]["verification_email"]["state"], "queued");
    let second_code = sms_code(&world.emails_to(&second).await[0].1);
    assert!(world.emails_to(&skipped).await.is_empty(), "a replaced code is not sent");
    let profile = read(client, org, &cast.manager, &cast.citizen_user).await;
    assert_eq!(profile["messages"]["verification_email"]["state"], "sent", "{profile}");
    if first_code != second_code {
        assert_eq!(
            verify(client, org, &cast.citizen_user, &cast.citizen_user, "email", &first_code).await.code(),
            "wrong_code",
            "the older code is dead"
        );
    }

    // Cancelling: by the manager or a delegated admin of the user; then there is nothing to confirm.
    let cancel = |caller: PersonId| {
        let client = client.clone();
        let path = format!("{}/pending-contact-changes/email", user_path(org, &cast.citizen_user));
        async move { client.call("DELETE", &path, Some(&client.token_for(&caller)), &[], None).await }
    };
    let cancelled = cancel(cast.admin.clone()).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
    assert!(cancelled.json()["pending"]["email"].is_null());
    let nothing = verify(client, org, &cast.citizen_user, &cast.citizen_user, "email", &second_code).await;
    assert_eq!((nothing.status, nothing.code().as_str()), (422, "no_pending_change"));
    assert_eq!(cancel(cast.manager.clone()).await.code(), "no_pending_change");

    // A suspended user's pending change: only the manager may cancel it.
    let organization = domain::organization::OrganizationId::parse(org).unwrap();
    assert_eq!(
        patch(client, org, &cast.manager, &cast.resident_user, json!({ "email": world.unique_email("r").as_str() })).await.status,
        200
    );
    world.update_user(&organization, &cast.resident_user, |u| u.status = UserStatus::Suspended).await;
    let path = format!("{}/pending-contact-changes/email", user_path(org, &cast.resident_user));
    let by_admin = client.call("DELETE", &path, Some(&client.token_for(&cast.admin)), &[], None).await;
    assert_eq!((by_admin.status, by_admin.code().as_str()), (422, "user_suspended"));
    let by_manager = client.call("DELETE", &path, Some(&client.token_for(&cast.manager)), &[], None).await;
    assert_eq!(by_manager.status, 200, "{}", by_manager.text());

    // Codes for contacts expire like activation codes.
    assert_eq!(patch(client, org, &cast.manager, &cast.member, json!({ "mobile": world.unique_mobile().as_str() })).await.status, 200);
    let pending = world.user(&organization, &cast.member).await.pending_mobile.expect("pending").value;
    let code = sms_code(&world.sms_to(&pending).await[0]);
    world.advance(Duration::minutes(11));
    let late = verify(client, org, &cast.member, &cast.member, "mobile", &code).await;
    assert_eq!((late.status, late.code().as_str()), (422, "code_expired"));
}
both!(a_newer_change_replaces_a_pending_one_and_an_admin_can_cancel);

/// A contact code the user missed is sent again: a fresh code for the same pending change;
/// the earlier one stops working. Resends share the user's limit.
async fn a_missed_contact_code_is_resent_and_only_the_newest_works(backend: Backend) {
    let newcomer = subscribe_newcomer(system_tests::world::World::new(backend).await, "en").await;
    let (world, client) = (&newcomer.world, &newcomer.client);
    let org = "7000000404";
    let manager = PersonId::parse(&newcomer.manager).unwrap();
    let user = newcomer.id().clone();
    let new_email = world.unique_email("again");
    let changed = patch(client, org, &manager, &user, json!({ "email": new_email.as_str() })).await;
    assert_eq!(changed.status, 200, "{}", changed.text());
    let first = sms_code(&world.emails_to(&new_email).await[0].1);
    let path = format!("{}/messages/verification_email/resend", user_path(org, &user));
    let resent = client.post(&path, &client.token_for(&manager), &json!({})).await;
    assert_eq!((resent.status, resent.json()), (200, json!({ "slot": "verification_email", "state": "queued" })), "{}", resent.text());
    let sent = world.emails_to(&new_email).await;
    assert_eq!(sent.len(), 2, "a second code to the new address");
    let second = sms_code(&sent[1].1);
    assert_ne!(first, second);
    let stale = verify(client, org, &user, &user, "email", &first).await;
    assert_eq!((stale.status, stale.json()["error"]["code"].as_str()), (422, Some("wrong_code")), "{}", stale.text());
    let confirmed = verify(client, org, &user, &user, "email", &second).await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text());
    assert_eq!(confirmed.json()["email"], new_email.as_str());
    // Nothing pending now: nothing to resend.
    let nothing = client.post(&path, &client.token_for(&manager), &json!({})).await;
    assert_eq!((nothing.status, nothing.json()["error"]["code"].as_str()), (422, Some("no_pending_change")), "{}", nothing.text());
}
both!(a_missed_contact_code_is_resent_and_only_the_newest_works);

/// The manager, who may change their own contact details, has their own code sent again
/// (before, the resend refused it as acting on the manager); nobody else does.
async fn the_manager_has_their_own_contact_code_resent(backend: Backend) {
    let newcomer = subscribe_newcomer(system_tests::world::World::new(backend).await, "en").await;
    let (world, client) = (&newcomer.world, &newcomer.client);
    let org = "7000000404";
    let manager = PersonId::parse(&newcomer.manager).unwrap();
    let new_email = world.unique_email("manager");
    let changed = patch(client, org, &manager, &manager, json!({ "email": new_email.as_str() })).await;
    assert_eq!(changed.status, 200, "{}", changed.text());
    assert_eq!(world.emails_to(&new_email).await.len(), 1, "the code to the new address");
    let path = format!("{}/messages/verification_email/resend", user_path(org, &manager));
    let resent = client.post(&path, &client.token_for(&manager), &json!({})).await;
    assert_eq!((resent.status, resent.json()), (200, json!({ "slot": "verification_email", "state": "queued" })), "{}", resent.text());
    let sent = world.emails_to(&new_email).await;
    let view = client.get(&user_path(org, &manager), &client.token_for(&manager)).await.json();
    assert_eq!(sent.len(), 2, "a second code to the new address: {view}");
    let by_user = client.post(&path, &client.token_for(newcomer.id()), &json!({})).await;
    assert_eq!((by_user.status, by_user.json()["error"]["code"].as_str()), (403, Some("not_an_administrator")), "{}", by_user.text());
}
both!(the_manager_has_their_own_contact_code_resent);
