//! Runs a history on one or both stores, step by step, and holds the product to the model
//! after every step: each answer, the money, every user's state and messages, the audit
//! trail, access, listings, the logs — and, with both stores, that they agree.

use std::collections::{BTreeMap, BTreeSet};

use domain::store::Record;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::http::{Known, http};
use crate::model::{Audited, KeyRef, MessageState, Model, Outcome, Stage, What, saudi_day, start_of_day, timestamp};
use crate::step::{Call, Caller, ProviderFault, Request, Status, Step, StoreFault};
use crate::world::{Answer, Backend, Kind, Sent};

/// Which stores a history runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stores {
    Embedded,
    /// The embedded store and DynamoDB in the emulator, in lockstep.
    Both,
}

/// What a history did, for the figures.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub steps: usize,
    pub requests: usize,
    pub simulated_days: i64,
    pub store_faults: usize,
    pub provider_faults: usize,
    pub checks: usize,
    pub sweeps: usize,
    pub messages_sent: usize,
    /// Messages sent more than once because a fault left a send's outcome unknown.
    pub duplicates: usize,
    /// Sends whose answer the provider lost (the message went out; the sender was not told).
    pub answers_lost: usize,
    /// Stream records that went to the failure destination and were delivered from it.
    pub failed_batches: usize,
    /// Scheduled redrives run (each must find nothing left queued past its wait).
    pub redrives: usize,
}

/// What the model says after a step: for requests, the model as one order of them left it
/// (the runner keeps the first the stores agree with); for the rest, the model as it is.
pub enum Explained {
    Model(Model, Vec<Audited>),
    Current(Vec<Audited>),
}

type Candidate = Explained;

/// A step's requests and what they were answered (cursors are learned from them).
type Answered = (Vec<Answer>, Vec<Request>);

/// A broken promise.
#[derive(Debug, Clone)]
pub struct Violation {
    pub step: usize,
    pub store: &'static str,
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step {} ({}): {}", self.step, self.store, self.what)
    }
}

pub struct Runner {
    pub model: Model,
    pub backends: Vec<Backend>,
    pub known: Known,
    pub figures: Figures,
    /// Messages each backend's provider had taken at the last look.
    sent_seen: Vec<usize>,
    /// Audit entries each backend held at the last look.
    audit_seen: Vec<BTreeSet<String>>,
    /// What each message sent so far said, by the model's message index.
    step: usize,
    run: u64,
    /// Carry on past a message whose words differ from the model's (recorded here), to see
    /// what else a history finds.
    pub past_wording: bool,
    pub wording: Vec<Violation>,
}

fn request_id(step: usize, n: usize) -> String {
    format!("sim-{step}-{n}")
}

impl Runner {
    pub fn new(seed: u64, stores: Stores) -> Runner {
        crate::logs::capture();
        let tag = format!("sim{seed}x{}", domain::entropy::SystemEntropy::hex(3));
        let mut backends = vec![Backend::new(Kind::Embedded, seed, &tag)];
        if stores == Stores::Both {
            backends.push(Backend::new(Kind::Dynamo, seed, &tag));
        }
        let audit_seen = backends.iter().map(|_| BTreeSet::new()).collect();
        let sent_seen = backends.iter().map(|_| 0).collect();
        Runner {
            model: Model::default(),
            backends,
            known: Known::default(),
            figures: Figures::default(),
            sent_seen,
            audit_seen,
            step: 0,
            run: 0,
            past_wording: false,
            wording: vec![],
        }
    }

    pub fn now(&self) -> OffsetDateTime {
        self.backends[0].now()
    }

    fn set_clock(&self, to: OffsetDateTime) {
        for backend in &self.backends {
            backend.clock.set(to);
        }
    }

    /// Runs one step and checks everything after it.
    pub fn step(&mut self, step: &Step) -> Result<(), Violation> {
        self.step += 1;
        self.figures.steps += 1;
        let (candidates, answered) = match step {
            Step::Request(request) => self.requests(std::slice::from_ref(request), 0)?,
            Step::Together { requests, schedule } => self.requests(requests, *schedule)?,
            Step::Advance { seconds, seed } => (vec![Explained::Current(self.advance(*seconds, *seed)?)], None),
            Step::Sweep { cut_after } => (vec![Explained::Current(self.sweep(*cut_after)?)], None),
            Step::Deliver { faults, dropped } => (vec![Explained::Current(self.deliver(faults, *dropped)?)], None),
            Step::Observe { page } => {
                self.observe(*page)?;
                (vec![Explained::Current(vec![])], None)
            }
        };
        self.settle(candidates, answered)
    }

    /// Keeps the first of the step's explanations (the model after each order of concurrent
    /// requests that fits their answers, with the audit entries it calls for) that what the
    /// stores hold agrees with: answers alone cannot tell which of two writers came last.
    fn settle(&mut self, candidates: Vec<Candidate>, answered: Option<Answered>) -> Result<(), Violation> {
        let snapshots: Vec<Vec<Record>> = self.backends.iter().map(Backend::records).collect();
        let mut first_error = None;
        for candidate in candidates {
            let (model, audit) = match candidate {
                Explained::Model(model, audit) => (Some(model), audit),
                Explained::Current(audit) => (None, audit),
            };
            let previous = model.map(|model| std::mem::replace(&mut self.model, model));
            match self.verify(&snapshots, &audit) {
                Ok(checks) => {
                    self.figures.checks += checks;
                    for (b, records) in snapshots.iter().enumerate() {
                        for record in records {
                            if let Record::Audit(entry) = record {
                                self.audit_seen[b].insert(entry.id.clone());
                            }
                        }
                    }
                    if let Some((answers, requests)) = &answered {
                        self.learn(answers, requests);
                    }
                    self.learn_secrets()?;
                    return self.check_logs();
                }
                Err(violation) => {
                    first_error.get_or_insert(violation);
                    if let Some(previous) = previous {
                        self.model = previous;
                    }
                }
            }
        }
        Err(first_error.expect("a step has an explanation"))
    }

