//! Saudi identity numbers: the national ID of a citizen and the iqama of a resident.
//!
//! Both are ten digits with a Luhn check digit; the first digit says which kind it is
//! (`1` citizen, `2` resident). Parsing accepts Arabic-Indic digits, because that is what
//! people type on an Arabic keyboard, and stores ASCII.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not an identity number. Each maps to its own error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("an ID number has exactly 10 digits")]
    WrongLength,
    #[error("an ID number starts with 1 (national ID) or 2 (iqama)")]
    WrongPrefix,
    #[error("the check digit of the ID number does not match")]
    BadCheckDigit,
    #[error("this is an iqama number, a national ID was expected")]
    NotNationalId,
    #[error("this is a national ID, an iqama number was expected")]
    NotIqama,
}

/// A person's identity number: a citizen's national ID or a resident's iqama.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PersonId {
    National(NationalId),
    Iqama(IqamaNumber),
}

/// A Saudi citizen's national ID: ten digits starting with `1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NationalId(String);

/// A resident's iqama number: ten digits starting with `2`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IqamaNumber(String);

impl PersonId {
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let digits = ten_digits_with_valid_check(input)?;
        match digits.as_bytes()[0] {
            b'1' => Ok(PersonId::National(NationalId(digits))),
            b'2' => Ok(PersonId::Iqama(IqamaNumber(digits))),
            _ => Err(IdError::WrongPrefix),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            PersonId::National(id) => &id.0,
            PersonId::Iqama(id) => &id.0,
        }
    }

    /// Citizens hold a national ID; only they may use Saudi-only services.
    pub fn is_citizen(&self) -> bool {
        matches!(self, PersonId::National(_))
    }

    /// The form safe for logs and audit trails: first and last two digits only.
    pub fn masked(&self) -> String {
        mask_id(self.as_str())
    }
}

