//! A step's request as a client sends it: method, path, query, headers, the token's claims
//! (as API Gateway's JWT authorizer hands them on) and the JSON body.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::step::{Call, Caller, Channel, Line, Plan, Request, Secret, Size, Start};
use crate::world::Http;

/// Secrets the simulator knows (issued number → text), and cursors it was given.
#[derive(Debug, Default, Clone)]
pub struct Known {
    pub secrets: BTreeMap<u64, String>,
    /// The last cursor a users listing of each organization handed out.
    pub users_cursor: BTreeMap<String, String>,
}

fn claims(caller: &Caller) -> Option<HashMap<String, String>> {
    match caller {
        Caller::Operator => Some(HashMap::from([("sub".into(), "operator@sim.example".into()), ("role".into(), "operator".into())])),
        Caller::Service => Some(HashMap::from([("sub".into(), "visa-service@sim.example".into()), ("role".into(), "service".into())])),
        Caller::Person(id) => Some(HashMap::from([("sub".into(), id.clone())])),
        Caller::Anonymous => None,
    }
}

fn lines(persons: &[Line]) -> Value {
    Value::Array(
        persons
            .iter()
            .map(|line| {
                let mut person = json!({ "id": line.id, "establishments": line.establishments });
                if let Some(user_type) = &line.user_type {
                    person["user_type"] = json!(user_type);
                }
                if let Some(language) = &line.language {
                    person["language"] = json!(language);
                }
                person
            })
            .collect(),
    )
}

fn size(size: Size) -> &'static str {
    match size {
        Size::Micro => "micro",
        Size::Small => "small",
        Size::Medium => "medium",
        Size::Large => "large",
        Size::Giant => "giant",
    }
}

fn channel(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "email",
        Channel::Mobile => "mobile",
    }
}

/// A secret as the client types it: the one received, or a wrong one of the right shape.
fn secret(known: &Known, secret: Secret, wrong: &str) -> String {
    match secret {
        Secret::Issued(number) => known.secrets.get(&number).cloned().unwrap_or_else(|| wrong.to_owned()),
        Secret::Wrong => wrong.to_owned(),
    }
}

/// A code that is not `right`.
fn wrong_code(known: &Known, secret: Secret) -> String {
    let right = match secret {
        Secret::Issued(number) => known.secrets.get(&number).cloned(),
        Secret::Wrong => None,
    };
    if right.as_deref() == Some("000000") { "111111".into() } else { "000000".into() }
}

