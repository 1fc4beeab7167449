//! Suspension, renewal and the expiry sweep.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use domain::actions::sweep::{SweepOptions, SweepReport};
use domain::audit::AuditAction;
use domain::clock::one_year_after;
use domain::identity::PersonId;
use domain::organization::{OrganizationId, PricingPlan, SizeTier};
use domain::store::{Record, Store};
use domain::user::{Reminder, UserStatus};
use serde_json::json;
use system_tests::faults::{Call, Fault, FaultyStore, GatedStore, writes_user};
use system_tests::invariants::assert_books_balance;
use system_tests::moto::recording_lock;
use system_tests::world::{Backend, Client, START, World};
use time::{Duration, OffsetDateTime};

use crate::activation::link_token;
use crate::fixtures::citizen;
use crate::permissions::cast;

const ORG: &str = "7000000505";

fn user_path(user: &PersonId) -> String {
    format!("/v1/organizations/{ORG}/users/{}", user.as_str())
}

async fn suspend(client: &Client, caller: &PersonId, user: &PersonId) -> system_tests::http::Answer {
    client
        .post(&format!("{}/suspension", user_path(user)), &client.token_for(caller), &json!({ "reason": "left the company / ترك العمل" }))
        .await
}

async fn renew(client: &Client, caller: &PersonId, user: &PersonId, key: &str) -> system_tests::http::Answer {
    client.post_keyed(&format!("{}/renewal", user_path(user)), &client.token_for(caller), key, &json!({})).await
}

async fn check(client: &Client, user: &PersonId) -> serde_json::Value {
    let body = json!({ "organization_id": ORG, "user_id": user.as_str(), "establishment_id": "1-10", "service": "iqama.renew" });
    client.post("/v1/authorizations/check", &client.service_token(), &body).await.json()
}

