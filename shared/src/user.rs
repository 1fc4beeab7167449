//! A user of an organization: a subscribed person (or the organization's manager), with the
//! seat that pays for the access, the grants, contact details and activation state.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime};

use crate::clock::Timestamp;
use crate::contact::{Email, Language, SaudiMobile};
use crate::grants::Grants;
use crate::identity::PersonId;
use crate::money::Halalas;
use crate::organization::{EstablishmentId, OrganizationId, PricingPlan};
use crate::person::PersonName;
use crate::secrets::{CodeDigest, TokenDigest};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The unified-number manager: may do everything in the organization, needs no seat
    /// (except under Qiwa's rule for adding non-employees) and cannot be suspended.
    Manager,
    Member,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// Subscribed; waiting for the email link and the SMS code to be confirmed.
    PendingActivation,
    Active,
    /// Permanently stopped by an administrator; the seat ended with it.
    Suspended,
    /// The seat ran out and was not renewed.
    Expired,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::PendingActivation => "pending_activation",
            UserStatus::Active => "active",
            UserStatus::Suspended => "suspended",
            UserStatus::Expired => "expired",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        [UserStatus::PendingActivation, UserStatus::Active, UserStatus::Suspended, UserStatus::Expired]
            .into_iter()
            .find(|status| status.as_str() == input)
    }
}

/// Muqeem's user types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserType {
    ResidentsAndPartners,
    PartnersOnly,
}

/// A days-before-expiry reminder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reminder {
    #[serde(rename = "30_days")]
    ThirtyDays,
    #[serde(rename = "7_days")]
    SevenDays,
    #[serde(rename = "1_day")]
    OneDay,
}

impl Reminder {
    /// Most distant first.
    pub const ALL: [Reminder; 3] = [Reminder::ThirtyDays, Reminder::SevenDays, Reminder::OneDay];

    pub fn before_expiry(self) -> Duration {
        match self {
            Reminder::ThirtyDays => Duration::days(30),
            Reminder::SevenDays => Duration::days(7),
            Reminder::OneDay => Duration::days(1),
        }
    }
}

/// One paid (or free) year of access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seat {
    pub id: String,
    #[serde(with = "crate::clock::utc")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "crate::clock::utc")]
    pub ends_at: OffsetDateTime,
    pub price: Halalas,
    #[serde(default)]
    pub reminders_sent: BTreeSet<Reminder>,
    /// The sweep has recorded this period's end (audited once). The period itself stays
    /// where it was: what the sweep writes never changes what a user may do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
}

impl Seat {
    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.starts_at <= now && now < self.ends_at
    }
}

/// What the sweep must do next for a seat, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepStep {
    Remind(Reminder),
    Expire,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channels {
    pub email: bool,
    pub sms: bool,
}

/// Which kinds of notice go to email and which to SMS. Codes and activation links are not
/// configurable: they always go where they must.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationSettings {
    pub expiry_reminders: Channels,
    pub account_notices: Channels,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            expiry_reminders: Channels { email: true, sms: true },
            account_notices: Channels { email: true, sms: false },
        }
    }
}

/// Progress of activation and the live secrets for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    #[serde(default, with = "crate::clock::utc::option", skip_serializing_if = "Option::is_none")]
    pub email_confirmed_at: Option<OffsetDateTime>,
    #[serde(default, with = "crate::clock::utc::option", skip_serializing_if = "Option::is_none")]
    pub mobile_confirmed_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_token: Option<TokenDigest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_code: Option<CodeDigest>,
}

impl Activation {
    pub fn is_complete(&self) -> bool {
        self.email_confirmed_at.is_some() && self.mobile_confirmed_at.is_some()
    }
}

