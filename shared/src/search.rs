//! Searching users by ID or name, in Arabic or English: both the stored text and the
//! query are normalized the same way, so a search finds what a person means rather than
//! the exact spelling.
//!
//! Arabic is written with optional diacritics and several letters that people type
//! interchangeably; the normalization is the usual one for Arabic search: diacritics and
//! tatweel dropped, alef forms (أ إ آ ٱ) to ا, ة to ه, ى to ي, Arabic-Indic digits to ASCII,
//! Latin lower-cased, runs of spaces to one.

use crate::identity::ascii_digit;
use crate::user::User;

/// The normalized form of a search text or query.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last_space = true;
    for c in text.chars() {
        let c = match ascii_digit(c) {
            // Harakat, shadda, sukun, superscript alef, tatweel: not part of the letters.
            '\u{064B}'..='\u{065F}' | '\u{0670}' | '\u{0640}' => continue,
            'أ' | 'إ' | 'آ' | 'ٱ' => 'ا',
            'ة' => 'ه',
            'ى' => 'ي',
            other => other,
        };
        if c.is_whitespace() {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
            continue;
        }
        last_space = false;
        out.extend(c.to_lowercase());
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// What a user is found by: ID, Arabic name and English name, normalized.
pub fn searchable(user: &User) -> String {
    let parts = [Some(user.id.as_str()), user.name.ar.as_deref(), user.name.en.as_deref()];
    normalize(&parts.into_iter().flatten().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arabic_spellings_people_mix_up_find_each_other() {
        assert_eq!(normalize("أحمد"), normalize("احمد"));
        assert_eq!(normalize("فاطمة"), normalize("فاطمه"));
        assert_eq!(normalize("مُصْطَفَى"), normalize("مصطفي"));
        assert_eq!(normalize("عـــلي"), "علي");
        assert_eq!(normalize("  Noura   AL-Dosari "), "noura al-dosari");
        assert_eq!(normalize("٢٣٤٥"), "2345");
    }
}