/// Subscribe, suspend, subscribe again: two charges, access ends at once, all audited.
async fn suspension_ends_access_for_good_and_a_new_seat_is_bought(backend: Backend) {
    let cast = cast(backend).await;
    let (world, client) = (&cast.world, &cast.client);
    let org = OrganizationId::parse(ORG).unwrap();
    let person = cast.citizen_user.clone();
    let grants = client.get(&format!("{}/permissions", user_path(&person)), &client.token_for(&cast.manager)).await.json();
    let put = client
        .call(
            "PUT",
            &format!("{}/permissions", user_path(&person)),
            Some(&client.token_for(&cast.manager)),
            &[],
            Some(&json!({ "version": grants["version"], "grants": { "1-10": ["iqama.renew"] } })),
        )
        .await;
    assert_eq!(put.status, 200);
    assert_eq!(check(client, &person).await["allowed"], true);
    let seat_before = world.user(&org, &person).await.seat.expect("a seat").id;

    // Who may suspend.
    assert_eq!(
        suspend(client, &cast.admin, &cast.resident_user).await.code(),
        "outside_administered_establishments",
        "a delegated admin needs every one of the user's establishments"
    );
    assert_eq!(suspend(client, &cast.admin, &cast.manager).await.code(), "cannot_manage_manager");
    assert_eq!(suspend(client, &cast.manager, &cast.manager).await.code(), "cannot_manage_manager", "nobody suspends the manager");
    assert_eq!(suspend(client, &cast.admin, &cast.admin).await.code(), "cannot_manage_self");
    assert_eq!(suspend(client, &cast.member, &person).await.code(), "not_an_administrator");

    world.advance(Duration::seconds(1));
    let suspended = suspend(client, &cast.admin, &person).await;
    assert_eq!(suspended.status, 200, "a delegated admin of all the user's establishments: {}", suspended.text());
    assert_eq!(suspended.json()["status"], "suspended");
    assert_eq!(suspended.json()["ended_seat_id"], seat_before.as_str());
    assert_eq!(check(client, &person).await, json!({ "allowed": false, "reason": "suspended" }), "access ends at once");
    let again = suspend(client, &cast.manager, &person).await;
    assert_eq!((again.status, again.code().as_str()), (409, "already_suspended"));
    let renewal = renew(client, &cast.manager, &person, "renew-suspended").await;
    assert_eq!((renewal.status, renewal.code().as_str()), (422, "user_suspended"));
    let stored = world.user(&org, &person).await;
    assert!(stored.seat.is_none() && stored.past_seats.iter().any(|s| s.id == seat_before), "the seat ended");
    assert!(stored.activation.mobile_code.is_none() && stored.pending_email.is_none(), "pending secrets died");

    // Subscribing the same person again buys a new seat at the current price.
    let balance_before =
        client.get(&format!("/v1/organizations/{ORG}/balance"), &client.token_for(&cast.manager)).await.json()["available_halalas"]
            .as_u64()
            .unwrap();
    let body = json!({ "persons": [{ "id": person.as_str(), "establishments": ["1-10"], "user_type": "partners_only" }] });
    world.advance(Duration::seconds(1));
    let again =
        client.post_keyed(&format!("/v1/organizations/{ORG}/subscriptions"), &client.token_for(&cast.manager), "again", &body).await;
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.json()["amount_charged_halalas"], 15_000);
    assert_eq!(again.json()["balance_after_halalas"], balance_before - 15_000);
    assert_ne!(again.json()["users"][0]["seat"]["id"], seat_before.as_str(), "a new seat");
    assert_eq!(check(client, &person).await["reason"], "not_active", "a fresh account must activate again");

    let trail: Vec<(AuditAction, serde_json::Value)> = {
        let mut entries: Vec<_> = world
            .records()
            .await
            .into_iter()
            .filter_map(|r| match r {
                Record::Audit(e) if e.target.as_ref() == Some(&person) => Some(e),
                _ => None,
            })
            .collect();
        entries.sort_by_key(|e| (e.at, e.id.clone()));
        entries.into_iter().map(|e| (e.action, serde_json::to_value(&e.actor).unwrap())).collect()
    };
    let actions: Vec<AuditAction> = trail.iter().map(|(a, _)| *a).collect();
    let first = actions.iter().position(|a| *a == AuditAction::UserSubscribed).unwrap();
    let suspension = actions.iter().position(|a| *a == AuditAction::UserSuspended).unwrap();
    let second = actions.iter().rposition(|a| *a == AuditAction::UserSubscribed).unwrap();
    assert!(first < suspension && suspension < second, "{actions:?}");
    assert_eq!(trail[suspension].1, json!({ "kind": "person", "id": cast.admin.as_str() }), "who suspended");
    let seat_debits = assert_books_balance(&world.records().await);
    assert!(seat_debits.values().all(|b| b.seats_held >= 2));
}
both!(suspension_ends_access_for_good_and_a_new_seat_is_bought);

