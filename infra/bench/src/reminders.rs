//! A renewal-season day: `seats` seats end 30 days on, so the sweep queues the 30-day
//! reminder of each (an email and an SMS), and `deliver` sends them all at the account's
//! rates. On the embedded store, in virtual time (tokio's paused clock: waiting for the
//! rate takes no real time, so a day is measured in seconds): `INVOCATIONS` deliveries at
//! once, each pacing its sends at its share of the rates (`domain::pace`), to a provider
//! that throttles any send beyond the account's rate in its second, as SES and SNS do. A
//! delivery that meets a throttle hands its intent back, as the stream would retry it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use domain::clock::{saudi_day, start_of_saudi_day};
use domain::env::Senders;
use domain::messaging::{DeliveryError, EmailMessage, Mailer, ProviderMessageId, SmsMessage, TextSender};
use domain::pace::{Paced, SendRate};
use domain::pipeline::RequestMeta;
use domain::policy::Caller;
use domain::store::Record;
use system_tests::world::{Backend, START, World};

/// Concurrent deliveries: the template's reserved concurrency of `deliver`.
const INVOCATIONS: usize = 5;

pub struct ReminderDay {
    pub seats: usize,
    pub messages: usize,
    pub rate: SendRate,
    /// Virtual time from the first send to the last.
    pub drained_in: std::time::Duration,
    pub throttled: usize,
    /// Intents handed back (a throttle, or a send cut by the pacing wait).
    pub retried: usize,
    pub wall: std::time::Duration,
}

/// The account's limit as the provider enforces it: at most `per_second` sends in each
/// second of (virtual) time; beyond, a throttle.
struct Limited {
    per_second: f64,
    window: Mutex<(tokio::time::Instant, f64)>,
    sent: Mutex<usize>,
    throttled: Mutex<usize>,
}

impl Limited {
    fn new(per_second: f64) -> Self {
        Limited { per_second, window: Mutex::new((tokio::time::Instant::now(), 0.0)), sent: Mutex::new(0), throttled: Mutex::new(0) }
    }

    fn admit(&self) -> Result<ProviderMessageId, DeliveryError> {
        let mut window = self.window.lock().expect("window");
        let now = tokio::time::Instant::now();
        if now - window.0 >= std::time::Duration::from_secs(1) {
            *window = (now, 0.0);
        }
        if window.1 + 1.0 > self.per_second {
            *self.throttled.lock().expect("count") += 1;
            return Err(DeliveryError::throttled("Throttling"));
        }
        window.1 += 1.0;
        *self.sent.lock().expect("count") += 1;
        Ok(format!("m{}", window.1))
    }
}

struct Provider {
    email: Limited,
    sms: Limited,
}

#[async_trait]
impl Mailer for Provider {
    async fn send_email(&self, _: &EmailMessage) -> Result<ProviderMessageId, DeliveryError> {
        self.email.admit()
    }
}

#[async_trait]
impl TextSender for Provider {
    async fn send_sms(&self, _: &SmsMessage) -> Result<ProviderMessageId, DeliveryError> {
        self.sms.admit()
    }
}

/// Runs the day in a runtime of its own whose clock is paused.
pub fn measure(seats: usize) -> ReminderDay {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("a runtime").block_on(day(seats))
    })
    .join()
    .expect("the day ran")
}

async fn day(seats: usize) -> ReminderDay {
    let started = Instant::now();
    let world = World::new(Backend::Embedded).await;
    let template = crate::scale::template_user(&world).await;
    let ends = start_of_saudi_day(saudi_day(START) + time::Duration::days(30)) + time::Duration::hours(12);
    let users = (0..seats).map(|n| {
        let mut user = template.clone();
        // The template's organization (`deliver` reads it for the messages' wording).
        user.id = crate::scale::person(n);
        user.seat.as_mut().expect("a seat").ends_at = ends;
        Record::User(user)
    });
    let embedded = world.embedded.clone().expect("an embedded world");
    let before = embedded.stream_after(0, usize::MAX).len();
    embedded.load_directly(users);
    let now = world.now();
    loop {
        let meta = RequestMeta::new(Caller::Anonymous, "reminders");
        let report = domain::actions::sweep::sweep(&world.env, &meta, now, Default::default()).await.expect("the sweep runs");
        if !report.stopped_early {
            break;
        }
    }
    let intents: VecDeque<_> = embedded.stream_after(before, usize::MAX).into_iter().map(|(_, intent)| intent).collect();
    let messages: usize = intents.iter().map(|intent| intent.notices.len()).sum();
    assert!(messages >= 2 * seats, "every seat's reminder queued: {messages}");

    let rate = SendRate::DEFAULT;
    let provider = Arc::new(Provider { email: Limited::new(rate.emails_per_second), sms: Limited::new(rate.sms_per_second) });
    let queue = Arc::new(Mutex::new(intents));
    let retried = Arc::new(Mutex::new(0usize));
    let key = world.code_key().await;
    let first = tokio::time::Instant::now();
    let workers: Vec<_> = (0..INVOCATIONS)
        .map(|n| {
            let senders: Senders = Paced::senders(provider.clone(), provider.clone(), rate);
            let (env, queue, retried, key) = (world.env.clone(), queue.clone(), retried.clone(), key.clone());
            async move {
                loop {
                    let Some(intent) = queue.lock().expect("queue").pop_front() else { return };
                    let meta = RequestMeta::new(Caller::Anonymous, format!("deliver-{n}"));
                    let delivered = domain::actions::deliver::deliver(&env, &senders, &key, &meta, &intent).await.expect("delivered");
                    if delivered.retry {
                        *retried.lock().expect("count") += 1;
                        queue.lock().expect("queue").push_back(intent);
                    }
                }
            }
        })
        .collect();
    futures_util::future::join_all(workers).await;
    let drained_in = first.elapsed();
    let sent = *provider.email.sent.lock().expect("count") + *provider.sms.sent.lock().expect("count");
    assert!(sent >= messages, "every reminder sent: {sent} of {messages}");
    let throttled = *provider.email.throttled.lock().expect("count") + *provider.sms.throttled.lock().expect("count");
    let retried = *retried.lock().expect("count");
    ReminderDay { seats, messages, rate, drained_in, throttled, retried, wall: started.elapsed() }
}
