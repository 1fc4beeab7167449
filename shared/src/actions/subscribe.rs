//! Buying seats: a quote, then the subscription — one person or up to 25, all or nothing.
//!
//! A subscription is one atomic write: the balance (conditional on the version that showed
//! enough money), each user with their seat, one ledger entry per seat, one audit entry per
//! user, the intent of their activation messages and the stored answer of the key. A retry
//! with the same key gets that answer back; nothing is charged twice.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::operator::missing_balance;
use super::{Delivery, Scene, SeatView};
use crate::audit::AuditAction;
use crate::clock::one_year_after;
use crate::contact::Language;
use crate::entropy::Fresh;
use crate::error::{Error, Kind, Rejection};
use crate::idempotency::Operation;
use crate::identity::PersonId;
use crate::ledger::{Balance, Direction, LedgerEntry, LedgerReason, SeatPurchase, ledger_sequence};
use crate::metrics::Metric;
use crate::money::Halalas;
use crate::organization::{EstablishmentId, Organization, OrganizationId, PricingPlan};
use crate::outbox::Message;
use crate::person::Person;
use crate::pipeline::{Command, Decision, Keyed, Reads, RequestMeta, audit_entry};
use crate::policy::{Action, Standing, authorize};
use crate::pricing::PricingConfig;
use crate::secrets::{CodeKey, CodePurpose, new_code, new_link_token};
use crate::store::{Key, Record, Write};
use crate::user::{Role, Seat, User, UserStatus, UserType};

/// The most persons one subscription request may carry: it is one transaction, of at most
/// `MAX_WRITES` items — per person its user record, ledger entry, audit entry and (when the
/// person joins the organization) the person's record; once, the balance, the messages'
/// intent and the key's stored answer.
pub const MAX_PERSONS_PER_REQUEST: usize = (crate::store::MAX_WRITES - 3) / 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribePerson {
    pub id: PersonId,
    pub establishments: BTreeSet<EstablishmentId>,
    pub user_type: Option<UserType>,
    pub language: Option<Language>,
    pub job_title: Option<String>,
}

/// A subscription request whose shape has been checked.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub organization: OrganizationId,
    pub persons: Vec<SubscribePerson>,
    establishments: BTreeSet<EstablishmentId>,
}

impl Subscription {
    /// Checks the request's shape before anything is read.
    pub fn new(organization: OrganizationId, persons: Vec<SubscribePerson>) -> Result<Self, Rejection> {
        if persons.is_empty() {
            return Err(Rejection::invalid_request("persons", "at least one person is required"));
        }
        if persons.len() > MAX_PERSONS_PER_REQUEST {
            return Err(Rejection::new(Kind::TooManyPersons, format!("at most {MAX_PERSONS_PER_REQUEST} persons per request"))
                .field("persons")
                .detail("limit", MAX_PERSONS_PER_REQUEST));
        }
        let mut seen = HashSet::new();
        for (position, person) in persons.iter().enumerate() {
            if !seen.insert(&person.id) {
                return Err(
                    Rejection::new(Kind::DuplicatePerson, "the same person is listed twice").field(format!("persons[{position}].id"))
                );
            }
            if person.establishments.is_empty() {
                return Err(Rejection::new(Kind::InvalidField, "choose at least one establishment")
                    .field(format!("persons[{position}].establishments")));
            }
            if let Some(title) = &person.job_title
                && (title.trim().is_empty() || title.chars().count() > 100)
            {
                return Err(Rejection::new(Kind::InvalidField, "a job title is 1 to 100 characters")
                    .field(format!("persons[{position}].job_title")));
            }
        }
        let establishments = persons.iter().flat_map(|p| p.establishments.iter().cloned()).collect();
        Ok(Subscription { organization, persons, establishments })
    }

    async fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> Result<Scene, Error> {
        let organization = &self.organization;
        let persons =
            self.persons.iter().flat_map(|person| [Key::Person(person.id.clone()), Key::User(organization.clone(), person.id.clone())]);
        Scene::load(meta, reads, organization, std::iter::once(Key::Balance(organization.clone())).chain(persons)).await
    }

    /// What subscribing asks of the policy: a person buying only their own seat is judged
    /// as such (the manager always may; an employee may for the establishments that employ
    /// them); anything else is an administrator's subscription.
    fn authorize(&self, meta: &RequestMeta, scene: &Scene, now: OffsetDateTime) -> Result<(), Rejection> {
        let standing = scene.standing_with_outsiders(meta, now)?;
        let own = match (meta.caller.person(), self.persons.as_slice()) {
            (Some(me), [only]) if &only.id == me => Some(me),
            _ => None,
        };
        let action = match own {
            Some(me) => Action::SubscribeSelf {
                organization: scene.organization()?,
                person: scene.loaded.person(me),
                establishments: &self.establishments,
            },
            None => Action::Subscribe { establishments: &self.establishments },
        };
        authorize(standing, action).map(drop)
    }