/// Renewal extends from the seat's end, charges the current price once per key.
async fn renewal_extends_a_seat_once_per_key(backend: Backend) {
    let cast = cast(backend).await;
    let (world, client) = (&cast.world, &cast.client);
    let org = OrganizationId::parse(ORG).unwrap();

    // A seat that ended an hour ago is within the grace period: the new year starts now.
    let from_now = renew(client, &cast.manager, &cast.lapsed, "renew-lapsed").await;
    assert_eq!(from_now.status, 201, "{}", from_now.text());
    assert_eq!(from_now.json()["seat"]["starts_at"], domain::clock::key_timestamp(world.now()));
    assert_eq!(from_now.json()["status"], "active", "an activated user is active again");

    // A running seat is extended from its end.
    let person = cast.member.clone();
    let seat = world.user(&org, &person).await.seat.unwrap();
    world.advance(Duration::days(300));
    let renewed = renew(client, &cast.manager, &person, "renew-1").await;
    assert_eq!(renewed.status, 201, "{}", renewed.text());
    let body = renewed.json();
    assert_eq!(body["amount_charged_halalas"], 15_000, "renewal is never free");
    assert_eq!(body["seat"]["id"], seat.id.as_str(), "the paid year runs to its end");
    assert_eq!(body["next_seat"]["starts_at"], domain::clock::key_timestamp(seat.ends_at), "from the current end");
    assert_eq!(body["next_seat"]["ends_at"], domain::clock::key_timestamp(one_year_after(seat.ends_at)));
    let replay = renew(client, &cast.manager, &person, "renew-1").await;
    assert_eq!((replay.status, replay.body.clone()), (201, renewed.body.clone()));
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let reused = renew(client, &cast.manager, &cast.citizen_user, "renew-1").await;
    assert_eq!((reused.status, reused.code().as_str()), (422, "idempotency_key_reused"), "the same key for another user");
    world.advance(Duration::days(100));
    assert_eq!(check(client, &person).await["allowed"], true, "the old year ended, the renewed one runs");

    // More than 30 days after the end: subscribe anew.
    let refused = renew(client, &cast.manager, &cast.resident_user, "renew-late").await;
    assert_eq!((refused.status, refused.code().as_str()), (422, "renewal_grace_passed"));
    assert_books_balance(&world.records().await);
}
both!(renewal_extends_a_seat_once_per_key);

async fn renewal_without_enough_balance_writes_nothing(backend: Backend) {
    let world = World::new(backend).await;
    let manager = PersonId::parse(&citizen(1)).unwrap();
    let org = world.onboard(ORG, PricingPlan::Muqeem, manager.as_str(), &[("1-10", SizeTier::Small)]).await;
    let person = PersonId::parse(&citizen(2)).unwrap();
    world.active_user(&org, &manager, &person, &["1-10"]).await;
    let client = world.serve().await;
    let before = world.snapshot().await;
    let answer = renew(&client, &manager, &person, "poor").await;
    assert_eq!((answer.status, answer.code().as_str()), (402, "insufficient_balance"));
    assert_eq!(answer.json()["error"]["required_halalas"], 15_000);
    assert_eq!(world.snapshot().await, before);
    // A concurrent duplicate: both requests read before either writes; one wins.
    world.credit(&org, 100_000).await;
    let concurrent = World { env: domain::env::Env { store: GatedStore::new(world.env.store.clone(), 2), ..world.env.clone() }, ..world };
    let client = concurrent.serve().await;
    let (a, b) = tokio::join!(renew(&client, &manager, &person, "dup"), renew(&client, &manager, &person, "dup"));
    let mut statuses = vec![(a.status, a.code()), (b.status, b.code())];
    statuses.sort();
    assert_eq!(statuses, vec![(201, String::new()), (409, "idempotency_key_in_flight".to_owned())]);
    assert_books_balance(&concurrent.records().await);
}
both!(renewal_without_enough_balance_writes_nothing);

// ------------------------------------------------------------------------- the sweep

/// Users subscribed `offset` days after the start, so their seats end that many days
/// after the first anniversary.
struct Fleet {
    world: World,
    org: OrganizationId,
    users: Vec<(i64, PersonId)>,
}

const OFFSETS: [i64; 9] = [0, 2, 4, 5, 25, 31, 33, 34, 60];

async fn fleet(world: World) -> Fleet {
    let manager = PersonId::parse(&citizen(1)).unwrap();
    let org = world.onboard(ORG, PricingPlan::Qiwa, manager.as_str(), &[("1-10", SizeTier::Micro)]).await;
    world.credit(&org, 10_000_000).await;
    let mut users = Vec::new();
    for (n, offset) in OFFSETS.iter().enumerate() {
        world.clock.set(START + Duration::days(*offset));
        let person = PersonId::parse(&citizen(100 + n as u32)).unwrap();
        world.active_user(&org, &manager, &person, &["1-10"]).await;
        users.push((*offset, person));
    }
    world.clock.set(START);
    Fleet { world, org, users }
}

