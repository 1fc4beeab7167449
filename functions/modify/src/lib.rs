//! The modify function: a user's profile, changes to it, the verification of new contact
//! details, and resending a message the user missed.

use domain::actions::modify::{self, CancelPending, Channel, ConfirmContact, Modify};
use domain::actions::resend::ResendMessage;
use domain::env::{Env, SecretSource};
use domain::error::{Error, Kind, Rejection};
use domain::outbox::Slot;
use domain::parse;
use domain::pipeline::run;
use domain::secrets::CodeKey;
use domain::user::{Channels, NotificationSettings};
use gateway::routes::ModifyRoute;
use gateway::{Incoming, Reply};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

pub async fn handle(env: &Env, secrets: &dyn SecretSource, request: Request) -> Response<Body> {
    gateway::serve(request, async |incoming: Incoming<ModifyRoute>| route(env, secrets, incoming).await).await
}

/// Missing → `None`; `null` → `Some(None)`; a value → `Some(Some(value))`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelsInput {
    email: bool,
    sms: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationsInput {
    expiry_reminders: ChannelsInput,
    account_notices: ChannelsInput,
}

/// The fields a PATCH may carry, and the ones it may not (named in a 422, even as `null`).
/// Only `job_title` takes `null` (to remove it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchInput {
    version: u64,
    #[serde(default, deserialize_with = "gateway::not_null")]
    email: Option<String>,
    #[serde(default, deserialize_with = "gateway::not_null")]
    mobile: Option<String>,
    #[serde(default, deserialize_with = "present")]
    job_title: Option<Option<String>>,
    #[serde(default, deserialize_with = "gateway::not_null")]
    language: Option<String>,
    #[serde(default, deserialize_with = "gateway::not_null")]
    notifications: Option<NotificationsInput>,
    #[serde(default, deserialize_with = "gateway::not_null")]
    id: Option<Value>,
    #[serde(default, deserialize_with = "gateway::not_null")]
    nationality: Option<Value>,
    #[serde(default, deserialize_with = "gateway::not_null")]
    grants: Option<Value>,
    #[serde(default, deserialize_with = "gateway::not_null")]
    status: Option<Value>,
    #[serde(default, deserialize_with = "gateway::not_null")]
    role: Option<Value>,
    #[serde(default, deserialize_with = "gateway::not_null")]
    name: Option<Value>,
    #[serde(default, deserialize_with = "gateway::not_null")]
    establishments: Option<Value>,
    #[serde(default, deserialize_with = "gateway::not_null")]
    user_type: Option<Value>,
    #[serde(default, deserialize_with = "gateway::not_null")]
    seat: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerificationInput {
    channel: String,
    code: String,
}

fn channel(field: &str, raw: &str) -> Result<Channel, Rejection> {
    Channel::parse(raw).ok_or_else(|| Rejection::new(Kind::InvalidField, "the channel is email or mobile").field(field))
}

fn modification(incoming: &Incoming<ModifyRoute>, key: CodeKey) -> Result<Modify, Rejection> {
    let input: PatchInput = incoming.json()?;
    let fixed: Vec<&str> = [
        ("id", input.id.is_some()),
        ("nationality", input.nationality.is_some()),
        ("grants", input.grants.is_some()),
        ("status", input.status.is_some()),
        ("role", input.role.is_some()),
        ("name", input.name.is_some()),
        ("establishments", input.establishments.is_some()),
        ("user_type", input.user_type.is_some()),
        ("seat", input.seat.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, sent)| sent.then_some(name))
    .collect();
    if !fixed.is_empty() {
        return Err(Rejection::new(Kind::FieldNotModifiable, format!("these cannot be changed here: {}", fixed.join(", ")))
            .field(fixed[0])
            .detail("fields", fixed));
    }
    Modify {
        organization: incoming.organization()?,
        user: incoming.user_id()?,
        version: input.version,
        email: input.email.as_deref().map(|e| parse::email("email", e)).transpose()?,
        mobile: input.mobile.as_deref().map(|m| parse::mobile("mobile", m)).transpose()?,
        job_title: match input.job_title {
            None => None,
            Some(None) => Some(None),
            Some(Some(title)) => Some(Some(parse::text("job_title", &title, 100)?)),
        },
        language: input.language.as_deref().map(|l| parse::language("language", l)).transpose()?,
        notifications: input.notifications.map(|n| NotificationSettings {
            expiry_reminders: Channels { email: n.expiry_reminders.email, sms: n.expiry_reminders.sms },
            account_notices: Channels { email: n.account_notices.email, sms: n.account_notices.sms },
        }),
        key,
    }
    .check()
}

async fn route(env: &Env, secrets: &dyn SecretSource, incoming: Incoming<ModifyRoute>) -> Result<Reply, Error> {
    let meta = incoming.meta();
    match incoming.route {
        ModifyRoute::ReadProfile => {
            let (organization, user) = (incoming.organization()?, incoming.user_id()?);
            Reply::json(200, &modify::profile(env, &meta, &organization, &user).await?)
        }
        ModifyRoute::ModifyUser => {
            let command = modification(&incoming, secrets.code_key().await?)?;
            Reply::json(200, &run(env, &meta, &command).await?.answer)
        }
        ModifyRoute::ConfirmContact => {
            let (organization, user) = (incoming.organization()?, incoming.user_id()?);
            let input: VerificationInput = incoming.json()?;
            let command =
                ConfirmContact::new(organization, user, channel("channel", &input.channel)?, &input.code, secrets.code_key().await?)?;
            Reply::json(200, &run(env, &meta, &command).await?.answer)
        }
        ModifyRoute::CancelPendingContact => {
            let (organization, user) = (incoming.organization()?, incoming.user_id()?);
            let channel =
                Channel::parse(incoming.param("channel")).ok_or_else(|| Rejection::new(Kind::NotFound, "no such pending change"))?;
            Reply::json(200, &run(env, &meta, &CancelPending { organization, user, channel }).await?.answer)
        }
        ModifyRoute::ResendMessage => {
            let (organization, user) = (incoming.organization()?, incoming.user_id()?);
            let slot: Slot = serde_json::from_value(Value::String(incoming.param("slot").to_owned()))
                .map_err(|_| Rejection::new(Kind::NotFound, "no such message"))?;
            let command = ResendMessage { organization, user, slot, key: secrets.code_key().await? };
            Reply::json(200, &run(env, &meta, &command).await?.answer)
        }
    }
}
