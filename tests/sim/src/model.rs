//! The reference model: organizations, persons, seats, balances, grants and messages as
//! plain data, and the product's rules (`../shared/PRODUCT.md`, `openapi.yaml`) written
//! again, plainly, without the domain crate. It predicts the answer to every request and
//! what every change leaves behind (audit entries, messages, money), so that the simulator
//! can hold the product to it after every step.
//!
//! Nothing here imports the product: a rule the product gets wrong is not copied in.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use time::{Date, Duration, OffsetDateTime, Time, UtcOffset, macros::offset};

use crate::step::{Call, Caller, Channel, Line, Notifications, Plan, Request, Secret, Size, Start, Status};

const RIYADH: UtcOffset = offset!(+3);
pub const MUQEEM_SEAT: u64 = 15_000;
pub const LINK_LIFETIME: Duration = Duration::hours(72);
pub const CODE_LIFETIME: Duration = Duration::minutes(10);
pub const CODE_TRIES: u32 = 5;
pub const RESENDS: usize = 3;
pub const RESEND_WINDOW: Duration = Duration::minutes(15);
pub const GRACE: Duration = Duration::days(30);
pub const KEY_LIFETIME: Duration = Duration::hours(24);
pub const MAX_PERSONS: usize = 24;
pub const REMINDER_DAYS: [i64; 3] = [30, 7, 1];
/// How long a message's intent is kept (a notice can be sent again until then).
pub const INTENT_LIFETIME: Duration = Duration::days(30);

/// `(code, platform, Saudi citizens only)`: the catalog, as the product documents it.
pub const SERVICES: &[(&str, Option<Plan>, bool)] = &[
    ("exit_reentry_visa.issue", Some(Plan::Muqeem), false),
    ("exit_reentry_visa.extend", Some(Plan::Muqeem), false),
    ("exit_reentry_visa.cancel", Some(Plan::Muqeem), false),
    ("final_exit_visa.issue", Some(Plan::Muqeem), false),
    ("final_exit_visa.cancel", Some(Plan::Muqeem), false),
    ("iqama.issue", Some(Plan::Muqeem), false),
    ("iqama.renew", Some(Plan::Muqeem), false),
    ("passport.update", Some(Plan::Muqeem), true),
    ("reports.print", Some(Plan::Muqeem), false),
    ("work_permit.issue", Some(Plan::Qiwa), false),
    ("contract.manage", Some(Plan::Qiwa), false),
    ("employee.transfer", Some(Plan::Qiwa), false),
    ("occupation.change", Some(Plan::Qiwa), false),
    ("user_management", None, false),
];
pub const USER_MANAGEMENT: &str = "user_management";

pub fn qiwa_seat(size: Size) -> u64 {
    match size {
        Size::Micro => 10_000,
        Size::Small => 20_000,
        Size::Medium => 40_000,
        Size::Large => 80_000,
        Size::Giant => 160_000,
    }
}

pub fn saudi_day(at: OffsetDateTime) -> Date {
    at.to_offset(RIYADH).date()
}

pub fn start_of_day(day: Date) -> OffsetDateTime {
    day.with_time(Time::MIDNIGHT).assume_offset(RIYADH).to_offset(UtcOffset::UTC)
}

/// The same Saudi calendar date a year later (29 February becomes 28 February).
pub fn a_year_after(at: OffsetDateTime) -> OffsetDateTime {
    let local = at.to_offset(RIYADH);
    let date = local.date();
    let year = date.year() + 1;
    let day = date.day().min(time::util::days_in_month(date.month(), year));
    local.replace_date(Date::from_calendar_date(year, date.month(), day).expect("a valid date")).to_offset(UtcOffset::UTC)
}

// ---------------------------------------------------------------------------------------
// State

#[derive(Debug, Clone)]
pub struct Person {
    pub id: String,
    pub iqama_expiry: Option<Date>,
    pub employers: BTreeSet<String>,
    pub email: String,
    pub mobile: String,
}

impl Person {
    pub fn citizen(&self) -> bool {
        self.id.starts_with('1')
    }

    pub fn iqama_valid(&self, now: OffsetDateTime) -> bool {
        self.iqama_expiry.is_none_or(|expiry| saudi_day(now) <= expiry)
    }
}

#[derive(Debug, Clone)]
pub struct Organization {
    pub id: String,
    pub plan: Plan,
    pub manager: String,
    pub establishments: BTreeMap<String, Size>,
    pub self_subscription: bool,
    pub version: u64,
    pub available: u64,
    pub credited: u64,
    pub debited: u64,
    pub seats_sold: u64,
    pub users: BTreeMap<String, User>,
}

impl Organization {
    fn size(&self) -> Size {
        self.establishments.values().copied().max().unwrap_or(Size::Micro)
    }

    fn seat_price(&self, sold_before: u64) -> u64 {
        match self.plan {
            Plan::Muqeem if sold_before == 0 => 0,
            Plan::Muqeem => MUQEEM_SEAT,
            Plan::Qiwa => qiwa_seat(self.size()),
        }
    }

    fn renewal_price(&self) -> u64 {
        self.seat_price(u64::MAX)
    }
}

/// One paid (or free) year.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    pub price: u64,
    /// Reminders sent (or passed over) for it, by days before its end.
    pub reminded: BTreeSet<i64>,
    /// The sweep has recorded its end.
    pub expired: bool,
}

#[derive(Debug, Clone)]
pub struct Issued {
    pub number: u64,
    pub at: OffsetDateTime,
    pub tries: u32,
}

#[derive(Debug, Clone)]
pub struct Pending {
    pub value: String,
    pub code: Issued,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub manager: bool,
    pub suspended: bool,
    pub establishments: BTreeSet<String>,
    pub grants: BTreeMap<String, BTreeSet<String>>,
    pub grants_version: u64,
    pub profile_version: u64,
    pub periods: Vec<Period>,
    pub email_confirmed: bool,
    pub mobile_confirmed: bool,
    /// The live activation link (kept once used, so a second click is told so).
    pub link: Option<Issued>,
    pub code: Option<Issued>,
    pub resends: Vec<OffsetDateTime>,
    pub email: String,
    pub mobile: String,
    pub pending_email: Option<Pending>,
    pub pending_mobile: Option<Pending>,
    pub language: String,
    pub notifications: Notifications,
    pub user_type: Option<String>,
    /// The latest message of each kind: its index in `Model::messages`.
    pub slots: BTreeMap<Slot, usize>,
}

impl User {
    /// A paid period covers `now`.
    pub fn seat_valid(&self, now: OffsetDateTime) -> bool {
        self.periods.iter().any(|p| p.start <= now && now < p.end)
    }

    pub fn last_period(&self) -> Option<&Period> {
        self.periods.last()
    }

    pub fn status(&self, now: OffsetDateTime) -> Status {
        if self.suspended {
            Status::Suspended
        } else if !self.manager && !self.seat_valid(now) {
            Status::Expired
        } else if self.manager || (self.email_confirmed && self.mobile_confirmed) {
            Status::Active
        } else {
            Status::PendingActivation
        }
    }

    /// Establishments where this user holds `user_management`.
    pub fn administered(&self) -> BTreeSet<String> {
        self.grants.iter().filter(|(_, services)| services.contains(USER_MANAGEMENT)).map(|(e, _)| e.clone()).collect()
    }

    fn shares(&self, establishments: &BTreeSet<String>) -> bool {
        self.establishments.iter().any(|e| establishments.contains(e))
    }

    fn holds(&self, establishment: &str, service: &str) -> bool {
        self.grants.get(establishment).is_some_and(|services| services.contains(service))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    ActivationEmail,
    ActivationSms,
    VerificationEmail,
    VerificationSms,
    ContactChangedEmail,
    ContactChangedSms,
    ReminderEmail,
    ReminderSms,
    SuspensionEmail,
    SuspensionSms,
}

impl Slot {
    pub const ALL: [Slot; 10] = [
        Slot::ActivationEmail,
        Slot::ActivationSms,
        Slot::VerificationEmail,
        Slot::VerificationSms,
        Slot::ContactChangedEmail,
        Slot::ContactChangedSms,
        Slot::ReminderEmail,
        Slot::ReminderSms,
        Slot::SuspensionEmail,
        Slot::SuspensionSms,
    ];

    pub fn from_wire(name: &str) -> Option<Slot> {
        Slot::ALL.into_iter().find(|slot| slot.wire() == name)
    }

    pub fn wire(self) -> &'static str {
        match self {
            Slot::ActivationEmail => "activation_email",
            Slot::ActivationSms => "activation_sms",
            Slot::VerificationEmail => "verification_email",
            Slot::VerificationSms => "verification_sms",
            Slot::ContactChangedEmail => "contact_changed_email",
            Slot::ContactChangedSms => "contact_changed_sms",
            Slot::ReminderEmail => "reminder_email",
            Slot::ReminderSms => "reminder_sms",
            Slot::SuspensionEmail => "suspension_email",
            Slot::SuspensionSms => "suspension_sms",
        }
    }