    /// Applies the subscription rules to every person and prices the seats in request order.
    fn lines<'a>(
        &'a self,
        meta: &'a RequestMeta,
        scene: &'a Scene,
        pricing: &PricingConfig,
        now: OffsetDateTime,
    ) -> Result<Lines<'a>, Error> {
        let organization = scene.organization()?;
        let balance = scene.loaded.balance(&self.organization).ok_or_else(|| missing_balance(&self.organization))?;
        let standing = scene.standing_with_outsiders(meta, now)?;
        let today = crate::clock::saudi_day(now);
        let mut lines = Vec::with_capacity(self.persons.len());
        for (position, request) in self.persons.iter().enumerate() {
            let field = |name: &str| format!("persons[{position}].{name}");
            for establishment in &request.establishments {
                if !organization.has_establishment(establishment) {
                    return Err(Rejection::new(Kind::UnknownEstablishment, "this establishment is not part of the organization")
                        .field(field("establishments"))
                        .detail("establishment", establishment.as_str())
                        .into());
                }
            }
            match (organization.plan, request.user_type) {
                (PricingPlan::Muqeem, None) => {
                    return Err(Rejection::new(
                        Kind::UserTypeRequired,
                        "Muqeem users need a type: residents_and_partners or partners_only",
                    )
                    .field(field("user_type"))
                    .into());
                }
                (PricingPlan::Qiwa, Some(_)) => {
                    return Err(Rejection::new(Kind::UserTypeNotApplicable, "user types exist on Muqeem only")
                        .field(field("user_type"))
                        .into());
                }
                _ => {}
            }
            let Some(person) = scene.loaded.person(&request.id) else {
                return Err(Rejection::new(Kind::PersonNotRegistered, "this person is not registered on the platform")
                    .field(field("id"))
                    .into());
            };
            if !person.iqama_valid_on(today) {
                return Err(Rejection::new(Kind::IqamaExpired, "a resident's iqama must be valid to subscribe them")
                    .field(field("id"))
                    .into());
            }
            let existing = scene.user(&request.id);
            if let Some(user) = existing.filter(|user| user.holds_running_seat(now) || (user.is_manager() && user.seat_valid_at(now))) {
                // Someone the policy hides from the caller (a delegated admin's view stops at
                // its establishments) is not revealed by the refusal either.
                if !standing.sees(user) {
                    return Err(Rejection::new(
                        Kind::PersonUnavailable,
                        "this person cannot be added from the establishments you administer; ask the organization's manager",
                    )
                    .field(field("id"))
                    .into());
                }
                return Err(Rejection::new(Kind::AlreadySubscribed, "this person already holds a seat in the organization")
                    .field(field("id"))
                    .into());
            }
            // Qiwa: adding someone who is not an employee of the chosen establishments needs
            // an acting manager with an active seat of their own. The manager may always buy
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
                .field(field("id"))
                .into());
            }
            lines.push(Line { request, person, existing, price: Halalas::ZERO });
        }
        for (line, price) in lines.iter_mut().zip(pricing.seat_prices(organization, balance.seats_sold, self.persons.len())) {
            line.price = price;
        }
        let total = lines.iter().map(|line| line.price).sum();
        Ok(Lines { organization, balance, lines, total })
    }
}

/// One person's line in a quote or a subscription.
struct Line<'a> {
    request: &'a SubscribePerson,
    person: &'a Person,
    existing: Option<&'a User>,
    price: Halalas,
}

struct Lines<'a> {
    organization: &'a Organization,
    balance: &'a Balance,
    lines: Vec<Line<'a>>,
    total: Halalas,
}

fn insufficient(required: Halalas, available: Halalas) -> Rejection {
    Rejection::new(Kind::InsufficientBalance, format!("this costs {required}, the balance is {available}"))
        .detail("required_halalas", required.get())
        .detail("available_halalas", available.get())
}

// ---------------------------------------------------------------------------------------
// Quote

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
    #[serde(with = "crate::clock::utc")]
    pub seat_ends_at: OffsetDateTime,
}

/// Prices a subscription; writes nothing.
pub struct QuoteSubscription {
    pub subscription: Subscription,
    pub pricing: PricingConfig,
}

impl Command for QuoteSubscription {
    type State = Scene;
    type Answer = Quote;

    async fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> Result<Scene, Error> {
        self.subscription.load(meta, reads).await
    }

    fn authorize(&self, meta: &RequestMeta, scene: &Scene, now: OffsetDateTime) -> Result<(), Rejection> {
        self.subscription.authorize(meta, scene, now)
    }

