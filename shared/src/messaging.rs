//! Sending email and SMS: the ports, the message kinds and their templates.
//!
//! Templates are files under `shared/templates/{ar,en}/`, compiled into the binary by
//! askama: each kind of message is a struct of the values it needs, and a template that
//! misses one does not build. Email templates start with a `Subject:` line. Counts (days,
//! hours) are said with their language's plural forms by CLDR's rules — Arabic has six.

use std::fmt;

use async_trait::async_trait;

use crate::contact::{Email, Language, SaudiMobile};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    ActivationEmail,
    ActivationSms,
    ContactVerificationEmail,
    ContactVerificationSms,
    ContactChangedEmail,
    ContactChangedSms,
    ExpiryReminderEmail,
    ExpiryReminderSms,
    AccountSuspendedEmail,
    AccountSuspendedSms,
}

impl Template {
    pub const ALL: [Template; 10] = [
        Template::ActivationEmail,
        Template::ActivationSms,
        Template::ContactVerificationEmail,
        Template::ContactVerificationSms,
        Template::ContactChangedEmail,
        Template::ContactChangedSms,
        Template::ExpiryReminderEmail,
        Template::ExpiryReminderSms,
        Template::AccountSuspendedEmail,
        Template::AccountSuspendedSms,
    ];

    pub fn is_sms(self) -> bool {
        matches!(
            self,
            Template::ActivationSms
                | Template::ContactVerificationSms
                | Template::ContactChangedSms
                | Template::ExpiryReminderSms
                | Template::AccountSuspendedSms
        )
    }
}

/// What a count counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Day,
    Hour,
}

/// A number of days or hours as a language says it, with the plural form CLDR gives the
/// number (`plural`): "1 day", "2 days"; "يوم واحد", "يومان", "3 أيام", "11 يومًا",
/// "100 يوم". A reminder sent on the last day says "less than a day".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub n: i64,
    pub unit: Unit,
    pub language: Language,
}

/// CLDR's plural categories of a cardinal number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plural {
    Zero,
    One,
    Two,
    Few,
    Many,
    Other,
}

/// The plural category of a whole number, by CLDR's rules (plurals.xml, cardinal): English
/// `one` for 1; Arabic `zero` 0, `one` 1, `two` 2, `few` n % 100 = 3..10, `many`
/// n % 100 = 11..99. Written out rather than taken from `intl_pluralrules`, whose Arabic
/// rules (7.0.2) drop the `% 100` and call 103 days `other` instead of `few`.
pub fn plural(language: Language, n: u64) -> Plural {
    match language {
        Language::En if n == 1 => Plural::One,
        Language::En => Plural::Other,
        Language::Ar => match (n, n % 100) {
            (0, _) => Plural::Zero,
            (1, _) => Plural::One,
            (2, _) => Plural::Two,
            (_, 3..=10) => Plural::Few,
            (_, 11..=99) => Plural::Many,
            _ => Plural::Other,
        },
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.n;
        if n <= 0 {
            return f.write_str(match (self.unit, self.language) {
                (Unit::Day, Language::En) => "less than a day",
                (Unit::Day, Language::Ar) => "أقل من يوم",
                (Unit::Hour, Language::En) => "less than an hour",
                (Unit::Hour, Language::Ar) => "أقل من ساعة",
            });
        }
        match (self.language, self.unit, plural(self.language, n as u64)) {
            (Language::En, Unit::Day, Plural::One) => write!(f, "{n} day"),
            (Language::En, Unit::Day, _) => write!(f, "{n} days"),
            (Language::En, Unit::Hour, Plural::One) => write!(f, "{n} hour"),
            (Language::En, Unit::Hour, _) => write!(f, "{n} hours"),
            (Language::Ar, Unit::Day, Plural::One) => f.write_str("يوم واحد"),
            (Language::Ar, Unit::Day, Plural::Two) => f.write_str("يومان"),
            (Language::Ar, Unit::Day, Plural::Few) => write!(f, "{n} أيام"),
            (Language::Ar, Unit::Day, Plural::Many) => write!(f, "{n} يومًا"),
            (Language::Ar, Unit::Day, _) => write!(f, "{n} يوم"),
            (Language::Ar, Unit::Hour, Plural::One) => f.write_str("ساعة واحدة"),
            (Language::Ar, Unit::Hour, Plural::Two) => f.write_str("ساعتان"),
            (Language::Ar, Unit::Hour, Plural::Few) => write!(f, "{n} ساعات"),
            (Language::Ar, Unit::Hour, Plural::Many) => write!(f, "{n} ساعةً"),
            (Language::Ar, Unit::Hour, _) => write!(f, "{n} ساعة"),
        }
    }
}

