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
    ("shell.js", "text/javascript; charset=utf-8"),
    ("screens/activate.js", "text/javascript; charset=utf-8"),
    ("screens/add.js", "text/javascript; charset=utf-8"),
    ("screens/audit.js", "text/javascript; charset=utf-8"),
    ("screens/balance.js", "text/javascript; charset=utf-8"),
    ("screens/me.js", "text/javascript; charset=utf-8"),
    ("screens/operator.js", "text/javascript; charset=utf-8"),
    ("screens/settings.js", "text/javascript; charset=utf-8"),
    ("screens/signin.js", "text/javascript; charset=utf-8"),
    ("screens/user.js", "text/javascript; charset=utf-8"),
    ("screens/users.js", "text/javascript; charset=utf-8"),
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

/// The content security policy of every console file: scripts and styles only from this
/// origin; connections to this origin (the API) and to the identity provider, if any.
pub fn content_security_policy() -> String {
    let provider = oidc().map(|(issuer, _)| format!(" {}", origin_of(&issuer))).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'{provider}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
}

/// Headers every console file is served with besides its policy: no sniffing, no referrer.
pub const HEADERS: &[(&str, &str)] =
    &[("x-content-type-options", "nosniff"), ("referrer-policy", "no-referrer"), ("cache-control", "no-cache")];

/// The identity provider to sign in with, when `LOCAL_CONSOLE_OIDC_ISSUER` and
/// `LOCAL_CONSOLE_OIDC_CLIENT_ID` name one (its tokens must then be what the local JWT check
/// accepts: `LOCAL_JWT_SECRET`, `LOCAL_JWT_ISSUER`, `LOCAL_JWT_AUDIENCE`).
fn oidc() -> Option<(String, String)> {
    let issuer = std::env::var("LOCAL_CONSOLE_OIDC_ISSUER").ok().filter(|v| !v.is_empty())?;
    let client = std::env::var("LOCAL_CONSOLE_OIDC_CLIENT_ID").ok().filter(|v| !v.is_empty())?;
    Some((issuer, client))
}

fn origin_of(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    match url[after_scheme..].find('/') {
        Some(end) => url[..after_scheme + end].to_owned(),
        None => url.to_owned(),
    }
}

/// `config.json` of the local server: the API is this origin; sign-in is local, or the
/// identity provider the environment names.
pub fn config() -> Value {
    match oidc() {
        Some((issuer, client_id)) => {
            json!({ "api": "", "auth": { "mode": "oidc", "issuer": issuer, "client_id": client_id, "token": "id_token" } })
        }
        None => json!({ "api": "", "auth": { "mode": "local" } }),
    }
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