    pub fn is_email(self) -> bool {
        matches!(
            self,
            Slot::ActivationEmail | Slot::VerificationEmail | Slot::ContactChangedEmail | Slot::ReminderEmail | Slot::SuspensionEmail
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum What {
    Link(u64),
    Code(u64),
    EmailCode(u64),
    MobileCode(u64),
    /// To the old address.
    EmailChanged(String),
    MobileChanged(String),
    /// Days-before kind, and the end of the period it is about.
    Reminder(i64, OffsetDateTime),
    Suspended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageState {
    Queued,
    Sent,
    /// Replaced or out of date before it went out: never sent.
    Superseded,
    /// The provider refused it for good.
    Failed,
    /// Its budget of tries spent on failures that might have passed.
    Undeliverable,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub org: String,
    pub user: String,
    pub slot: Slot,
    pub what: What,
    pub state: MessageState,
    pub queued_at: OffsetDateTime,
    /// Where it went and when, once sent.
    pub sent: Option<(String, OffsetDateTime)>,
}

/// The first answer to a key or payment reference: its status and body, as given.
pub type FirstAnswer = (u16, Vec<u8>);

/// A stored answer of an idempotency key.
#[derive(Debug, Clone)]
pub struct KeyUse {
    pub operation: &'static str,
    /// The request, canonically (what tells a retry from a reuse).
    pub request: String,
    pub at: OffsetDateTime,
    /// The first answer, as the product gave it (filled in by the runner).
    pub answer: Option<(u16, Vec<u8>)>,
}

#[derive(Debug, Clone, Default)]
pub struct Model {
    pub persons: BTreeMap<String, Person>,
    pub orgs: BTreeMap<String, Organization>,
    pub keys: BTreeMap<(String, String, String), KeyUse>,
    /// Payment references of each organization: the amount credited.
    pub credits: BTreeMap<(String, String), (u64, Option<FirstAnswer>)>,
    pub messages: Vec<Message>,
    pub issued: u64,
}

// ---------------------------------------------------------------------------------------
// Outcomes

/// Where a request was decided: before reaching the store, after reading it, or by a
/// commit. Store faults only touch the stages they can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Shape,
    Read,
    Commit,
}

/// An audit entry a change must leave: its organization (`None`: the platform's trail),
/// action and target.
pub type Audited = (Option<String>, &'static str, Option<String>);

/// What the model expects of one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: u16,
    /// The error code of a refusal.
    pub code: Option<&'static str>,
    /// Fields of the answer that must be exactly these (JSON pointers).
    pub fields: Vec<(&'static str, Value)>,
    pub stage: Stage,
    pub audit: Vec<Audited>,
    /// A keyed request answered again: the first answer, byte for byte (`None` while the
    /// first answer is not known yet: it came in the same step).
    pub replay: Option<Option<(u16, Vec<u8>)>>,
    /// The key or reference whose first answer this is (the runner keeps it).
    pub first_of: Option<KeyRef>,
    /// Users a listing returns, in order, with their statuses (the runner compares them).
    pub listing: Option<Vec<(String, Status)>>,
    /// Users of the organization the caller of a listing may not see (no cursor may name
    /// them).
    pub hidden: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    Key(String, String, String),
    Reference(String, String),
}

impl Outcome {
    fn refused(status: u16, code: &'static str, stage: Stage) -> Self {
        Outcome {
            status,
            code: Some(code),
            fields: vec![],
            stage,
            audit: vec![],
            replay: None,
            first_of: None,
            listing: None,
            hidden: BTreeSet::new(),
        }
    }

    fn ok(status: u16, stage: Stage) -> Self {
        Outcome {
            status,
            code: None,
            fields: vec![],
            stage,
            audit: vec![],
            replay: None,
            first_of: None,
            listing: None,
            hidden: BTreeSet::new(),
        }
    }

    fn field(mut self, pointer: &'static str, value: Value) -> Self {
        self.fields.push((pointer, value));
        self
    }
}

/// A refusal decided before the action's own rules: its status, code and stage.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    status: u16,
    code: &'static str,
    stage: Stage,
}

impl From<Refusal> for Outcome {
    fn from(refusal: Refusal) -> Self {
        Outcome::refused(refusal.status, refusal.code, refusal.stage)
    }
}

fn refuse<T: From<Refusal>>(status: u16, code: &'static str) -> T {
    T::from(Refusal { status, code, stage: Stage::Read })
}

fn shape<T: From<Refusal>>(status: u16, code: &'static str) -> T {
    T::from(Refusal { status, code, stage: Stage::Shape })
}

fn not_found<T: From<Refusal>>() -> T {
    refuse(404, "not_found")
}

fn user_not_found<T: From<Refusal>>() -> T {
    refuse(404, "user_not_found")
}

fn not_an_administrator<T: From<Refusal>>() -> T {
    refuse(403, "not_an_administrator")
}

fn forbidden<T: From<Refusal>>() -> T {
    refuse(403, "forbidden")
}

// ---------------------------------------------------------------------------------------
// Standing: who the caller is in an organization

#[derive(Debug, Clone)]
enum Standing {
    Operator,
    Manager(String),
    /// A delegated admin, with the establishments it administers.
    Admin(String, BTreeSet<String>),
    Member(String),
    Outsider(String),
}

impl Standing {
    fn me(&self) -> Option<&str> {
        match self {
            Standing::Manager(me) | Standing::Admin(me, _) | Standing::Member(me) | Standing::Outsider(me) => Some(me),
            Standing::Operator => None,
        }
    }
}

/// What an action on a user is, before the user is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnUser {
    View,
    Modify,
    ConfirmOwnContact,
    CancelPending,
    Resend,
    Suspend,
    Renew,
    SetGrants,
}

impl Model {
    fn org(&self, org: &str) -> Result<&Organization, Refusal> {
        self.orgs.get(org).ok_or_else(not_found)
    }

    fn iqama_valid(&self, person: &str, now: OffsetDateTime) -> bool {
        self.persons.get(person).is_none_or(|p| p.iqama_valid(now))
    }

    /// The caller's standing; a person without a record is an outsider.
    fn standing_with_outsiders(&self, caller: &Caller, org: &str, now: OffsetDateTime) -> Result<Standing, Refusal> {
        let organization = self.org(org)?;
        let me = match caller {
            Caller::Operator => return Ok(Standing::Operator),
            Caller::Service | Caller::Anonymous => return Err(not_found()),
            Caller::Person(me) => me,
        };
        let Some(user) = organization.users.get(me) else { return Ok(Standing::Outsider(me.clone())) };
        if !self.iqama_valid(me, now) {
            return Err(refuse(422, "iqama_expired"));
        }
        if user.manager {
            return Ok(Standing::Manager(me.clone()));
        }
        let administered = user.administered();
        if user.status(now) == Status::Active && !administered.is_empty() {
            Ok(Standing::Admin(me.clone(), administered))
        } else {
            Ok(Standing::Member(me.clone()))
        }
    }

    fn standing(&self, caller: &Caller, org: &str, now: OffsetDateTime) -> Result<Standing, Refusal> {
        match self.standing_with_outsiders(caller, org, now)? {
            Standing::Outsider(_) => Err(not_found()),
            standing => Ok(standing),
        }
    }

    /// Whether the standing lets the caller see `target` at all.
    fn sees(&self, standing: &Standing, target: &User) -> bool {
        match standing {
            Standing::Operator | Standing::Outsider(_) => false,
            Standing::Manager(_) => true,
            Standing::Admin(me, administered) => &target.id == me || target.manager || target.shares(administered),
            Standing::Member(me) => &target.id == me,
        }
    }

    /// The target of an action on a user, in the order that reveals nothing.
    fn target<'a>(&self, standing: &Standing, kind: OnUser, organization: &'a Organization, id: &str) -> Result<&'a User, Refusal> {
        match standing {
            Standing::Operator => return Err(forbidden()),
            Standing::Outsider(_) => return Err(not_found()),
            Standing::Member(me) => match kind {
                OnUser::View => {}
                OnUser::ConfirmOwnContact if me != id => return Err(forbidden()),
                OnUser::ConfirmOwnContact => {}
                OnUser::Resend if me == id => {}
                _ => return Err(not_an_administrator()),
            },
            Standing::Manager(me) | Standing::Admin(me, _) => {
                if kind == OnUser::ConfirmOwnContact && me != id {
                    return Err(forbidden());
                }
            }
        }
        organization.users.get(id).filter(|target| self.sees(standing, target)).ok_or_else(user_not_found)
    }

    /// A delegated admin acting on another user: never itself or the manager, and only on
    /// users of its establishments (all of them when `every`).
    fn admin_may_manage(me: &str, administered: &BTreeSet<String>, target: &User, every: bool) -> Result<(), Refusal> {
        if target.id == me {
            return Err(refuse(403, "cannot_manage_self"));
        }
        if target.manager {
            return Err(refuse(403, "cannot_manage_manager"));
        }
        let allowed = if every { target.establishments.iter().all(|e| administered.contains(e)) } else { target.shares(administered) };
        if allowed { Ok(()) } else { Err(refuse(403, "outside_administered_establishments")) }
    }