/// The first sweep's "now": three days after the first anniversary.
fn first_run() -> OffsetDateTime {
    one_year_after(START) + Duration::days(3)
}

impl Fleet {
    fn person(&self, offset: i64) -> &PersonId {
        &self.users.iter().find(|(o, _)| *o == offset).unwrap().1
    }

    async fn reminders(&self, offset: i64) -> std::collections::BTreeSet<Reminder> {
        let user = self.world.user(&self.org, self.person(offset)).await;
        user.seat.map(|s| s.reminders_sent).unwrap_or_default()
    }

    async fn status(&self, offset: i64) -> UserStatus {
        self.world.user(&self.org, self.person(offset)).await.status
    }

    /// Expiry reminders received: (emails, SMS).
    async fn received(&self, offset: i64) -> (usize, usize) {
        let user = self.world.user(&self.org, self.person(offset)).await;
        let emails = self
            .world
            .emails_to(&user.email)
            .await
            .into_iter()
            .filter(|(s, _)| s.contains("ends in") || s.contains("انتهاء اشتراكك"))
            .count();
        let sms =
            self.world.sms_to(&user.mobile).await.into_iter().filter(|b| b.contains("subscription ends") || b.contains("ينتهي")).count();
        (emails, sms)
    }
}

fn totals(reports: &[SweepReport]) -> (usize, usize) {
    (reports.iter().map(|r| r.expired).sum(), reports.iter().map(|r| r.reminded).sum())
}

/// Index queries of a run that reads `end_days` days (see `sweep::plan`), and today.
fn queries_for(end_days: usize) -> usize {
    usize::from(domain::store::EXPIRY_SHARDS) * (end_days + 1)
}