    fn fail(&self, backend: usize, what: impl Into<String>) -> Violation {
        Violation { step: self.step, store: self.backends.get(backend).map_or("both", |b| b.kind.name()), what: what.into() }
    }

    // -----------------------------------------------------------------------------------
    // Requests

    /// The model's expectation of a request that meets `fault`: a throttled read or write,
    /// or conflicts past the budget, leave nothing changed and answer 503; every other
    /// fault must not change the answer.
    fn expect(model: &mut Model, request: &Request, body: &Value, now: OffsetDateTime) -> Outcome {
        let before = request.fault.is_some().then(|| model.clone());
        let outcome = model.request(request, body, now);
        let unavailable = match request.fault {
            Some(StoreFault::ReadThrottled) => outcome.stage >= Stage::Read,
            Some(StoreFault::WriteThrottled | StoreFault::Conflicts) => outcome.stage == Stage::Commit,
            _ => false,
        };
        if unavailable {
            *model = before.expect("kept for a request with a fault");
            let mut refused = outcome;
            refused.status = 503;
            refused.code = None;
            refused.fields.clear();
            refused.audit.clear();
            refused.replay = None;
            refused.first_of = None;
            refused.listing = None;
            return refused;
        }
        outcome
    }

    /// Whether an answer is the one expected; why not, if not.
    fn matches(outcome: &Outcome, answer: &Answer) -> Result<(), String> {
        let body = answer.json();
        if answer.status != outcome.status {
            return Err(format!(
                "expected {} {}, got {} {}",
                outcome.status,
                outcome.code.unwrap_or(""),
                answer.status,
                String::from_utf8_lossy(&answer.body).chars().take(300).collect::<String>()
            ));
        }
        if let Some(code) = outcome.code
            && body["error"]["code"].as_str() != Some(code)
        {
            return Err(format!("expected the code {code}, got {}", String::from_utf8_lossy(&answer.body)));
        }
        if outcome.status >= 500 && !matches!(body["error"]["code"].as_str(), Some("unavailable" | "busy")) {
            return Err(format!("a 5xx other than an injected fault's 503: {}", String::from_utf8_lossy(&answer.body)));
        }
        for (pointer, wanted) in &outcome.fields {
            let got = body.pointer(pointer).cloned().unwrap_or(Value::Null);
            if &got != wanted {
                return Err(format!("{pointer}: expected {wanted}, got {got}"));
            }
        }
        if let Some(Some((status, first))) = &outcome.replay
            && (answer.body != *first || answer.status != *status)
        {
            return Err(format!(
                "a replay differs from the first answer: {} vs {}",
                String::from_utf8_lossy(&answer.body),
                String::from_utf8_lossy(first)
            ));
        }
        if outcome.replay.is_some() && answer.header("idempotent-replayed") != Some("true") {
            return Err("a replay does not say it is one".into());
        }
        Ok(())
    }

    /// Runs requests together and finds the orders the model explains them in.
    fn requests(&mut self, requests: &[Request], schedule: u64) -> Result<(Vec<Explained>, Option<Answered>), Violation> {
        let now = self.now();
        let https: Vec<_> = requests.iter().map(|r| http(r, &self.known)).collect();
        let ids: Vec<String> = (0..requests.len()).map(|n| request_id(self.step, n)).collect();
        let calls: Vec<_> =
            ids.iter().cloned().zip(https.iter().cloned()).zip(requests.iter().map(|r| r.fault)).map(|((i, h), f)| (i, h, f)).collect();
        self.figures.requests += requests.len();
        let mut answers: Vec<Vec<Answer>> = Vec::new();
        for backend in &self.backends {
            let before = backend.store.faults_injected.load(std::sync::atomic::Ordering::SeqCst);
            let mut got = backend.together(&calls, schedule);
            self.figures.store_faults += backend.store.faults_injected.load(std::sync::atomic::Ordering::SeqCst) - before;
            for (n, request) in requests.iter().enumerate() {
                if let Call::Users { .. } = request.call
                    && got[n].status == 200
                {
                    got[n] = self.follow_listing(backend, &calls[n].1, &ids[n], got[n].clone());
                }
            }
            answers.push(got);
        }
        // The stores answer alike.
        if answers.len() == 2 {
            for (n, (a, b)) in answers[0].iter().zip(&answers[1]).enumerate() {
                if normalized(a) != normalized(b) {
                    return Err(self.fail(
                        9,
                        format!(
                            "the stores answer request {n} differently: embedded {} {} / dynamodb {} {}",
                            a.status,
                            String::from_utf8_lossy(&a.body),
                            b.status,
                            String::from_utf8_lossy(&b.body)
                        ),
                    ));
                }
            }
        }
        let answers = &answers[0];
        if std::env::var_os("SIM_TRACE").is_some() {
            for (request, answer) in requests.iter().zip(answers) {
                eprintln!(
                    "[{}] {} -> {} {}",
                    self.step,
                    describe(request),
                    answer.status,
                    String::from_utf8_lossy(&answer.body).chars().take(400).collect::<String>()
                );
            }
        }
        let bodies: Vec<Value> = https.iter().map(|h| h.body.clone().unwrap_or(Value::Null)).collect();
        // Every order of the requests that the answers agree with (the stores say which).
        let mut reasons = Vec::new();
        let mut explained = Vec::new();
        for order in orders(requests.len()) {
            let mut model = self.model.clone();
            let mut audit = Vec::new();
            // Keys and references first answered in this step, by the request that did.
            let mut firsts: Vec<(KeyRef, usize)> = Vec::new();
            let mut fits = true;
            for &n in &order {
                let request = &requests[n];
                let mut outcome = Runner::expect(&mut model, request, &bodies[n], now);
                let first_here = outcome.first_of.as_ref().and_then(|key| firsts.iter().find(|(k, _)| k == key)).map(|(_, m)| *m);
                if let (Some(None), Some(m)) = (&outcome.replay, first_here) {
                    outcome.replay = Some(Some((answers[m].status, answers[m].body.clone())));
                }
                let result = Runner::matches(&outcome, &answers[n]).and_then(|()| self.listing_matches(&outcome, &answers[n]));
                match result {
                    Ok(()) => {
                        audit.extend(outcome.audit.clone());
                        if let Some(first) = outcome.first_of.clone().filter(|_| outcome.replay.is_none()) {
                            firsts.push((first, n));
                        }
                    }
                    // A duplicate sent while its first was being processed may be told so (a
                    // replay changes nothing in the model).
                    Err(_)
                        if outcome.replay.is_some()
                            && first_here.is_some()
                            && answers[n].status == 409
                            && answers[n].code() == "idempotency_key_in_flight" => {}
                    Err(reason) => {
                        reasons.push(format!("request {n} ({}): {reason}", describe(request)));
                        fits = false;
                        break;
                    }
                }
            }
            if fits {
                for (first, n) in firsts {
                    let answer = (answers[n].status, answers[n].body.clone());
                    match first {
                        KeyRef::Key(org, owner, key) => {
                            if let Some(stored) = model.keys.get_mut(&(org, owner, key)) {
                                stored.answer = Some(answer);
                            }
                        }
                        KeyRef::Reference(org, reference) => {
                            if let Some(stored) = model.credits.get_mut(&(org, reference)) {
                                stored.1 = Some(answer);
                            }
                        }
                    }
                }
                explained.push(Explained::Model(model, audit));
            }
        }
        if explained.is_empty() {
            return Err(self.fail(0, reasons.join(" | ")));
        }
        self.figures.checks += requests.len();
        Ok((explained, Some((answers.clone(), requests.to_vec()))))
    }