/// A new email or mobile waiting for its owner to prove they receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingContact<T> {
    pub value: T,
    pub code: CodeDigest,
    pub requested_by: PersonId,
    #[serde(with = "crate::clock::utc")]
    pub requested_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub by: PersonId,
    pub reason: String,
    #[serde(with = "crate::clock::utc")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub organization: OrganizationId,
    pub id: PersonId,
    pub role: Role,
    /// The organization's plan, copied here so a permission check needs this record only.
    pub plan: PricingPlan,
    pub status: UserStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<UserType>,
    pub name: PersonName,
    pub email: Email,
    pub mobile: SaudiMobile,
    pub language: Language,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    #[serde(default)]
    pub notifications: NotificationSettings,
    pub establishments: BTreeSet<EstablishmentId>,
    #[serde(default)]
    pub grants: Grants,
    /// Bumped by every grant change; a grant change must name the one it was based on.
    #[serde(default = "first_version")]
    pub grants_version: u64,
    /// Bumped by every profile change (contacts, title, language, notifications).
    #[serde(default = "first_version")]
    pub profile_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat: Option<Seat>,
    /// A renewal bought ahead: the next year, starting where `seat` ends. At most one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_seat: Option<Seat>,
    /// A resident's iqama expiry (from the registry, kept current by registry updates), so
    /// that the check API decides from this record alone. `None` for citizens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iqama_expiry: Option<Date>,
    /// Seats this user held before the current one (renewed, expired or suspended).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub past_seats: Vec<Seat>,
    #[serde(default)]
    pub activation: Activation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_email: Option<PendingContact<Email>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_mobile: Option<PendingContact<SaudiMobile>>,
    /// Where the latest message of each kind stands (queued, sent, failed), written by the
    /// command that queued it and by `deliver`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub deliveries: crate::outbox::Deliveries,
    /// When activation messages were re-sent recently (for the rate limit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_resends: Vec<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspension: Option<Suspension>,
    #[serde(with = "crate::clock::utc")]
    pub created_at: OffsetDateTime,
    #[serde(with = "crate::clock::utc")]
    pub updated_at: OffsetDateTime,
    pub version: u64,
}

fn first_version() -> u64 {
    1
}

