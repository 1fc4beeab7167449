//! Renewing a seat for another year at the current price.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::operator::missing_balance;
use super::{Scene, SeatView};
use crate::audit::AuditAction;
use crate::clock::one_year_after;
use crate::entropy::Fresh;
use crate::error::{Error, Kind, Rejection};
use crate::idempotency::Operation;
use crate::identity::PersonId;
use crate::ledger::{Balance, Direction, LedgerEntry, LedgerReason, SeatPurchase, ledger_sequence};
use crate::metrics::Metric;
use crate::money::Halalas;
use crate::organization::OrganizationId;
use crate::pipeline::{Command, Decision, Keyed, Reads, RequestMeta, audit_entry};
use crate::policy::{Action, OnUser, authorize};
use crate::pricing::PricingConfig;
use crate::store::{Key, Record, Write};
use crate::user::{Seat, User, UserStatus};

/// How long after expiry a seat can still be renewed (from the renewal day) rather than
/// bought anew.
pub const RENEWAL_GRACE: Duration = Duration::days(30);

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

/// What renewing a user would do now: the price, the period it buys, and whether the
/// balance covers it. Refused as the renewal itself would be for the user (suspended,
/// renewed ahead, past the grace, an expired iqama); a balance too low is said
/// (`sufficient`), not refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewalQuote {
    pub organization_id: OrganizationId,
    pub user_id: PersonId,
    pub price_halalas: Halalas,
    #[serde(with = "crate::clock::utc")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "crate::clock::utc")]
    pub ends_at: OffsetDateTime,
    pub balance_halalas: Halalas,
    pub sufficient: bool,
}

/// What a renewal and its quote read: the organization, the caller, the balance, the user.
async fn load_renewal(meta: &RequestMeta, reads: &mut Reads<'_>, organization: &OrganizationId, user: &PersonId) -> Result<Scene, Error> {
    let extra = [Key::Balance(organization.clone()), Key::User(organization.clone(), user.clone())];
    Scene::load(meta, reads, organization, extra).await
}

/// Who may renew a user (and see what it would cost): the policy's `Renew`.
fn authorize_renewal(meta: &RequestMeta, scene: &Scene, now: OffsetDateTime, user: &PersonId) -> Result<(), Rejection> {
    let standing = scene.standing(meta, now)?;
    let target = scene.target(standing, OnUser::Renew, user)?;
    authorize(standing, Action::Renew(target)).map(drop)
}

/// What a renewal of `user` is decided from: the user, the organization's balance, and the
/// price of a renewal now.
fn terms<'a>(
    scene: &'a Scene,
    organization: &OrganizationId,
    user: &PersonId,
    pricing: &PricingConfig,
) -> Result<(&'a User, &'a Balance, Halalas), Error> {
    let price = pricing.renewal_price(scene.organization()?);
    let target = scene.user(user).ok_or_else(Rejection::user_not_found)?;
    let balance = scene.loaded.balance(organization).ok_or_else(|| missing_balance(organization))?;
    Ok((target, balance, price))
}

/// Prices a renewal without making it (what the console shows before the manager pays).
pub struct QuoteRenewal {
    pub organization: OrganizationId,
    pub user: PersonId,
    pub pricing: PricingConfig,
}

impl Command for QuoteRenewal {
    type State = Scene;
    type Answer = RenewalQuote;

    async fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> Result<Scene, Error> {
        load_renewal(meta, reads, &self.organization, &self.user).await
    }

    fn authorize(&self, meta: &RequestMeta, scene: &Scene, now: OffsetDateTime) -> Result<(), Rejection> {
        authorize_renewal(meta, scene, now, &self.user)
    }

    fn decide(&self, _: &RequestMeta, scene: &Scene, now: OffsetDateTime, _: &mut Fresh) -> Result<Decision<RenewalQuote>, Error> {
        let (target, balance, price) = terms(scene, &self.organization, &self.user, &self.pricing)?;
        let (_, seat) = renewed(target, price, now, String::new())?;
        Ok(Decision::answer(RenewalQuote {
            organization_id: self.organization.clone(),
            user_id: target.id.clone(),
            price_halalas: price,
            starts_at: seat.starts_at,
            ends_at: seat.ends_at,
            balance_halalas: balance.available,
            sufficient: price <= balance.available,
        }))
    }
}

/// Extends access by one year at the current price (see `renewed`).
pub struct Renew {
    pub organization: OrganizationId,
    pub user: PersonId,
    pub pricing: PricingConfig,
    keyed: Keyed,
}

impl Renew {
    /// `idempotency_key` belongs to the caller; it covers the user renewed, so the same key
    /// for another user is a reuse.
    pub fn new(meta: &RequestMeta, organization: OrganizationId, user: PersonId, pricing: PricingConfig, idempotency_key: &str) -> Self {
        let request_digest = crate::idempotency::request_digest(&json!({ "user": user }));
        let keyed = Keyed::for_caller(meta, &organization, Operation::Renew, idempotency_key, request_digest);
        Renew { organization, user, pricing, keyed }
    }
}