async fn the_sweep_expires_due_seats_and_reminds_once(backend: Backend) {
    let fleet = fleet(World::new(backend).await).await;
    let app = &fleet.world.env;
    let now = first_run();

    // The first run ever looks back `REMINDER_CATCH_UP_DAYS`: seats that ended in that time
    // expire, and the reminders of those days go out late — but not the 30-day reminder of
    // the seat ending in 22 days, whose day is further back (it gets the 7-day one).
    let first = system_tests::world::sweep(app, "run-1", now, SweepOptions::default()).await.unwrap();
    assert_eq!((first.expired, first.reminded, first.bad_items, first.failed), (2, 4, 0, 0), "{first:?}");
    assert_eq!(first.days_completed.len(), 8, "{first:?}");
    for offset in [0, 2] {
        assert_eq!(fleet.status(offset).await, UserStatus::Expired, "offset {offset}");
    }
    for (offset, expected) in [
        (4, vec![Reminder::ThirtyDays, Reminder::SevenDays, Reminder::OneDay]),
        (5, vec![Reminder::ThirtyDays, Reminder::SevenDays]),
        (25, vec![]),
        (31, vec![Reminder::ThirtyDays]),
        (33, vec![Reminder::ThirtyDays]),
        (34, vec![]),
        (60, vec![]),
    ] {
        assert_eq!(fleet.status(offset).await, UserStatus::Active, "offset {offset}");
        assert_eq!(fleet.reminders(offset).await, expected.into_iter().collect(), "offset {offset}");
        let sent = if matches!(offset, 4 | 5 | 31 | 33) { (1, 1) } else { (0, 0) };
        assert_eq!(fleet.received(offset).await, sent, "offset {offset}: one email and one SMS per reminder");
    }

    // Running again the same day reads only today's partitions, and changes nothing.
    let again = system_tests::world::sweep(app, "run-2", now, SweepOptions::default()).await.unwrap();
    assert_eq!((again.expired, again.reminded, again.already_done, again.queries), (0, 0, 0, queries_for(0)), "{again:?}");

    // The next day, two runs at once: one works, the other finds the lease taken.
    let (a, b) = tokio::join!(
        system_tests::world::sweep(app, "run-3a", now + Duration::days(1), SweepOptions::default()),
        system_tests::world::sweep(app, "run-3b", now + Duration::days(1), SweepOptions::default())
    );
    let mut reports = vec![a.unwrap(), b.unwrap()];
    assert!(reports.iter().filter(|r| r.skipped).count() <= 1, "{reports:?}");
    // Then daily, for two weeks.
    for day in 2..=16 {
        reports.push(
            system_tests::world::sweep(app, &format!("run-{day}"), now + Duration::days(day), SweepOptions::default()).await.unwrap(),
        );
        assert_eq!(reports.last().unwrap().days_completed, vec![domain::clock::saudi_day(now + Duration::days(day))]);
    }
    // (Of the two runs at once, the one that found the day done read today only.)
    assert!(
        reports.iter().filter(|r| !r.days_completed.is_empty()).all(|r| r.queries == queries_for(4)),
        "a day reads yesterday and three reminder days: {reports:?}"
    );
    // Expired: the seats ending in 1 and 2 days. Reminded: the 1-day reminder of the seat
    // ending in 2 days, the 7-day of the one in 22, the 30-day of the one in 31.
    assert_eq!(totals(&reports), (2, 3), "{reports:?}");
    assert_eq!((fleet.status(4).await, fleet.status(5).await), (UserStatus::Expired, UserStatus::Expired));
    assert_eq!(fleet.received(5).await, (2, 2), "the 7-day reminder, then the 1-day one");
    assert_eq!(fleet.received(25).await, (1, 1), "the 7-day reminder, on its day, once");
    assert_eq!(fleet.received(34).await, (1, 1), "the 30-day reminder, on its day, once");
    let expiries =
        fleet.world.records().await.into_iter().filter(|r| matches!(r, Record::Audit(e) if e.action == AuditAction::SeatExpired)).count();
    assert_eq!(expiries, 4, "one audit entry per expiry");
}
both!(the_sweep_expires_due_seats_and_reminds_once);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweep_reads_only_the_days_it_has_to_and_never_scans() {
    let fleet = fleet(World::new(Backend::Moto).await).await;
    let users_table = fleet.world.dynamo.as_ref().unwrap().names().users.clone();
    let _recording = recording_lock().lock().await;
    fleet.world.moto().start_recording().await;
    let report = system_tests::world::sweep(&fleet.world.env, "run-1", first_run(), SweepOptions::default()).await.unwrap();
    let requests = fleet.world.moto().recorded_targets(&users_table).await;
    assert_eq!((report.expired, report.reminded), (2, 4));
    assert!(!requests.iter().any(|r| r.ends_with(".Scan")), "{requests:?}");
    let queries = requests.iter().filter(|r| r.ends_with(".Query")).count();
    // The first run looks back seven days: eight days of expiries, and the reminder days
    // ahead of those seven days (tomorrow to a week on, and 24 to 30 days on): 22 days.
    assert_eq!(queries, queries_for(22), "one query per partition it has to read, whatever the number of seats");
    assert_eq!(report.queries, queries);
    let writes = requests.iter().filter(|r| r.ends_with(".TransactWriteItems")).count();
    assert_eq!(writes, 6, "one transaction per due seat");
    let state_writes = requests.iter().filter(|r| r.ends_with(".PutItem")).count();
    assert_eq!(state_writes, 1 + 8 + 1, "the lease, each day completed, the release");

    // An hour later: today's partitions only.
    fleet.world.moto().start_recording().await;
    let report =
        system_tests::world::sweep(&fleet.world.env, "run-2", first_run() + Duration::hours(1), SweepOptions::default()).await.unwrap();
    let requests = fleet.world.moto().recorded_targets(&users_table).await;
    assert_eq!(requests.iter().filter(|r| r.ends_with(".Query")).count(), queries_for(0), "{report:?}");
}

