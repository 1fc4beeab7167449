//! The console (`console/` at the repository's root), served by the local server at `/`
//! with nothing to build: its files are compiled into the binary. In AWS the same files are
//! served from S3 behind CloudFront (`template.yaml`, `infra/deploy-console.sh`).
//!
//! Locally the console signs in through `GET /local/identities` (the demo people and the
//! operator) and `POST /local/sign-in`, which mints the same kind of token the local JWT
//! check accepts; `GET /config.json` tells it so.

use hyper::body::Bytes;
use serde_json::{Value, json};

use crate::demo::{OPERATOR_SUBJECT, PERSONS};

pub struct File {
    /// The path under `/console/`.
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! console_files {
    ($(($name:literal, $type:literal)),+ $(,)?) => {
        /// Every file of the console (a test holds this list equal to the directory).
        pub const FILES: &[File] = &[$(File {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../console/", $name)),
        }),+];
    };
}

console_files! {
    ("index.html", "text/html; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("api.js", "text/javascript; charset=utf-8"),
    ("http.js", "text/javascript; charset=utf-8"),
    ("dom.js", "text/javascript; charset=utf-8"),
    ("i18n.js", "text/javascript; charset=utf-8"),
    ("session.js", "text/javascript; charset=utf-8"),
    ("styles.css", "text/css; charset=utf-8"),
    ("i18n/ar.json", "application/json; charset=utf-8"),
    ("i18n/en.json", "application/json; charset=utf-8"),
}

/// The page a path serves: the console's shell at `/` and at `/activate` (the activation
/// email's link), its files under `/console/`.
pub fn file(path: &str) -> Option<&'static File> {
    let name = match path {
        "/" | "/index.html" | "/activate" => "index.html",
        other => other.strip_prefix("/console/")?,
    };
    FILES.iter().find(|file| file.name == name)
}

/// Headers every console file is served with: no framing, no sniffing, scripts and styles
/// only from this origin, and the API on this origin.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-cache"),
];

/// `config.json` of the local server: the API is this origin, sign-in is local.
pub fn config() -> Value {
    json!({ "api": "", "auth": { "mode": "local" } })
}

/// The people the local sign-in page lists: the demo persons and the operator.
pub fn identities() -> Value {
    let mut identities = vec![json!({
        "subject": OPERATOR_SUBJECT,
        "role": "operator",
        "name": { "en": "Platform operator", "ar": "مشغّل المنصة" },
        "note": { "en": "onboards organizations, credits balances, keeps the person registry", "ar": "يسجّل المنشآت ويشحن الأرصدة ويحفظ سجل الأشخاص" },
        "organization": null,
    })];
    identities.extend(PERSONS.iter().map(|person| {
        json!({
            "subject": person.id,
            "role": null,
            "name": { "en": person.name_en, "ar": person.name_ar },
            "note": { "en": person.note, "ar": person.note_ar },
            "organization": person.organization,
        })
    }));
    json!({ "identities": identities })
}

/// Who may sign in locally: the operator, or any valid ID number (people the operator adds
/// to the registry sign in too). `None` for anything else.
pub fn sign_in_role(subject: &str) -> Option<Option<&'static str>> {
    if subject == OPERATOR_SUBJECT {
        return Some(Some("operator"));
    }
    domain::identity::PersonId::parse(subject).ok().map(|_| None)
}

pub fn body(file: &File) -> Bytes {
    Bytes::from_static(file.body)
}
