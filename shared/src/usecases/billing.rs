//! Money: operator credits, quotes, subscriptions and renewals.
//!
//! Each paid operation is one atomic write: the balance (conditional on the version that
//! showed enough money), the seats and users, one ledger entry per seat, one audit entry per
//! user, and the idempotency record holding the response. A retry with the same key gets
//! that response back; nothing is charged twice.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::{Attempt, Committed, Delivery, RequestMeta, audit_entry, commit, display_name, new_id, send_email, send_sms};
use crate::app::App;
use crate::audit::{Actor, AuditAction};
use crate::clock::{one_year_after, utc};
use crate::contact::Language;
use crate::error::{Error, Kind, Rejection};
use crate::idempotency::{IdempotencyRecord, IdempotencyScope, KEY_LIFETIME, key_digest};
use crate::identity::PersonId;
use crate::ledger::{Balance, Direction, LedgerEntry, LedgerReason, SeatPurchase, ledger_sequence};
use crate::messaging::{EmailMessage, SmsMessage, Template};
use crate::money::Halalas;
use crate::organization::{EstablishmentId, Organization, OrganizationId, PricingPlan};
use crate::person::Person;
use crate::policy::{Action, OnUser, Standing, authorize, target_of};
use crate::secrets::{CodePurpose, LINK_TOKEN_TTL, new_code, new_link_token};
use crate::store::{Expect, Key, Loaded, Record, Write};
use crate::user::{Activation, NotificationSettings, Role, Seat, User, UserStatus, UserType};

/// The most persons one subscription request may carry (it is one transaction).
pub const MAX_PERSONS_PER_REQUEST: usize = 25;
/// The largest single credit, 100 million riyals: a typo guard, not a business rule.
pub const MAX_CREDIT: Halalas = Halalas::from_riyals(100_000_000);
/// How long after expiry a seat can still be renewed (from the renewal day) rather than
/// bought anew.
pub const RENEWAL_GRACE: Duration = Duration::days(30);

/// A response that is stored with its idempotency key and replayed verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedResponse {
    pub status: u16,
    pub body: String,
    pub replayed: bool,
}

fn replay_or_refuse(record: &IdempotencyRecord, request_digest: &str, reuse: Kind) -> Result<KeyedResponse, Error> {
    if record.request_digest == request_digest {
        Ok(KeyedResponse { status: record.status, body: record.body.clone(), replayed: true })
    } else {
        Err(Rejection::new(reuse, "this key was already used for a different request").into())
    }
}

fn in_flight() -> Error {
    Rejection::new(
        Kind::IdempotencyKeyInFlight,
        "another request with this key was being processed at the same time; retry to get its result",
    )
    .into()
}

fn insufficient(required: Halalas, available: Halalas) -> Error {
    Rejection::new(Kind::InsufficientBalance, format!("this costs {required}, the balance is {available}"))
        .detail("required_halalas", required.get())
        .detail("available_halalas", available.get())
        .into()
}

fn missing_balance(organization: &OrganizationId) -> Error {
    Error::internal(format!("organization {organization} has no balance record"))
}

#[allow(clippy::too_many_arguments)]
fn ledger_entry(
    meta: &RequestMeta,
    organization: &OrganizationId,
    sequence: u64,
    direction: Direction,
    amount: Halalas,
    balance_after: Halalas,
    reason: LedgerReason,
    at: OffsetDateTime,
) -> LedgerEntry {
    LedgerEntry {
        organization: organization.clone(),
        id: new_id("entry"),
        sequence,
        at,
        direction,
        amount,
        balance_after,
        reason,
        actor: meta.caller.actor(),
        request_id: meta.request_id.clone(),
    }
}

fn caller_key(meta: &RequestMeta, organization: &OrganizationId) -> Option<Key> {
    meta.caller.person().map(|id| Key::User(organization.clone(), id.clone()))
}

fn caller_user<'a>(meta: &RequestMeta, loaded: &'a Loaded, organization: &OrganizationId) -> Option<&'a User> {
    meta.caller.person().and_then(|id| loaded.user(organization, id))
}

// ---------------------------------------------------------------------------------------
// Credits