async fn missed_days_are_caught_up_expiries_all_reminders_recent(backend: Backend) {
    let fleet = fleet(World::new(backend).await).await;
    let app = &fleet.world.env;
    system_tests::world::sweep(app, "run-1", first_run(), SweepOptions::default()).await.unwrap();
    // Twenty days without a run.
    let later = first_run() + Duration::days(20);
    let report = system_tests::world::sweep(app, "run-2", later, SweepOptions::default()).await.unwrap();
    assert_eq!(report.days_completed.len(), 20, "{report:?}");
    // Twenty days of expiries; reminders for the last seven days only (14 days ahead).
    assert_eq!(report.queries, queries_for(20 + 14), "old days read only for expiries");
    assert_eq!((fleet.status(4).await, fleet.status(5).await), (UserStatus::Expired, UserStatus::Expired), "no expiry left behind");
    assert_eq!(fleet.reminders(25).await, [Reminder::ThirtyDays, Reminder::SevenDays].into(), "the 7-day reminder of a recent day");
    assert_eq!(fleet.received(34).await, (0, 0), "a 30-day reminder 19 days late is not sent");
}
both!(missed_days_are_caught_up_expiries_all_reminders_recent);

/// The deadline, not a count, ends a run: on paused (virtual) time, with writes that take
/// 100 ms each, a run given a few seconds stops, saves where each partition was, and the
/// next runs finish — every seat expired once, every reminder queued once.
#[tokio::test(start_paused = true)]
async fn a_sweep_stops_at_its_deadline_and_the_next_run_continues() {
    use domain::deadline::{Deadline, SWEEP_MARGIN};
    let world = World::with_ports(
        Backend::Embedded,
        Some(&|store: Arc<dyn Store>| {
            FaultyStore::new(store, |call| match call {
                Call::Commit(_) => Some(Fault::Slow(std::time::Duration::from_millis(100))),
                _ => None,
            }) as Arc<dyn Store>
        }),
        None,
    )
    .await;
    let org = OrganizationId::parse(ORG).unwrap();
    let now = first_run();
    let ended = now - Duration::days(1);
    let reminded = now + Duration::days(7);
    let users: Vec<domain::user::User> = (0..1_200u32)
        .map(|n| {
            let mut user = crate::fixtures::full_user(&org, &crate::fixtures::person('1', 40_000 + n), START);
            let seat = user.seat.as_mut().unwrap();
            seat.reminders_sent.clear();
            seat.ends_at = if n % 3 == 0 { reminded } else { ended };
            user
        })
        .collect();
    world.embedded.as_ref().unwrap().load_directly(users.iter().cloned().map(Record::User));
    // The first run ever starts from the last completed day: say, the day before yesterday.
    let state = domain::actions::sweep::SweepState {
        version: 1,
        completed_through: Some(domain::clock::saudi_day(now) - Duration::days(1)),
        progress: None,
        retries: vec![],
        lease: None,
        updated_at: now,
    };
    world.env.store.commit(vec![domain::store::Write::create(Record::SweepState(state))]).await.unwrap();

    let mut reports = Vec::new();
    loop {
        let deadline = Deadline::after(SWEEP_MARGIN + std::time::Duration::from_secs(3));
        let meta =
            domain::pipeline::RequestMeta::new(domain::policy::Caller::Anonymous, format!("run-{}", reports.len())).with_deadline(deadline);
        let report = domain::actions::sweep::sweep(&world.env, &meta, now, SweepOptions::default()).await.unwrap();
        let stopped = report.stopped_early;
        reports.push(report);
        if !stopped {
            break;
        }
        let saved = world.env.store.load(&[domain::store::Key::SweepState]).await.unwrap().sweep_state().cloned().unwrap();
        assert!(saved.progress.is_some() && saved.lease.is_none(), "the place is saved and the lease released: {saved:?}");
        assert!(reports.len() < 10, "{reports:?}");
    }
    assert!(reports.len() >= 3, "the deadline ended runs: {reports:?}");
    assert!(reports.iter().all(|r| r.failed == 0), "{reports:?}");
    assert_eq!(totals(&reports), (800, 400), "{reports:?}");
    let audit: Vec<AuditAction> = world
        .records()
        .await
        .into_iter()
        .filter_map(|r| match r {
            Record::Audit(e) => Some(e.action),
            _ => None,
        })
        .collect();
    assert_eq!(audit.iter().filter(|a| **a == AuditAction::SeatExpired).count(), 800, "each seat expired once");
    assert_eq!(audit.iter().filter(|a| **a == AuditAction::SeatReminderQueued).count(), 400, "each reminder queued once");
}