// One struct per kind of message, holding what it says; `ar` picks the language's file.

#[derive(askama::Template)]
#[template(
    source = r#"{% if ar %}{% include "ar/activation_email.txt" %}{% else %}{% include "en/activation_email.txt" %}{% endif %}"#,
    ext = "txt"
)]
pub struct ActivationEmail<'a> {
    pub ar: bool,
    pub name: &'a str,
    pub organization: &'a str,
    pub link: &'a str,
    pub hours: Count,
}

#[derive(askama::Template)]
#[template(
    source = r#"{% if ar %}{% include "ar/activation_sms.txt" %}{% else %}{% include "en/activation_sms.txt" %}{% endif %}"#,
    ext = "txt"
)]
pub struct ActivationSms<'a> {
    pub ar: bool,
    pub code: &'a str,
}

#[derive(askama::Template)]
#[template(
    source = r#"{% if ar %}{% include "ar/contact_verification_email.txt" %}{% else %}{% include "en/contact_verification_email.txt" %}{% endif %}"#,
    ext = "txt"
)]
pub struct ContactVerificationEmail<'a> {
    pub ar: bool,
    pub name: &'a str,
    pub organization: &'a str,
    pub code: &'a str,
}

#[derive(askama::Template)]
#[template(
    source = r#"{% if ar %}{% include "ar/contact_verification_sms.txt" %}{% else %}{% include "en/contact_verification_sms.txt" %}{% endif %}"#,
    ext = "txt"
)]
pub struct ContactVerificationSms<'a> {
    pub ar: bool,
    pub code: &'a str,
}

#[derive(askama::Template)]
#[template(
    source = r#"{% if ar %}{% include "ar/contact_changed_email.txt" %}{% else %}{% include "en/contact_changed_email.txt" %}{% endif %}"#,
    ext = "txt"
)]
pub struct ContactChangedEmail<'a> {
    pub ar: bool,
    pub name: &'a str,
    pub organization: &'a str,
    pub channel: &'a str,
    pub new_value: &'a str,
}

#[derive(askama::Template)]
#[template(
    source = r#"{% if ar %}{% include "ar/contact_changed_sms.txt" %}{% else %}{% include "en/contact_changed_sms.txt" %}{% endif %}"#,
    ext = "txt"
)]
pub struct ContactChangedSms<'a> {
    pub ar: bool,
    pub channel: &'a str,
}

#[derive(askama::Template)]
#[template(
    source = r#"{% if ar %}{% include "ar/expiry_reminder_email.txt" %}{% else %}{% include "en/expiry_reminder_email.txt" %}{% endif %}"#,
    ext = "txt"
)]
pub struct ExpiryReminderEmail<'a> {
    pub ar: bool,
    pub name: &'a str,
    pub organization: &'a str,
    pub days: Count,
    pub date: &'a str,
}

#[derive(askama::Template)]
#[template(
    source = r#"{% if ar %}{% include "ar/expiry_reminder_sms.txt" %}{% else %}{% include "en/expiry_reminder_sms.txt" %}{% endif %}"#,
    ext = "txt"
)]
pub struct ExpiryReminderSms<'a> {
    pub ar: bool,
    pub days: Count,
    pub date: &'a str,
}