#[derive(Debug, Clone)]
pub struct Credit {
    pub organization: OrganizationId,
    pub amount: Halalas,
    pub payment_reference: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreditReceipt {
    pub organization_id: OrganizationId,
    pub payment_reference: String,
    pub credited_halalas: Halalas,
    pub balance_halalas: Halalas,
    pub ledger_entry_id: String,
    #[serde(with = "utc")]
    pub credited_at: OffsetDateTime,
}

/// Adds money paid outside the system. The payment reference makes it idempotent forever:
/// the same reference with the same amount returns the first receipt; with another amount
/// it is refused.
pub async fn credit(app: &App, meta: &RequestMeta, command: Credit) -> Result<KeyedResponse, Error> {
    if command.amount.is_zero() || command.amount > MAX_CREDIT {
        return Err(Rejection::new(Kind::InvalidAmount, format!("a credit is between 0.01 SAR and {MAX_CREDIT}"))
            .field("amount_halalas")
            .into());
    }
    let reference = command.payment_reference.trim().to_owned();
    if reference.is_empty() || reference.chars().count() > 100 || reference.chars().any(char::is_control) {
        return Err(Rejection::new(Kind::InvalidField, "a payment reference is 1 to 100 printable characters")
            .field("payment_reference")
            .into());
    }
    let organization = &command.organization;
    // A payment reference belongs to the organization, not to the operator who enters it:
    // two operators crediting the same payment must meet the same record.
    let digest = key_digest(&reference);
    let request_digest = crate::idempotency::request_digest(&json!({ "amount_halalas": command.amount }));

    Ok(retrying!(app, {
        let now = app.clock.now();
        let mut keys = vec![
            Key::Organization(organization.clone()),
            Key::Balance(organization.clone()),
            Key::Idempotency(organization.clone(), IdempotencyScope::Credit, digest.clone()),
        ];
        keys.extend(caller_key(meta, organization));
        let loaded = app.store.load(&keys).await?;
        let standing = Standing::of(&meta.caller, loaded.organization(organization), caller_user(meta, &loaded, organization), now)?;
        authorize(standing, Action::CreditBalance)?;
        if let Some(record) = loaded.idempotency(organization, IdempotencyScope::Credit, &digest) {
            return replay_or_refuse(record, &request_digest, Kind::PaymentReferenceReused).map(Attempt::Done);
        }
        let balance = loaded.balance(organization).ok_or_else(|| missing_balance(organization))?;
        let available = balance.available.checked_add(command.amount).ok_or_else(|| Error::internal("balance overflow"))?;
        let entry = ledger_entry(
            meta,
            organization,
            ledger_sequence(balance.version + 1, 0),
            Direction::Credit,
            command.amount,
            available,
            LedgerReason::Credit { payment_reference: reference.clone() },
            now,
        );
        let receipt = CreditReceipt {
            organization_id: organization.clone(),
            payment_reference: reference.clone(),
            credited_halalas: command.amount,
            balance_halalas: available,
            ledger_entry_id: entry.id.clone(),
            credited_at: now,
        };
        let body = serde_json::to_string(&receipt).map_err(Error::internal)?;
        let next_balance = Balance {
            available,
            total_credited: balance.total_credited.checked_add(command.amount).ok_or_else(|| Error::internal("total overflow"))?,
            version: balance.version + 1,
            ..balance.clone()
        };
        let audit = audit_entry(
            meta,
            organization,
            AuditAction::BalanceCredited,
            None,
            json!({ "amount_halalas": command.amount, "balance_halalas": available, "payment_reference": reference }),
            now,
        );
        let record = IdempotencyRecord {
            organization: organization.clone(),
            scope: IdempotencyScope::Credit,
            key_digest: digest.clone(),
            request_digest: request_digest.clone(),
            status: 201,
            body: body.clone(),
            created_at: now,
            expires_at: None,
        };
        let writes = vec![
            Write::create(Record::Idempotency(record)),
            Write::replace(Record::Balance(next_balance), balance.version),
            Write::create(Record::Ledger(entry)),
            Write::create(Record::Audit(audit)),
        ];
        match commit(app, writes).await? {
            Committed::Yes => Ok(Attempt::Done(KeyedResponse { status: 201, body, replayed: false })),
            // The next read finds the record of whichever request won and replays or refuses.
            Committed::Conflict(_) | Committed::Unknown => Ok(Attempt::Retry),
        }
    }))
}

// ---------------------------------------------------------------------------------------
// Quotes and subscriptions

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribePerson {
    pub id: PersonId,
    pub establishments: BTreeSet<EstablishmentId>,
    pub user_type: Option<UserType>,
    pub language: Option<Language>,
    pub job_title: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Subscribe {
    pub organization: OrganizationId,
    pub persons: Vec<SubscribePerson>,
}

/// One person's line in a quote or a subscription.
struct Line<'a> {
    request: &'a SubscribePerson,
    person: &'a Person,
    existing: Option<&'a User>,
    price: Halalas,
}

fn subscription_keys(meta: &RequestMeta, command: &Subscribe) -> Vec<Key> {
    let organization = &command.organization;
    let mut keys = vec![Key::Organization(organization.clone()), Key::Balance(organization.clone())];
    keys.extend(caller_key(meta, organization));
    for person in &command.persons {
        keys.push(Key::Person(person.id.clone()));
        keys.push(Key::User(organization.clone(), person.id.clone()));
    }
    keys
}

fn all_establishments(command: &Subscribe) -> BTreeSet<EstablishmentId> {
    command.persons.iter().flat_map(|p| p.establishments.iter().cloned()).collect()
}

/// What subscribing asks of the policy: a person buying only their own seat is judged as
/// such (the manager always may; an employee may for the establishments that employ them);
/// anything else is an administrator's subscription.
fn subscribe_action<'a>(
    meta: &RequestMeta,
    command: &Subscribe,
    loaded: &'a Loaded,
    establishments: &'a BTreeSet<EstablishmentId>,
) -> Result<Action<'a>, Rejection> {
    let own = match (meta.caller.person(), command.persons.as_slice()) {
        (Some(me), [only]) if &only.id == me => Some(me),
        _ => None,
    };
    match own {
        Some(me) => Ok(Action::SubscribeSelf {
            organization: loaded.organization(&command.organization).ok_or_else(Rejection::not_found)?,
            person: loaded.person(me),
            establishments,
        }),
        None => Ok(Action::Subscribe { establishments }),
    }
}