impl User {
    /// A new user record of `person` in `organization`, with nothing granted, confirmed,
    /// pending or paid yet: the parts every new record shares.
    pub fn new(
        organization: &crate::organization::Organization,
        person: &crate::person::Person,
        role: Role,
        status: UserStatus,
        now: OffsetDateTime,
    ) -> User {
        User {
            organization: organization.id.clone(),
            id: person.id.clone(),
            role,
            plan: organization.plan,
            status,
            user_type: None,
            name: person.name.clone(),
            email: person.email.clone(),
            mobile: person.mobile.clone(),
            language: Language::default(),
            job_title: None,
            notifications: NotificationSettings::default(),
            establishments: BTreeSet::new(),
            grants: Grants::default(),
            grants_version: 1,
            profile_version: 1,
            seat: None,
            next_seat: None,
            iqama_expiry: person.iqama_expiry,
            past_seats: vec![],
            activation: Activation::default(),
            pending_email: None,
            pending_mobile: None,
            deliveries: Default::default(),
            recent_resends: vec![],
            suspension: None,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    pub fn is_manager(&self) -> bool {
        self.role == Role::Manager
    }

    /// The paid periods, current first: the seat and any renewal bought ahead of it.
    pub fn periods(&self) -> impl Iterator<Item = &Seat> {
        self.seat.iter().chain(self.next_seat.iter())
    }

    /// A paid period covers `now`. A period past its end grants nothing, whatever the
    /// stored status says: expiry is enforced at request time, not left to the sweep. A
    /// renewal follows its seat without a gap, so access never lapses at the old end.
    pub fn seat_valid_at(&self, now: OffsetDateTime) -> bool {
        crate::status::Condition::AccessAfterNow.holds(&crate::status::Facts::of(self), now)
    }

    /// The last paid period: where access ends, and what reminders and expiry are about.
    pub fn last_period(&self) -> Option<&Seat> {
        self.next_seat.as_ref().or(self.seat.as_ref())
    }

    pub fn last_period_mut(&mut self) -> Option<&mut Seat> {
        match &mut self.next_seat {
            Some(next) => Some(next),
            None => self.seat.as_mut(),
        }
    }

    /// The period that covers `now`, or else the one that ended last.
    pub fn current_seat(&self, now: OffsetDateTime) -> Option<&Seat> {
        self.periods().find(|seat| seat.is_valid_at(now)).or(self.last_period())
    }

    /// A renewal bought ahead that has not started at `now`.
    pub fn upcoming_seat(&self, now: OffsetDateTime) -> Option<&Seat> {
        self.next_seat.as_ref().filter(|seat| now < seat.starts_at)
    }

    /// Moves a seat that has ended behind a renewal that has started into `past_seats`, so
    /// `seat` is the current period again. Changes nothing else; callers write the result.
    pub fn roll_periods(&mut self, now: OffsetDateTime) {
        let renewal_started = self.next_seat.as_ref().is_some_and(|next| next.starts_at <= now);
        if renewal_started {
            let ended = std::mem::replace(&mut self.seat, self.next_seat.take());
            self.past_seats.extend(ended);
        }
    }

    /// A resident's iqama is valid on a Saudi day up to and including its expiry date;
    /// citizens have none to expire.
    pub fn iqama_valid_on(&self, day: Date) -> bool {
        self.iqama_expiry.is_none_or(|expiry| day <= expiry)
    }

    pub fn iqama_valid_at(&self, now: OffsetDateTime) -> bool {
        self.iqama_valid_on(crate::clock::saudi_day(now))
    }

    /// May this user act at all right now? Nobody whose iqama has expired may; managers
    /// otherwise always may; members need to be active with a seat that has not run out.
    pub fn can_act_at(&self, now: OffsetDateTime) -> bool {
        if !self.iqama_valid_at(now) {
            return false;
        }
        match self.role {
            Role::Manager => true,
            Role::Member => self.status == UserStatus::Active && self.seat_valid_at(now),
        }
    }

    /// The status as callers should see it: an active or pending member whose seat ran out
    /// is expired even before the sweep has written it. Decided by `crate::status`'s one
    /// rule, which listings on every store filter by.
    pub fn effective_status(&self, now: OffsetDateTime) -> UserStatus {
        crate::status::effective(&crate::status::Facts::of(self), now)
    }

    /// When access ends: the end of the last paid period (periods follow each other
    /// without a gap, and the first starts when it is bought).
    pub fn access_ends_at(&self) -> Option<OffsetDateTime> {
        self.last_period().map(|seat| seat.ends_at)
    }

    /// Holds a seat that still runs (a new subscription for this person would duplicate it).
    pub fn holds_running_seat(&self, now: OffsetDateTime) -> bool {
        matches!(self.status, UserStatus::Active | UserStatus::PendingActivation) && self.seat_valid_at(now)
    }

    /// What the expiry sweep must do for this user at `now`, if anything: expire once the
    /// last paid period has ended; otherwise the most urgent reminder whose Saudi day has
    /// come (30, 7 and 1 days before the Saudi day the period ends). Earlier reminders that
    /// were missed are skipped, not sent late. Reminders and expiry follow the last period,
    /// so a renewal moves them a year on.
    pub fn sweep_due_at(&self, now: OffsetDateTime) -> Option<SweepStep> {
        if matches!(self.status, UserStatus::Suspended | UserStatus::Expired) {
            return None;
        }
        let seat = self.last_period().filter(|seat| !seat.expired)?;
        if now >= seat.ends_at {
            return Some(SweepStep::Expire);
        }
        let today = crate::clock::saudi_day(now);
        let end_day = crate::clock::saudi_day(seat.ends_at);
        Reminder::ALL
            .into_iter()
            .rev()
            .find(|reminder| today >= end_day - reminder.before_expiry() && !seat.reminders_sent.contains(reminder))
            .map(SweepStep::Remind)
    }

    /// The sweep's index entry: the Saudi day the last paid period ends, while the user
    /// holds one and is neither suspended nor expired.
    pub fn expiry(&self) -> Option<OffsetDateTime> {
        if matches!(self.status, UserStatus::Suspended | UserStatus::Expired) {
            return None;
        }
        self.last_period().filter(|seat| !seat.expired).map(|seat| seat.ends_at)
    }

    /// Establishments in which this user may use services: those with at least one grant.
    pub fn granted_establishments(&self) -> BTreeSet<EstablishmentId> {
        self.grants.establishments().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn member_with_seat(ends_at: OffsetDateTime) -> User {
        let now = ends_at - Duration::days(365);
        User {
            organization: OrganizationId::parse("7001234567").unwrap(),
            id: PersonId::parse("1000000008").unwrap(),
            role: Role::Member,
            plan: PricingPlan::Muqeem,
            status: UserStatus::Active,
            user_type: None,
            name: PersonName { ar: None, en: Some("A".into()) },
            email: Email::parse("a@example.com").unwrap(),
            mobile: SaudiMobile::parse("0512345678").unwrap(),
            language: Language::En,
            job_title: None,
            notifications: NotificationSettings::default(),
            establishments: BTreeSet::new(),
            grants: Grants::default(),
            grants_version: 1,
            profile_version: 1,
            seat: Some(Seat {
                id: "s".into(),
                starts_at: now,
                ends_at,
                price: Halalas::ZERO,
                reminders_sent: BTreeSet::new(),
                expired: false,
            }),
            next_seat: None,
            iqama_expiry: None,
            past_seats: vec![],
            activation: Activation::default(),
            pending_email: None,
            pending_mobile: None,
            deliveries: Default::default(),
            recent_resends: vec![],
            suspension: None,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    #[test]
    fn an_ended_seat_grants_nothing_even_before_the_sweep() {
        let end = datetime!(2027-11-23 10:00 UTC);
        let user = member_with_seat(end);
        assert!(user.can_act_at(end - Duration::seconds(1)));
        assert!(!user.can_act_at(end));
        assert_eq!(user.effective_status(end), UserStatus::Expired);
    }

    #[test]
    fn reminders_come_on_the_saudi_days_thirty_seven_and_one_before_then_expiry() {
        // Ends at 13:00 on 23 Nov in Riyadh: the 30-day reminder is due from 00:00 on 24 Oct.
        let end = datetime!(2027-11-23 10:00 UTC);
        let mut user = member_with_seat(end);
        assert_eq!(user.sweep_due_at(datetime!(2027-10-23 20:59 UTC)), None, "23 Oct in Riyadh");
        assert_eq!(user.sweep_due_at(datetime!(2027-10-23 21:00 UTC)), Some(SweepStep::Remind(Reminder::ThirtyDays)), "24 Oct");
        user.seat.as_mut().unwrap().reminders_sent.insert(Reminder::ThirtyDays);
        assert_eq!(user.sweep_due_at(datetime!(2027-11-15 21:00 UTC)), Some(SweepStep::Remind(Reminder::SevenDays)), "16 Nov");
        user.seat.as_mut().unwrap().reminders_sent.extend([Reminder::SevenDays, Reminder::OneDay]);
        assert_eq!(user.sweep_due_at(end - Duration::seconds(1)), None);
        assert_eq!(user.sweep_due_at(end), Some(SweepStep::Expire));
        assert_eq!(user.expiry(), Some(end));
    }

    #[test]
    fn a_late_sweep_sends_only_the_most_urgent_reminder() {
        let end = datetime!(2027-11-23 10:00 UTC);
        let user = member_with_seat(end);
        assert_eq!(user.sweep_due_at(end - Duration::days(5)), Some(SweepStep::Remind(Reminder::SevenDays)));
        assert_eq!(user.sweep_due_at(end + Duration::days(5)), Some(SweepStep::Expire));
    }

    #[test]
    fn a_renewal_ahead_keeps_access_past_the_old_end_and_moves_the_sweep_to_the_new_end() {
        let end = datetime!(2027-11-23 10:00 UTC);
        let mut user = member_with_seat(end);
        let new_end = crate::clock::one_year_after(end);
        user.next_seat = Some(Seat {
            id: "r".into(),
            starts_at: end,
            ends_at: new_end,
            price: Halalas::ZERO,
            reminders_sent: BTreeSet::new(),
            expired: false,
        });
        assert!(user.can_act_at(end - Duration::seconds(1)));
        assert!(user.can_act_at(end), "no gap at the old end");
        assert_eq!(user.effective_status(end + Duration::days(1)), UserStatus::Active);
        assert_eq!(user.sweep_due_at(end - Duration::days(30)), None, "no reminder for the old end");
        assert_eq!(user.sweep_due_at(end), None, "no expiry at the old end");
        assert_eq!(user.expiry(), Some(new_end), "the index follows the new end");
        assert_eq!(user.sweep_due_at(new_end - Duration::days(30)), Some(SweepStep::Remind(Reminder::ThirtyDays)));
        assert!(!user.can_act_at(new_end));

        user.roll_periods(end + Duration::days(1));
        assert_eq!(user.seat.as_ref().map(|s| s.id.as_str()), Some("r"));
        assert!(user.next_seat.is_none() && user.past_seats.iter().any(|s| s.id == "s"));
    }

    #[test]
    fn an_expired_iqama_ends_access_on_the_next_saudi_day() {
        let end = datetime!(2027-11-23 10:00 UTC);
        let mut user = member_with_seat(end);
        user.iqama_expiry = Some(time::macros::date!(2026 - 11 - 25));
        assert!(user.can_act_at(datetime!(2026-11-25 20:59 UTC)), "still 25 Nov in Riyadh");
        assert!(!user.can_act_at(datetime!(2026-11-25 21:00 UTC)), "26 Nov in Riyadh");
        user.role = Role::Manager;
        assert!(!user.can_act_at(datetime!(2026-11-26 08:00 UTC)), "managers too");
    }

    #[test]
    fn suspended_users_need_no_sweep() {
        let mut user = member_with_seat(datetime!(2027-11-23 10:00 UTC));
        user.status = UserStatus::Suspended;
        assert_eq!(user.sweep_due_at(datetime!(2028-01-01 00:00 UTC)), None);
        assert_eq!(user.expiry(), None, "out of the sweep's index");
    }
}
