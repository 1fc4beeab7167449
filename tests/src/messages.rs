//! Reading the secrets out of the messages a user received, as the user would.

/// The token at the end of the activation link in an email body.
pub fn link_token(body: &str) -> String {
    let start = body.find("token=").expect("the email carries a link") + "token=".len();
    body[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

/// The six-digit code in an SMS (or a contact-change email).
pub fn sms_code(body: &str) -> String {
    let digits: Vec<char> = body.chars().collect();
    (0..digits.len().saturating_sub(5))
        .map(|i| digits[i..i + 6].iter().collect::<String>())
        .find(|run| run.chars().all(|c| c.is_ascii_digit()))
        .expect("the SMS carries a code")
}