    /// May the caller take `kind` on `target` (after `target` found it)?
    fn may_act(standing: &Standing, kind: OnUser, target: &User) -> Result<(), Refusal> {
        match standing {
            Standing::Manager(me) => {
                let allow_self = matches!(kind, OnUser::Modify | OnUser::CancelPending | OnUser::Renew | OnUser::Resend);
                match kind {
                    OnUser::View | OnUser::ConfirmOwnContact => Ok(()),
                    OnUser::SetGrants if target.manager => Err(refuse(403, "cannot_manage_manager")),
                    OnUser::SetGrants => Ok(()),
                    _ if target.manager && !(allow_self && &target.id == me) => Err(refuse(403, "cannot_manage_manager")),
                    _ => Ok(()),
                }
            }
            Standing::Admin(me, administered) => match kind {
                OnUser::View => {
                    if &target.id == me || (!target.manager && target.shares(administered)) {
                        Ok(())
                    } else {
                        Err(user_not_found())
                    }
                }
                OnUser::ConfirmOwnContact => Ok(()),
                OnUser::Suspend | OnUser::Renew => Model::admin_may_manage(me, administered, target, true),
                OnUser::SetGrants => {
                    if &target.id == me {
                        return Err(refuse(403, "cannot_manage_self"));
                    }
                    Model::admin_may_manage(me, administered, target, false)
                }
                _ => Model::admin_may_manage(me, administered, target, false),
            },
            Standing::Member(me) => match kind {
                OnUser::View if &target.id == me => Ok(()),
                OnUser::View => Err(user_not_found()),
                OnUser::ConfirmOwnContact | OnUser::Resend => Ok(()),
                _ => Err(not_an_administrator()),
            },
            Standing::Operator => Err(forbidden()),
            Standing::Outsider(_) => Err(not_found()),
        }
    }

    /// Both steps: find the organization and the target, then judge the action on it.
    fn acting_on(&self, caller: &Caller, org: &str, kind: OnUser, id: &str, now: OffsetDateTime) -> Result<(Standing, &User), Refusal> {
        let organization = self.org(org)?;
        let standing = self.standing(caller, org, now)?;
        let target = self.target(&standing, kind, organization, id)?;
        Model::may_act(&standing, kind, target)?;
        Ok((standing, target))
    }
}

// ---------------------------------------------------------------------------------------
// Requests