    /// Follows a users listing's cursors to its end: every page joined into one answer.
    fn follow_listing(&self, backend: &Backend, first_http: &crate::world::Http, id: &str, first: Answer) -> Answer {
        let mut users: Vec<Value> = first.json()["users"].as_array().cloned().unwrap_or_default();
        let mut next = first.json()["next_cursor"].as_str().map(str::to_owned);
        let mut pages = 1;
        let mut last = first.clone();
        let mut cursors: Vec<String> = next.iter().cloned().collect();
        while let Some(cursor) = next.take() {
            pages += 1;
            if pages > 500 {
                break;
            }
            let mut http = first_http.clone();
            http.query = format!("{}&cursor={cursor}", http.query);
            let answer = backend.together(&[(format!("{id}-p{pages}"), http, None)], 0).remove(0);
            if answer.status != 200 {
                return answer;
            }
            users.extend(answer.json()["users"].as_array().cloned().unwrap_or_default());
            next = answer.json()["next_cursor"].as_str().map(str::to_owned);
            cursors.extend(next.clone());
            last = answer;
        }
        let body = serde_json::json!({ "users": users, "pages": pages, "last_cursor": first.json()["next_cursor"], "cursors": cursors });
        Answer { status: 200, headers: last.headers, body: serde_json::to_vec(&body).expect("json") }
    }

