//! Sending at the provider's rate. SES allows an account a number of emails per second
//! (its "maximum send rate", 14 for many production accounts) and SNS a number of SMS per
//! second; sending faster is answered with throttling. Each `deliver` invocation paces its
//! sends with a token bucket holding its share of the account's rate — the rate divided by
//! how many invocations may run at once (`DELIVER_CONCURRENCY`, the function's reserved
//! concurrency) — so that together they stay under it. A throttle that still comes (another
//! sender in the account, a lowered quota) empties the bucket for a second, and the message
//! is tried again later without counting as a try (`DeliveryError::throttled`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::messaging::{DeliveryError, EmailMessage, Mailer, ProviderMessageId, SmsMessage, TextSender};

/// A token bucket: `per_second` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A bucket of `per_second` (at least one a minute), full; its burst is a second's worth.
    pub fn new(per_second: f64) -> Self {
        let per_second = per_second.max(1.0 / 60.0);
        let burst = per_second.max(1.0);
        TokenBucket { per_second, burst, state: Mutex::new((burst, Instant::now())) }
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Waits for a token and takes it.
    pub async fn take(&self) {
        loop {
            let wait = {
                let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let now = Instant::now();
                state.0 = (state.0 + (now - state.1).as_secs_f64() * self.per_second).min(self.burst);
                state.1 = now;
                if state.0 >= 1.0 {
                    state.0 -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - state.0) / self.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// The provider throttled a send: nothing more for about a second.
    pub fn throttled(&self) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.0 = state.0.min(0.0) - self.per_second;
    }
}

/// The account's send rates and how many invocations share them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendRate {
    pub emails_per_second: f64,
    pub sms_per_second: f64,
    pub concurrency: u32,
}

impl SendRate {
    /// SES's common production rate, SNS's default SMS rate, and the template's reserved
    /// concurrency of `deliver`.
    pub const DEFAULT: SendRate = SendRate { emails_per_second: 14.0, sms_per_second: 20.0, concurrency: 5 };

    /// From `SES_MAX_SEND_RATE`, `SMS_MAX_SEND_RATE` and `DELIVER_CONCURRENCY` (each
    /// optional; the defaults otherwise).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<SendRate, String> {
        let number = |name: &str, default: f64| -> Result<f64, String> {
            match var(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(default),
                Some(text) => match text.trim().parse::<f64>() {
                    Ok(value) if value > 0.0 && value.is_finite() => Ok(value),
                    _ => Err(format!("{name} must be a positive number, not {text:?}")),
                },
            }
        };
        let concurrency = number("DELIVER_CONCURRENCY", f64::from(Self::DEFAULT.concurrency))?;
        if concurrency.fract() != 0.0 {
            return Err("DELIVER_CONCURRENCY must be a whole number".to_owned());
        }
        Ok(SendRate {
            emails_per_second: number("SES_MAX_SEND_RATE", Self::DEFAULT.emails_per_second)?,
            sms_per_second: number("SMS_MAX_SEND_RATE", Self::DEFAULT.sms_per_second)?,
            concurrency: concurrency as u32,
        })
    }

    /// One invocation's share: (emails, SMS) per second.
    pub fn per_invocation(&self) -> (f64, f64) {
        let n = f64::from(self.concurrency.max(1));
        (self.emails_per_second / n, self.sms_per_second / n)
    }
}

/// Senders paced by token buckets.
pub struct Paced {
    mailer: Arc<dyn Mailer>,
    texts: Arc<dyn TextSender>,
    email: TokenBucket,
    sms: TokenBucket,
}

impl Paced {
    pub fn new(mailer: Arc<dyn Mailer>, texts: Arc<dyn TextSender>, rate: SendRate) -> Arc<Paced> {
        let (email, sms) = rate.per_invocation();
        Arc::new(Paced { mailer, texts, email: TokenBucket::new(email), sms: TokenBucket::new(sms) })
    }

    /// Both senders, paced.
    pub fn senders(mailer: Arc<dyn Mailer>, texts: Arc<dyn TextSender>, rate: SendRate) -> crate::env::Senders {
        let paced = Paced::new(mailer, texts, rate);
        crate::env::Senders { mailer: paced.clone(), texts: paced }
    }
}

fn noticed(bucket: &TokenBucket, result: Result<ProviderMessageId, DeliveryError>) -> Result<ProviderMessageId, DeliveryError> {
    if result.as_ref().is_err_and(|error| error.throttled) {
        bucket.throttled();
    }
    result
}

#[async_trait]
impl Mailer for Paced {
    async fn ready(&self) {
        self.email.take().await;
    }

    async fn send_email(&self, message: &EmailMessage) -> Result<ProviderMessageId, DeliveryError> {
        noticed(&self.email, self.mailer.send_email(message).await)
    }
}

#[async_trait]
impl TextSender for Paced {
    async fn ready(&self) {
        self.sms.take().await;
    }

    async fn send_sms(&self, message: &SmsMessage) -> Result<ProviderMessageId, DeliveryError> {
        noticed(&self.sms, self.texts.send_sms(message).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_gives_its_rate_after_its_burst_and_pauses_after_a_throttle() {
        let bucket = TokenBucket::new(2.0);
        let start = Instant::now();
        for _ in 0..12 {
            bucket.take().await;
        }
        // Two at once (the burst), then one every half second.
        assert_eq!((Instant::now() - start).as_millis(), 5000);
        bucket.throttled();
        let before = Instant::now();
        bucket.take().await;
        assert_eq!((Instant::now() - before).as_millis(), 1500, "a second of tokens owed, then one more");
    }

    #[test]
    fn rates_are_read_and_shared_by_the_invocations() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(SendRate::from_lookup(vars(&[])), Ok(SendRate::DEFAULT));
        let rate = SendRate::from_lookup(vars(&[("SES_MAX_SEND_RATE", "50"), ("DELIVER_CONCURRENCY", "10")])).unwrap();
        assert_eq!(rate.per_invocation(), (5.0, 2.0));
        assert!(SendRate::from_lookup(vars(&[("SES_MAX_SEND_RATE", "0")])).is_err());
        assert!(SendRate::from_lookup(vars(&[("DELIVER_CONCURRENCY", "2.5")])).is_err());
    }
}
