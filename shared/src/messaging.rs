//! Sending email and SMS: the ports, the message kinds and their templates.
//!
//! Templates are files under `shared/templates/{ar,en}/`, compiled into the binary. Email
//! templates start with a `Subject:` line. Placeholders are `{{name}}`.

use async_trait::async_trait;

use crate::contact::{Email, Language, SaudiMobile};
use crate::store::BoxError;

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

    fn source(self, language: Language) -> &'static str {
        macro_rules! pair {
            ($file:literal) => {
                match language {
                    Language::Ar => include_str!(concat!("../templates/ar/", $file)),
                    Language::En => include_str!(concat!("../templates/en/", $file)),
                }
            };
        }
        match self {
            Template::ActivationEmail => pair!("activation_email.txt"),
            Template::ActivationSms => pair!("activation_sms.txt"),
            Template::ContactVerificationEmail => pair!("contact_verification_email.txt"),
            Template::ContactVerificationSms => pair!("contact_verification_sms.txt"),
            Template::ContactChangedEmail => pair!("contact_changed_email.txt"),
            Template::ContactChangedSms => pair!("contact_changed_sms.txt"),
            Template::ExpiryReminderEmail => pair!("expiry_reminder_email.txt"),
            Template::ExpiryReminderSms => pair!("expiry_reminder_sms.txt"),
            Template::AccountSuspendedEmail => pair!("account_suspended_email.txt"),
            Template::AccountSuspendedSms => pair!("account_suspended_sms.txt"),
        }
    }

    /// Fills the placeholders. Unknown placeholders are left as they are (a unit test
    /// renders every template and checks none is left).
    pub fn render(self, language: Language, values: &[(&str, &str)]) -> Rendered {
        let mut text = self.source(language).trim_end().to_owned();
        for (name, value) in values {
            text = text.replace(&format!("{{{{{name}}}}}"), value);
        }
        if self.is_sms() {
            return Rendered { subject: None, body: text };
        }
        let (first_line, rest) = text.split_once('\n').unwrap_or((&text, ""));
        let subject = first_line.strip_prefix("Subject:").map(|s| s.trim().to_owned());
        let body = if subject.is_some() { rest.trim_start().to_owned() } else { text.clone() };
        Rendered { subject, body }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: Option<String>,
    pub body: String,
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
    pub fn new(to: &Email, template: Template, language: Language, values: &[(&str, &str)]) -> Self {
        let rendered = template.render(language, values);
        EmailMessage { to: to.clone(), template, subject: rendered.subject.unwrap_or_default(), body: rendered.body }
    }
}

impl SmsMessage {
    pub fn new(to: &SaudiMobile, template: Template, language: Language, values: &[(&str, &str)]) -> Self {
        SmsMessage { to: to.clone(), template, body: template.render(language, values).body }
    }
}

/// Why a provider did not take a message.
#[derive(Debug, thiserror::Error)]
#[error("the message could not be delivered ({reason})")]
pub struct DeliveryError {
    /// Whether trying again later may succeed (throttling, an outage) or not (an address the
    /// provider refuses).
    pub transient: bool,
    /// What went wrong, from the provider's error code: safe to store and show, never
    /// personal data (providers' messages can quote the address).
    pub reason: String,
    #[source]
    pub source: Option<BoxError>,
}

impl DeliveryError {
    pub fn transient(reason: impl Into<String>, source: impl Into<BoxError>) -> Self {
        DeliveryError { transient: true, reason: reason.into(), source: Some(source.into()) }
    }

    pub fn permanent(reason: impl Into<String>, source: impl Into<BoxError>) -> Self {
        DeliveryError { transient: false, reason: reason.into(), source: Some(source.into()) }
    }
}

/// The provider's id of a message it accepted (SES `MessageId`, SNS `MessageId`).
pub type ProviderMessageId = String;

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send_email(&self, message: &EmailMessage) -> Result<ProviderMessageId, DeliveryError>;
}

#[async_trait]
pub trait TextSender: Send + Sync {
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

    /// The longest values each placeholder takes in practice.
    fn longest_values() -> Vec<(&'static str, &'static str)> {
        vec![
            ("code", "999999"),
            ("days", "30"),
            ("date", "2027-11-23"),
            ("hours", "72"),
            ("name", "عبدالرحمن بن عبدالعزيز"),
            ("organization", "شركة المثال للتجارة"),
            ("link", "https://portal.example.sa/activate#token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            ("new_value", "n***@example.com"),
        ]
    }

    #[test]
    fn every_template_renders_completely_in_both_languages() {
        for template in Template::ALL {
            for language in [Language::Ar, Language::En] {
                let mut values = longest_values();
                let channel = channel_name(true, language);
                values.push(("channel", channel));
                let rendered = template.render(language, &values);
                assert!(!rendered.body.contains("{{"), "{template:?}/{language:?} left a placeholder");
                assert_eq!(rendered.subject.is_some(), !template.is_sms(), "{template:?}/{language:?}");
            }
        }
    }

    #[test]
    fn every_sms_fits_one_segment_with_its_longest_values() {
        for template in Template::ALL.into_iter().filter(|t| t.is_sms()) {
            for language in [Language::Ar, Language::En] {
                for email in [true, false] {
                    let mut values = longest_values();
                    values.push(("channel", channel_name(email, language)));
                    let body = template.render(language, &values).body;
                    assert_eq!(sms_segments(&body), 1, "{template:?}/{language:?} needs more than one segment: {body}");
                }
            }
        }
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
