//! Every log line the functions write during a simulation (JSON, at INFO, as deployed, by
//! the test crate's capture), taken after each step and searched for personal data and
//! secrets.

pub use system_tests::logs::{capture, take};

/// Whether `secret` stands in `text` as a whole token (not inside a longer number, nor as
/// the fraction of a timestamp).
pub fn contains_token(text: &str, secret: &str) -> bool {
    text.match_indices(secret).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + secret.len()..].chars().next();
        let joined = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-');
        !joined(before) && !joined(after)
    })
}