#[derive(askama::Template)]
#[template(
    source = r#"{% if ar %}{% include "ar/account_suspended_email.txt" %}{% else %}{% include "en/account_suspended_email.txt" %}{% endif %}"#,
    ext = "txt"
)]
pub struct AccountSuspendedEmail<'a> {
    pub ar: bool,
    pub name: &'a str,
    pub organization: &'a str,
    pub date: &'a str,
}

#[derive(askama::Template)]
#[template(
    source = r#"{% if ar %}{% include "ar/account_suspended_sms.txt" %}{% else %}{% include "en/account_suspended_sms.txt" %}{% endif %}"#,
    ext = "txt"
)]
pub struct AccountSuspendedSms<'a> {
    pub ar: bool,
    pub date: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: Option<String>,
    pub body: String,
}

impl Rendered {
    /// A filled template; an email's first line is its `Subject:`.
    pub fn of(filled: &impl askama::Template, sms: bool) -> Rendered {
        let text = filled.render().expect("templates render: their values are checked when they build");
        let text = text.trim_end();
        if sms {
            return Rendered { subject: None, body: text.to_owned() };
        }
        let (first_line, rest) = text.split_once('\n').unwrap_or((text, ""));
        match first_line.strip_prefix("Subject:") {
            Some(subject) => Rendered { subject: Some(subject.trim().to_owned()), body: rest.trim_start().to_owned() },
            None => Rendered { subject: None, body: text.to_owned() },
        }
    }
}

