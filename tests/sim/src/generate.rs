//! Histories from a seed: organizations and persons (citizens and residents, employees or
//! not), then every public action by every kind of caller — keyed and unkeyed, duplicated,
//! concurrent, some meeting store faults — between clock moves from minutes to months,
//! sweeps cut short, and the outbox delivered under provider faults. Each step is drawn from
//! the model's state after the previous one, so it is mostly meaningful, sometimes not.

use std::collections::{BTreeMap, BTreeSet};

use rand::{RngExt, SeedableRng};
use rand_xorshift::XorShiftRng;
use time::{Duration, OffsetDateTime};

use crate::http::Known;
use crate::model::{MessageState, Model, SERVICES, Slot, USER_MANAGEMENT, What, saudi_day, start_of_day};
use crate::step::{
    Call, Caller, Channel, Line, Notifications, Plan, ProviderFault, Request, Secret, Size, Start, Status, Step, StoreFault,
};

/// What kinds of trouble a history may meet.
#[derive(Debug, Clone, Copy)]
pub struct Trouble {
    pub store_faults: bool,
    pub provider_faults: bool,
    pub concurrency: bool,
}

impl Default for Trouble {
    fn default() -> Self {
        Trouble { store_faults: true, provider_faults: false, concurrency: true }
    }
}

/// A step planned ahead, made when its turn comes (from the state then).
#[derive(Debug, Clone)]
enum Planned {
    Resend(String, String),
    Deliver,
    ConfirmLink(String, String),
    ConfirmCode(String, String),
}

pub struct Generator {
    rng: XorShiftRng,
    /// A new user's activation, as they would do it: a fresh link and code, both used at once.
    planned: std::collections::VecDeque<Planned>,
    seed: u64,
    trouble: Trouble,
    persons: Vec<String>,
    references: Vec<(String, String, u64)>,
    keys: u64,
    counter: u64,
}

/// A valid ID number: `1…` for citizens, `2…` for residents.
pub fn person_id(citizen: bool, n: u64) -> String {
    domain::identity::with_check_digit(&format!("{}{:08}", if citizen { 1 } else { 2 }, n % 100_000_000))
}