    fn listing_matches(&self, outcome: &Outcome, answer: &Answer) -> Result<(), String> {
        let Some(expected) = &outcome.listing else { return Ok(()) };
        let got: Vec<(String, String)> = answer.json()["users"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| (u["id"].as_str().unwrap_or("").to_owned(), u["status"].as_str().unwrap_or("").to_owned()))
            .collect();
        let wanted: Vec<(String, String)> = expected.iter().map(|(id, s)| (id.clone(), s.as_str().to_owned())).collect();
        if got != wanted {
            return Err(format!("the listing returned {got:?}, expected {wanted:?}"));
        }
        // A cursor is opaque: it names nobody the caller may not see.
        for cursor in answer.json()["cursors"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).unwrap_or_default();
            let text = String::from_utf8_lossy(&decoded);
            if let Some(hidden) = outcome.hidden.iter().find(|id| text.contains(id.as_str())) {
                return Err(format!("a cursor names {hidden}, a user the caller may not see: {text}"));
            }
        }
        Ok(())
    }

    /// Remembers the cursors answers handed out.
    fn learn(&mut self, answers: &[Answer], requests: &[Request]) {
        for (answer, request) in answers.iter().zip(requests) {
            if let Call::Users { org, .. } = &request.call
                && let Some(cursor) = answer.json()["last_cursor"].as_str()
            {
                self.known.users_cursor.insert(org.clone(), cursor.to_owned());
            }
        }
    }

    /// Reads back the secret of every message the model queued since it last looked: from
    /// the intent that holds its nonce, derived under the key as `deliver` derives it.
    fn learn_secrets(&mut self) -> Result<(), Violation> {
        let pending: Vec<(usize, u64)> = self
            .model
            .messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| match m.what {
                What::Link(n) | What::Code(n) | What::EmailCode(n) | What::MobileCode(n) if !self.known.secrets.contains_key(&n) => {
                    Some((i, n))
                }
                _ => None,
            })
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let records = self.backends[0].records();
        let key = crate::world::code_key();
        let intents: Vec<&domain::outbox::Intent> =
            records.iter().filter_map(|r| if let Record::Intent(i) = r { Some(i) } else { None }).collect();
        for (index, number) in pending {
            let message = &self.model.messages[index];
            let Some(user) = records.iter().find_map(|r| match r {
                Record::User(u) if u.organization.as_str() == message.org && u.id.as_str() == message.user => Some(u),
                _ => None,
            }) else {
                continue;
            };
            let slot = slot_of(message.slot);
            let Some(record) = user.deliveries.get(&slot) else { continue };
            let Some(intent) = intents.iter().find(|i| i.id == record.intent) else { continue };
            let Some(notice) = intent.notices.iter().find(|n| n.user == user.id && n.message.slot() == slot) else { continue };
            let text = match &notice.message {
                domain::outbox::Message::ActivationLink { nonce } => domain::secrets::link_token(&key, nonce),
                domain::outbox::Message::ActivationCode { nonce }
                | domain::outbox::Message::EmailVerification { nonce }
                | domain::outbox::Message::MobileVerification { nonce } => domain::secrets::code_for(&key, nonce),
                _ => continue,
            };
            self.known.secrets.insert(number, text);
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Time

    /// Moves the clock; the scheduled sweep runs once on every Saudi day crossed.
    fn advance(&mut self, seconds: i64, seed: u64) -> Result<Vec<Audited>, Violation> {
        // What was queued before goes out within seconds, as the stream's consumer sends it.
        let mut audit = self.deliver(&BTreeMap::new(), 0)?;
        let start = self.now();
        let end = start + Duration::seconds(seconds);
        let mut day = saudi_day(start) + Duration::days(1);
        let mut mix = seed;
        while day <= saudi_day(end) {
            let opens = start_of_day(day);
            let span = (end.min(opens + Duration::days(1)) - opens).whole_seconds().max(1);
            mix = mix.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let at = opens + Duration::seconds((mix >> 33) as i64 % span);
            self.set_clock(at);
            audit.extend(self.sweep(None)?);
            // Lambda's consumer of the stream sends what the sweep queued within seconds.
            audit.extend(self.deliver(&BTreeMap::new(), 0)?);
            day += Duration::days(1);
        }
        self.set_clock(end);
        self.figures.simulated_days = (end - crate::world::START).whole_days();
        // The scheduled redrive: with every record delivered or consumed from the failure
        // destination, nothing is left queued past its wait.
        for (b, backend) in self.backends.iter().enumerate() {
            let redriven = backend.redrive().map_err(|e| self.fail(b, format!("the redrive failed: {e}")))?;
            if redriven.users > 0 || redriven.given_up > 0 || redriven.unreadable > 0 {
                return Err(self.fail(b, format!("the redrive found messages left queued past their wait: {redriven:?}")));
            }
        }
        self.figures.redrives += 1;
        Ok(audit)
    }

    /// A sweep run now (cut short when asked), then runs until one finishes, on every
    /// backend; the model's sweep at the same time.
    fn sweep(&mut self, cut_after: Option<u32>) -> Result<Vec<Audited>, Violation> {
        let now = self.now();
        self.run += 1;
        for (b, backend) in self.backends.iter().enumerate() {
            let mut cut = cut_after;
            let mut finished = false;
            for attempt in 0..6 {
                // The same run names on every store (the audit trail records them).
                let run = format!("sweep-{}-{}-{attempt}", self.step, self.run);
                let report = backend.sweep(&run, now, cut.take()).map_err(|e| self.fail(b, format!("the sweep failed: {e}")))?;
                if !report.stopped_early && report.failed == 0 && !report.skipped {
                    finished = true;
                    break;
                }
            }
            if !finished {
                return Err(self.fail(b, "the sweep did not finish in six runs"));
            }
        }
        self.figures.sweeps += 1;
        let audit = self.model.sweep(now);
        self.learn_secrets()?;
        Ok(audit)
    }

    /// Delivers the outbox on every backend, and holds what was sent to the model; the audit
    /// entries of messages that ended without reaching their user.
    fn deliver(&mut self, faults: &BTreeMap<usize, ProviderFault>, dropped: usize) -> Result<Vec<Audited>, Violation> {
        let now = self.now();
        let fired_before = self.backends[0].fired().len();
        let mut sent_by_backend: Vec<Vec<Sent>> = Vec::new();
        for (b, backend) in self.backends.iter().enumerate() {
            let drained = backend.deliver(faults.clone(), dropped).map_err(|e| self.fail(b, format!("delivery failed: {e}")))?;
            if b == 0 {
                self.figures.failed_batches += drained.failed;
            }
            sent_by_backend.push(backend.sent_since(self.sent_seen[b]));
        }
        for (b, backend) in self.backends.iter().enumerate() {
            self.sent_seen[b] = backend.sent_count();
        }
        if sent_by_backend.len() == 2 {
            let key = |s: &Sent| (s.to.clone(), s.subject.clone(), s.body.clone());
            let mut a: Vec<_> = sent_by_backend[0].iter().map(key).collect();
            let mut b: Vec<_> = sent_by_backend[1].iter().map(key).collect();
            a.sort();
            b.sort();
            if a != b {
                return Err(self.fail(9, format!("the stores sent different messages: {a:?} vs {b:?}")));
            }
        }
        // What the model expects: every queued message still wanted goes out; the others
        // are superseded.
        let mut expected: Vec<(usize, String)> = Vec::new();
        for index in self.model.queued() {
            if self.model.current(index) {
                expected.push((index, self.model.address(index)));
            } else {
                self.model.messages[index].state = MessageState::Superseded;
            }
        }
        let mut sent: Vec<Option<Sent>> = sent_by_backend[0].iter().cloned().map(Some).collect();
        let fired: Vec<ProviderFault> = self.backends[0].fired()[fired_before..].to_vec();
        self.figures.provider_faults += fired.len();
        if !fired.is_empty() {
            self.delivered_under_faults(&fired, &expected, sent, now)?;
            // Each message that ended failed or undeliverable is audited.
            return Ok(expected
                .iter()
                .map(|(index, _)| &self.model.messages[*index])
                .filter(|m| matches!(m.state, MessageState::Failed | MessageState::Undeliverable))
                .map(|m| (Some(m.org.clone()), "message.undelivered", Some(m.user.clone())))
                .collect());
        }
        for (index, address) in &expected {
            let message = self.model.messages[*index].clone();
            let want = expected_text(&self.model, *index, &self.known, now);
            let fits = |s: &Sent| s.to == *address && template_fits(s.template, &message.what);
            let mut found = copy_of(&sent, address, &message.what, &want);
            if found.is_none() && self.past_wording {
                found = sent.iter().position(|s| s.as_ref().is_some_and(fits));
                if let Some(position) = found {
                    let got = sent[position].as_ref().map(|s| format!("{} {}", s.subject, s.body)).unwrap_or_default();
                    let violation = self.fail(0, format!("{:?} was sent without {want:?}: {got}", message.what));
                    self.wording.push(violation);
                }
            }
            match found {
                Some(position) => {
                    sent[position] = None;
                    self.model.messages[*index].state = MessageState::Sent;
                    self.model.messages[*index].sent = Some((address.clone(), now));
                    self.figures.messages_sent += 1;
                }
                None => {
                    return Err(self.fail(
                        0,
                        format!(
                            "{:?} to {} ({:?}, queued {}) was not sent with {want:?}; sent: {:?}",
                            message.what,
                            address,
                            message.slot,
                            timestamp(message.queued_at),
                            sent_by_backend[0]
                        ),
                    ));
                }
            }
        }
        if let Some(extra) = sent.into_iter().flatten().next() {
            return Err(self.fail(0, format!("a message the model did not expect was sent: {extra:?}")));
        }
        Ok(vec![])
    }

    /// A delivery with provider faults: every message the model expects went out, or ended
    /// as the faults explain (`failed` after a refusal, `undeliverable` after a budget of
    /// faults); a message went out more than once only as often as the provider's answer
    /// was lost after a send (its outcome unknown), and those duplicates are counted.
    fn delivered_under_faults(
        &mut self,
        faults: &[ProviderFault],
        expected: &[(usize, String)],
        mut sent: Vec<Option<Sent>>,
        now: OffsetDateTime,
    ) -> Result<(), Violation> {
        let lost = faults.iter().filter(|f| **f == ProviderFault::LostAfterSend).count();
        let refused = faults.contains(&ProviderFault::Refused);
        self.figures.answers_lost += lost;
        let records = self.backends[0].records();
        let mut unsent = Vec::new();
        // One copy for each message first, as without faults.
        for (index, address) in expected {
            let message = self.model.messages[*index].clone();
            let want = expected_text(&self.model, *index, &self.known, now);
            match copy_of(&sent, address, &message.what, &want) {
                Some(position) => {
                    sent[position] = None;
                    self.figures.messages_sent += 1;
                    self.model.messages[*index].sent = Some((address.clone(), now));
                    // A copy went out but its answer was lost, and a later try was refused
                    // or spent the budget: the product never learned that it went out.
                    let state = match stored_state(&records, &message) {
                        Some(domain::outbox::DeliveryState::Failed) if lost > 0 && refused => MessageState::Failed,
                        Some(domain::outbox::DeliveryState::Undeliverable) if lost > 0 => MessageState::Undeliverable,
                        _ => MessageState::Sent,
                    };
                    self.model.messages[*index].state = state;
                }
                None => unsent.push(*index),
            }
        }
        // What was not sent ended as the faults explain.
        for index in unsent {
            let message = &self.model.messages[index];
            let ended = match stored_state(&records, message) {
                Some(domain::outbox::DeliveryState::Failed) if refused => MessageState::Failed,
                Some(domain::outbox::DeliveryState::Undeliverable) if faults.len() >= domain::outbox::DELIVERY_ATTEMPTS as usize => {
                    MessageState::Undeliverable
                }
                other => {
                    return Err(self.fail(
                        0,
                        format!(
                            "{:?} ({:?}) was not sent and is {other:?} after the provider's faults {faults:?}",
                            message.what, message.slot
                        ),
                    ));
                }
            };
            self.model.messages[index].state = ended;
        }
        // Copies beyond the first: duplicates, each explained by a lost answer.
        let duplicates = sent.iter().flatten().filter(|s| expected.iter().any(|(_, address)| s.to == *address)).count();
        if let Some(extra) = sent.iter().flatten().find(|s| !expected.iter().any(|(_, address)| s.to == *address)) {
            return Err(self.fail(0, format!("a message the model did not expect was sent: {extra:?}")));
        }
        if duplicates > lost {
            return Err(self.fail(0, format!("{duplicates} messages went out twice, but only {lost} sends had their outcome lost")));
        }
        self.figures.duplicates += duplicates;
        Ok(())
    }

    /// Every organization's users listed by its manager with every filter, page by page.
    fn observe(&mut self, page: usize) -> Result<(), Violation> {
        let orgs: Vec<(String, String)> = self.model.orgs.values().map(|o| (o.id.clone(), o.manager.clone())).collect();
        for (org, manager) in orgs {
            for status in std::iter::once(None).chain(Status::ALL.into_iter().map(Some)) {
                let request = Request {
                    caller: Caller::Person(manager.clone()),
                    call: Call::Users { org: org.clone(), status, establishment: None, limit: page },
                    key: None,
                    fault: None,
                };
                self.requests(&[request], 0)?;
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // After every step

    /// Everything that must hold after a step, as the model now says; how many checks it
    /// made.
    fn verify(&self, snapshots: &[Vec<Record>], audit: &[Audited]) -> Result<usize, Violation> {
        let now = self.now();
        let mut checks = 0;
        for (b, records) in snapshots.iter().enumerate() {
            checks += self.check_registry(b, records)?;
            checks += self.check_money(b, records)?;
            checks += self.check_users(b, records, now)?;
            checks += self.check_audit(b, records, audit)?;
            checks += self.check_events(b, records)?;
            checks += self.check_listings(b, now)?;
        }
        if snapshots.len() == 2 {
            let (a, b) = (canonical_records(&snapshots[0]), canonical_records(&snapshots[1]));
            if a != b {
                let only_a: Vec<_> = a.iter().filter(|r| !b.contains(r)).take(3).collect();
                let only_b: Vec<_> = b.iter().filter(|r| !a.contains(r)).take(3).collect();
                return Err(self.fail(9, format!("the stores hold different data: embedded only {only_a:?}; dynamodb only {only_b:?}")));
            }
            checks += 1;
        }
        Ok(checks)
    }

    /// Every organization's users by each status, as the store's own listing filter finds
    /// them (every page), are the ones the model says: the status rule holds in every
    /// store's filter, between a seat's end and the sweep's pass as after it.
    fn check_listings(&self, b: usize, now: OffsetDateTime) -> Result<usize, Violation> {
        let backend = &self.backends[b];
        let mut checks = 0;
        for org in self.model.orgs.keys() {
            let organization = domain::organization::OrganizationId::parse(org).expect("valid");
            for status in Status::ALL {
                let wanted: Vec<String> = self.model.listed(org, Some(status), None, now).into_iter().map(|(id, _)| id).collect();
                let filter = domain::store::UserFilter {
                    status: domain::user::UserStatus::parse(status.as_str()),
                    ..domain::store::UserFilter::at(now)
                };
                let mut found = Vec::new();
                let mut page = domain::store::PageRequest::first(50);
                loop {
                    let listed = backend
                        .runtime
                        .block_on(backend.raw.users(&organization, &filter, page.clone()))
                        .map_err(|e| self.fail(b, format!("listing {org} by {status:?} failed: {e}")))?;
                    found.extend(listed.items.into_iter().map(|user| user.id.as_str().to_owned()));
                    match listed.next {
                        Some(next) => page.cursor = Some(next),
                        None => break,
                    }
                }
                if found != wanted {
                    return Err(self.fail(b, format!("{org}'s {} users are {found:?}, the model says {wanted:?}", status.as_str())));
                }
                checks += 1;
            }
        }
        Ok(checks)
    }

    /// The registry as the model knows it.
    fn check_registry(&self, b: usize, records: &[Record]) -> Result<usize, Violation> {
        let stored: BTreeMap<&str, &domain::person::Person> = records
            .iter()
            .filter_map(|r| match r {
                Record::Person(p) => Some((p.id.as_str(), p)),
                _ => None,
            })
            .collect();
        for (id, person) in &self.model.persons {
            let Some(found) = stored.get(id.as_str()) else { return Err(self.fail(b, format!("the registry has no {id}"))) };
            let employers: BTreeSet<String> = found.employers.iter().map(|e| e.as_str().to_owned()).collect();
            if found.iqama_expiry != person.iqama_expiry || employers != person.employers || found.email.as_str() != person.email {
                return Err(self.fail(b, format!("the registry's {id} differs from the model's")));
            }
            let memberships: BTreeSet<&str> = found.memberships.iter().map(|o| o.as_str()).collect();
            let wanted: BTreeSet<&str> = self.model.orgs.values().filter(|o| o.users.contains_key(id)).map(|o| o.id.as_str()).collect();
            if memberships != wanted {
                return Err(self.fail(b, format!("{id} is listed in {memberships:?}, a user of {wanted:?}")));
            }
        }
        Ok(1)
    }

    /// Balance = credits − charges, the ledger sums to it, never below zero.
    fn check_money(&self, b: usize, records: &[Record]) -> Result<usize, Violation> {
        let mut checks = 0;
        for (org, model) in &self.model.orgs {
            let balance = records.iter().find_map(|r| match r {
                Record::Balance(balance) if balance.organization.as_str() == org => Some(balance),
                _ => None,
            });
            let Some(balance) = balance else { return Err(self.fail(b, format!("{org} has no balance"))) };
            let stored = (balance.available.get(), balance.total_credited.get(), balance.total_debited.get(), balance.seats_sold);
            let wanted = (model.available, model.credited, model.debited, model.seats_sold);
            if stored != wanted {
                return Err(
                    self.fail(b, format!("{org}'s balance (available, credited, debited, seats) is {stored:?}, the model says {wanted:?}"))
                );
            }
            let mut ledger: Vec<&domain::ledger::LedgerEntry> = records
                .iter()
                .filter_map(|r| match r {
                    Record::Ledger(entry) if entry.organization.as_str() == org => Some(entry),
                    _ => None,
                })
                .collect();
            ledger.sort_by_key(|e| e.sequence);
            let mut running: i128 = 0;
            for entry in &ledger {
                running += match entry.direction {
                    domain::ledger::Direction::Credit => i128::from(entry.amount.get()),
                    domain::ledger::Direction::Debit => -i128::from(entry.amount.get()),
                };
                if running < 0 || running != i128::from(entry.balance_after.get()) {
                    return Err(self.fail(b, format!("{org}'s ledger runs to {running} where an entry says {}", entry.balance_after)));
                }
            }
            if running != i128::from(balance.available.get()) {
                return Err(self.fail(b, format!("{org}'s ledger sums to {running}, its balance is {}", balance.available)));
            }
            checks += 1;
        }
        Ok(checks)
    }

    /// Every user as the model knows them: status, periods, grants, contacts, iqama,
    /// messages, and what the check API would answer for them.
    fn check_users(&self, b: usize, records: &[Record], now: OffsetDateTime) -> Result<usize, Violation> {
        let mut checks = 0;
        let users: BTreeMap<(String, String), &domain::user::User> = records
            .iter()
            .filter_map(|r| match r {
                Record::User(u) => Some(((u.organization.as_str().to_owned(), u.id.as_str().to_owned()), u)),
                _ => None,
            })
            .collect();
        for (org, organization) in &self.model.orgs {
            for (id, user) in &organization.users {
                let Some(stored) = users.get(&(org.clone(), id.clone())) else {
                    return Err(self.fail(b, format!("{org}/{id} is missing")));
                };
                let status = stored.effective_status(now);
                if status.as_str() != user.status(now).as_str() {
                    return Err(self.fail(b, format!("{org}/{id} is {}, the model says {}", status.as_str(), user.status(now).as_str())));
                }
                let end = stored.last_period().map(|s| s.ends_at);
                let wanted_end = if user.suspended { end } else { user.last_period().map(|p| p.end) };
                if end != wanted_end {
                    return Err(self.fail(b, format!("{org}/{id}'s access ends {end:?}, the model says {wanted_end:?}")));
                }
                let iqama = self.model.persons.get(id).and_then(|p| p.iqama_expiry);
                if stored.iqama_expiry != iqama {
                    return Err(
                        self.fail(b, format!("{org}/{id} holds the iqama expiry {:?}, the registry {iqama:?}", stored.iqama_expiry))
                    );
                }
                if stored.grants_version != user.grants_version || stored.profile_version != user.profile_version {
                    return Err(self.fail(
                        b,
                        format!(
                            "{org}/{id}'s versions are {}/{}, the model says {}/{}",
                            stored.grants_version, stored.profile_version, user.grants_version, user.profile_version
                        ),
                    ));
                }
                if stored.email.as_str() != user.email || stored.mobile.as_str() != user.mobile {
                    return Err(self.fail(b, format!("{org}/{id}'s contacts differ from the model's")));
                }
                for (slot, index) in &user.slots {
                    let message = &self.model.messages[*index];
                    let stored_state = stored.deliveries.get(&slot_of(*slot)).map(|r| r.state);
                    let wanted = match message.state {
                        MessageState::Queued => domain::outbox::DeliveryState::Queued,
                        MessageState::Sent => domain::outbox::DeliveryState::Sent,
                        MessageState::Superseded => domain::outbox::DeliveryState::Superseded,
                        MessageState::Failed => domain::outbox::DeliveryState::Failed,
                        MessageState::Undeliverable => domain::outbox::DeliveryState::Undeliverable,
                    };
                    if stored_state != Some(wanted) {
                        return Err(
                            self.fail(b, format!("{org}/{id}'s {} message is {stored_state:?}, the model says {wanted:?}", slot.wire()))
                        );
                    }
                }
                // The check API decides from this record alone: as the model says, for every
                // establishment and service.
                // Every service on one of the organization's establishments, a different one
                // each step: every pair is checked over a history, each step stays cheap.
                let establishments: Vec<&String> = organization.establishments.keys().collect();
                for establishment in establishments.iter().cycle().skip(self.step).take(1) {
                    for (service, _, _) in crate::model::SERVICES {
                        let reason = domain::policy::check_access(
                            Some(stored),
                            &domain::organization::EstablishmentId::parse(establishment).expect("valid"),
                            catalog().service(service),
                            now,
                        );
                        let got = serde_json::to_value(reason).expect("json");
                        let wanted = self.model.access(org, id, establishment, service, now);
                        if got.as_str() != Some(wanted) {
                            return Err(self.fail(
                                b,
                                format!("the check of {org}/{id} on {establishment}/{service} answers {got}, the model says {wanted}"),
                            ));
                        }
                    }
                }
                checks += 1;
            }
        }
        Ok(checks)
    }

    /// One audit entry per change, in the change's commit: the new entries are exactly the
    /// ones the step's changes call for.
    fn check_audit(&self, b: usize, records: &[Record], expected: &[Audited]) -> Result<usize, Violation> {
        let mut new = Vec::new();
        for record in records {
            if let Record::Audit(entry) = record
                && !self.audit_seen[b].contains(&entry.id)
            {
                let scope = match &entry.scope {
                    domain::audit::AuditScope::Organization(org) => Some(org.as_str().to_owned()),
                    domain::audit::AuditScope::Platform => None,
                };
                new.push((scope, entry.action.as_str(), entry.target.as_ref().map(|t| t.as_str().to_owned())));
            }
        }
        let mut got: Vec<_> = new.iter().map(|(s, a, t)| (s.clone(), a.to_string(), t.clone())).collect();
        let mut wanted: Vec<_> = expected.iter().map(|(s, a, t)| (s.clone(), a.to_string(), t.clone())).collect();
        got.sort();
        wanted.sort();
        if got != wanted {
            return Err(self.fail(b, format!("the audit trail gained {got:?}, the model expects {wanted:?}")));
        }
        Ok(1)
    }

    /// Every audit entry of an organization has exactly one change event, with its id and
    /// type, committed with it; no event has no entry.
    fn check_events(&self, b: usize, records: &[Record]) -> Result<usize, Violation> {
        let mut audited = std::collections::BTreeMap::new();
        let mut events: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for record in records {
            match record {
                Record::Audit(entry) if matches!(entry.scope, domain::audit::AuditScope::Organization(_)) => {
                    audited.insert(entry.id.as_str(), domain::events::event_type(entry.action));
                }
                Record::Intent(intent) => {
                    for event in &intent.events {
                        if audited.get(event.id.as_str()).is_some_and(|kind| kind != &event.kind) {
                            return Err(self.fail(b, format!("event {} is a {}, its audit entry says otherwise", event.id, event.kind)));
                        }
                        *events.entry(event.id.as_str()).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
        if let Some((id, _)) = events.iter().find(|(_, n)| **n > 1) {
            return Err(self.fail(b, format!("the change {id} has more than one event")));
        }
        if let Some(id) = audited.keys().find(|id| !events.contains_key(*id)) {
            return Err(self.fail(b, format!("the audited change {id} has no event")));
        }
        if let Some(id) = events.keys().find(|id| !audited.contains_key(*id)) {
            return Err(self.fail(b, format!("the event {id} has no audited change")));
        }
        Ok(1)
    }

    /// No email, mobile, ID number, link token or code in any log line.
    fn check_logs(&mut self) -> Result<(), Violation> {
        let logs = crate::logs::take();
        for person in self.model.persons.values() {
            for secret in [&person.id, &person.email, &person.mobile] {
                if logs.contains(secret.as_str()) {
                    let line = logs.lines().find(|l| l.contains(secret.as_str())).unwrap_or("");
                    return Err(self.fail(9, format!("a log line holds personal data: {line}")));
                }
            }
        }
        for secret in self.known.secrets.values() {
            if crate::logs::contains_token(&logs, secret) {
                let line = logs.lines().find(|l| l.contains(secret.as_str())).unwrap_or("");
                return Err(self.fail(9, format!("a log line holds a secret: {line}")));
            }
        }
        Ok(())
    }
}

/// The bundled catalog, parsed once.
fn catalog() -> &'static domain::catalog::Catalog {
    static CATALOG: std::sync::OnceLock<domain::catalog::Catalog> = std::sync::OnceLock::new();
    CATALOG.get_or_init(domain::catalog::Catalog::bundled)
}

/// Every order of `n` requests (n ≤ 3), the given order first.
fn orders(n: usize) -> Vec<Vec<usize>> {
    match n {
        0 | 1 => vec![(0..n).collect()],
        2 => vec![vec![0, 1], vec![1, 0]],
        _ => vec![vec![0, 1, 2], vec![0, 2, 1], vec![1, 0, 2], vec![1, 2, 0], vec![2, 0, 1], vec![2, 1, 0]],
    }
}

fn describe(request: &Request) -> String {
    let call = serde_json::to_value(&request.call).unwrap_or_default();
    format!(
        "{} by {:?}{}",
        call["call"].as_str().unwrap_or("?"),
        request.caller,
        request.fault.map(|f| format!(" with {f:?}")).unwrap_or_default()
    )
}

/// The delivery state a store holds for a model's message.
fn stored_state(records: &[Record], message: &crate::model::Message) -> Option<domain::outbox::DeliveryState> {
    records.iter().find_map(|r| match r {
        Record::User(u) if u.organization.as_str() == message.org && u.id.as_str() == message.user => {
            u.deliveries.get(&slot_of(message.slot)).map(|d| d.state)
        }
        _ => None,
    })
}

fn slot_of(slot: crate::model::Slot) -> domain::outbox::Slot {
    serde_json::from_value(Value::String(slot.wire().to_owned())).expect("the same slot names")
}

/// What two stores may legitimately differ in: the provider's message ids (each provider
/// numbers its own) and the identifiers drawn inside the sweep and the outbox consumer,
/// whose concurrent work takes its draws in the order its calls complete (the same draws,
/// another order). Masked, and lists that the masked identifiers ordered, sorted.
fn comparable(value: &Value) -> Value {
    static GENERATED: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let generated = GENERATED.get_or_init(|| regex::Regex::new(r"\b(audit|intent|seat|entry)_[0-9a-f]{20}\b").expect("a valid pattern"));
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().filter(|(k, _)| *k != "message_id").map(|(k, v)| (k.clone(), comparable(v))).collect())
        }
        Value::Array(items) => {
            let mut items: Vec<Value> = items.iter().map(comparable).collect();
            if items.iter().all(|item| item.get("at").is_some() && item.get("id").is_some()) {
                items.sort_by_key(|item| item.to_string());
            }
            Value::Array(items)
        }
        Value::String(text) => Value::String(generated.replace_all(text, "${1}_*").into_owned()),
        other => other.clone(),
    }
}

fn normalized(answer: &Answer) -> (u16, Value) {
    (answer.status, comparable(&answer.json()))
}

/// Every record, as canonical text, as far as two stores must agree (see `comparable`),
/// sorted.
fn canonical_records(records: &[Record]) -> Vec<String> {
    let mut texts: Vec<String> = records
        .iter()
        .map(|record| {
            let value = system_tests::world::record_value(record);
            let key = comparable(&Value::String(record.storage_key().sk));
            format!("{}:{key}:{}", record.kind(), crate::model::canonical(&comparable(&value)))
        })
        .collect();
    texts.sort();
    texts
}

/// Whether a provider's message is of the kind the model expects.
/// Where, among the sends not yet matched, the message `what` to `address` went out with
/// every text in `want`.
fn copy_of(sent: &[Option<Sent>], address: &str, what: &What, want: &[String]) -> Option<usize> {
    sent.iter().position(|s| {
        s.as_ref().is_some_and(|s| {
            s.to == address
                && template_fits(s.template, what)
                && want.iter().all(|w| crate::model::says(&s.body, w) || crate::model::says(&s.subject, w))
        })
    })
}

fn template_fits(template: domain::messaging::Template, what: &What) -> bool {
    use domain::messaging::Template as T;
    matches!(
        (template, what),
        (T::ActivationEmail, What::Link(_))
            | (T::ActivationSms, What::Code(_))
            | (T::ContactVerificationEmail, What::EmailCode(_))
            | (T::ContactVerificationSms, What::MobileCode(_))
            | (T::ContactChangedEmail, What::EmailChanged(_))
            | (T::ContactChangedSms, What::MobileChanged(_))
            | (T::ExpiryReminderEmail | T::ExpiryReminderSms, What::Reminder(..))
            | (T::AccountSuspendedEmail | T::AccountSuspendedSms, What::Suspended)
    )
}

/// Text a message must carry: its secret, or a reminder's day count in the user's language.
fn expected_text(model: &Model, index: usize, known: &Known, now: OffsetDateTime) -> Vec<String> {
    let message = &model.messages[index];
    match &message.what {
        What::Link(n) | What::Code(n) | What::EmailCode(n) | What::MobileCode(n) => known.secrets.get(n).cloned().into_iter().collect(),
        What::Reminder(_, end) => vec![crate::model::day_phrase(&model.language(index), Model::days_left(*end, now))],
        _ => vec![],
    }
}