async fn a_run_finds_the_lease_taken_and_does_nothing_until_it_lapses(backend: Backend) {
    let fleet = fleet(World::new(backend).await).await;
    let world = &fleet.world;
    let state = domain::actions::sweep::SweepState {
        version: 1,
        completed_through: None,
        progress: None,
        retries: vec![],
        lease: Some(domain::actions::sweep::Lease { run: "other".into(), until: world.now() + Duration::minutes(5) }),
        updated_at: world.now(),
    };
    world.env.store.commit(vec![domain::store::Write::create(Record::SweepState(state))]).await.unwrap();
    let held = system_tests::world::sweep(&world.env, "run-1", first_run(), SweepOptions::default()).await.unwrap();
    assert!(held.skipped && held.expired == 0 && held.queries == 0, "{held:?}");
    assert_eq!(fleet.status(0).await, UserStatus::Active);
    // The same run retried (Lambda retries an event with its id) takes its lease back.
    let retried = system_tests::world::sweep(&world.env, "other", first_run(), SweepOptions::default()).await.unwrap();
    assert!(!retried.skipped && retried.expired == 2, "{retried:?}");
}
both!(a_run_finds_the_lease_taken_and_does_nothing_until_it_lapses);

async fn one_failing_item_does_not_fail_the_batch(backend: Backend) {
    let failing = Arc::new(AtomicBool::new(true));
    let victim = PersonId::parse(&citizen(100)).unwrap();
    let switch = failing.clone();
    let target = victim.clone();
    let world = World::with_ports(
        backend,
        Some(&move |store: Arc<dyn Store>| {
            let switch = switch.clone();
            let target = target.clone();
            FaultyStore::new(store, move |call| match call {
                // The expiry: the user, its audit entry, and the intent with its event.
                Call::Commit(writes) if switch.load(Ordering::SeqCst) && writes_user(writes, &target) && writes.len() == 3 => {
                    Some(Fault::Unavailable)
                }
                _ => None,
            }) as Arc<dyn Store>
        }),
        None,
    )
    .await;
    failing.store(false, Ordering::SeqCst);
    let fleet = fleet(world).await;
    failing.store(true, Ordering::SeqCst);
    let first = system_tests::world::sweep(&fleet.world.env, "run-1", first_run(), SweepOptions::default()).await.unwrap();
    assert_eq!((first.expired, first.reminded, first.failed), (1, 4, 1), "{first:?}");
    assert_eq!(first.days_completed.len(), 8, "a failed item does not hold its day up");
    failing.store(false, Ordering::SeqCst);
    let second = system_tests::world::sweep(&fleet.world.env, "run-2", first_run(), SweepOptions::default()).await.unwrap();
    assert_eq!((second.expired, second.reminded, second.failed), (1, 0, 0), "its partition is retried: {second:?}");
    assert_eq!(fleet.status(0).await, UserStatus::Expired);
    let state = fleet.world.env.store.load(&[domain::store::Key::SweepState]).await.unwrap().sweep_state().cloned().unwrap();
    assert!(state.retries.is_empty(), "{state:?}");
}
both!(one_failing_item_does_not_fail_the_batch);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreadable_item_is_logged_and_skipped() {
    let fleet = fleet(World::new(Backend::Moto).await).await;
    let store = fleet.world.dynamo.as_ref().unwrap();
    let yesterday = domain::clock::saudi_day(first_run()) - Duration::days(1);
    let partition = domain::store::ExpiryPartition { day: yesterday, shard: 0 }.key();
    use aws_sdk_dynamodb::types::AttributeValue::S;
    store
        .client()
        .put_item()
        .table_name(&store.names().users)
        .item("pk", S(format!("ORG#{ORG}")))
        .item("sk", S("USER#1000000008".into()))
        .item("kind", S("user".into()))
        .item("expiry_key", S(partition))
        .item("expiry_at", S(domain::clock::key_timestamp(first_run() - Duration::days(1))))
        .item("status", S("no longer a status".into()))
        .send()
        .await
        .unwrap();
    let report = system_tests::world::sweep(&fleet.world.env, "run-1", first_run(), SweepOptions::default()).await.unwrap();
    assert_eq!((report.bad_items, report.expired, report.reminded), (1, 2, 4), "{report:?}");
}