/// Checks the request shape before anything is read.
fn check_shape(command: &Subscribe) -> Result<(), Rejection> {
    if command.persons.is_empty() {
        return Err(Rejection::invalid_request("persons", "at least one person is required"));
    }
    if command.persons.len() > MAX_PERSONS_PER_REQUEST {
        return Err(Rejection::new(Kind::TooManyPersons, format!("at most {MAX_PERSONS_PER_REQUEST} persons per request"))
            .field("persons")
            .detail("limit", MAX_PERSONS_PER_REQUEST));
    }
    let mut seen = HashSet::new();
    for (position, person) in command.persons.iter().enumerate() {
        if !seen.insert(&person.id) {
            return Err(Rejection::new(Kind::DuplicatePerson, "the same person is listed twice").field(format!("persons[{position}].id")));
        }
        if person.establishments.is_empty() {
            return Err(Rejection::new(Kind::InvalidField, "choose at least one establishment")
                .field(format!("persons[{position}].establishments")));
        }
        if let Some(title) = &person.job_title
            && (title.trim().is_empty() || title.chars().count() > 100)
        {
            return Err(
                Rejection::new(Kind::InvalidField, "a job title is 1 to 100 characters").field(format!("persons[{position}].job_title"))
            );
        }
    }
    Ok(())
}