    fn decide(&self, meta: &RequestMeta, scene: &Scene, now: OffsetDateTime, _: &mut Fresh) -> Result<Decision<Quote>, Error> {
        let priced = self.subscription.lines(meta, scene, &self.pricing, now)?;
        Ok(Decision::answer(Quote {
            organization_id: self.subscription.organization.clone(),
            persons: priced
                .lines
                .iter()
                .map(|line| QuoteLine { id: line.request.id.clone(), price_halalas: line.price, free: line.price.is_zero() })
                .collect(),
            total_halalas: priced.total,
            balance_halalas: priced.balance.available,
            sufficient: priced.total <= priced.balance.available,
            seat_ends_at: one_year_after(now),
        }))
    }
}

// ---------------------------------------------------------------------------------------
// Subscribe

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActivationMessages {
    pub email: Delivery,
    pub sms: Delivery,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubscribedUser {
    pub id: PersonId,
    pub status: UserStatus,
    pub establishments: BTreeSet<EstablishmentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<UserType>,
    pub seat: SeatView,
    /// `queued`: the messages are in the outbox, committed with the subscription; the
    /// user's view follows their delivery.
    pub activation_messages: ActivationMessages,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubscriptionReceipt {
    pub organization_id: OrganizationId,
    pub users: Vec<SubscribedUser>,
    pub amount_charged_halalas: Halalas,
    pub balance_after_halalas: Halalas,
    #[serde(with = "crate::clock::utc")]
    pub seat_ends_at: OffsetDateTime,
}

/// Subscribes one or more persons, all or nothing, charging the balance once.
pub struct Subscribe {
    pub subscription: Subscription,
    pub pricing: PricingConfig,
    /// The key activation links and codes are derived under.
    pub key: CodeKey,
    /// The total the caller was shown (its quote): when the price is now another, nothing
    /// is charged and 409 `price_changed` says the new one.
    pub expected_total: Option<Halalas>,
    keyed: Keyed,
}

impl Subscribe {
    /// `idempotency_key` belongs to the caller: another caller's key of the same text is
    /// another key. `request_digest` is the canonical request's.
    pub fn new(
        meta: &RequestMeta,
        subscription: Subscription,
        pricing: PricingConfig,
        key: CodeKey,
        idempotency_key: &str,
        request_digest: String,
    ) -> Self {
        let keyed = Keyed::for_caller(meta, &subscription.organization, Operation::Subscribe, idempotency_key, request_digest);
        Subscribe { subscription, pricing, key, expected_total: None, keyed }
    }

    /// Charges only `total` (what the caller's quote said).
    pub fn expecting(mut self, total: Option<Halalas>) -> Self {
        self.expected_total = total;
        self
    }
}

impl Command for Subscribe {
    type State = Scene;
    type Answer = SubscriptionReceipt;

    async fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> Result<Scene, Error> {
        self.subscription.load(meta, reads).await
    }

    fn authorize(&self, meta: &RequestMeta, scene: &Scene, now: OffsetDateTime) -> Result<(), Rejection> {
        self.subscription.authorize(meta, scene, now)
    }

    fn decide(
        &self,
        meta: &RequestMeta,
        scene: &Scene,
        now: OffsetDateTime,
        fresh: &mut Fresh,
    ) -> Result<Decision<SubscriptionReceipt>, Error> {
        let organization_id = &self.subscription.organization;
        let Lines { organization, balance, lines, total } = self.subscription.lines(meta, scene, &self.pricing, now)?;
        if let Some(expected) = self.expected_total
            && expected != total
        {
            return Err(Rejection::new(
                Kind::PriceChanged,
                "the price changed since the quote; nothing was charged — review the new total",
            )
            .detail("total_halalas", total.get())
            .detail("expected_total_halalas", expected.get())
            .into());
        }
        let Some(balance_after) = balance.available.checked_sub(total) else {
            return Err(insufficient(total, balance.available).into());
        };
        let seat_ends_at = one_year_after(now);
        let mut users = Vec::with_capacity(lines.len());
        let mut decision = Decision::answer(());
        let mut running = balance.available;
        for (position, line) in lines.iter().enumerate() {
            // Entries of one request are a microsecond apart, so listings show them in the
            // order the balance moved.
            let at = now + Duration::microseconds(position as i64);
            running = running.checked_sub(line.price).ok_or_else(|| Error::internal("running balance below zero"))?;
            let seat = Seat {
                id: fresh.id("seat"),
                starts_at: now,
                ends_at: seat_ends_at,
                price: line.price,
                reminders_sent: BTreeSet::new(),
                expired: false,
            };
            let (mut user, activating) = subscribed_user(organization, line, seat.clone(), now);
            if activating {
                let link = new_link_token(&self.key, now, fresh);
                let code = new_code(&self.key, organization_id, &user.id, CodePurpose::ActivateMobile, now, fresh);
                user.activation.email_token = Some(link.digest);
                user.activation.mobile_code = Some(code.digest);
                decision.notify(meta, &mut user, Message::ActivationLink { nonce: link.nonce }, now, fresh);
                decision.notify(meta, &mut user, Message::ActivationCode { nonce: code.nonce }, now, fresh);
            }
            let resubscription = line.existing.is_some_and(|existing| !existing.is_manager());
            match line.existing {
                Some(existing) => decision.push_write(Write::replace(Record::User(user.clone()), existing.version)),
                None => {
                    decision.push_write(Write::create(Record::User(user.clone())));
                    // The person's record lists the organization from the same commit on, so
                    // a registry update (the iqama renewed) finds this record strongly, and
                    // one racing this commit makes one of the two decide again.
                    decision.push_write(Write::replace(Record::Person(line.person.joining(organization_id)), line.person.version));
                }
            }
            decision.push_write(Write::create(Record::Ledger(LedgerEntry {
                organization: organization_id.clone(),
                id: fresh.id("entry"),
                sequence: ledger_sequence(balance.version + 1, position),
                at,
                direction: Direction::Debit,
                amount: line.price,
                balance_after: running,
                reason: LedgerReason::Seat { seat_id: seat.id.clone(), person: user.id.clone(), purchase: SeatPurchase::Subscription },
                actor: meta.caller.actor(),
                request_id: meta.request_id.clone(),
            })));
            let mut audit = audit_entry(
                meta,
                organization_id,
                AuditAction::UserSubscribed,
                Some(&user),
                json!({
                    "seat_id": seat.id,
                    "price_halalas": seat.price,
                    "seat_ends_at": crate::clock::key_timestamp(seat.ends_at),
                    "establishments": user.establishments,
                    "user_type": user.user_type,
                    "resubscription": resubscription,
                }),
                now,
                fresh,
            );
            audit.at = at;
            decision.push_audit(audit);
            users.push(SubscribedUser {
                id: user.id.clone(),
                status: user.status,
                establishments: user.establishments.clone(),
                user_type: user.user_type,
                seat: SeatView::from(&seat),
                activation_messages: ActivationMessages { email: Delivery::of(activating), sms: Delivery::of(activating) },
            });
        }
        decision.push_write(Write::replace(
            Record::Balance(Balance {
                available: balance_after,
                total_debited: balance.total_debited.checked_add(total).ok_or_else(|| Error::internal("total overflow"))?,
                seats_sold: balance.seats_sold + lines.len() as u64,
                version: balance.version + 1,
                ..balance.clone()
            }),
            balance.version,
        ));
        decision.count(Metric::Subscriptions(lines.len() as u64));
        decision.count(Metric::HalalasCharged(total.get()));
        let receipt = SubscriptionReceipt {
            organization_id: organization_id.clone(),
            users,
            amount_charged_halalas: total,
            balance_after_halalas: balance_after,
            seat_ends_at,
        };
        Ok(decision.with_answer(receipt))
    }

    fn keyed(&self) -> Option<&Keyed> {
        Some(&self.keyed)
    }
}

/// The user record a subscription writes, and whether it must activate (the manager's own
/// seat needs no activation).
fn subscribed_user(organization: &Organization, line: &Line<'_>, seat: Seat, now: OffsetDateTime) -> (User, bool) {
    let request = line.request;
    let person = line.person;
    if let Some(manager) = line.existing.filter(|user| user.is_manager()) {
        let mut user = manager.clone();
        let old = [user.seat.take(), user.next_seat.take()];
        user.past_seats.extend(old.into_iter().flatten());
        user.seat = Some(seat);
        user.iqama_expiry = person.iqama_expiry;
        user.updated_at = now;
        user.version = manager.version + 1;
        return (user, false);
    }
    let mut past_seats = line.existing.map(|user| user.past_seats.clone()).unwrap_or_default();
    past_seats.extend(line.existing.into_iter().flat_map(|user| user.periods().cloned()));
    let user = User {
        user_type: request.user_type,
        language: request.language.unwrap_or_default(),
        job_title: request.job_title.clone(),
        establishments: request.establishments.clone(),
        grants_version: line.existing.map_or(1, |user| user.grants_version + 1),
        profile_version: line.existing.map_or(1, |user| user.profile_version + 1),
        seat: Some(seat),
        past_seats,
        version: line.existing.map_or(1, |user| user.version + 1),
        ..User::new(organization, person, Role::Member, UserStatus::PendingActivation, now)
    };
    (user, true)
}
