//! Turning request text into domain types, with the rejection a client should see:
//! a 422 with a specific code naming the field.
//!
//! `openapi.yaml` states these rules as patterns and lengths, so a request its schemas allow
//! is never refused for its shape. That is why identifiers, codes and mobiles are trimmed of
//! ASCII whitespace only (`[\t\n\f\r ]`, which a pattern can name) and free text counts its
//! length on what was sent.

use time::Date;

use crate::catalog::{Catalog, ServiceCode};
use crate::contact::{Email, Language, SaudiMobile};
use crate::error::{Kind, Rejection};
use crate::identity::{IdError, PersonId};
use crate::organization::{EstablishmentId, OrganizationId};
use crate::person::Nationality;
use crate::user::{UserStatus, UserType};

pub fn person_id(field: &str, raw: &str) -> Result<PersonId, Rejection> {
    PersonId::parse(raw).map_err(|error| {
        let message = match error {
            IdError::WrongLength => "an ID number has exactly 10 digits",
            IdError::WrongPrefix => "an ID number starts with 1 (national ID) or 2 (iqama)",
            IdError::BadCheckDigit => "the check digit of this ID number is wrong",
            IdError::NotNationalId | IdError::NotIqama => "this is not the expected kind of ID number",
        };
        Rejection::new(Kind::InvalidIdNumber, message).field(field)
    })
}

pub fn organization_id(field: &str, raw: &str) -> Result<OrganizationId, Rejection> {
    OrganizationId::parse(raw).map_err(|e| Rejection::new(Kind::InvalidOrganizationId, e.to_string()).field(field))
}

pub fn establishment_id(field: &str, raw: &str) -> Result<EstablishmentId, Rejection> {
    EstablishmentId::parse(raw).map_err(|e| Rejection::new(Kind::InvalidEstablishmentId, e.to_string()).field(field))
}

pub fn email(field: &str, raw: &str) -> Result<Email, Rejection> {
    Email::parse(raw).map_err(|e| Rejection::new(Kind::InvalidEmail, e.to_string()).field(field))
}

pub fn mobile(field: &str, raw: &str) -> Result<SaudiMobile, Rejection> {
    SaudiMobile::parse(raw).map_err(|e| Rejection::new(Kind::InvalidMobile, e.to_string()).field(field))
}

pub fn nationality(field: &str, raw: &str) -> Result<Nationality, Rejection> {
    Nationality::parse(raw).ok_or_else(|| {
        Rejection::new(Kind::InvalidNationality, "a nationality is a two-letter ISO 3166 country code, e.g. SA").field(field)
    })
}

pub fn date(field: &str, raw: &str) -> Result<Date, Rejection> {
    crate::clock::parse_date(raw).ok_or_else(|| Rejection::new(Kind::InvalidField, "a date is written YYYY-MM-DD").field(field))
}

pub fn language(field: &str, raw: &str) -> Result<Language, Rejection> {
    Language::parse(raw).ok_or_else(|| Rejection::new(Kind::InvalidField, "the language is ar or en").field(field))
}

pub fn user_type(field: &str, raw: &str) -> Result<UserType, Rejection> {
    match raw {
        "residents_and_partners" => Ok(UserType::ResidentsAndPartners),
        "partners_only" => Ok(UserType::PartnersOnly),
        _ => Err(Rejection::new(Kind::InvalidField, "the user type is residents_and_partners or partners_only").field(field)),
    }
}

pub fn user_status(field: &str, raw: &str) -> Result<UserStatus, Rejection> {
    UserStatus::parse(raw)
        .ok_or_else(|| Rejection::new(Kind::InvalidField, "the status is pending_activation, active, suspended or expired").field(field))
}

pub fn service(catalog: &Catalog, field: &str, raw: &str) -> Result<ServiceCode, Rejection> {
    catalog.code(raw).ok_or_else(|| {
        Rejection::new(Kind::UnknownService, format!("there is no service {raw:?} in the catalog")).field(field).detail("service", raw)
    })
}

/// A six-digit code as a person types it (Arabic-Indic digits and surrounding ASCII
/// whitespace accepted).
pub fn code(field: &str, raw: &str) -> Result<String, Rejection> {
    let code: String = raw.trim_ascii().chars().map(crate::identity::ascii_digit).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::invalid_request(field, "the code is six digits"));
    }
    Ok(code)
}

/// Free text a person typed (names, titles, reasons): at most `max` characters as sent, no
/// control characters, not only whitespace; kept trimmed.
pub fn text(field: &str, raw: &str, max: usize) -> Result<String, Rejection> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || raw.chars().count() > max || raw.chars().any(char::is_control) {
        return Err(
            Rejection::new(Kind::InvalidField, format!("1 to {max} characters, not only spaces, no control characters")).field(field)
        );
    }
    if let Some(c) = raw.chars().find(|c| invisible_format(*c)) {
        return Err(Rejection::new(
            Kind::InvalidField,
            format!("no direction overrides, isolates, marks or other invisible format characters (found U+{:04X})", u32::from(c)),
        )
        .field(field));
    }
    Ok(trimmed.to_owned())
}

/// Characters that change how text around them is ordered or shown while showing nothing
/// themselves: bidirectional embeddings, overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069), direction marks (U+200E, U+200F, U+061C), zero-width space and word
/// joiners (U+200B, U+2060–U+2064), the byte-order mark (U+FEFF) and U+180E. With them, one
/// name can be made to look like another ("Trojan Source"). The zero-width (non-)joiners
/// U+200C and U+200D are kept: some scripts need them.
pub fn invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{061C}' | '\u{FEFF}' | '\u{180E}')
}

#[cfg(test)]
mod tests {
    #[test]
    fn direction_overrides_and_invisible_formatting_are_refused_in_free_text() {
        for bad in ["\u{202E}gnp.exe", "Sara\u{200F}", "a\u{2066}b\u{2069}", "x\u{200B}y", "\u{FEFF}name", "\u{061C}نص"] {
            let refused = super::text("name", bad, 100).expect_err(bad);
            assert_eq!(
                (refused.kind, refused.details.get("field").and_then(|f| f.as_str())),
                (crate::error::Kind::InvalidField, Some("name")),
                "{bad:?}"
            );
        }
        for good in ["سارة العتيبي", "Sara Al-Otaibi", "می\u{200C}خواهم", "O'Brien & Sons (KSA)"] {
            assert_eq!(super::text("name", good, 100).as_deref(), Ok(good), "{good:?}");
        }
    }
}