/// Applies the subscription rules to every person and prices the seats in request order.
fn price_lines<'a>(
    app: &App,
    command: &'a Subscribe,
    organization: &Organization,
    standing: Standing<'_>,
    balance: &Balance,
    loaded: &'a Loaded,
    now: OffsetDateTime,
) -> Result<Vec<Line<'a>>, Rejection> {
    let today = crate::clock::saudi_day(now);
    let mut lines = Vec::with_capacity(command.persons.len());
    for (position, request) in command.persons.iter().enumerate() {
        let field = |name: &str| format!("persons[{position}].{name}");
        for establishment in &request.establishments {
            if !organization.has_establishment(establishment) {
                return Err(Rejection::new(Kind::UnknownEstablishment, "this establishment is not part of the organization")
                    .field(field("establishments"))
                    .detail("establishment", establishment.as_str()));
            }
        }
        match (organization.plan, request.user_type) {
            (PricingPlan::Muqeem, None) => {
                return Err(Rejection::new(Kind::UserTypeRequired, "Muqeem users need a type: residents_and_partners or partners_only")
                    .field(field("user_type")));
            }
            (PricingPlan::Qiwa, Some(_)) => {
                return Err(Rejection::new(Kind::UserTypeNotApplicable, "user types exist on Muqeem only").field(field("user_type")));
            }
            _ => {}
        }
        let Some(person) = loaded.person(&request.id) else {
            return Err(Rejection::new(Kind::PersonNotRegistered, "this person is not registered on the platform").field(field("id")));
        };
        if !person.iqama_valid_on(today) {
            return Err(Rejection::new(Kind::IqamaExpired, "a resident's iqama must be valid to subscribe them").field(field("id")));
        }
        let existing = loaded.user(&organization.id, &request.id);
        if existing.is_some_and(|user| user.holds_running_seat(now) || (user.is_manager() && user.seat_valid_at(now))) {
            return Err(Rejection::new(Kind::AlreadySubscribed, "this person already holds a seat in the organization").field(field("id")));
        }
        // Qiwa: adding someone who is not an employee of the chosen establishments needs an
        // acting manager with an active seat of their own. The manager may always buy
        // their own seat, or nobody could ever add a non-employee.
        if organization.plan == PricingPlan::Qiwa
            && !person.employed_by_any_of(&request.establishments)
            && let Standing::Manager(manager) = standing
            && manager.id != person.id
            && !manager.seat_valid_at(now)
        {
            return Err(Rejection::new(
                Kind::ManagerSeatRequired,
                "this person is not an employee of the chosen establishments; the manager needs an active seat to add them",
            )
            .field(field("id")));
        }
        lines.push(Line { request, person, existing, price: Halalas::ZERO });
    }
    let prices = app.settings.pricing.seat_prices(organization, balance.seats_sold, lines.len());
    for (line, price) in lines.iter_mut().zip(prices) {
        line.price = price;
    }
    Ok(lines)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuoteLine {
    pub id: PersonId,
    pub price_halalas: Halalas,
    pub free: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Quote {
    pub organization_id: OrganizationId,
    pub persons: Vec<QuoteLine>,
    pub total_halalas: Halalas,
    pub balance_halalas: Halalas,
    pub sufficient: bool,
    #[serde(with = "utc")]
    pub seat_ends_at: OffsetDateTime,
}

/// Prices a subscription without writing anything.
pub async fn quote(app: &App, meta: &RequestMeta, command: Subscribe) -> Result<Quote, Error> {
    check_shape(&command)?;
    let now = app.clock.now();
    let organization_id = &command.organization;
    let loaded = app.store.load(&subscription_keys(meta, &command)).await?;
    let standing =
        Standing::with_outsiders(&meta.caller, loaded.organization(organization_id), caller_user(meta, &loaded, organization_id), now)?;
    let establishments = all_establishments(&command);
    authorize(standing, subscribe_action(meta, &command, &loaded, &establishments)?)?;
    let organization = loaded.organization(organization_id).ok_or_else(Rejection::not_found)?;
    let balance = loaded.balance(organization_id).ok_or_else(|| missing_balance(organization_id))?;
    let lines = price_lines(app, &command, organization, standing, balance, &loaded, now)?;
    let total: Halalas = lines.iter().map(|line| line.price).sum();
    Ok(Quote {
        organization_id: organization_id.clone(),
        persons: lines
            .iter()
            .map(|line| QuoteLine { id: line.request.id.clone(), price_halalas: line.price, free: line.price.is_zero() })
            .collect(),
        total_halalas: total,
        balance_halalas: balance.available,
        sufficient: total <= balance.available,
        seat_ends_at: one_year_after(now),
    })
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SeatView {
    pub id: String,
    #[serde(with = "utc")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "utc")]
    pub ends_at: OffsetDateTime,
    pub price_halalas: Halalas,
}

impl From<&Seat> for SeatView {
    fn from(seat: &Seat) -> Self {
        SeatView { id: seat.id.clone(), starts_at: seat.starts_at, ends_at: seat.ends_at, price_halalas: seat.price }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActivationMessages {
    pub email: Delivery,
    pub sms: Delivery,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscribedUser {
    pub id: PersonId,
    pub status: UserStatus,
    pub establishments: BTreeSet<EstablishmentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<UserType>,
    pub seat: SeatView,
    pub activation_messages: ActivationMessages,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionReceipt {
    pub organization_id: OrganizationId,
    pub users: Vec<SubscribedUser>,
    pub amount_charged_halalas: Halalas,
    pub balance_after_halalas: Halalas,
    #[serde(with = "utc")]
    pub seat_ends_at: OffsetDateTime,
}

/// The messages to send once the subscription has committed. Raw secrets live only here.
struct Outgoing {
    email: EmailMessage,
    sms: SmsMessage,
}

pub(crate) fn activation_messages(
    app: &App,
    organization: &Organization,
    user: &User,
    token: &str,
    code: &str,
) -> (EmailMessage, SmsMessage) {
    let link = format!("{}{}", app.settings.activation_link_prefix, token);
    let name = display_name(user);
    let hours = LINK_TOKEN_TTL.whole_hours().to_string();
    let email = EmailMessage::new(
        &user.email,
        Template::ActivationEmail,
        user.language,
        &[("name", &name), ("organization", &organization.name), ("link", &link), ("hours", &hours)],
    );
    let sms = SmsMessage::new(&user.mobile, Template::ActivationSms, user.language, &[("code", code)]);
    (email, sms)
}

/// Subscribes one or more persons, all or nothing, charging the balance once.
pub async fn subscribe(
    app: &App,
    meta: &RequestMeta,
    command: Subscribe,
    idempotency_key: &str,
    request_digest: &str,
) -> Result<KeyedResponse, Error> {
    check_shape(&command)?;
    let code_key = app.settings.code_key()?;
    let organization_id = &command.organization;
    let digest = key_digest(&format!("{}\n{idempotency_key}", meta.caller.key_owner()));
    let establishments = all_establishments(&command);
    let mut keys = subscription_keys(meta, &command);
    keys.push(Key::Idempotency(organization_id.clone(), IdempotencyScope::Subscribe, digest.clone()));

    // A commit whose outcome is uncertain: unknown, or refused because the key was taken
    // (which is also what a retry of our own commit after a lost response looks like). If
    // the next read finds its exact response stored — it holds fresh random seat IDs — it
    // was ours, and its activation messages still have to go out.
    let mut unconfirmed: Option<(SubscriptionReceipt, IdempotencyRecord, Vec<Option<Outgoing>>)> = None;
    let mut key_taken = false;
    let (receipt, record, outgoing) = match retrying!(app, {
        let now = app.clock.now();
        let loaded = app.store.load(&keys).await?;
        let standing =
            Standing::with_outsiders(&meta.caller, loaded.organization(organization_id), caller_user(meta, &loaded, organization_id), now)?;
        // The caller's right comes first: a stored answer is only ever given back to
        // someone who may take the action.
        authorize(standing, subscribe_action(meta, &command, &loaded, &establishments)?)?;
        if let Some(record) = loaded.idempotency(organization_id, IdempotencyScope::Subscribe, &digest)
            && record.is_live_at(now)
        {
            if let Some(ours) = unconfirmed.take_if(|(_, ours, _)| ours.body == record.body) {
                return Ok(Attempt::Done(Ok(ours)));
            }
            if key_taken {
                return Err(in_flight());
            }
            return replay_or_refuse(record, request_digest, Kind::IdempotencyKeyReused).map(|r| Attempt::Done(Err(r)));
        }
        let organization = loaded.organization(organization_id).ok_or_else(Rejection::not_found)?;
        let balance = loaded.balance(organization_id).ok_or_else(|| missing_balance(organization_id))?;
        let lines = price_lines(app, &command, organization, standing, balance, &loaded, now)?;
        let total: Halalas = lines.iter().map(|line| line.price).sum();
        let Some(balance_after) = balance.available.checked_sub(total) else {
            return Err(insufficient(total, balance.available));
        };

        let seat_ends_at = one_year_after(now);
        let mut writes = Vec::with_capacity(2 + 3 * lines.len());
        let mut users = Vec::with_capacity(lines.len());
        let mut outgoing = Vec::with_capacity(lines.len());
        let mut running = balance.available;
        for (position, line) in lines.iter().enumerate() {
            // Entries of one request are a microsecond apart, so listings show them in the
            // order the balance moved.
            let at = now + Duration::microseconds(position as i64);
            running = running.checked_sub(line.price).ok_or_else(|| Error::internal("running balance below zero"))?;
            let seat =
                Seat { id: new_id("seat"), starts_at: now, ends_at: seat_ends_at, price: line.price, reminders_sent: BTreeSet::new() };
            let (user, messages) = subscribed_user(app, code_key, organization, line, seat.clone(), now);
            let resubscription = line.existing.is_some_and(|existing| !existing.is_manager());
            writes.push(match line.existing {
                Some(existing) => Write::replace(Record::User(user.clone()), existing.version),
                None => Write::create(Record::User(user.clone())),
            });
            writes.push(Write::create(Record::Ledger(ledger_entry(
                meta,
                organization_id,
                ledger_sequence(balance.version + 1, position),
                Direction::Debit,
                line.price,
                running,
                LedgerReason::Seat { seat_id: seat.id.clone(), person: user.id.clone(), purchase: SeatPurchase::Subscription },
                at,
            ))));
            writes.push(Write::create(Record::Audit(audit_entry(
                meta,
                organization_id,
                AuditAction::UserSubscribed,
                Some(&user),
                json!({
                    "seat_id": seat.id,
                    "price_halalas": seat.price,
                    "seat_ends_at": crate::clock::key_timestamp(seat.ends_at),
                    "establishments": super::establishment_list(&user.establishments),
                    "user_type": user.user_type,
                    "resubscription": resubscription,
                }),
                at,
            ))));
            users.push(SubscribedUser {
                id: user.id.clone(),
                status: user.status,
                establishments: user.establishments.clone(),
                user_type: user.user_type,
                seat: SeatView::from(&seat),
                activation_messages: ActivationMessages {
                    email: if messages.is_some() { Delivery::Sent } else { Delivery::NotNeeded },
                    sms: if messages.is_some() { Delivery::Sent } else { Delivery::NotNeeded },
                },
            });
            outgoing.push(messages);
        }
        let next_balance = Balance {
            available: balance_after,
            total_debited: balance.total_debited.checked_add(total).ok_or_else(|| Error::internal("total overflow"))?,
            seats_sold: balance.seats_sold + lines.len() as u64,
            version: balance.version + 1,
            ..balance.clone()
        };
        writes.push(Write::replace(Record::Balance(next_balance), balance.version));

        let receipt = SubscriptionReceipt {
            organization_id: organization_id.clone(),
            users,
            amount_charged_halalas: total,
            balance_after_halalas: balance_after,
            seat_ends_at,
        };
        let record = IdempotencyRecord {
            organization: organization_id.clone(),
            scope: IdempotencyScope::Subscribe,
            key_digest: digest.clone(),
            request_digest: request_digest.to_owned(),
            status: 201,
            body: serde_json::to_string(&receipt).map_err(Error::internal)?,
            created_at: now,
            expires_at: Some(now + KEY_LIFETIME),
        };
        let idempotency_position = writes.len();
        writes.push(Write { record: Record::Idempotency(record.clone()), expect: Expect::AbsentOrExpiredBefore(now) });
        match commit(app, writes).await? {
            Committed::Yes => Ok(Attempt::Done(Ok((receipt, record, outgoing)))),
            Committed::Conflict(failed) if failed.contains(&idempotency_position) => {
                key_taken = true;
                unconfirmed = Some((receipt, record, outgoing));
                Ok(Attempt::Retry)
            }
            Committed::Conflict(_) => Ok(Attempt::Retry),
            Committed::Unknown => {
                unconfirmed = Some((receipt, record, outgoing));
                Ok(Attempt::Retry)
            }
        }
    }) {
        Ok(committed) => committed,
        Err(replayed) => return Ok(replayed),
    };

    deliver_activation(app, receipt, record, outgoing).await
}

/// Sends the activation messages of a committed subscription. If any fails, the stored
/// response is amended to say so, so that a replay tells the same story.
async fn deliver_activation(
    app: &App,
    mut receipt: SubscriptionReceipt,
    mut record: IdempotencyRecord,
    outgoing: Vec<Option<Outgoing>>,
) -> Result<KeyedResponse, Error> {
    let mut any_failed = false;
    for (user, messages) in receipt.users.iter_mut().zip(outgoing) {
        if let Some(Outgoing { email, sms }) = messages {
            let (email, sms) = tokio::join!(send_email(app, &email), send_sms(app, &sms));
            any_failed |= email == Delivery::Failed || sms == Delivery::Failed;
            user.activation_messages = ActivationMessages { email, sms };
        }
    }
    let body = serde_json::to_string(&receipt).map_err(Error::internal)?;
    if any_failed {
        record.body = body.clone();
        let amend = Write { record: Record::Idempotency(record), expect: Expect::Present };
        if let Err(error) = app.store.commit(vec![amend]).await {
            // The subscription stands and the client gets the truth now; only a replay
            // would report the messages as sent.
            tracing::error!(error = %error, "could not record the delivery failure in the idempotency record");
        }
    }
    Ok(KeyedResponse { status: 201, body, replayed: false })
}

/// The user record a subscription writes, and the activation messages for it.
fn subscribed_user(
    app: &App,
    code_key: &crate::secrets::CodeKey,
    organization: &Organization,
    line: &Line<'_>,
    seat: Seat,
    now: OffsetDateTime,
) -> (User, Option<Outgoing>) {
    let request = line.request;
    let person = line.person;
    if let Some(manager) = line.existing.filter(|user| user.is_manager()) {
        // The manager buys a seat for themselves (Qiwa's rule); nothing else changes.
        let mut user = manager.clone();
        let old = [user.seat.take(), user.next_seat.take()];
        user.past_seats.extend(old.into_iter().flatten());
        user.seat = Some(seat);
        user.iqama_expiry = person.iqama_expiry;
        user.updated_at = now;
        user.version = manager.version + 1;
        return (user, None);
    }
    let token = new_link_token(now);
    let code = new_code(code_key, &organization.id, &person.id, CodePurpose::ActivateMobile, now);
    let mut past_seats = line.existing.map(|user| user.past_seats.clone()).unwrap_or_default();
    past_seats.extend(line.existing.into_iter().flat_map(|user| user.periods().cloned()));
    let user = User {
        organization: organization.id.clone(),
        id: person.id.clone(),
        role: Role::Member,
        plan: organization.plan,
        status: UserStatus::PendingActivation,
        user_type: request.user_type,
        name: person.name.clone(),
        email: person.email.clone(),
        mobile: person.mobile.clone(),
        language: request.language.unwrap_or_default(),
        job_title: request.job_title.clone(),
        notifications: NotificationSettings::default(),
        establishments: request.establishments.clone(),
        grants: Default::default(),
        grants_version: line.existing.map_or(1, |user| user.grants_version + 1),
        profile_version: line.existing.map_or(1, |user| user.profile_version + 1),
        seat: Some(seat),
        next_seat: None,
        iqama_expiry: person.iqama_expiry,
        past_seats,
        activation: Activation { email_token: Some(token.digest), mobile_code: Some(code.digest), ..Activation::default() },
        pending_email: None,
        pending_mobile: None,
        recent_resends: vec![],
        suspension: None,
        created_at: now,
        updated_at: now,
        version: line.existing.map_or(1, |user| user.version + 1),
    };
    let (email, sms) = activation_messages(app, organization, &user, &token.raw, &code.raw);
    (user, Some(Outgoing { email, sms }))
}

// ---------------------------------------------------------------------------------------
// Renewal

#[derive(Debug, Clone)]
pub struct Renew {
    pub organization: OrganizationId,
    pub user: PersonId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewalReceipt {
    pub organization_id: OrganizationId,
    pub user_id: PersonId,
    /// Unchanged by a renewal of a running seat.
    pub status: UserStatus,
    /// The period that covers now.
    pub seat: SeatView,
    /// The year bought ahead, which follows `seat` without a gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_seat: Option<SeatView>,
    /// The period this renewal bought (the next seat, or the seat itself when a seat that
    /// had ended was renewed from now).
    pub renewed: SeatView,
    pub amount_charged_halalas: Halalas,
    pub balance_after_halalas: Halalas,
}

/// A user's record after renewing: a running seat keeps running to its end and the year
/// bought follows it (`next_seat`), with status and access unchanged; a seat that ended less
/// than `RENEWAL_GRACE` ago is renewed from now. One renewal ahead at most.
fn renewed(target: &User, price: Halalas, now: OffsetDateTime) -> Result<(User, Seat), Rejection> {
    if target.status == UserStatus::Suspended {
        return Err(Rejection::new(Kind::UserSuspended, "a suspended user's seat has ended for good; subscribe the person again"));
    }
    if !target.iqama_valid_at(now) {
        return Err(crate::policy::iqama_expired());
    }
    let mut user = target.clone();
    user.roll_periods(now);
    if let Some(ahead) = &user.next_seat {
        return Err(Rejection::new(
            Kind::AlreadyRenewed,
            format!("this seat is already renewed to {}; renew again once that year has begun", crate::clock::key_timestamp(ahead.ends_at)),
        )
        .detail("renewed_until", crate::clock::key_timestamp(ahead.ends_at)));
    }
    let Some(current) = user.seat.clone() else {
        return Err(Rejection::new(Kind::SeatExpired, "this user holds no seat to renew; subscribe instead"));
    };
    let seat_from = |starts_at: OffsetDateTime| Seat {
        id: new_id("seat"),
        starts_at,
        ends_at: one_year_after(starts_at),
        price,
        reminders_sent: BTreeSet::new(),
    };
    let seat = if now < current.ends_at {
        let seat = seat_from(current.ends_at);
        user.next_seat = Some(seat.clone());
        seat
    } else if now - current.ends_at <= RENEWAL_GRACE {
        let seat = seat_from(now);
        user.past_seats.push(current);
        user.seat = Some(seat.clone());
        if user.status == UserStatus::Expired {
            user.status = if user.activation.is_complete() { UserStatus::Active } else { UserStatus::PendingActivation };
        }
        seat
    } else {
        return Err(Rejection::new(
            Kind::RenewalGracePassed,
            format!("the seat ended more than {} days ago; subscribe the person again", RENEWAL_GRACE.whole_days()),
        ));
    };
    user.updated_at = now;
    user.version = target.version + 1;
    Ok((user, seat))
}

/// Extends access by one year at the current price (see `renewed`). Later than the grace
/// period after a seat ended, subscribe anew.
pub async fn renew(
    app: &App,
    meta: &RequestMeta,
    command: Renew,
    idempotency_key: &str,
    request_digest: &str,
) -> Result<KeyedResponse, Error> {
    let organization_id = &command.organization;
    let digest = key_digest(&format!("{}\n{idempotency_key}", meta.caller.key_owner()));
    let mut keys = vec![
        Key::Organization(organization_id.clone()),
        Key::Balance(organization_id.clone()),
        Key::User(organization_id.clone(), command.user.clone()),
        Key::Idempotency(organization_id.clone(), IdempotencyScope::Renew, digest.clone()),
    ];
    // As in `subscribe`: a commit refused for a taken key, or of unknown outcome, was ours
    // if the stored response is exactly the one it wrote.
    let mut unconfirmed: Option<String> = None;
    let mut key_taken = false;
    keys.extend(caller_key(meta, organization_id));

    Ok(retrying!(app, {
        let now = app.clock.now();
        let loaded = app.store.load(&keys).await?;
        let standing = Standing::of(&meta.caller, loaded.organization(organization_id), caller_user(meta, &loaded, organization_id), now)?;
        // The caller's right comes first: a stored answer is only ever given back to
        // someone who may take the action.
        let target = target_of(standing, OnUser::Renew, &command.user, loaded.user(organization_id, &command.user))?;
        authorize(standing, Action::Renew(target))?;
        if let Some(record) = loaded.idempotency(organization_id, IdempotencyScope::Renew, &digest)
            && record.is_live_at(now)
        {
            if unconfirmed.take_if(|ours| ours == &record.body).is_some() {
                return Ok(Attempt::Done(KeyedResponse { status: record.status, body: record.body.clone(), replayed: false }));
            }
            if key_taken {
                return Err(in_flight());
            }
            return replay_or_refuse(record, request_digest, Kind::IdempotencyKeyReused).map(Attempt::Done);
        }
        let organization = loaded.organization(organization_id).ok_or_else(Rejection::not_found)?;
        let balance = loaded.balance(organization_id).ok_or_else(|| missing_balance(organization_id))?;
        let price = app.settings.pricing.renewal_price(organization);
        let Some(balance_after) = balance.available.checked_sub(price) else {
            return Err(insufficient(price, balance.available));
        };
        let (user, seat) = renewed(target, price, now)?;
        let previous_seat_id = target.last_period().map(|seat| seat.id.clone());

        let receipt = RenewalReceipt {
            organization_id: organization_id.clone(),
            user_id: user.id.clone(),
            status: user.effective_status(now),
            seat: user.current_seat(now).map(SeatView::from).expect("a renewed user holds a seat"),
            next_seat: user.upcoming_seat(now).map(SeatView::from),
            renewed: SeatView::from(&seat),
            amount_charged_halalas: price,
            balance_after_halalas: balance_after,
        };
        let body = serde_json::to_string(&receipt).map_err(Error::internal)?;
        let next_balance = Balance {
            available: balance_after,
            total_debited: balance.total_debited.checked_add(price).ok_or_else(|| Error::internal("total overflow"))?,
            version: balance.version + 1,
            ..balance.clone()
        };
        let record = IdempotencyRecord {
            organization: organization_id.clone(),
            scope: IdempotencyScope::Renew,
            key_digest: digest.clone(),
            request_digest: request_digest.to_owned(),
            status: 201,
            body: body.clone(),
            created_at: now,
            expires_at: Some(now + KEY_LIFETIME),
        };
        let writes = vec![
            Write { record: Record::Idempotency(record), expect: Expect::AbsentOrExpiredBefore(now) },
            Write::replace(Record::Balance(next_balance), balance.version),
            Write::replace(Record::User(user.clone()), target.version),
            Write::create(Record::Ledger(ledger_entry(
                meta,
                organization_id,
                ledger_sequence(balance.version + 1, 0),
                Direction::Debit,
                price,
                balance_after,
                LedgerReason::Seat { seat_id: seat.id.clone(), person: user.id.clone(), purchase: SeatPurchase::Renewal },
                now,
            ))),
            Write::create(Record::Audit(audit_entry(
                meta,
                organization_id,
                AuditAction::SeatRenewed,
                Some(&user),
                json!({
                    "seat_id": seat.id,
                    "previous_seat_id": previous_seat_id,
                    "price_halalas": price,
                    "seat_starts_at": crate::clock::key_timestamp(seat.starts_at),
                    "seat_ends_at": crate::clock::key_timestamp(seat.ends_at),
                    "status": { "before": target.status, "after": user.status },
                }),
                now,
            ))),
        ];
        match commit(app, writes).await? {
            Committed::Yes => Ok(Attempt::Done(KeyedResponse { status: 201, body, replayed: false })),
            Committed::Conflict(failed) if failed.contains(&0) => {
                key_taken = true;
                unconfirmed = Some(body);
                Ok(Attempt::Retry)
            }
            Committed::Conflict(_) => Ok(Attempt::Retry),
            Committed::Unknown => {
                unconfirmed = Some(body);
                Ok(Attempt::Retry)
            }
        }
    }))
}

/// Who did a thing, for records written outside a request (the sweep).
pub fn system_actor(name: &str) -> Actor {
    Actor::System(name.to_owned())
}