async fn reminders_follow_language_and_notification_settings(backend: Backend) {
    let fleet = fleet(World::new(backend).await).await;
    let (world, org) = (&fleet.world, &fleet.org);
    world
        .update_user(org, fleet.person(31), |u| {
            u.language = domain::contact::Language::Ar;
            u.notifications.expiry_reminders = domain::user::Channels { email: false, sms: true };
        })
        .await;
    system_tests::world::sweep(&world.env, "run-1", first_run(), SweepOptions::default()).await.unwrap();
    let user = world.user(org, fleet.person(31)).await;
    let sms = world.sms_to(&user.mobile).await;
    assert!(sms.last().unwrap().contains("ينتهي اشتراكك"), "in Arabic: {sms:?}");
    assert_eq!(fleet.received(31).await, (0, 1), "SMS only, as chosen");
    assert!(world.emails_to(&user.email).await.iter().all(|(_, b)| !link_token(b).is_empty()), "only the activation email");
}
both!(reminders_follow_language_and_notification_settings);

/// The price before paying: the renewal quote says what a renewal would charge and the year
/// it would buy — exactly what the renewal then does — writes nothing, and refuses where the
/// renewal would (a suspended user, one already renewed ahead, a member who may not renew).
async fn a_renewal_quote_is_what_the_renewal_then_charges(backend: Backend) {
    let cast = cast(backend).await;
    let (world, client) = (&cast.world, &cast.client);
    let quote_of = |user: &PersonId, caller: &PersonId| {
        let path = format!("{}/renewal", user_path(user));
        let token = client.token_for(caller);
        async move { client.get(&path, &token).await }
    };
    let before = world.snapshot().await;
    let quote = quote_of(&cast.member, &cast.manager).await;
    assert_eq!(quote.status, 200, "{}", quote.text());
    assert_eq!(world.snapshot().await, before, "a quote writes nothing");
    let quote = quote.json();
    assert_eq!((quote["price_halalas"].clone(), quote["sufficient"].clone()), (json!(15_000), json!(true)));
    let renewed = renew(client, &cast.manager, &cast.member, "quoted").await.json();
    assert_eq!(renewed["amount_charged_halalas"], quote["price_halalas"]);
    assert_eq!(renewed["renewed"]["starts_at"], quote["starts_at"]);
    assert_eq!(renewed["renewed"]["ends_at"], quote["ends_at"]);

    let ahead = quote_of(&cast.member, &cast.manager).await;
    assert_eq!((ahead.status, ahead.code().as_str()), (422, "already_renewed"));
    let suspended = quote_of(&cast.suspended, &cast.manager).await;
    assert_eq!((suspended.status, suspended.code().as_str()), (422, "user_suspended"));
    let by_member = quote_of(&cast.citizen_user, &cast.member).await;
    assert_eq!((by_member.status, by_member.code().as_str()), (403, "not_an_administrator"), "{}", by_member.text());
}
both!(a_renewal_quote_is_what_the_renewal_then_charges);