impl Generator {
    pub fn new(seed: u64, trouble: Trouble) -> Self {
        Generator {
            rng: XorShiftRng::seed_from_u64(seed),
            planned: Default::default(),
            seed,
            trouble,
            persons: vec![],
            references: vec![],
            keys: 0,
            counter: 0,
        }
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.random_range(0..100) < percent
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { self.rng.random_range(0..n) }
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len())].clone())
    }

    fn fresh(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn email(&mut self, n: u64) -> String {
        format!("p{n}.s{}@example.sa", self.seed)
    }

    fn mobile(&mut self, n: u64) -> String {
        let digits = (self.seed.wrapping_mul(7919).wrapping_add(n.wrapping_mul(104_729))) % 100_000_000;
        format!("+9665{digits:08}")
    }

    /// The first steps of every history: people, two or three organizations, money.
    pub fn opening(&mut self) -> Vec<Step> {
        let mut steps = Vec::new();
        let organizations = 2 + self.below(2);
        let mut establishments: Vec<Vec<String>> = Vec::new();
        for k in 0..organizations {
            establishments.push((0..1 + self.below(3)).map(|j| format!("{}-{}", k + 1, 100 + j)).collect());
        }
        let every: Vec<String> = establishments.iter().flatten().cloned().collect();
        for n in 0..8 + self.below(6) {
            let citizen = self.chance(60);
            let employers: BTreeSet<String> = (0..self.below(3)).filter_map(|_| self.pick(&every)).collect();
            let days = 400 + self.below(500) as i64;
            steps.push(Step::Request(self.register(citizen, n as u64 + 1, employers, days)));
        }
        for (k, ests) in establishments.iter().enumerate() {
            let org = format!("70{:08}", self.seed % 1_000_000 * 10 + k as u64);
            let manager = self.persons[k].clone();
            let plan = if self.chance(50) { Plan::Muqeem } else { Plan::Qiwa };
            let sizes = [Size::Micro, Size::Small, Size::Medium, Size::Large, Size::Giant];
            let establishments = ests.iter().map(|e| (e.clone(), sizes[self.below(sizes.len())])).collect();
            steps.push(Step::Request(Request {
                caller: Caller::Operator,
                call: Call::Onboard { org: org.clone(), plan, manager, establishments },
                key: None,
                fault: None,
            }));
            let reference = {
                let n = self.fresh();
                format!("SADAD-{}-{n}", self.seed)
            };
            let amount = [50_000, 100_000, 300_000, 1_000_000][self.below(4)];
            self.references.push((org.clone(), reference.clone(), amount));
            steps.push(Step::Request(Request {
                caller: Caller::Operator,
                call: Call::Credit { org, amount, reference },
                key: None,
                fault: None,
            }));
        }
        steps
    }

    fn register(&mut self, citizen: bool, n: u64, employers: BTreeSet<String>, iqama_days: i64) -> Request {
        let id = person_id(citizen, self.seed.wrapping_mul(1000).wrapping_add(n));
        self.persons.push(id.clone());
        let iqama_expiry = (!citizen).then(|| saudi_day(crate::world::START) + Duration::days(iqama_days));
        let (email, mobile) = (self.email(n), self.mobile(n));
        Request {
            caller: Caller::Operator,
            call: Call::Register { person: id, name: format!("Person {n}"), iqama_expiry, employers, email, mobile },
            key: None,
            fault: None,
        }
    }

    /// The next step, drawn from the model's state at `now`.
    pub fn next(&mut self, model: &Model, known: &Known, now: OffsetDateTime) -> Step {
        if let Some(planned) = self.planned.pop_front() {
            return self.planned_step(planned, model, known);
        }
        if self.chance(8) {
            let org = self.org(model);
            let pending: Vec<String> = model
                .orgs
                .get(&org)
                .map(|o| o.users.values().filter(|u| u.status(now) == Status::PendingActivation).map(|u| u.id.clone()).collect())
                .unwrap_or_default();
            if let Some(user) = self.pick(&pending) {
                self.planned.extend([
                    Planned::Resend(org.clone(), user.clone()),
                    Planned::Deliver,
                    Planned::ConfirmLink(org.clone(), user.clone()),
                    Planned::ConfirmCode(org, user),
                ]);
                return self.next(model, known, now);
            }
        }
        let roll = self.below(100);
        match roll {
            0..=59 => {
                let mut request = self.request(model, known, now);
                if self.trouble.store_faults && self.chance(12) {
                    let faults = [
                        StoreFault::ReadThrottled,
                        StoreFault::WriteThrottled,
                        StoreFault::Conflict,
                        StoreFault::Conflicts,
                        StoreFault::LostResponse,
                        StoreFault::NotApplied,
                        StoreFault::InFlight,
                    ];
                    request.fault = self.pick(&faults);
                }
                Step::Request(request)
            }
            60..=66 if self.trouble.concurrency => self.together(model, known, now),
            60..=79 => self.advance(model, now),
            80..=81 => Step::Sweep { cut_after: Some(1 + self.below(12) as u32) },
            82..=96 => {
                let mut faults = BTreeMap::new();
                if self.trouble.provider_faults && self.chance(60) {
                    for _ in 0..1 + self.below(3) {
                        let fault = [ProviderFault::Throttled, ProviderFault::Refused, ProviderFault::LostAfterSend][self.below(3)];
                        faults.insert(self.below(6), fault);
                    }
                }
                // Deliveries lost before the handler: a few retried at once, or enough for a
                // record to go to the failure destination.
                let dropped = if self.trouble.provider_faults && self.chance(20) { 1 + self.below(6) } else { 0 };
                Step::Deliver { faults, dropped }
            }
            _ => Step::Observe { page: 1 + self.below(4) },
        }
    }

    fn planned_step(&mut self, planned: Planned, model: &Model, known: &Known) -> Step {
        let plain = |caller: Caller, call: Call| Step::Request(Request { caller, call, key: None, fault: None });
        match planned {
            Planned::Resend(org, user) => {
                let manager = model.orgs.get(&org).map_or(user.clone(), |o| o.manager.clone());
                plain(Caller::Person(manager), Call::Resend { org, user, email: None, sms: None })
            }
            Planned::Deliver => Step::Deliver { faults: BTreeMap::new(), dropped: 0 },
            Planned::ConfirmLink(org, user) => {
                let issued = Generator::sent_secrets(model, &org, &user, |w| if let What::Link(n) = w { Some(*n) } else { None });
                let link = issued.last().filter(|n| known.secrets.contains_key(n)).map_or(Secret::Wrong, |n| Secret::Issued(*n));
                plain(Caller::Anonymous, Call::ConfirmLink { link })
            }
            Planned::ConfirmCode(org, user) => {
                let issued = Generator::sent_secrets(model, &org, &user, |w| if let What::Code(n) = w { Some(*n) } else { None });
                let code = issued.last().filter(|n| known.secrets.contains_key(n)).map_or(Secret::Wrong, |n| Secret::Issued(*n));
                plain(Caller::Person(user), Call::ConfirmCode { org, code })
            }
        }
    }

    /// Two or three requests at once, often about the same thing.
    fn together(&mut self, model: &Model, known: &Known, now: OffsetDateTime) -> Step {
        let first = self.request(model, known, now);
        let mut requests = vec![first.clone()];
        let kind = self.below(4);
        for _ in 0..1 + self.below(2) {
            let next = match kind {
                // The same request twice (a client retrying while the first is in flight).
                0 => first.clone(),
                // A registry update racing a subscription of the same person.
                1 => match &first.call {
                    Call::Subscribe { persons, .. } if !persons.is_empty() => {
                        self.registry_update(model, &persons[0].id).unwrap_or_else(|| self.request(model, known, now))
                    }
                    _ => self.request(model, known, now),
                },
                _ => self.request(model, known, now),
            };
            requests.push(next);
        }
        // A listing follows its cursors after the others are done: it is observed alone.
        for request in &mut requests {
            if let Call::Users { org, .. } = &request.call {
                request.call = Call::Balance { org: org.clone() };
            }
        }
        Step::Together { requests, schedule: self.rng.random() }
    }

    fn advance(&mut self, model: &Model, now: OffsetDateTime) -> Step {
        let seed = self.rng.random();
        let seconds = match self.below(10) {
            0..=1 => 60 * (1 + self.below(59)) as i64,
            2..=3 => 3600 * (1 + self.below(23)) as i64,
            4..=5 => 86_400 * (1 + self.below(10)) as i64,
            6 => 86_400 * (20 + self.below(80)) as i64,
            // To the next Riyadh midnight, give or take a minute.
            7 => {
                let midnight = start_of_day(saudi_day(now) + Duration::days(1));
                (midnight - now).whole_seconds() + self.rng.random_range(-60..60)
            }
            // Near the end of someone's paid period, or one of its reminder days.
            _ => {
                let ends: Vec<OffsetDateTime> = model
                    .orgs
                    .values()
                    .flat_map(|o| o.users.values())
                    .filter_map(|u| u.last_period().map(|p| p.end))
                    .filter(|end| *end + Duration::days(40) > now)
                    .collect();
                match self.pick(&ends) {
                    Some(end) => {
                        let offsets = [
                            -Duration::days(30),
                            -Duration::days(7),
                            -Duration::days(1),
                            -Duration::hours(2),
                            Duration::minutes(1),
                            Duration::hours(1),
                            Duration::days(1),
                            Duration::days(29),
                            Duration::days(31),
                        ];
                        let target = end + offsets[self.below(offsets.len())];
                        (target - now).whole_seconds()
                    }
                    None => 86_400 * (100 + self.below(200)) as i64,
                }
            }
        };
        Step::Advance { seconds: seconds.max(1), seed }
    }

    fn key(&mut self) -> String {
        self.keys += 1;
        format!("k{}-{}", self.seed, self.keys)
    }

    /// A key for a paid request: mostly new, sometimes one the caller used before.
    fn some_key(&mut self, model: &Model, caller: &Caller) -> Option<String> {
        if self.chance(3) {
            return None;
        }
        let owner = match caller {
            Caller::Person(id) => id.clone(),
            _ => return Some(self.key()),
        };
        let used: Vec<String> = model.keys.keys().filter(|(_, o, _)| *o == owner).map(|(_, _, k)| k.clone()).collect();
        if !used.is_empty() && self.chance(15) { self.pick(&used) } else { Some(self.key()) }
    }

    fn registry_update(&mut self, model: &Model, id: &str) -> Option<Request> {
        let person = model.persons.get(id)?;
        let expiry = person.iqama_expiry.map(|e| e + Duration::days(self.rng.random_range(-400..400)));
        Some(Request {
            caller: Caller::Operator,
            call: Call::Register {
                person: id.to_owned(),
                name: "Updated".into(),
                iqama_expiry: expiry,
                employers: person.employers.clone(),
                email: person.email.clone(),
                mobile: person.mobile.clone(),
            },
            key: None,
            fault: None,
        })
    }

    /// A caller for an action in `org`: its manager, a delegated admin, a member, an
    /// employee without a record, an outsider, or an operator.
    fn caller(&mut self, model: &Model, org: &str, now: OffsetDateTime) -> Caller {
        let Some(organization) = model.orgs.get(org) else { return Caller::Operator };
        let admins: Vec<String> = organization
            .users
            .values()
            .filter(|u| !u.manager && !u.administered().is_empty() && u.status(now) == Status::Active)
            .map(|u| u.id.clone())
            .collect();
        let members: Vec<String> = organization.users.values().filter(|u| !u.manager).map(|u| u.id.clone()).collect();
        let outsiders: Vec<String> = self.persons.iter().filter(|p| !organization.users.contains_key(*p)).cloned().collect();
        match self.below(100) {
            0..=54 => Caller::Person(organization.manager.clone()),
            55..=74 if !admins.is_empty() => Caller::Person(self.pick(&admins).expect("some")),
            55..=84 if !members.is_empty() => Caller::Person(self.pick(&members).expect("some")),
            85..=94 if !outsiders.is_empty() => Caller::Person(self.pick(&outsiders).expect("some")),
            95..=97 => Caller::Operator,
            _ => Caller::Person(organization.manager.clone()),
        }
    }

    fn org(&mut self, model: &Model) -> String {
        let orgs: Vec<String> = model.orgs.keys().cloned().collect();
        self.pick(&orgs).unwrap_or_else(|| "7000000000".into())
    }

    /// A user of `org` to act on (sometimes a person who is not one).
    fn target(&mut self, model: &Model, org: &str) -> String {
        let users: Vec<String> = model.orgs.get(org).map(|o| o.users.keys().cloned().collect()).unwrap_or_default();
        if users.is_empty() || self.chance(5) {
            return self.pick(&self.persons.clone()).unwrap_or_else(|| person_id(true, 1));
        }
        self.pick(&users).expect("some")
    }

    /// A user waiting to activate (so that activations happen), or else anyone.
    fn pending_user(&mut self, model: &Model, org: &str, now: OffsetDateTime) -> String {
        let pending: Vec<String> = model
            .orgs
            .get(org)
            .map(|o| o.users.values().filter(|u| u.status(now) == Status::PendingActivation).map(|u| u.id.clone()).collect())
            .unwrap_or_default();
        match self.pick(&pending) {
            Some(user) if self.chance(80) => user,
            _ => self.target(model, org),
        }
    }

    /// Secrets of a kind that were sent, newest last.
    fn sent_secrets(model: &Model, org: &str, user: &str, kind: fn(&What) -> Option<u64>) -> Vec<u64> {
        model
            .messages
            .iter()
            .filter(|m| m.org == org && m.user == user && m.state == MessageState::Sent)
            .filter_map(|m| kind(&m.what))
            .collect()
    }

    fn secret(&mut self, issued: &[u64], known: &Known) -> Secret {
        let known_ones: Vec<u64> = issued.iter().copied().filter(|n| known.secrets.contains_key(n)).collect();
        match known_ones.last() {
            Some(last) if self.chance(80) => Secret::Issued(*last),
            Some(_) if self.chance(50) => Secret::Issued(self.pick(&known_ones).expect("some")),
            _ => Secret::Wrong,
        }
    }

    fn lines(&mut self, model: &Model, org: &str, caller: &Caller) -> Vec<Line> {
        let Some(organization) = model.orgs.get(org) else { return vec![] };
        let establishments: Vec<String> = organization.establishments.keys().cloned().collect();
        let count = match self.below(20) {
            0 => 0,
            1 => 24 + self.below(2),
            2..=5 => 2 + self.below(3),
            _ => 1,
        };
        let own = matches!(caller, Caller::Person(_)) && self.chance(15);
        // Distinct persons, but now and then one listed twice.
        let mut pool = self.persons.clone();
        let twice = self.chance(5);
        (0..count)
            .map(|n| {
                let id = match caller {
                    Caller::Person(me) if own && n == 0 => me.clone(),
                    _ if pool.is_empty() || (twice && n == 1) => self.pick(&self.persons.clone()).unwrap_or_else(|| person_id(true, 1)),
                    _ => pool.swap_remove(self.below(pool.len())),
                };
                let employers = model.persons.get(&id).map(|p| p.employers.clone()).unwrap_or_default();
                let mine: Vec<String> = establishments.iter().filter(|e| employers.contains(*e)).cloned().collect();
                let chosen: BTreeSet<String> = if !mine.is_empty() && self.chance(60) {
                    mine.into_iter().take(1 + self.below(2)).collect()
                } else {
                    (0..1 + self.below(2)).filter_map(|_| self.pick(&establishments)).collect()
                };
                let user_type = match (organization.plan, self.chance(95)) {
                    (Plan::Muqeem, true) | (Plan::Qiwa, false) => {
                        Some(if self.chance(70) { "residents_and_partners" } else { "partners_only" }.to_owned())
                    }
                    _ => None,
                };
                let language = if self.chance(40) { Some(if self.chance(50) { "en" } else { "ar" }.to_owned()) } else { None };
                Line { id, establishments: chosen, user_type, language }
            })
            .collect()
    }

    /// Notices that failed or were undeliverable, by organization and user: rare (only
    /// provider faults make them), so asked for apart from the usual mix.
    fn failed_notices(model: &Model) -> Vec<(String, String, Slot)> {
        model
            .orgs
            .values()
            .flat_map(|o| o.users.values().map(move |u| (o, u)))
            .flat_map(|(o, u)| {
                u.slots
                    .iter()
                    .filter(|(slot, index)| {
                        !matches!(slot, Slot::ActivationEmail | Slot::ActivationSms | Slot::VerificationEmail | Slot::VerificationSms)
                            && matches!(model.messages[**index].state, MessageState::Failed | MessageState::Undeliverable)
                    })
                    .map(|(slot, _)| (o.id.clone(), u.id.clone(), *slot))
            })
            .collect()
    }

    fn request(&mut self, model: &Model, known: &Known, now: OffsetDateTime) -> Request {
        // A failed notice is sent again now and then (the draw is made only when there is
        // one, so histories without provider faults are as before).
        let failed = Generator::failed_notices(model);
        if !failed.is_empty() && self.chance(15) {
            let (org, user, slot) = failed[self.below(failed.len())].clone();
            let manager = model.orgs.get(&org).map(|o| o.manager.clone()).unwrap_or_default();
            return Request {
                caller: Caller::Person(manager),
                call: Call::ResendMessage { org, user, slot: slot.wire().to_owned() },
                key: None,
                fault: None,
            };
        }
        let org = self.org(model);
        let caller = self.caller(model, &org, now);
        let plain = |caller: Caller, call: Call| Request { caller, call, key: None, fault: None };
        match self.below(100) {
            0..=3 => {
                let n = 100 + self.fresh();
                let citizen = self.chance(60);
                let organization = model.orgs.get(&org);
                let employers =
                    organization.map(|o| o.establishments.keys().take(1 + self.below(2)).cloned().collect()).unwrap_or_default();
                let days = self.rng.random_range(-30..700);
                self.register(citizen, n, employers, days)
            }
            4..=6 => {
                let residents: Vec<String> = model.persons.values().filter(|p| !p.citizen()).map(|p| p.id.clone()).collect();
                match self.pick(&residents).and_then(|id| self.registry_update(model, &id)) {
                    Some(request) => request,
                    None => self.request(model, known, now),
                }
            }
            7..=10 => {
                let (org, reference, amount) = match self.pick(&self.references.clone()) {
                    Some((o, r, a)) if self.chance(25) => (o, r, if self.chance(70) { a } else { a + 100 }),
                    _ => {
                        let reference = {
                            let n = self.fresh();
                            format!("SADAD-{}-{n}", self.seed)
                        };
                        let amount = [15_000, 30_000, 100_000, 500_000][self.below(4)];
                        self.references.push((org.clone(), reference.clone(), amount));
                        (org, reference, amount)
                    }
                };
                let caller = if self.chance(90) { Caller::Operator } else { self.caller(model, &org, now) };
                plain(caller, Call::Credit { org, amount, reference })
            }
            11..=14 => {
                let persons = self.lines(model, &org, &caller);
                plain(caller, Call::Quote { org, persons })
            }
            15..=28 => {
                let persons = self.lines(model, &org, &caller);
                let key = self.some_key(model, &caller);
                Request { caller, call: Call::Subscribe { org, persons }, key, fault: None }
            }
            29..=35 => {
                let user = self.target(model, &org);
                let key = self.some_key(model, &caller);
                Request { caller, call: Call::Renew { org, user }, key, fault: None }
            }
            36..=40 => {
                let user = self.pending_user(model, &org, now);
                let issued = Generator::sent_secrets(model, &org, &user, |w| if let What::Link(n) = w { Some(*n) } else { None });
                let link = self.secret(&issued, known);
                plain(Caller::Anonymous, Call::ConfirmLink { link })
            }
            41..=46 => {
                let user = self.pending_user(model, &org, now);
                let issued = Generator::sent_secrets(model, &org, &user, |w| if let What::Code(n) = w { Some(*n) } else { None });
                let code = self.secret(&issued, known);
                let caller = if self.chance(95) { Caller::Person(user) } else { caller };
                plain(caller, Call::ConfirmCode { org, code })
            }
            49 => {
                // Mostly a message there is a reason to send again: a pending change's code,
                // a notice that failed or was undeliverable; else any message of any user.
                let wanted: Vec<(String, Slot)> = model
                    .orgs
                    .get(&org)
                    .map(|o| {
                        o.users
                            .values()
                            .flat_map(|u| {
                                u.slots
                                    .iter()
                                    .filter(|(slot, index)| match slot {
                                        Slot::VerificationEmail => u.pending_email.is_some(),
                                        Slot::VerificationSms => u.pending_mobile.is_some(),
                                        _ => matches!(model.messages[**index].state, MessageState::Failed | MessageState::Undeliverable),
                                    })
                                    .map(|(slot, _)| (u.id.clone(), *slot))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let (user, slot) = match self.pick(&wanted) {
                    Some(chosen) if self.chance(75) => chosen,
                    _ => {
                        let user = self.target(model, &org);
                        let sent: Vec<Slot> = model
                            .orgs
                            .get(&org)
                            .and_then(|o| o.users.get(&user))
                            .map(|u| u.slots.keys().copied().collect())
                            .unwrap_or_default();
                        let slot = match self.pick(&sent) {
                            Some(slot) if self.chance(80) => slot,
                            _ => Slot::ALL[self.below(Slot::ALL.len())],
                        };
                        (user, slot)
                    }
                };
                let manager = model.orgs.get(&org).map(|o| Caller::Person(o.manager.clone()));
                let caller = match self.below(10) {
                    0..=1 => Caller::Person(user.clone()),
                    2..=6 => manager.unwrap_or(caller),
                    _ => caller,
                };
                plain(caller, Call::ResendMessage { org, user, slot: slot.wire().to_owned() })
            }
            47..=48 => {
                let user = self.target(model, &org);
                let (email, sms) = match self.below(4) {
                    0 => (Some(true), None),
                    1 => (None, Some(true)),
                    _ => (None, None),
                };
                let caller = if self.chance(20) { Caller::Person(user.clone()) } else { caller };
                plain(caller, Call::Resend { org, user, email, sms })
            }
            50..=57 => {
                let user = self.target(model, &org);
                let (version, grants) = self.grants(model, &org, &user);
                plain(caller, Call::SetGrants { org, user, version, grants })
            }
            58 => {
                let version = model.orgs.get(&org).map_or(1, |o| if self.chance(90) { o.version } else { o.version + 1 });
                let self_subscription = self.chance(50);
                plain(caller, Call::Settings { org, version, self_subscription })
            }
            59..=63 => {
                let user = self.target(model, &org);
                let current = model.orgs.get(&org).and_then(|o| o.users.get(&user));
                let version = current.map_or(1, |u| if self.chance(92) { u.profile_version } else { u.profile_version.saturating_sub(1) });
                let n = 1000 + self.fresh();
                let others: Vec<String> = model.persons.values().map(|p| p.email.clone()).collect();
                let email = match self.below(4) {
                    0 => Some(self.email(n)),
                    1 => self.pick(&others),
                    _ => None,
                };
                let mobile = if self.chance(35) { Some(self.mobile(n)) } else { None };
                let language = if self.chance(30) { Some(if self.chance(50) { "en" } else { "ar" }.to_owned()) } else { None };
                let notifications = self.chance(20).then(|| Notifications {
                    reminders_email: self.chance(80),
                    reminders_sms: self.chance(60),
                    notices_email: self.chance(80),
                    notices_sms: self.chance(40),
                });
                plain(caller, Call::Modify { org, user, version, email, mobile, language, notifications })
            }
            64..=67 => {
                let user = self.target(model, &org);
                let channel = if self.chance(50) { Channel::Email } else { Channel::Mobile };
                let issued = match channel {
                    Channel::Email => {
                        Generator::sent_secrets(model, &org, &user, |w| if let What::EmailCode(n) = w { Some(*n) } else { None })
                    }
                    Channel::Mobile => {
                        Generator::sent_secrets(model, &org, &user, |w| if let What::MobileCode(n) = w { Some(*n) } else { None })
                    }
                };
                let code = self.secret(&issued, known);
                let caller = if self.chance(90) { Caller::Person(user.clone()) } else { caller };
                plain(caller, Call::ConfirmContact { org, user, channel, code })
            }
            68 => {
                let user = self.target(model, &org);
                let channel = if self.chance(50) { Channel::Email } else { Channel::Mobile };
                plain(caller, Call::CancelContact { org, user, channel })
            }
            69..=71 => {
                let user = self.target(model, &org);
                plain(caller, Call::Suspend { org, user })
            }
            72..=81 => {
                let user = self.target(model, &org);
                let establishments: Vec<String> =
                    model.orgs.get(&org).map(|o| o.establishments.keys().cloned().collect()).unwrap_or_default();
                let establishment = self.pick(&establishments).unwrap_or_else(|| "1-100".into());
                let service = if self.chance(3) { "no.such_service".to_owned() } else { SERVICES[self.below(SERVICES.len())].0.to_owned() };
                let caller = match self.below(10) {
                    0 => caller,
                    1 => Caller::Operator,
                    _ => Caller::Service,
                };
                plain(caller, Call::Check { org, user, establishment, service })
            }
            82..=85 => {
                let user = self.target(model, &org);
                plain(caller, Call::Profile { org, user })
            }
            86..=90 => {
                let status = if self.chance(50) { Some(Status::ALL[self.below(4)]) } else { None };
                let establishments: Vec<String> =
                    model.orgs.get(&org).map(|o| o.establishments.keys().cloned().collect()).unwrap_or_default();
                let establishment = if self.chance(25) { self.pick(&establishments) } else { None };
                plain(caller, Call::Users { org, status, establishment, limit: 1 + self.below(5) })
            }
            91..=94 => {
                let user = if self.chance(30) { Some(self.target(model, &org)) } else { None };
                let start = if self.chance(40) { Start::ForeignCursor } else { Start::First };
                plain(caller, Call::Audit { org, user, start })
            }
            _ => plain(caller, Call::Balance { org }),
        }
    }

    /// A grant matrix for `user`: its current grants changed a little, sometimes with
    /// `user_management` (which makes delegated admins), sometimes a Saudi-only service.
    fn grants(&mut self, model: &Model, org: &str, user: &str) -> (u64, BTreeMap<String, BTreeSet<String>>) {
        let Some(organization) = model.orgs.get(org) else { return (1, BTreeMap::new()) };
        let Some(target) = organization.users.get(user) else { return (1, BTreeMap::new()) };
        let mut grants = target.grants.clone();
        let services: Vec<&str> = SERVICES
            .iter()
            .filter(|(_, platform, _)| platform.is_none_or(|p| p == organization.plan) || self.chance(5))
            .map(|(code, _, _)| *code)
            .collect();
        let establishments: Vec<String> = if self.chance(90) {
            target.establishments.iter().cloned().collect()
        } else {
            organization.establishments.keys().cloned().collect()
        };
        for _ in 0..1 + self.below(3) {
            let Some(establishment) = self.pick(&establishments) else { break };
            let service = if self.chance(40) { USER_MANAGEMENT } else { services[self.below(services.len())] };
            let cell = grants.entry(establishment).or_default();
            if !cell.remove(service) {
                cell.insert(service.to_owned());
            }
        }
        let version = if self.chance(92) { target.grants_version } else { target.grants_version + 1 };
        (version, grants)
    }
}