/// The canonical text of a request, for keys: what the client sent, keys sorted.
pub fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let fields: BTreeMap<&String, String> = map.iter().map(|(k, v)| (k, canonical(v))).collect();
            format!("{{{}}}", fields.iter().map(|(k, v)| format!("{k:?}:{v}")).collect::<Vec<_>>().join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

fn owner(caller: &Caller) -> String {
    match caller {
        Caller::Operator => "operator".into(),
        Caller::Service => "service".into(),
        Caller::Person(id) => id.clone(),
        Caller::Anonymous => "anonymous".into(),
    }
}

impl Model {
    pub fn issue(&mut self, now: OffsetDateTime) -> Issued {
        self.issued += 1;
        Issued { number: self.issued, at: now, tries: 0 }
    }

    /// Queues a message to a user: it takes the user's slot for its kind.
    fn notify(&mut self, org: &str, user: &str, slot: Slot, what: What, now: OffsetDateTime) {
        let index = self.messages.len();
        self.messages.push(Message {
            org: org.to_owned(),
            user: user.to_owned(),
            slot,
            what,
            state: MessageState::Queued,
            queued_at: now,
            sent: None,
        });
        if let Some(user) = self.orgs.get_mut(org).and_then(|o| o.users.get_mut(user)) {
            user.slots.insert(slot, index);
        }
    }

    /// Predicts the answer to `request` at `now`, and applies what it changes. `body` is the
    /// request's JSON (for keys).
    pub fn request(&mut self, request: &Request, body: &Value, now: OffsetDateTime) -> Outcome {
        let caller = &request.caller;
        match &request.call {
            Call::Register { person, iqama_expiry, employers, email, mobile, .. } => {
                self.register(caller, person, *iqama_expiry, employers, email, mobile)
            }
            Call::Onboard { org, plan, manager, establishments } => self.onboard(caller, org, *plan, manager, establishments),
            Call::Credit { org, amount, reference } => self.credit(caller, org, *amount, reference, now),
            Call::Quote { org, persons } => self.subscribe(caller, org, persons, None, body, now),
            Call::Subscribe { org, persons } => match &request.key {
                None => shape(400, "missing_idempotency_key"),
                Some(key) => self.subscribe(caller, org, persons, Some(key), body, now),
            },
            Call::Renew { org, user } => match &request.key {
                None => shape(400, "missing_idempotency_key"),
                Some(key) => self.renew(caller, org, user, key, now),
            },
            Call::ConfirmLink { link } => self.confirm_link(*link, now),
            Call::ConfirmCode { org, code } => self.confirm_code(caller, org, *code, now),
            Call::Resend { org, user, email, sms } => self.resend(caller, org, user, *email, *sms, now),
            Call::ResendMessage { org, user, slot } => match Slot::from_wire(slot) {
                Some(slot) => self.resend_message(caller, org, user, slot, now),
                None => shape(404, "not_found"),
            },
            Call::SetGrants { org, user, version, grants } => self.set_grants(caller, org, user, *version, grants, now),
            Call::Settings { org, version, self_subscription } => self.settings(caller, org, *version, *self_subscription, now),
            Call::Modify { org, user, version, email, mobile, language, notifications } => {
                self.modify(caller, org, user, *version, email.as_deref(), mobile.as_deref(), language.as_deref(), *notifications, now)
            }
            Call::ConfirmContact { org, user, channel, code } => self.confirm_contact(caller, org, user, *channel, *code, now),
            Call::CancelContact { org, user, channel } => self.cancel_contact(caller, org, user, *channel, now),
            Call::Suspend { org, user } => self.suspend(caller, org, user, now),
            Call::Check { org, user, establishment, service } => self.check(caller, org, user, establishment, service, now),
            Call::Profile { org, user } => self.profile(caller, org, user, now),
            Call::Users { org, status, establishment, .. } => self.users(caller, org, *status, establishment.as_deref(), now),
            Call::Audit { org, user, start } => self.audit(caller, org, user.as_deref(), *start, now),
            Call::Balance { org } => self.balance(caller, org, now),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        &mut self,
        caller: &Caller,
        id: &str,
        iqama_expiry: Option<Date>,
        employers: &BTreeSet<String>,
        email: &str,
        mobile: &str,
    ) -> Outcome {
        if *caller != Caller::Operator {
            return refuse(403, "operator_only");
        }
        let previous = self.persons.get(id).map(|p| p.iqama_expiry);
        self.persons.insert(
            id.to_owned(),
            Person { id: id.to_owned(), iqama_expiry, employers: employers.clone(), email: email.to_owned(), mobile: mobile.to_owned() },
        );
        let mut outcome = Outcome::ok(if previous.is_none() { 201 } else { 200 }, Stage::Commit);
        outcome.audit.push((None, "registry.person_saved", Some(id.to_owned())));
        // Every organization's user record of the person follows the registry's iqama date.
        if previous.is_some_and(|before| before != iqama_expiry) {
            for organization in self.orgs.values() {
                if organization.users.contains_key(id) {
                    outcome.audit.push((Some(organization.id.clone()), "user.iqama_updated", Some(id.to_owned())));
                }
            }
        }
        outcome
    }

    fn onboard(&mut self, caller: &Caller, org: &str, plan: Plan, manager: &str, establishments: &BTreeMap<String, Size>) -> Outcome {
        if *caller != Caller::Operator {
            return refuse(403, "operator_only");
        }
        if self.orgs.contains_key(org) {
            return refuse(409, "organization_exists");
        }
        let Some(person) = self.persons.get(manager) else { return refuse(422, "person_not_registered") };
        let user = User {
            id: manager.to_owned(),
            manager: true,
            suspended: false,
            establishments: establishments.keys().cloned().collect(),
            grants: BTreeMap::new(),
            grants_version: 1,
            profile_version: 1,
            periods: vec![],
            email_confirmed: false,
            mobile_confirmed: false,
            link: None,
            code: None,
            resends: vec![],
            email: person.email.clone(),
            mobile: person.mobile.clone(),
            pending_email: None,
            pending_mobile: None,
            language: "ar".into(),
            notifications: Notifications::default(),
            user_type: None,
            slots: BTreeMap::new(),
        };
        self.orgs.insert(
            org.to_owned(),
            Organization {
                id: org.to_owned(),
                plan,
                manager: manager.to_owned(),
                establishments: establishments.clone(),
                self_subscription: true,
                version: 1,
                available: 0,
                credited: 0,
                debited: 0,
                seats_sold: 0,
                users: BTreeMap::from([(manager.to_owned(), user)]),
            },
        );
        let mut outcome = Outcome::ok(201, Stage::Commit).field("/id", json!(org));
        outcome.audit.push((Some(org.to_owned()), "organization.onboarded", Some(manager.to_owned())));
        outcome
    }

    fn credit(&mut self, caller: &Caller, org: &str, amount: u64, reference: &str, now: OffsetDateTime) -> Outcome {
        let standing = match self.standing(caller, org, now) {
            Ok(standing) => standing,
            Err(refusal) => return refusal.into(),
        };
        if !matches!(standing, Standing::Operator) {
            return refuse(403, "operator_only");
        }
        let reference_key = (org.to_owned(), reference.to_owned());
        if let Some((credited, answer)) = self.credits.get(&reference_key) {
            if *credited != amount {
                return refuse(422, "payment_reference_reused");
            }
            let mut outcome = Outcome::ok(201, Stage::Read);
            outcome.replay = Some(answer.clone());
            outcome.first_of = Some(KeyRef::Reference(org.to_owned(), reference.to_owned()));
            return outcome;
        }
        let organization = self.orgs.get_mut(org).expect("standing found it");
        organization.available += amount;
        organization.credited += amount;
        self.credits.insert(reference_key, (amount, None));
        let mut outcome = Outcome::ok(201, Stage::Commit).field("/balance_halalas", json!(organization.available));
        outcome.audit.push((Some(org.to_owned()), "balance.credited", None));
        outcome.first_of = Some(KeyRef::Reference(org.to_owned(), reference.to_owned()));
        outcome
    }

    /// A keyed request's stored answer, or its reuse with another request.
    fn keyed(&self, caller: &Caller, org: &str, key: &str, operation: &'static str, request: &str, now: OffsetDateTime) -> Option<Outcome> {
        let stored = self.keys.get(&(org.to_owned(), owner(caller), key.to_owned()))?;
        if now >= stored.at + KEY_LIFETIME {
            return None;
        }
        if stored.operation != operation || stored.request != request {
            return Some(refuse(422, "idempotency_key_reused"));
        }
        let mut outcome = Outcome::ok(201, Stage::Read);
        outcome.replay = Some(stored.answer.clone());
        outcome.first_of = Some(KeyRef::Key(org.to_owned(), owner(caller), key.to_owned()));
        Some(outcome)
    }

    fn remember_key(
        &mut self,
        caller: &Caller,
        org: &str,
        key: &str,
        operation: &'static str,
        request: String,
        now: OffsetDateTime,
    ) -> KeyRef {
        let id = (org.to_owned(), owner(caller), key.to_owned());
        self.keys.insert(id.clone(), KeyUse { operation, request, at: now, answer: None });
        KeyRef::Key(id.0, id.1, id.2)
    }

    fn subscribe(&mut self, caller: &Caller, org: &str, lines: &[Line], key: Option<&str>, body: &Value, now: OffsetDateTime) -> Outcome {
        // The shape, before anything is read.
        if lines.is_empty() {
            return shape(400, "invalid_request");
        }
        if lines.len() > MAX_PERSONS {
            return shape(422, "too_many_persons");
        }
        let mut seen = BTreeSet::new();
        for line in lines {
            if !seen.insert(&line.id) {
                return shape(422, "duplicate_person");
            }
            if line.establishments.is_empty() {
                return shape(422, "invalid_field");
            }
        }
        let standing = match self.standing_with_outsiders(caller, org, now) {
            Ok(standing) => standing,
            Err(refusal) => return refusal.into(),
        };
        let organization = &self.orgs[org];
        let asked: BTreeSet<String> = lines.iter().flat_map(|l| l.establishments.iter().cloned()).collect();
        let own = matches!((standing.me(), lines), (Some(me), [only]) if only.id == me);
        let self_subscription = |me: &str| -> Result<(), Refusal> {
            let person = self.persons.get(me);
            let employed_here = person.is_some_and(|p| organization.establishments.keys().any(|e| p.employers.contains(e)));
            if !employed_here {
                return Err(not_found());
            }
            if !organization.self_subscription {
                return Err(refuse(403, "self_subscription_disabled"));
            }
            if asked.iter().any(|e| !person.expect("employed").employers.contains(e)) {
                return Err(refuse(403, "not_an_employee"));
            }
            Ok(())
        };
        let allowed = match (&standing, own) {
            (Standing::Operator, _) => Err(forbidden()),
            (Standing::Outsider(me), true) => self_subscription(me),
            (Standing::Outsider(_), false) => Err(not_found()),
            (Standing::Manager(_), _) => Ok(()),
            (Standing::Admin(_, administered), _) => {
                if asked.iter().all(|e| administered.contains(e)) {
                    Ok(())
                } else {
                    Err(refuse(403, "outside_administered_establishments"))
                }
            }
            (Standing::Member(me), true) => self_subscription(me),
            (Standing::Member(_), false) => Err(not_an_administrator()),
        };
        if let Err(refusal) = allowed {
            return refusal.into();
        }
        let request = canonical(body);
        if let Some(key) = key
            && let Some(stored) = self.keyed(caller, org, key, "subscribe", &request, now)
        {
            return stored;
        }
        // Each person, in order.
        let today = saudi_day(now);
        for line in lines {
            if line.establishments.iter().any(|e| !organization.establishments.contains_key(e)) {
                return refuse(422, "unknown_establishment");
            }
            match (organization.plan, &line.user_type) {
                (Plan::Muqeem, None) => return refuse(422, "user_type_required"),
                (Plan::Qiwa, Some(_)) => return refuse(422, "user_type_not_applicable"),
                _ => {}
            }
            let Some(person) = self.persons.get(&line.id) else { return refuse(422, "person_not_registered") };
            if person.iqama_expiry.is_some_and(|expiry| today > expiry) {
                return refuse(422, "iqama_expired");
            }
            if let Some(existing) = organization.users.get(&line.id) {
                let holds = existing.seat_valid(now) && (existing.manager || !existing.suspended);
                if holds {
                    // A delegated admin is not told of a user it may not see.
                    return match &standing {
                        Standing::Admin(..) if !self.sees(&standing, existing) => refuse(422, "person_unavailable"),
                        _ => refuse(422, "already_subscribed"),
                    };
                }
            }
            if organization.plan == Plan::Qiwa
                && !line.establishments.iter().any(|e| person.employers.contains(e))
                && let Standing::Manager(me) = &standing
                && me != &line.id
                && !organization.users[me].seat_valid(now)
            {
                return refuse(422, "manager_seat_required");
            }
        }
        let prices: Vec<u64> = (0..lines.len() as u64).map(|n| organization.seat_price(organization.seats_sold + n)).collect();
        let total: u64 = prices.iter().sum();
        let end = a_year_after(now);
        let Some(key) = key else {
            return Outcome::ok(200, Stage::Read)
                .field("/total_halalas", json!(total))
                .field("/balance_halalas", json!(organization.available))
                .field("/sufficient", json!(total <= organization.available));
        };
        if total > organization.available {
            return refuse(402, "insufficient_balance");
        }
        // Paid: every person gets their seat, the balance moves once.
        let mut outcome = Outcome::ok(201, Stage::Commit)
            .field("/amount_charged_halalas", json!(total))
            .field("/balance_after_halalas", json!(organization.available - total));
        for (line, price) in lines.iter().zip(prices) {
            let period = Period { start: now, end, price, reminded: BTreeSet::new(), expired: false };
            let organization = self.orgs.get_mut(org).expect("exists");
            let existing = organization.users.get(&line.id).cloned();
            let person = self.persons[&line.id].clone();
            match existing {
                Some(mut manager) if manager.manager => {
                    manager.periods = vec![period];
                    organization.users.insert(line.id.clone(), manager);
                }
                existing => {
                    let link = self.issue(now);
                    let code = self.issue(now);
                    let organization = self.orgs.get_mut(org).expect("exists");
                    let user = User {
                        id: line.id.clone(),
                        manager: false,
                        suspended: false,
                        establishments: line.establishments.clone(),
                        grants: BTreeMap::new(),
                        grants_version: existing.as_ref().map_or(1, |u| u.grants_version + 1),
                        profile_version: existing.as_ref().map_or(1, |u| u.profile_version + 1),
                        periods: vec![period],
                        email_confirmed: false,
                        mobile_confirmed: false,
                        link: Some(link.clone()),
                        code: Some(code.clone()),
                        resends: vec![],
                        email: person.email.clone(),
                        mobile: person.mobile.clone(),
                        pending_email: None,
                        pending_mobile: None,
                        language: line.language.clone().unwrap_or_else(|| "ar".into()),
                        notifications: Notifications::default(),
                        user_type: line.user_type.clone(),
                        slots: BTreeMap::new(),
                    };
                    organization.users.insert(line.id.clone(), user);
                    // Messages of the record this one replaces are out of date.
                    self.supersede_all(org, &line.id);
                    self.notify(org, &line.id, Slot::ActivationEmail, What::Link(link.number), now);
                    self.notify(org, &line.id, Slot::ActivationSms, What::Code(code.number), now);
                }
            }
            outcome.audit.push((Some(org.to_owned()), "user.subscribed", Some(line.id.clone())));
        }
        let organization = self.orgs.get_mut(org).expect("exists");
        organization.available -= total;
        organization.debited += total;
        organization.seats_sold += lines.len() as u64;
        outcome.first_of = Some(self.remember_key(caller, org, key, "subscribe", request, now));
        outcome
    }

    /// Messages still queued for a user record that is replaced will never go out.
    fn supersede_all(&mut self, org: &str, user: &str) {
        for message in &mut self.messages {
            if message.org == org && message.user == user && message.state == MessageState::Queued {
                message.state = MessageState::Superseded;
            }
        }
    }

    fn renew(&mut self, caller: &Caller, org: &str, id: &str, key: &str, now: OffsetDateTime) -> Outcome {
        if let Err(refusal) = self.acting_on(caller, org, OnUser::Renew, id, now) {
            return refusal.into();
        }
        let request = canonical(&json!({ "user": id }));
        if let Some(stored) = self.keyed(caller, org, key, "renew", &request, now) {
            return stored;
        }
        let organization = &self.orgs[org];
        let price = organization.renewal_price();
        if organization.available < price {
            return refuse(402, "insufficient_balance");
        }
        let target = &organization.users[id];
        if target.suspended {
            return refuse(422, "user_suspended");
        }
        if !self.iqama_valid(id, now) {
            return refuse(422, "iqama_expired");
        }
        let mut periods: Vec<Period> = target.periods.clone();
        // A renewal bought ahead that has begun is the current period now.
        if periods.len() == 2 && periods[1].start <= now {
            periods.remove(0);
        }
        if periods.len() == 2 {
            return refuse(422, "already_renewed");
        }
        let Some(current) = periods.last().cloned() else { return refuse(422, "seat_expired") };
        let renewed = if now < current.end {
            Period { start: current.end, end: a_year_after(current.end), price, reminded: BTreeSet::new(), expired: false }
        } else if now - current.end <= GRACE {
            periods.clear();
            Period { start: now, end: a_year_after(now), price, reminded: BTreeSet::new(), expired: false }
        } else {
            return refuse(422, "renewal_grace_passed");
        };
        periods.push(renewed.clone());
        let organization = self.orgs.get_mut(org).expect("exists");
        organization.available -= price;
        organization.debited += price;
        organization.users.get_mut(id).expect("exists").periods = periods;
        let mut outcome = Outcome::ok(201, Stage::Commit)
            .field("/amount_charged_halalas", json!(price))
            .field("/balance_after_halalas", json!(organization.available))
            .field("/renewed/starts_at", json!(timestamp(renewed.start)))
            .field("/renewed/ends_at", json!(timestamp(renewed.end)));
        outcome.audit.push((Some(org.to_owned()), "seat.renewed", Some(id.to_owned())));
        outcome.first_of = Some(self.remember_key(caller, org, key, "renew", request, now));
        outcome
    }

    /// Suspended and expired users cannot activate, nor anyone whose iqama has expired.
    fn may_activate(&self, user: &User, now: OffsetDateTime) -> Result<(), Refusal> {
        if !self.iqama_valid(&user.id, now) {
            return Err(refuse(422, "iqama_expired"));
        }
        match user.status(now) {
            Status::Suspended => Err(refuse(422, "user_suspended")),
            Status::Expired => Err(refuse(422, "seat_expired")),
            _ => Ok(()),
        }
    }

    fn find_link(&self, number: u64) -> Option<(String, String)> {
        self.orgs.values().find_map(|organization| {
            organization
                .users
                .values()
                .find(|user| user.link.as_ref().is_some_and(|link| link.number == number))
                .map(|user| (organization.id.clone(), user.id.clone()))
        })
    }

    fn confirm_link(&mut self, link: Secret, now: OffsetDateTime) -> Outcome {
        let found = match link {
            Secret::Issued(number) => self.find_link(number),
            Secret::Wrong => None,
        };
        let Some((org, id)) = found else { return refuse(422, "invalid_activation_link") };
        let user = &self.orgs[&org].users[&id];
        if let Err(refusal) = self.may_activate(user, now) {
            return refusal.into();
        }
        if user.email_confirmed {
            return refuse(410, "activation_link_used");
        }
        if user.link.as_ref().is_some_and(|link| now >= link.at + LINK_LIFETIME) {
            return refuse(410, "activation_link_expired");
        }
        let user = self.orgs.get_mut(&org).expect("exists").users.get_mut(&id).expect("exists");
        user.email_confirmed = true;
        let status = user.status(now);
        let mut outcome = Outcome::ok(200, Stage::Commit).field("/status", json!(status.as_str()));
        outcome.audit.push((Some(org), "activation.email_confirmed", Some(id)));
        outcome
    }

    fn confirm_code(&mut self, caller: &Caller, org: &str, code: Secret, now: OffsetDateTime) -> Outcome {
        let Caller::Person(me) = caller else { return shape(403, "forbidden") };
        let Some(user) = self.orgs.get(org).and_then(|o| o.users.get(me)) else { return not_found() };
        if let Err(refusal) = self.may_activate(user, now) {
            return refusal.into();
        }
        if user.mobile_confirmed {
            return refuse(409, "already_confirmed");
        }
        let Some(current) = &user.code else { return refuse(422, "no_pending_code") };
        let right = code == Secret::Issued(current.number);
        let verdict = check_code(current, right, now);
        let (org_owned, me_owned) = (org.to_owned(), me.clone());
        let user = self.orgs.get_mut(org).expect("exists").users.get_mut(me).expect("exists");
        match verdict {
            CodeVerdict::Locked => refuse(423, "code_locked"),
            CodeVerdict::Expired => refuse(422, "code_expired"),
            CodeVerdict::Accepted => {
                user.mobile_confirmed = true;
                user.code = None;
                let status = user.status(now);
                let mut outcome = Outcome::ok(200, Stage::Commit).field("/status", json!(status.as_str()));
                outcome.audit.push((Some(org_owned), "activation.mobile_confirmed", Some(me_owned)));
                outcome
            }
            CodeVerdict::Wrong => {
                let current = user.code.as_mut().expect("checked");
                current.tries += 1;
                let mut outcome = if current.tries >= CODE_TRIES {
                    Outcome::refused(423, "code_locked", Stage::Commit)
                } else {
                    Outcome::refused(422, "wrong_code", Stage::Commit).field("/error/remaining_tries", json!(CODE_TRIES - current.tries))
                };
                outcome.audit.push((Some(org_owned), "activation.mobile_code_rejected", Some(me_owned)));
                outcome
            }
        }
    }

    fn resend(&mut self, caller: &Caller, org: &str, id: &str, email: Option<bool>, sms: Option<bool>, now: OffsetDateTime) -> Outcome {
        let target = match self.acting_on(caller, org, OnUser::Resend, id, now) {
            Ok((_, target)) => target,
            Err(refusal) => return refusal.into(),
        };
        if let Err(refusal) = self.may_activate(target, now) {
            return refusal.into();
        }
        if target.status(now) == Status::Active {
            return refuse(409, "already_active");
        }
        let pending = (!target.email_confirmed, !target.mobile_confirmed);
        let wanted = match (email, sms) {
            (None, None) => pending,
            (email, sms) => (email.unwrap_or(false), sms.unwrap_or(false)),
        };
        let channels = (wanted.0 && pending.0, wanted.1 && pending.1);
        if !channels.0 && !channels.1 {
            return refuse(409, "already_confirmed");
        }
        let recent: Vec<OffsetDateTime> = target.resends.iter().copied().filter(|at| now - *at < RESEND_WINDOW).collect();
        if recent.len() >= RESENDS {
            return refuse(429, "too_many_resends");
        }
        let link = channels.0.then(|| self.issue(now));
        let code = channels.1.then(|| self.issue(now));
        let user = self.orgs.get_mut(org).expect("exists").users.get_mut(id).expect("exists");
        user.resends = recent;
        user.resends.push(now);
        if let Some(link) = &link {
            user.link = Some(link.clone());
        }
        if let Some(code) = &code {
            user.code = Some(code.clone());
        }
        if let Some(link) = link {
            self.notify(org, id, Slot::ActivationEmail, What::Link(link.number), now);
        }
        if let Some(code) = code {
            self.notify(org, id, Slot::ActivationSms, What::Code(code.number), now);
        }
        let mut outcome = Outcome::ok(200, Stage::Commit)
            .field("/email", json!(if channels.0 { "queued" } else { "not_needed" }))
            .field("/sms", json!(if channels.1 { "queued" } else { "not_needed" }));
        outcome.audit.push((Some(org.to_owned()), "activation.resent", Some(id.to_owned())));
        outcome
    }

    /// One message again: a contact code (fresh, for the pending change), or a notice that
    /// failed or was undeliverable (the same, while its intent is kept and what it says
    /// holds). Activation messages have their own resend. Shares the activation resend's
    /// limit.
    fn resend_message(&mut self, caller: &Caller, org: &str, id: &str, slot: Slot, now: OffsetDateTime) -> Outcome {
        let target = match self.acting_on(caller, org, OnUser::Resend, id, now) {
            Ok((_, target)) => target,
            Err(refusal) => return refusal.into(),
        };
        let Some(&index) = target.slots.get(&slot) else { return refuse(409, "message_not_resendable") };
        let recent: Vec<OffsetDateTime> = target.resends.iter().copied().filter(|at| now - *at < RESEND_WINDOW).collect();
        if recent.len() >= RESENDS {
            return refuse(429, "too_many_resends");
        }
        let pending_of = |user: &User| match slot {
            Slot::VerificationEmail => user.pending_email.is_some(),
            _ => user.pending_mobile.is_some(),
        };
        let resent = match slot {
            Slot::ActivationEmail | Slot::ActivationSms => return refuse(409, "message_not_resendable"),
            Slot::VerificationEmail | Slot::VerificationSms => {
                if !pending_of(target) {
                    return refuse(422, "no_pending_change");
                }
                None
            }
            _ => {
                let message = &self.messages[index];
                if !matches!(message.state, MessageState::Failed | MessageState::Undeliverable) {
                    return refuse(409, "message_not_resendable");
                }
                if now >= message.queued_at + INTENT_LIFETIME {
                    return refuse(409, "message_gone");
                }
                let holds = match &message.what {
                    What::Reminder(_, ends) => {
                        !target.suspended && target.last_period().filter(|p| !p.expired).map(|p| p.end) == Some(*ends)
                    }
                    What::Suspended => target.suspended,
                    _ => true,
                };
                if !holds {
                    return refuse(409, "message_outdated");
                }
                Some(message.what.clone())
            }
        };
        let what = match resent {
            Some(what) => what,
            None => {
                let code = self.issue(now);
                let user = self.orgs.get_mut(org).expect("exists").users.get_mut(id).expect("exists");
                let pending = if slot == Slot::VerificationEmail { user.pending_email.as_mut() } else { user.pending_mobile.as_mut() };
                pending.expect("checked").code = code.clone();
                if slot == Slot::VerificationEmail { What::EmailCode(code.number) } else { What::MobileCode(code.number) }
            }
        };
        let user = self.orgs.get_mut(org).expect("exists").users.get_mut(id).expect("exists");
        user.resends = recent;
        user.resends.push(now);
        self.notify(org, id, slot, what, now);
        let mut outcome = Outcome::ok(200, Stage::Commit).field("/slot", json!(slot.wire())).field("/state", json!("queued"));
        outcome.audit.push((Some(org.to_owned()), "message.resent", Some(id.to_owned())));
        outcome
    }

    fn set_grants(
        &mut self,
        caller: &Caller,
        org: &str,
        id: &str,
        version: u64,
        grants: &BTreeMap<String, BTreeSet<String>>,
        now: OffsetDateTime,
    ) -> Outcome {
        if grants.values().flatten().any(|service| !SERVICES.iter().any(|(code, _, _)| code == service)) {
            return shape(422, "unknown_service");
        }
        let organization = match self.org(org) {
            Ok(organization) => organization,
            Err(refusal) => return refusal.into(),
        };
        let standing = match self.standing(caller, org, now) {
            Ok(standing) => standing,
            Err(refusal) => return refusal.into(),
        };
        if grants.keys().any(|e| !organization.establishments.contains_key(e)) {
            return refuse(422, "unknown_establishment");
        }
        let after: BTreeMap<String, BTreeSet<String>> =
            grants.iter().filter(|(_, s)| !s.is_empty()).map(|(e, s)| (e.clone(), s.clone())).collect();
        for service in after.values().flatten() {
            let (_, platform, _) = SERVICES.iter().find(|(code, _, _)| code == service).expect("known");
            if platform.is_some_and(|plan| plan != organization.plan) {
                return refuse(422, "service_not_on_platform");
            }
        }
        let target = match self.target(&standing, OnUser::SetGrants, organization, id) {
            Ok(target) => target,
            Err(refusal) => return refusal.into(),
        };
        if let Err(refusal) = Model::may_act(&standing, OnUser::SetGrants, target) {
            return refusal.into();
        }
        let cells = |matrix: &BTreeMap<String, BTreeSet<String>>| -> BTreeSet<(String, String)> {
            matrix.iter().flat_map(|(e, services)| services.iter().map(move |s| (e.clone(), s.clone()))).collect()
        };
        let (before, wanted) = (cells(&target.grants), cells(&after));
        if let Standing::Admin(me, administered) = &standing {
            let admin = &organization.users[me];
            for (establishment, service) in before.symmetric_difference(&wanted) {
                if !administered.contains(establishment) {
                    return refuse(403, "outside_administered_establishments");
                }
                if !admin.holds(establishment, service) {
                    return refuse(403, "service_not_held");
                }
            }
        }
        if !self.iqama_valid(id, now) {
            return refuse(422, "iqama_expired");
        }
        match target.status(now) {
            Status::Suspended => return refuse(422, "user_suspended"),
            Status::Expired => return refuse(422, "seat_expired"),
            _ => {}
        }
        if after.keys().any(|e| !target.establishments.contains(e)) {
            return refuse(422, "establishment_not_assigned");
        }
        if !id.starts_with('1') && after.values().flatten().any(|s| SERVICES.iter().any(|(code, _, saudi)| code == s && *saudi)) {
            return refuse(422, "saudi_only_service");
        }
        if version != target.grants_version {
            return refuse(409, "version_conflict");
        }
        if before == wanted {
            return Outcome::ok(200, Stage::Read).field("/version", json!(target.grants_version));
        }
        let user = self.orgs.get_mut(org).expect("exists").users.get_mut(id).expect("exists");
        user.grants = after;
        user.grants_version += 1;
        let mut outcome = Outcome::ok(200, Stage::Commit).field("/version", json!(user.grants_version));
        outcome.audit.push((Some(org.to_owned()), "permissions.changed", Some(id.to_owned())));
        outcome
    }

    fn settings(&mut self, caller: &Caller, org: &str, version: u64, self_subscription: bool, now: OffsetDateTime) -> Outcome {
        let standing = match self.standing(caller, org, now) {
            Ok(standing) => standing,
            Err(refusal) => return refusal.into(),
        };
        match standing {
            Standing::Manager(_) => {}
            Standing::Operator => return forbidden(),
            _ => return refuse(403, "manager_only"),
        }
        let organization = self.orgs.get_mut(org).expect("exists");
        if version != organization.version {
            return refuse(409, "version_conflict");
        }
        if organization.self_subscription == self_subscription {
            return Outcome::ok(200, Stage::Read).field("/version", json!(organization.version));
        }
        organization.self_subscription = self_subscription;
        organization.version += 1;
        let mut outcome = Outcome::ok(200, Stage::Commit).field("/version", json!(organization.version));
        outcome.audit.push((Some(org.to_owned()), "organization.settings_changed", None));
        outcome
    }

    /// Whether another (not suspended) user of the organization uses this email or mobile.
    fn taken(organization: &Organization, id: &str, channel: Channel, value: &str) -> bool {
        organization.users.values().any(|user| {
            user.id != id
                && !user.suspended
                && match channel {
                    Channel::Email => user.email == value,
                    Channel::Mobile => user.mobile == value,
                }
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn modify(
        &mut self,
        caller: &Caller,
        org: &str,
        id: &str,
        version: u64,
        email: Option<&str>,
        mobile: Option<&str>,
        language: Option<&str>,
        notifications: Option<Notifications>,
        now: OffsetDateTime,
    ) -> Outcome {
        if email.is_none() && mobile.is_none() && language.is_none() && notifications.is_none() {
            return shape(400, "invalid_request");
        }
        let target = match self.acting_on(caller, org, OnUser::Modify, id, now) {
            Ok((_, target)) => target,
            Err(refusal) => return refusal.into(),
        };
        if target.suspended {
            return refuse(422, "user_suspended");
        }
        if version != target.profile_version {
            return refuse(409, "version_conflict");
        }
        let new_email = email.filter(|e| *e != target.email).map(str::to_owned);
        let new_mobile = mobile.filter(|m| *m != target.mobile).map(str::to_owned);
        let organization = &self.orgs[org];
        if new_email.as_deref().is_some_and(|e| Model::taken(organization, id, Channel::Email, e)) {
            return refuse(422, "contact_in_use");
        }
        if new_mobile.as_deref().is_some_and(|m| Model::taken(organization, id, Channel::Mobile, m)) {
            return refuse(422, "contact_in_use");
        }
        let new_language = language.filter(|l| *l != target.language).map(str::to_owned);
        let new_notifications = notifications.filter(|n| *n != target.notifications);
        if new_email.is_none() && new_mobile.is_none() && new_language.is_none() && new_notifications.is_none() {
            return Outcome::ok(200, Stage::Read).field("/profile/version", json!(target.profile_version));
        }
        let email_code = new_email.as_ref().map(|_| self.issue(now));
        let mobile_code = new_mobile.as_ref().map(|_| self.issue(now));
        let user = self.orgs.get_mut(org).expect("exists").users.get_mut(id).expect("exists");
        if let (Some(value), Some(code)) = (&new_email, &email_code) {
            user.pending_email = Some(Pending { value: value.clone(), code: code.clone() });
        }
        if let (Some(value), Some(code)) = (&new_mobile, &mobile_code) {
            user.pending_mobile = Some(Pending { value: value.clone(), code: code.clone() });
        }
        if let Some(language) = new_language {
            user.language = language;
        }
        if let Some(notifications) = new_notifications {
            user.notifications = notifications;
        }
        user.profile_version += 1;
        let version = user.profile_version;
        if let Some(code) = email_code {
            self.notify(org, id, Slot::VerificationEmail, What::EmailCode(code.number), now);
        }
        if let Some(code) = mobile_code {
            self.notify(org, id, Slot::VerificationSms, What::MobileCode(code.number), now);
        }
        let mut outcome = Outcome::ok(200, Stage::Commit)
            .field("/profile/version", json!(version))
            .field("/verification_messages/email", json!(if new_email.is_some() { "queued" } else { "not_needed" }))
            .field("/verification_messages/sms", json!(if new_mobile.is_some() { "queued" } else { "not_needed" }));
        outcome.audit.push((Some(org.to_owned()), "user.modified", Some(id.to_owned())));
        outcome
    }

    fn confirm_contact(&mut self, caller: &Caller, org: &str, id: &str, channel: Channel, code: Secret, now: OffsetDateTime) -> Outcome {
        if !matches!(caller, Caller::Person(_)) {
            return forbidden();
        }
        let target = match self.acting_on(caller, org, OnUser::ConfirmOwnContact, id, now) {
            Ok((_, target)) => target,
            Err(refusal) => return refusal.into(),
        };
        if target.suspended {
            return refuse(422, "user_suspended");
        }
        let pending = match channel {
            Channel::Email => &target.pending_email,
            Channel::Mobile => &target.pending_mobile,
        };
        let Some(pending) = pending else { return refuse(422, "no_pending_change") };
        let right = code == Secret::Issued(pending.code.number);
        let verdict = check_code(&pending.code, right, now);
        let value = pending.value.clone();
        let taken = Model::taken(&self.orgs[org], id, channel, &value);
        let user = self.orgs.get_mut(org).expect("exists").users.get_mut(id).expect("exists");
        let pending = match channel {
            Channel::Email => user.pending_email.as_mut(),
            Channel::Mobile => user.pending_mobile.as_mut(),
        }
        .expect("checked");
        match verdict {
            CodeVerdict::Locked => refuse(423, "code_locked"),
            CodeVerdict::Expired => refuse(422, "code_expired"),
            CodeVerdict::Wrong => {
                pending.code.tries += 1;
                let mut outcome = if pending.code.tries >= CODE_TRIES {
                    Outcome::refused(423, "code_locked", Stage::Commit)
                } else {
                    Outcome::refused(422, "wrong_code", Stage::Commit)
                        .field("/error/remaining_tries", json!(CODE_TRIES - pending.code.tries))
                };
                outcome.audit.push((Some(org.to_owned()), "contact.code_rejected", Some(id.to_owned())));
                outcome
            }
            CodeVerdict::Accepted if taken => refuse(422, "contact_in_use"),
            CodeVerdict::Accepted => {
                let (slot, old) = match channel {
                    Channel::Email => {
                        user.pending_email = None;
                        (Slot::ContactChangedEmail, What::EmailChanged(std::mem::replace(&mut user.email, value)))
                    }
                    Channel::Mobile => {
                        user.pending_mobile = None;
                        (Slot::ContactChangedSms, What::MobileChanged(std::mem::replace(&mut user.mobile, value)))
                    }
                };
                user.profile_version += 1;
                let version = user.profile_version;
                self.notify(org, id, slot, old, now);
                let mut outcome = Outcome::ok(200, Stage::Commit).field("/version", json!(version));
                outcome.audit.push((Some(org.to_owned()), "contact.change_confirmed", Some(id.to_owned())));
                outcome
            }
        }
    }

    fn cancel_contact(&mut self, caller: &Caller, org: &str, id: &str, channel: Channel, now: OffsetDateTime) -> Outcome {
        let (standing, target) = match self.acting_on(caller, org, OnUser::CancelPending, id, now) {
            Ok(found) => found,
            Err(refusal) => return refusal.into(),
        };
        if target.suspended && !matches!(standing, Standing::Manager(_)) {
            return refuse(422, "user_suspended");
        }
        let (pending, slot) = match channel {
            Channel::Email => (target.pending_email.is_some(), Slot::VerificationEmail),
            Channel::Mobile => (target.pending_mobile.is_some(), Slot::VerificationSms),
        };
        if !pending {
            return refuse(422, "no_pending_change");
        }
        let user = self.orgs.get_mut(org).expect("exists").users.get_mut(id).expect("exists");
        match channel {
            Channel::Email => user.pending_email = None,
            Channel::Mobile => user.pending_mobile = None,
        }
        user.profile_version += 1;
        let version = user.profile_version;
        if let Some(&index) = user.slots.get(&slot)
            && self.messages[index].state == MessageState::Queued
        {
            self.messages[index].state = MessageState::Superseded;
        }
        let mut outcome = Outcome::ok(200, Stage::Commit).field("/version", json!(version));
        outcome.audit.push((Some(org.to_owned()), "contact.change_cancelled", Some(id.to_owned())));
        outcome
    }

    fn suspend(&mut self, caller: &Caller, org: &str, id: &str, now: OffsetDateTime) -> Outcome {
        let target = match self.acting_on(caller, org, OnUser::Suspend, id, now) {
            Ok((_, target)) => target,
            Err(refusal) => return refusal.into(),
        };
        if target.suspended {
            return refuse(409, "already_suspended");
        }
        let channels = target.notifications;
        let user = self.orgs.get_mut(org).expect("exists").users.get_mut(id).expect("exists");
        user.suspended = true;
        // The seat and any year bought ahead end now, for good.
        user.periods.clear();
        user.link = None;
        user.code = None;
        user.pending_email = None;
        user.pending_mobile = None;
        self.supersede_all(org, id);
        if channels.notices_email {
            self.notify(org, id, Slot::SuspensionEmail, What::Suspended, now);
        }
        if channels.notices_sms {
            self.notify(org, id, Slot::SuspensionSms, What::Suspended, now);
        }
        let mut outcome = Outcome::ok(200, Stage::Commit).field("/status", json!("suspended"));
        outcome.audit.push((Some(org.to_owned()), "user.suspended", Some(id.to_owned())));
        outcome
    }

    fn check(&self, caller: &Caller, org: &str, id: &str, establishment: &str, service: &str, now: OffsetDateTime) -> Outcome {
        if !matches!(caller, Caller::Service | Caller::Operator) {
            return shape(403, "forbidden");
        }
        let reason = self.access(org, id, establishment, service, now);
        Outcome::ok(200, Stage::Read).field("/reason", json!(reason)).field("/allowed", json!(matches!(reason, "granted" | "manager")))
    }

    /// The check API's answer: may this user use this service here now?
    pub fn access(&self, org: &str, id: &str, establishment: &str, service: &str, now: OffsetDateTime) -> &'static str {
        let Some(organization) = self.orgs.get(org) else { return "not_subscribed" };
        let Some(user) = organization.users.get(id) else { return "not_subscribed" };
        if user.suspended {
            return "suspended";
        }
        if !self.iqama_valid(id, now) {
            return "iqama_expired";
        }
        if !user.manager {
            if !user.seat_valid(now) {
                return "seat_expired";
            }
            if user.status(now) != Status::Active {
                return "not_active";
            }
        }
        let Some((_, platform, saudi_only)) = SERVICES.iter().find(|(code, _, _)| *code == service) else { return "unknown_service" };
        if platform.is_some_and(|plan| plan != organization.plan) {
            return "service_not_on_platform";
        }
        if *saudi_only && !id.starts_with('1') {
            return "saudi_only";
        }
        if user.manager {
            return if user.establishments.contains(establishment) { "manager" } else { "no_grant" };
        }
        if user.holds(establishment, service) { "granted" } else { "no_grant" }
    }

    fn profile(&self, caller: &Caller, org: &str, id: &str, now: OffsetDateTime) -> Outcome {
        let target = match self.acting_on(caller, org, OnUser::View, id, now) {
            Ok((_, target)) => target,
            Err(refusal) => return refusal.into(),
        };
        let current = target.periods.iter().find(|p| p.start <= now && now < p.end).or(target.periods.last());
        let upcoming = target.periods.iter().find(|p| now < p.start);
        Outcome::ok(200, Stage::Read)
            .field("/status", json!(target.status(now).as_str()))
            .field("/version", json!(target.profile_version))
            .field("/seat/ends_at", current.map_or(Value::Null, |p| json!(timestamp(p.end))))
            .field("/next_seat/ends_at", upcoming.map_or(Value::Null, |p| json!(timestamp(p.end))))
            .field("/activation/email_confirmed", json!(target.email_confirmed))
            .field("/activation/mobile_confirmed", json!(target.mobile_confirmed))
    }

    /// Which users a caller may list, or why not.
    fn listable(
        &self,
        caller: &Caller,
        org: &str,
        establishment: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Option<BTreeSet<String>>, Refusal> {
        let standing = self.standing(caller, org, now)?;
        let visible = match standing {
            Standing::Manager(_) => None,
            Standing::Admin(_, administered) => Some(administered),
            Standing::Operator => return Err(forbidden()),
            Standing::Member(_) | Standing::Outsider(_) => return Err(not_an_administrator()),
        };
        match (visible, establishment) {
            (None, None) => Ok(None),
            (None, Some(one)) => Ok(Some(BTreeSet::from([one.to_owned()]))),
            (Some(mine), None) => Ok(Some(mine)),
            (Some(mine), Some(one)) if mine.contains(one) => Ok(Some(BTreeSet::from([one.to_owned()]))),
            (Some(_), Some(_)) => Err(refuse(403, "outside_administered_establishments")),
        }
    }

    /// The users a listing returns, in ID order, with their statuses.
    pub fn listed(
        &self,
        org: &str,
        status: Option<Status>,
        establishments: Option<&BTreeSet<String>>,
        now: OffsetDateTime,
    ) -> Vec<(String, Status)> {
        self.orgs[org]
            .users
            .values()
            .filter(|user| establishments.is_none_or(|wanted| user.shares(wanted)))
            .map(|user| (user.id.clone(), user.status(now)))
            .filter(|(_, s)| status.is_none_or(|wanted| wanted == *s))
            .collect()
    }

    fn users(&self, caller: &Caller, org: &str, status: Option<Status>, establishment: Option<&str>, now: OffsetDateTime) -> Outcome {
        match self.listable(caller, org, establishment, now) {
            Err(refusal) => refusal.into(),
            Ok(establishments) => {
                let mut outcome = Outcome::ok(200, Stage::Read);
                outcome.listing = Some(self.listed(org, status, establishments.as_ref(), now));
                let seen: BTreeSet<String> = self.listed(org, None, establishments.as_ref(), now).into_iter().map(|(id, _)| id).collect();
                outcome.hidden = self.orgs[org].users.keys().filter(|id| !seen.contains(*id)).cloned().collect();
                outcome
            }
        }
    }

    fn audit(&self, caller: &Caller, org: &str, user: Option<&str>, start: Start, now: OffsetDateTime) -> Outcome {
        let organization = match self.org(org) {
            Ok(organization) => organization,
            Err(refusal) => return refusal.into(),
        };
        let standing = match self.standing(caller, org, now) {
            Ok(standing) => standing,
            Err(refusal) => return refusal.into(),
        };
        let allowed = match user {
            None => match &standing {
                Standing::Manager(_) | Standing::Admin(..) => Ok(()),
                Standing::Operator => Err(forbidden()),
                _ => Err(not_an_administrator()),
            },
            Some(id) => {
                self.target(&standing, OnUser::View, organization, id).and_then(|target| Model::may_act(&standing, OnUser::View, target))
            }
        };
        if let Err(refusal) = allowed {
            return refusal.into();
        }
        match start {
            Start::First => Outcome::ok(200, Stage::Read),
            Start::ForeignCursor => refuse(422, "invalid_cursor"),
        }
    }

    fn balance(&self, caller: &Caller, org: &str, now: OffsetDateTime) -> Outcome {
        let standing = match self.standing(caller, org, now) {
            Ok(standing) => standing,
            Err(refusal) => return refusal.into(),
        };
        if !matches!(standing, Standing::Manager(_) | Standing::Operator) {
            return refuse(403, "manager_only");
        }
        let organization = &self.orgs[org];
        Outcome::ok(200, Stage::Read)
            .field("/available_halalas", json!(organization.available))
            .field("/total_credited_halalas", json!(organization.credited))
            .field("/total_debited_halalas", json!(organization.debited))
            .field("/seats_sold", json!(organization.seats_sold))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CodeVerdict {
    Accepted,
    Wrong,
    Locked,
    Expired,
}

fn check_code(code: &Issued, right: bool, now: OffsetDateTime) -> CodeVerdict {
    if code.tries >= CODE_TRIES {
        CodeVerdict::Locked
    } else if now >= code.at + CODE_LIFETIME {
        CodeVerdict::Expired
    } else if right {
        CodeVerdict::Accepted
    } else {
        CodeVerdict::Wrong
    }
}

/// An instant as the API writes it: UTC, six fractional digits.
pub fn timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

// ---------------------------------------------------------------------------------------
// Time: the sweep and the outbox

/// What the scheduled sweep must leave behind when it has run at some time.
impl Model {
    /// A complete sweep run at `now`: every period that has ended is recorded once, and the
    /// most urgent reminder whose Saudi day has come is queued once per period (earlier ones
    /// that were missed are passed over).
    pub fn sweep(&mut self, now: OffsetDateTime) -> Vec<Audited> {
        let mut audit = Vec::new();
        let today = saudi_day(now);
        let orgs: Vec<String> = self.orgs.keys().cloned().collect();
        for org in orgs {
            let ids: Vec<String> = self.orgs[&org].users.keys().cloned().collect();
            for id in ids {
                let user = &self.orgs[&org].users[&id];
                if user.suspended {
                    continue;
                }
                let Some(last) = user.last_period() else { continue };
                if last.expired {
                    continue;
                }
                if now >= last.end {
                    let user = self.orgs.get_mut(&org).expect("exists").users.get_mut(&id).expect("exists");
                    user.periods.last_mut().expect("checked").expired = true;
                    audit.push((Some(org.clone()), "seat.expired", Some(id.clone())));
                    continue;
                }
                let end_day = saudi_day(last.end);
                let due = REMINDER_DAYS
                    .iter()
                    .rev()
                    .copied()
                    .find(|days| today >= end_day - Duration::days(*days) && !last.reminded.contains(days));
                let Some(days) = due else { continue };
                let (ends, channels) = (last.end, user.notifications);
                let user = self.orgs.get_mut(&org).expect("exists").users.get_mut(&id).expect("exists");
                let period = user.periods.last_mut().expect("checked");
                period.reminded.extend(REMINDER_DAYS.iter().copied().filter(|d| *d >= days));
                if channels.reminders_email {
                    self.notify(&org, &id, Slot::ReminderEmail, What::Reminder(days, ends), now);
                }
                if channels.reminders_sms {
                    self.notify(&org, &id, Slot::ReminderSms, What::Reminder(days, ends), now);
                }
                audit.push((Some(org.clone()), "seat.reminder_queued", Some(id.clone())));
            }
        }
        audit
    }

    /// Whether a queued message is still what the user should get: the latest of its kind,
    /// about something still current.
    pub fn current(&self, index: usize) -> bool {
        let message = &self.messages[index];
        let Some(user) = self.orgs.get(&message.org).and_then(|o| o.users.get(&message.user)) else { return false };
        if user.slots.get(&message.slot) != Some(&index) {
            return false;
        }
        match &message.what {
            What::Link(number) => !user.email_confirmed && user.link.as_ref().is_some_and(|l| l.number == *number),
            What::Code(number) => !user.mobile_confirmed && user.code.as_ref().is_some_and(|c| c.number == *number),
            What::EmailCode(number) => user.pending_email.as_ref().is_some_and(|p| p.code.number == *number),
            What::MobileCode(number) => user.pending_mobile.as_ref().is_some_and(|p| p.code.number == *number),
            What::EmailChanged(_) | What::MobileChanged(_) | What::Reminder(..) | What::Suspended => true,
        }
    }

    /// Where a message goes if it is sent now.
    pub fn address(&self, index: usize) -> String {
        let message = &self.messages[index];
        let user = &self.orgs[&message.org].users[&message.user];
        match &message.what {
            What::EmailChanged(old) | What::MobileChanged(old) => old.clone(),
            What::EmailCode(_) => user.pending_email.as_ref().map_or_else(|| user.email.clone(), |p| p.value.clone()),
            What::MobileCode(_) => user.pending_mobile.as_ref().map_or_else(|| user.mobile.clone(), |p| p.value.clone()),
            _ if message.slot.is_email() => user.email.clone(),
            _ => user.mobile.clone(),
        }
    }

    /// The language a message is written in: the user's, when it is sent.
    pub fn language(&self, index: usize) -> String {
        let message = &self.messages[index];
        self.orgs[&message.org].users[&message.user].language.clone()
    }

    /// Messages queued, in the order they were committed.
    pub fn queued(&self) -> Vec<usize> {
        (0..self.messages.len()).filter(|i| self.messages[*i].state == MessageState::Queued).collect()
    }

    /// The day count a reminder sent at `at` about a period ending at `end` carries: Saudi
    /// calendar days from the day it is sent to the period's last day.
    pub fn days_left(end: OffsetDateTime, at: OffsetDateTime) -> i64 {
        (saudi_day(end) - saudi_day(at)).whole_days()
    }
}

/// How a message says "N days" in a language, with that language's plural forms (CLDR:
/// English one/other; Arabic zero, one, two, few, many, other); a reminder sent on the
/// period's last day says "less than a day".
pub fn day_phrase(language: &str, days: i64) -> String {
    match language {
        "en" if days <= 0 => "less than a day".to_owned(),
        "en" if days == 1 => "1 day".to_owned(),
        "en" => format!("{days} days"),
        _ => match (days, days % 100) {
            (..=0, _) => "أقل من يوم".to_owned(),
            (1, _) => "يوم واحد".to_owned(),
            (2, _) => "يومان".to_owned(),
            (_, 3..=10) => format!("{days} أيام"),
            (_, 11..=99) => format!("{days} يومًا"),
            _ => format!("{days} يوم"),
        },
    }
}

/// Whether `phrase` stands in `text` as whole words (not the start of a longer word).
pub fn says(text: &str, phrase: &str) -> bool {
    text.match_indices(phrase).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + phrase.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}
