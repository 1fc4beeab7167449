//! Contact details: email addresses and Saudi mobile numbers. Both are personal data, so
//! their `Display` is masked and only `as_str` gives the whole value (for sending).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::identity::ascii_digit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid email address")]
pub struct InvalidEmail;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a Saudi mobile number (+9665XXXXXXXX)")]
pub struct InvalidMobile;

/// A syntactically valid email address, kept lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Email(String);

impl Email {
    /// The longest address SMTP can carry (RFC 5321 path limit).
    const MAX_LENGTH: usize = 254;

    pub fn parse(input: &str) -> Result<Self, InvalidEmail> {
        let trimmed = input.trim_ascii();
        if trimmed.is_empty() || trimmed.len() > Self::MAX_LENGTH {
            return Err(InvalidEmail);
        }
        let lower = trimmed.to_lowercase();
        // `email_address` implements RFC 5322. We also require a top-level domain, since an
        // address like `user@localhost` cannot receive mail from SES, and refuse display
        // names and IP-literal domains.
        email_address::EmailAddress::parse_with_options(
            &lower,
            email_address::Options::default().with_required_tld().without_display_text().without_domain_literal(),
        )
        .map_err(|_| InvalidEmail)?;
        Ok(Email(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `a***@example.com`: enough to recognise, not enough to harvest.
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.split_once('@').unwrap_or((&self.0, ""));
        let first: String = local.chars().take(1).collect();
        format!("{first}***@{domain}")
    }
}

/// A Saudi mobile number in E.164 form: `+9665` followed by eight digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SaudiMobile(String);

impl SaudiMobile {
    /// Accepts the ways people write Saudi mobiles: `+966 5x xxx xxxx`, `009665…`, `9665…`,
    /// `05…` and `5…`, with spaces, dashes or parentheses, in ASCII or Arabic-Indic digits.
    ///
    /// Written by hand rather than with a general phone-number library: the rule here is one
    /// country's mobile range, and a full numbering-plan database would triple the size of
    /// every Lambda binary for it.
    pub fn parse(input: &str) -> Result<Self, InvalidMobile> {
        let mut compact = String::with_capacity(input.len());
        for (index, c) in input.trim_ascii().chars().enumerate() {
            let c = ascii_digit(c);
            match c {
                '0'..='9' => compact.push(c),
                '+' if index == 0 => compact.push(c),
                ' ' | '-' | '(' | ')' | '.' => {}
                _ => return Err(InvalidMobile),
            }
        }
        let national = if let Some(rest) = compact.strip_prefix("+966") {
            rest
        } else if let Some(rest) = compact.strip_prefix("00966") {
            rest
        } else if let Some(rest) = compact.strip_prefix("966") {
            rest
        } else if let Some(rest) = compact.strip_prefix('0') {
            rest
        } else {
            compact.as_str()
        };
        let valid = national.len() == 9 && national.starts_with('5') && national.bytes().all(|b| b.is_ascii_digit());
        if !valid {
            return Err(InvalidMobile);
        }
        Ok(SaudiMobile(format!("+966{national}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `+9665******67`
    pub fn masked(&self) -> String {
        let tail = &self.0[self.0.len() - 2..];
        format!("+9665******{tail}")
    }
}

macro_rules! masked_display_and_string_serde {
    ($type:ty) => {
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.masked())
            }
        }

        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                <$type>::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

masked_display_and_string_serde!(Email);
masked_display_and_string_serde!(SaudiMobile);

/// The language a user reads messages in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    Ar,
    En,
}

impl Language {
    pub fn parse(input: &str) -> Option<Self> {
        match input {
            "ar" => Some(Language::Ar),
            "en" => Some(Language::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Language::Ar => "ar",
            Language::En => "en",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emails_are_lower_cased_and_masked() {
        let email = Email::parse("  Sara.Ali@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "sara.ali@example.com");
        assert_eq!(email.to_string(), "s***@example.com");
    }

    #[test]
    fn refuses_addresses_that_cannot_receive_mail() {
        for bad in ["", "plain", "a@b", "a@localhost", "@example.com", "a@.com", "a b@c.com", "a@[1.2.3.4]"] {
            assert_eq!(Email::parse(bad), Err(InvalidEmail), "{bad:?} should be refused");
        }
        let too_long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&too_long), Err(InvalidEmail));
    }

    #[test]
    fn every_common_way_of_writing_a_saudi_mobile_gives_the_e164_form() {
        for written in [
            "+966512345678",
            "+966 51 234 5678",
            "00966512345678",
            "966512345678",
            "0512345678",
            "512345678",
            "051-234-5678",
            "(051) 234 5678",
            "٠٥١٢٣٤٥٦٧٨",
        ] {
            assert_eq!(SaudiMobile::parse(written).unwrap().as_str(), "+966512345678", "{written}");
        }
    }

    #[test]
    fn refuses_landlines_foreign_numbers_and_junk() {
        for bad in ["+966112345678", "0112345678", "+971512345678", "05123", "0512345678901", "+96651234567a", "5+12345678", ""] {
            assert_eq!(SaudiMobile::parse(bad), Err(InvalidMobile), "{bad:?} should be refused");
        }
    }

    #[test]
    fn mobile_display_is_masked() {
        assert_eq!(SaudiMobile::parse("0512345678").unwrap().to_string(), "+9665******78");
    }

    proptest! {
        #[test]
        fn any_nine_digit_number_starting_with_5_parses_in_every_form(rest in "[0-9]{8}") {
            let expected = format!("+9665{rest}");
            for written in [format!("05{rest}"), format!("+9665{rest}"), format!("009665{rest}"), format!("5{rest}")] {
                let parsed = SaudiMobile::parse(&written).unwrap();
                prop_assert_eq!(parsed.as_str(), expected.as_str());
                prop_assert_eq!(SaudiMobile::parse(parsed.as_str()).unwrap(), parsed.clone());
            }
        }

        #[test]
        fn parsed_mobiles_are_always_e164_saudi(input in "\\PC{0,20}") {
            if let Ok(mobile) = SaudiMobile::parse(&input) {
                prop_assert_eq!(mobile.as_str().len(), 13);
                prop_assert!(mobile.as_str().starts_with("+9665"));
                prop_assert!(mobile.as_str()[1..].bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }
}
