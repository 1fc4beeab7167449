//! Positions in listings, and the cursors clients get for them.
//!
//! A `Position` is where a listing stopped, as the store knows it: the key attributes of the
//! last item read (DynamoDB's `LastEvaluatedKey`). It stays inside the system — the sweep
//! keeps positions in its state item. What a client gets is a sealed cursor: the position
//! encrypted and authenticated (AES-256-GCM-SIV) under a key derived from the code key,
//! bound to the listing it was issued for — its kind, organization, filters and caller — as
//! associated data. So a cursor names nobody (when a filtered listing's read budget runs
//! out on a user the caller may not see, the position is that user's key), and a cursor of
//! one listing is refused by every other (`invalid_cursor`).

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use base64::Engine;
use hmac::Mac;
use sha2::Sha256;

use crate::secrets::CodeKey;

/// A cursor the server did not issue for the listing it is used with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidCursor;

/// Where a listing stopped: the key attributes of the last item read, as base64url JSON
/// (how the sweep's state item keeps it). Never shown to a client as it is.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Position(String);

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Position(..)")
    }
}

impl Position {
    pub fn encode(key: &BTreeMap<String, String>) -> Self {
        let json = serde_json::to_vec(key).expect("a map of strings serializes");
        Position(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
    }

    pub fn decode(&self) -> Result<BTreeMap<String, String>, InvalidCursor> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(self.0.as_bytes()).map_err(|_| InvalidCursor)?;
        serde_json::from_slice(&bytes).map_err(|_| InvalidCursor)
    }
}

/// A listing, as far as a cursor belongs to it: its kind, scope, filters and caller, each
/// part length-prefixed so no two listings spell the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing(Vec<u8>);

impl Listing {
    pub fn new<'a>(kind: &'a str, parts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut text = Vec::new();
        for part in std::iter::once(kind).chain(parts) {
            text.extend_from_slice(&(part.len() as u32).to_be_bytes());
            text.extend_from_slice(part.as_bytes());
        }
        Listing(text)
    }
}

/// The key cursors are sealed under.
#[derive(Clone)]
pub struct Cursors {
    cipher: Aes256GcmSiv,
    nonces: [u8; 32],
}

impl fmt::Debug for Cursors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cursors(..)")
    }
}

/// Cursors a page request carries from a client: its size and the cursor text, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageAsked {
    pub limit: usize,
    pub cursor: Option<String>,
}

impl Cursors {
    /// Keys derived from the code key, one for sealing and one for the synthetic nonces.
    pub fn new(key: &CodeKey) -> Self {
        let cipher = Aes256GcmSiv::new_from_slice(&key.derive("listing-cursor-encryption")).expect("a 256-bit key");
        Cursors { cipher, nonces: key.derive("listing-cursor-nonce") }
    }

    /// The cursor a client gets for `position` of `listing`. The same position of the same
    /// listing always seals to the same text (the nonce is derived from both, which
    /// GCM-SIV allows: a repeated nonce reveals only that the plaintext repeats).
    pub fn seal(&self, listing: &Listing, position: &Position) -> String {
        let plaintext = position.0.as_bytes();
        let mut mac = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.nonces).expect("HMAC takes any key");
        mac.update(&(listing.0.len() as u64).to_be_bytes());
        mac.update(&listing.0);
        mac.update(plaintext);
        let nonce_bytes: [u8; 32] = mac.finalize().into_bytes().into();
        let nonce = Nonce::from_slice(&nonce_bytes[..12]);
        let sealed = self.cipher.encrypt(nonce, Payload { msg: plaintext, aad: &listing.0 }).expect("sealing a short position");
        let mut text = nonce.to_vec();
        text.extend(sealed);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    /// The position a client's cursor stands for, if it was sealed for this very listing.
    pub fn open(&self, listing: &Listing, cursor: &str) -> Result<Position, InvalidCursor> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor.as_bytes()).map_err(|_| InvalidCursor)?;
        if bytes.len() < 12 + 16 {
            return Err(InvalidCursor);
        }
        let (nonce, sealed) = bytes.split_at(12);
        let plaintext =
            self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: &listing.0 }).map_err(|_| InvalidCursor)?;
        String::from_utf8(plaintext).map(Position).map_err(|_| InvalidCursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursors() -> Cursors {
        Cursors::new(&CodeKey::new(vec![9; 32]).expect("32 bytes"))
    }

    fn position() -> Position {
        Position::encode(&BTreeMap::from([("pk".to_owned(), "ORG#7001234567".to_owned()), ("sk".to_owned(), "USER#2000000006".to_owned())]))
    }

    #[test]
    fn a_cursor_opens_for_its_own_listing_and_names_nobody() {
        let users = Listing::new("users", ["7001234567", "person:1000000008", "active"]);
        let sealed = cursors().seal(&users, &position());
        assert_eq!(cursors().open(&users, &sealed), Ok(position()));
        assert_eq!(cursors().seal(&users, &position()), sealed, "deterministic");
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&sealed).expect("base64url");
        assert!(!String::from_utf8_lossy(&decoded).contains("2000000006"), "the position is not readable");
        assert!(!sealed.contains("2000000006"));
    }

    #[test]
    fn a_cursor_of_another_listing_caller_or_key_is_refused() {
        let users = Listing::new("users", ["7001234567", "person:1000000008", "active"]);
        let sealed = cursors().seal(&users, &position());
        for other in [
            Listing::new("audit", ["7001234567", "person:1000000008", "active"]),
            Listing::new("users", ["7001234567", "person:1000000008", "expired"]),
            Listing::new("users", ["7001234567", "person:2000000006", "active"]),
            Listing::new("users", ["7001234567person:1000000008", "active"]),
        ] {
            assert_eq!(cursors().open(&other, &sealed), Err(InvalidCursor), "{other:?}");
        }
        let other_key = Cursors::new(&CodeKey::new(vec![8; 32]).expect("32 bytes"));
        assert_eq!(other_key.open(&users, &sealed), Err(InvalidCursor));
        let mut tampered = sealed.into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(cursors().open(&users, &String::from_utf8(tampered).expect("ascii")), Err(InvalidCursor));
        for garbage in ["", "not-a-cursor", "eyJwayI6Ik9SRyM3MDAwMDAwMDQwIn0"] {
            assert_eq!(cursors().open(&users, garbage), Err(InvalidCursor), "{garbage}");
        }
    }
}