/// Words for "email address" and "mobile number" in the user's language.
pub fn channel_name(email: bool, language: Language) -> &'static str {
    match (email, language) {
        (true, Language::En) => "email address",
        (false, Language::En) => "mobile number",
        (true, Language::Ar) => "البريد الإلكتروني",
        (false, Language::Ar) => "رقم الجوال",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    pub to: Email,
    pub template: Template,
    pub subject: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsMessage {
    pub to: SaudiMobile,
    pub template: Template,
    pub body: String,
}

impl EmailMessage {
    pub fn new(to: &Email, template: Template, filled: &impl askama::Template) -> Self {
        let rendered = Rendered::of(filled, false);
        EmailMessage { to: to.clone(), template, subject: rendered.subject.unwrap_or_default(), body: rendered.body }
    }
}

impl SmsMessage {
    pub fn new(to: &SaudiMobile, template: Template, filled: &impl askama::Template) -> Self {
        SmsMessage { to: to.clone(), template, body: Rendered::of(filled, true).body }
    }
}

/// Why a provider did not take a message: its error code and request id, nothing else.
/// The SDK's error is not kept — providers' messages can quote the address they refused —
/// so no log line or stored reason can carry more than these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the message could not be delivered ({reason})")]
pub struct DeliveryError {
    /// Whether trying again later may succeed (throttling, an outage) or not (an address the
    /// provider refuses).
    pub transient: bool,
    /// What went wrong, from the provider's error code: safe to store and show, never
    /// personal data.
    pub reason: String,
    /// The provider's request id, for its support (absent when no answer came).
    pub request_id: Option<String>,
    /// The request may have reached the provider (a timeout, an answer lost): the message
    /// may have gone out. Sending it again may duplicate it, and is counted.
    pub outcome_unknown: bool,
    /// The provider refused it for the rate (or the sender's pacing ran out of time before
    /// it): nothing went out, and the try does not count against the message's budget.
    pub throttled: bool,
}

impl DeliveryError {
    pub fn transient(reason: impl Into<String>) -> Self {
        DeliveryError { transient: true, reason: reason.into(), request_id: None, outcome_unknown: false, throttled: false }
    }

    /// Refused for the rate; tried again later without counting as a try.
    pub fn throttled(reason: impl Into<String>) -> Self {
        DeliveryError { throttled: true, ..DeliveryError::transient(reason) }
    }

    /// A send whose outcome is unknown (it may have gone out); tried again like a transient
    /// failure.
    pub fn unknown(reason: impl Into<String>) -> Self {
        DeliveryError { outcome_unknown: true, ..DeliveryError::transient(reason) }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        DeliveryError { transient: false, ..DeliveryError::transient(reason) }
    }

    pub fn with_request_id(mut self, request_id: Option<&str>) -> Self {
        self.request_id = request_id.map(str::to_owned);
        self
    }
}

/// The provider's id of a message it accepted (SES `MessageId`, SNS `MessageId`).
pub type ProviderMessageId = String;

#[async_trait]
pub trait Mailer: Send + Sync {
    /// Waits until the provider's rate allows one more email (`pace::Paced`); at once by
    /// default.
    async fn ready(&self) {}

    async fn send_email(&self, message: &EmailMessage) -> Result<ProviderMessageId, DeliveryError>;
}

#[async_trait]
pub trait TextSender: Send + Sync {
    /// Waits until the provider's rate allows one more SMS; at once by default.
    async fn ready(&self) {}

    async fn send_sms(&self, message: &SmsMessage) -> Result<ProviderMessageId, DeliveryError>;
}

/// How many SMS segments a text needs: GSM-7 allows 160 characters (extension characters
/// count twice); anything outside GSM-7 is sent as UCS-2, 70 code units.
pub fn sms_segments(text: &str) -> usize {
    const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const GSM_EXTENSION: &str = "^{}\\[~]|€\u{000C}";
    let gsm_units: Option<usize> = text
        .chars()
        .map(|c| {
            if GSM_BASIC.contains(c) {
                Some(1)
            } else if GSM_EXTENSION.contains(c) {
                Some(2)
            } else {
                None
            }
        })
        .sum();
    match gsm_units {
        Some(units) if units <= 160 => 1,
        Some(units) => units.div_ceil(153),
        None => {
            let units = text.encode_utf16().count();
            if units <= 70 { 1 } else { units.div_ceil(67) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "عبدالرحمن بن عبدالعزيز";
    const ORGANIZATION: &str = "شركة المثال للتجارة";
    const LINK: &str = "https://portal.example.sa/activate#token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    /// Every template, filled with the longest values each takes in practice.
    fn every_filled(language: Language, email_channel: bool) -> Vec<(Template, Rendered)> {
        let ar = language == Language::Ar;
        let days = Count { n: 30, unit: Unit::Day, language };
        let channel = channel_name(email_channel, language);
        vec![
            (
                Template::ActivationEmail,
                Rendered::of(
                    &ActivationEmail {
                        ar,
                        name: NAME,
                        organization: ORGANIZATION,
                        link: LINK,
                        hours: Count { n: 72, unit: Unit::Hour, language },
                    },
                    false,
                ),
            ),
            (Template::ActivationSms, Rendered::of(&ActivationSms { ar, code: "999999" }, true)),
            (
                Template::ContactVerificationEmail,
                Rendered::of(&ContactVerificationEmail { ar, name: NAME, organization: ORGANIZATION, code: "999999" }, false),
            ),
            (Template::ContactVerificationSms, Rendered::of(&ContactVerificationSms { ar, code: "999999" }, true)),
            (
                Template::ContactChangedEmail,
                Rendered::of(
                    &ContactChangedEmail { ar, name: NAME, organization: ORGANIZATION, channel, new_value: "n***@example.com" },
                    false,
                ),
            ),
            (Template::ContactChangedSms, Rendered::of(&ContactChangedSms { ar, channel }, true)),
            (
                Template::ExpiryReminderEmail,
                Rendered::of(&ExpiryReminderEmail { ar, name: NAME, organization: ORGANIZATION, days, date: "2027-11-23" }, false),
            ),
            (Template::ExpiryReminderSms, Rendered::of(&ExpiryReminderSms { ar, days, date: "2027-11-23" }, true)),
            (
                Template::AccountSuspendedEmail,
                Rendered::of(&AccountSuspendedEmail { ar, name: NAME, organization: ORGANIZATION, date: "2027-11-23" }, false),
            ),
            (Template::AccountSuspendedSms, Rendered::of(&AccountSuspendedSms { ar, date: "2027-11-23" }, true)),
        ]
    }

    #[test]
    fn every_template_renders_completely_in_both_languages() {
        for language in [Language::Ar, Language::En] {
            let filled = every_filled(language, true);
            assert_eq!(filled.len(), Template::ALL.len());
            for (template, rendered) in filled {
                assert!(!rendered.body.contains("{{") && !rendered.body.contains("{%"), "{template:?}/{language:?}");
                assert_eq!(rendered.subject.is_some(), !template.is_sms(), "{template:?}/{language:?}");
            }
        }
    }

    #[test]
    fn every_sms_fits_one_segment_with_its_longest_values() {
        for language in [Language::Ar, Language::En] {
            for email in [true, false] {
                for (template, rendered) in every_filled(language, email).into_iter().filter(|(t, _)| t.is_sms()) {
                    assert_eq!(sms_segments(&rendered.body), 1, "{template:?}/{language:?} needs more than one segment: {}", rendered.body);
                }
            }
        }
    }

    #[test]
    fn counts_take_their_languages_plural_forms() {
        let days = |n, language| Count { n, unit: Unit::Day, language }.to_string();
        assert_eq!(days(1, Language::En), "1 day");
        assert_eq!(days(2, Language::En), "2 days");
        assert_eq!(days(30, Language::En), "30 days");
        assert_eq!(days(0, Language::En), "less than a day");
        assert_eq!(days(1, Language::Ar), "يوم واحد");
        assert_eq!(days(2, Language::Ar), "يومان");
        assert_eq!(days(3, Language::Ar), "3 أيام");
        assert_eq!(days(10, Language::Ar), "10 أيام");
        assert_eq!(days(11, Language::Ar), "11 يومًا");
        assert_eq!(days(30, Language::Ar), "30 يومًا");
        assert_eq!(days(100, Language::Ar), "100 يوم");
        assert_eq!(days(103, Language::Ar), "103 أيام", "n % 100 = 3..10 is few");
        assert_eq!(days(111, Language::Ar), "111 يومًا", "n % 100 = 11..99 is many");
        assert_eq!(plural(Language::Ar, 0), Plural::Zero);
        let hours = |n, language| Count { n, unit: Unit::Hour, language }.to_string();
        assert_eq!(hours(72, Language::Ar), "72 ساعةً");
        assert_eq!(hours(72, Language::En), "72 hours");
    }

    #[test]
    fn a_reminder_says_its_days_in_words_that_read() {
        let reminder = |n, language| {
            let ar = language == Language::Ar;
            let days = Count { n, unit: Unit::Day, language };
            (
                Rendered::of(&ExpiryReminderEmail { ar, name: "Sara", organization: "Rawabi", days, date: "2027-11-23" }, false),
                Rendered::of(&ExpiryReminderSms { ar, days, date: "2027-11-23" }, true),
            )
        };
        let (email, sms) = reminder(1, Language::En);
        assert_eq!(email.subject.as_deref(), Some("Your Rawabi subscription ends in 1 day"));
        assert!(sms.body.contains("(1 day)"), "{}", sms.body);
        let (email, sms) = reminder(2, Language::Ar);
        assert!(email.subject.as_deref().is_some_and(|s| s.contains("يومان")), "{email:?}");
        assert!(sms.body.contains("يومان"), "{}", sms.body);
        let (email, _) = reminder(11, Language::Ar);
        assert!(email.subject.as_deref().is_some_and(|s| s.contains("11 يومًا")), "{email:?}");
    }

    #[test]
    fn counts_segments_like_a_carrier() {
        assert_eq!(sms_segments(&"a".repeat(160)), 1);
        assert_eq!(sms_segments(&"a".repeat(161)), 2);
        assert_eq!(sms_segments(&"ب".repeat(70)), 1);
        assert_eq!(sms_segments(&"ب".repeat(71)), 2);
        assert_eq!(sms_segments(&"€".repeat(80)), 1);
        assert_eq!(sms_segments(&"€".repeat(81)), 2);
    }
}