impl Command for Renew {
    type State = Scene;
    type Answer = RenewalReceipt;

    async fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> Result<Scene, Error> {
        load_renewal(meta, reads, &self.organization, &self.user).await
    }

    fn authorize(&self, meta: &RequestMeta, scene: &Scene, now: OffsetDateTime) -> Result<(), Rejection> {
        authorize_renewal(meta, scene, now, &self.user)
    }

    fn decide(&self, meta: &RequestMeta, scene: &Scene, now: OffsetDateTime, fresh: &mut Fresh) -> Result<Decision<RenewalReceipt>, Error> {
        let (target, balance, price) = terms(scene, &self.organization, &self.user, &self.pricing)?;
        let Some(balance_after) = balance.available.checked_sub(price) else {
            return Err(Rejection::new(Kind::InsufficientBalance, format!("this costs {price}, the balance is {}", balance.available))
                .detail("required_halalas", price.get())
                .detail("available_halalas", balance.available.get())
                .into());
        };
        let (user, seat) = renewed(target, price, now, fresh.id("seat"))?;
        let receipt = RenewalReceipt {
            organization_id: self.organization.clone(),
            user_id: user.id.clone(),
            status: user.effective_status(now),
            seat: user.current_seat(now).map(SeatView::from).ok_or_else(|| Error::internal("a renewed user holds no seat"))?,
            next_seat: user.upcoming_seat(now).map(SeatView::from),
            renewed: SeatView::from(&seat),
            amount_charged_halalas: price,
            balance_after_halalas: balance_after,
        };
        let next_balance = Balance {
            available: balance_after,
            total_debited: balance.total_debited.checked_add(price).ok_or_else(|| Error::internal("total overflow"))?,
            version: balance.version + 1,
            ..balance.clone()
        };
        let entry = LedgerEntry {
            organization: self.organization.clone(),
            id: fresh.id("entry"),
            sequence: ledger_sequence(balance.version + 1, 0),
            at: now,
            direction: Direction::Debit,
            amount: price,
            balance_after,
            reason: LedgerReason::Seat { seat_id: seat.id.clone(), person: user.id.clone(), purchase: SeatPurchase::Renewal },
            actor: meta.caller.actor(),
            request_id: meta.request_id.clone(),
        };
        let audit = audit_entry(
            meta,
            &self.organization,
            AuditAction::SeatRenewed,
            Some(&user),
            json!({
                "seat_id": seat.id,
                "previous_seat_id": target.last_period().map(|seat| seat.id.clone()),
                "price_halalas": price,
                "seat_starts_at": crate::clock::key_timestamp(seat.starts_at),
                "seat_ends_at": crate::clock::key_timestamp(seat.ends_at),
                "status": { "before": target.status, "after": user.status },
            }),
            now,
            fresh,
        );
        let mut decision = Decision::answer(receipt)
            .write(Write::replace(Record::Balance(next_balance), balance.version))
            .write(Write::replace(Record::User(user), target.version))
            .write(Write::create(Record::Ledger(entry)))
            .audit(audit);
        decision.count(Metric::HalalasCharged(price.get()));
        Ok(decision)
    }

    fn keyed(&self) -> Option<&Keyed> {
        Some(&self.keyed)
    }
}

/// A user's record after renewing: a running seat keeps running to its end and the year
/// bought follows it (`next_seat`), with status and access unchanged; a seat that ended less
/// than `RENEWAL_GRACE` ago is renewed from now. One renewal ahead at most.
fn renewed(target: &User, price: Halalas, now: OffsetDateTime, seat_id: String) -> Result<(User, Seat), Rejection> {
    if target.status == UserStatus::Suspended {
        return Err(Rejection::new(Kind::UserSuspended, "a suspended user's seat has ended for good; subscribe the person again"));
    }
    if !target.iqama_valid_at(now) {
        return Err(crate::policy::iqama_expired());
    }
    let mut user = target.clone();
    user.roll_periods(now);
    if let Some(ahead) = &user.next_seat {
        let until = crate::clock::key_timestamp(ahead.ends_at);
        return Err(Rejection::new(
            Kind::AlreadyRenewed,
            format!("this seat is already renewed to {until}; renew again once that year has begun"),
        )
        .detail("renewed_until", until));
    }
    let Some(current) = user.seat.clone() else {
        return Err(Rejection::new(Kind::SeatExpired, "this user holds no seat to renew; subscribe instead"));
    };
    let seat_from = |starts_at: OffsetDateTime| Seat {
        id: seat_id,
        starts_at,
        ends_at: one_year_after(starts_at),
        price,
        reminders_sent: BTreeSet::new(),
        expired: false,
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
