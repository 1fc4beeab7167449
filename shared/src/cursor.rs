//! Positions in listings, handed to clients as opaque text.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;

/// A cursor the server did not issue for the listing it is used with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidCursor;

/// An opaque position in a listing: the key attributes of the last item returned,
/// base64url-encoded. Adapters check it belongs to the listing it is used with.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Cursor(String);

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cursor(..)")
    }
}

impl Cursor {
    pub fn from_client(text: &str) -> Self {
        Cursor(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn encode(key: &BTreeMap<String, String>) -> Self {
        let json = serde_json::to_vec(key).expect("a map of strings serializes");
        Cursor(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
    }

    pub fn decode(&self) -> Result<BTreeMap<String, String>, InvalidCursor> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(self.0.as_bytes()).map_err(|_| InvalidCursor)?;
        serde_json::from_slice(&bytes).map_err(|_| InvalidCursor)
    }
}