/// The HTTP request of a step's request.
pub fn http(request: &Request, known: &Known) -> Http {
    let (method, path, query, body): (&'static str, String, String, Option<Value>) = match &request.call {
        Call::Register { person, name, iqama_expiry, employers, email, mobile } => {
            let mut body = json!({
                "name": { "en": name },
                "nationality": if person.starts_with('1') { "SA" } else { "IN" },
                "employers": employers,
                "email": email,
                "mobile": mobile,
            });
            if let Some(expiry) = iqama_expiry {
                body["iqama_expiry"] = json!(expiry.to_string());
            }
            ("PUT", format!("/v1/registry/persons/{person}"), String::new(), Some(body))
        }
        Call::Onboard { org, plan, manager, establishments } => (
            "POST",
            "/v1/organizations".into(),
            String::new(),
            Some(json!({
                "unified_number": org,
                "name": format!("Org {org}"),
                "pricing_plan": match plan { Plan::Muqeem => "muqeem", Plan::Qiwa => "qiwa" },
                "manager_id": manager,
                "establishments": establishments.iter().map(|(id, s)| json!({ "id": id, "name": format!("Branch {id}"), "size": size(*s) })).collect::<Vec<_>>(),
            })),
        ),
        Call::Credit { org, amount, reference } => (
            "POST",
            format!("/v1/organizations/{org}/balance/credits"),
            String::new(),
            Some(json!({ "amount_halalas": amount, "payment_reference": reference })),
        ),
        Call::Quote { org, persons } => {
            ("POST", format!("/v1/organizations/{org}/subscriptions/quote"), String::new(), Some(json!({ "persons": lines(persons) })))
        }
        Call::Subscribe { org, persons } => {
            ("POST", format!("/v1/organizations/{org}/subscriptions"), String::new(), Some(json!({ "persons": lines(persons) })))
        }
        Call::Renew { org, user } => ("POST", format!("/v1/organizations/{org}/users/{user}/renewal"), String::new(), None),
        Call::ConfirmLink { link } => {
            let token = secret(known, *link, "A".repeat(43).as_str());
            ("POST", "/v1/activations/email".into(), String::new(), Some(json!({ "token": token })))
        }
        Call::ConfirmCode { org, code } => {
            let text = match code {
                Secret::Issued(_) => secret(known, *code, &wrong_code(known, *code)),
                Secret::Wrong => wrong_code(known, *code),
            };
            ("POST", "/v1/activations/mobile".into(), String::new(), Some(json!({ "organization_id": org, "code": text })))
        }
        Call::Resend { org, user, email, sms } => {
            let mut body = serde_json::Map::new();
            if let Some(email) = email {
                body.insert("email".into(), json!(email));
            }
            if let Some(sms) = sms {
                body.insert("sms".into(), json!(sms));
            }
            let body = (!body.is_empty()).then_some(Value::Object(body));
            ("POST", format!("/v1/organizations/{org}/users/{user}/activation/resend"), String::new(), body)
        }
        Call::ResendMessage { org, user, slot } => {
            ("POST", format!("/v1/organizations/{org}/users/{user}/messages/{slot}/resend"), String::new(), None)
        }
        Call::SetGrants { org, user, version, grants } => (
            "PUT",
            format!("/v1/organizations/{org}/users/{user}/permissions"),
            String::new(),
            Some(json!({ "version": version, "grants": grants })),
        ),
        Call::Settings { org, version, self_subscription } => (
            "PATCH",
            format!("/v1/organizations/{org}/settings"),
            String::new(),
            Some(json!({ "version": version, "employee_self_subscription": self_subscription })),
        ),
        Call::Modify { org, user, version, email, mobile, language, notifications } => {
            let mut body = json!({ "version": version });
            if let Some(email) = email {
                body["email"] = json!(email);
            }
            if let Some(mobile) = mobile {
                body["mobile"] = json!(mobile);
            }
            if let Some(language) = language {
                body["language"] = json!(language);
            }
            if let Some(n) = notifications {
                body["notifications"] = json!({
                    "expiry_reminders": { "email": n.reminders_email, "sms": n.reminders_sms },
                    "account_notices": { "email": n.notices_email, "sms": n.notices_sms },
                });
            }
            ("PATCH", format!("/v1/organizations/{org}/users/{user}"), String::new(), Some(body))
        }
        Call::ConfirmContact { org, user, channel: which, code } => {
            let text = match code {
                Secret::Issued(_) => secret(known, *code, &wrong_code(known, *code)),
                Secret::Wrong => wrong_code(known, *code),
            };
            (
                "POST",
                format!("/v1/organizations/{org}/users/{user}/contact-verifications"),
                String::new(),
                Some(json!({ "channel": channel(*which), "code": text })),
            )
        }
        Call::CancelContact { org, user, channel: which } => {
            ("DELETE", format!("/v1/organizations/{org}/users/{user}/pending-contact-changes/{}", channel(*which)), String::new(), None)
        }
        Call::Suspend { org, user } => (
            "POST",
            format!("/v1/organizations/{org}/users/{user}/suspension"),
            String::new(),
            Some(json!({ "reason": "left the establishment" })),
        ),
        Call::Check { org, user, establishment, service } => (
            "POST",
            "/v1/authorizations/check".into(),
            String::new(),
            Some(json!({ "organization_id": org, "user_id": user, "establishment_id": establishment, "service": service })),
        ),
        Call::Profile { org, user } => ("GET", format!("/v1/organizations/{org}/users/{user}"), String::new(), None),
        Call::Users { org, status, establishment, limit } => {
            let mut query = format!("limit={limit}");
            if let Some(status) = status {
                query.push_str(&format!("&status={}", status.as_str()));
            }
            if let Some(establishment) = establishment {
                query.push_str(&format!("&establishment={establishment}"));
            }
            ("GET", format!("/v1/organizations/{org}/users"), query, None)
        }
        Call::Audit { org, user, start } => {
            let path = match user {
                Some(user) => format!("/v1/organizations/{org}/users/{user}/audit"),
                None => format!("/v1/organizations/{org}/audit"),
            };
            let query = match start {
                Start::First => "limit=20".to_owned(),
                Start::ForeignCursor => match known.users_cursor.get(org) {
                    Some(cursor) => format!("limit=20&cursor={cursor}"),
                    None => "limit=20&cursor=not-a-cursor".to_owned(),
                },
            };
            ("GET", path, query, None)
        }
        Call::Balance { org } => ("GET", format!("/v1/organizations/{org}/balance"), String::new(), None),
    };
    let mut headers = vec![("user-agent".to_owned(), "sim".to_owned())];
    if let Some(key) = &request.key {
        headers.push(("idempotency-key".into(), key.clone()));
    }
    Http { method, path, query, headers, claims: claims(&request.caller), body }
}