impl NationalId {
    pub fn parse(input: &str) -> Result<Self, IdError> {
        match PersonId::parse(input)? {
            PersonId::National(id) => Ok(id),
            PersonId::Iqama(_) => Err(IdError::NotNationalId),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl IqamaNumber {
    pub fn parse(input: &str) -> Result<Self, IdError> {
        match PersonId::parse(input)? {
            PersonId::Iqama(id) => Ok(id),
            PersonId::National(_) => Err(IdError::NotIqama),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Shows the first and last two characters of an identifier, the rest as `*`.
pub fn mask_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 4 {
        return "*".repeat(chars.len());
    }
    let hidden = chars.len() - 4;
    let mut out: String = chars[..2].iter().collect();
    out.push_str(&"*".repeat(hidden));
    out.extend(&chars[chars.len() - 2..]);
    out
}

impl fmt::Display for PersonId {
    /// Displays the masked form, so an ID can never reach a log line in full by accident.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Serialize for PersonId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PersonId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        PersonId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Maps Arabic-Indic (U+0660..) and Extended Arabic-Indic (U+06F0..) digits to ASCII.
/// Other characters are returned unchanged.
pub fn ascii_digit(c: char) -> char {
    match c {
        '\u{0660}'..='\u{0669}' => char::from(b'0' + (c as u32 - 0x0660) as u8),
        '\u{06F0}'..='\u{06F9}' => char::from(b'0' + (c as u32 - 0x06F0) as u8),
        other => other,
    }
}

fn ten_digits_with_valid_check(input: &str) -> Result<String, IdError> {
    let digits: String = input.trim_ascii().chars().map(ascii_digit).collect();
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdError::WrongLength);
    }
    if !matches!(digits.as_bytes()[0], b'1' | b'2') {
        return Err(IdError::WrongPrefix);
    }
    if !luhn_valid(&digits) {
        return Err(IdError::BadCheckDigit);
    }
    Ok(digits)
}

/// The Luhn check used by Saudi ID numbers: doubling every second digit from the right.
fn luhn_valid(digits: &str) -> bool {
    luhn_sum(digits).is_multiple_of(10)
}

fn luhn_sum(digits: &str) -> u32 {
    digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte - b'0');
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum()
}

/// Completes nine digits with the check digit that makes them a valid ID number.
/// Used by the demo seed and by tests to make valid numbers.
pub fn with_check_digit(first_nine: &str) -> String {
    assert!(first_nine.len() == 9 && first_nine.bytes().all(|b| b.is_ascii_digit()), "nine ASCII digits expected");
    let with_zero = format!("{first_nine}0");
    let remainder = luhn_sum(&with_zero) % 10;
    let check = (10 - remainder) % 10;
    format!("{first_nine}{check}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_valid_national_id_is_a_citizen() {
        let id = PersonId::parse(&with_check_digit("100000000")).unwrap();
        assert!(id.is_citizen());
        assert!(NationalId::parse(id.as_str()).is_ok());
        assert_eq!(IqamaNumber::parse(id.as_str()), Err(IdError::NotIqama));
    }

    #[test]
    fn a_valid_iqama_is_a_resident() {
        let id = PersonId::parse(&with_check_digit("234567891")).unwrap();
        assert!(!id.is_citizen());
        assert_eq!(NationalId::parse(id.as_str()), Err(IdError::NotNationalId));
    }

    #[test]
    fn known_check_digits() {
        // Worked by hand: 1 0 0 0 0 0 0 0 0 ? -> doubled positions contribute 2, so check is 8.
        assert_eq!(with_check_digit("100000000"), "1000000008");
        assert!(PersonId::parse("1000000008").is_ok());
        assert_eq!(PersonId::parse("1000000009"), Err(IdError::BadCheckDigit));
    }

    #[test]
    fn refuses_other_prefixes_and_lengths() {
        assert_eq!(PersonId::parse("3000000006"), Err(IdError::WrongPrefix));
        assert_eq!(PersonId::parse("100000000"), Err(IdError::WrongLength));
        assert_eq!(PersonId::parse("10000000081"), Err(IdError::WrongLength));
        assert_eq!(PersonId::parse("10000a0008"), Err(IdError::WrongLength));
        assert_eq!(PersonId::parse(""), Err(IdError::WrongLength));
    }

    #[test]
    fn accepts_arabic_indic_digits() {
        assert_eq!(PersonId::parse("١٠٠٠٠٠٠٠٠٨").unwrap().as_str(), "1000000008");
        assert_eq!(PersonId::parse("۱۰۰۰۰۰۰۰۰۸").unwrap().as_str(), "1000000008");
    }

    #[test]
    fn display_never_shows_the_whole_number() {
        let id = PersonId::parse("1000000008").unwrap();
        assert_eq!(id.to_string(), "10******08");
        assert_eq!(format!("{id}"), id.masked());
    }

    proptest! {
        #[test]
        fn every_completed_number_parses_and_round_trips(nine in "[12][0-9]{8}") {
            let full = with_check_digit(&nine);
            let id = PersonId::parse(&full).unwrap();
            prop_assert_eq!(id.as_str(), full.as_str());
            prop_assert_eq!(id.is_citizen(), nine.starts_with('1'));
            let json = serde_json::to_string(&id).unwrap();
            let back: PersonId = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, id);
        }

        #[test]
        fn changing_one_digit_breaks_the_check(nine in "[12][0-9]{8}", position in 1usize..10, delta in 1u8..10) {
            let full = with_check_digit(&nine);
            let mut bytes = full.into_bytes();
            bytes[position] = b'0' + (bytes[position] - b'0' + delta) % 10;
            let altered = String::from_utf8(bytes).unwrap();
            prop_assert_eq!(PersonId::parse(&altered), Err(IdError::BadCheckDigit));
        }

        #[test]
        fn arbitrary_text_never_panics_and_only_valid_numbers_pass(input in "\\PC{0,16}") {
            if let Ok(id) = PersonId::parse(&input) {
                prop_assert_eq!(id.as_str().len(), 10);
                prop_assert!(luhn_valid(id.as_str()));
            }
        }
    }
}
