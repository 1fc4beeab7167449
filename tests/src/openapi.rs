//! What `openapi.yaml` documents each operation to answer, held against every answer the API
//! tests get: a status the operation does not list (4xx included; only 5xx may fall to
//! `default`), or an error code its status does not list, fails the test that got it. So the
//! whole suite, over every business path, keeps the file saying everything the server does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use yaml_rust2::{Yaml, YamlLoader};

use crate::http::Answer;
use crate::moto::workspace_root;

/// For each route key (`POST /v1/organizations`): each documented status, with the error codes
/// documented for it (none for a success).
pub struct Documented {
    operations: BTreeMap<String, BTreeMap<u16, BTreeSet<String>>>,
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

impl Documented {
    /// `openapi.yaml`, read once per test process.
    pub fn get() -> &'static Documented {
        static DOCUMENTED: OnceLock<Documented> = OnceLock::new();
        DOCUMENTED.get_or_init(|| {
            let text = std::fs::read_to_string(workspace_root().join("openapi.yaml")).expect("openapi.yaml");
            let spec = YamlLoader::load_from_str(&text).expect("openapi.yaml is YAML").remove(0);
            Documented::of(&spec)
        })
    }

    pub fn of(spec: &Yaml) -> Documented {
        let mut operations = BTreeMap::new();
        for (path, item) in spec["paths"].as_hash().expect("paths") {
            let path = path.as_str().expect("a path");
            for method in METHODS {
                let operation = &item[method];
                if operation.is_badvalue() {
                    continue;
                }
                let mut statuses = BTreeMap::new();
                for (status, response) in operation["responses"].as_hash().expect("responses") {
                    let Some(status) = status.as_str().and_then(|s| s.parse::<u16>().ok()) else {
                        continue; // `default`
                    };
                    statuses.insert(status, error_codes(spec, resolve(spec, response)));
                }
                operations.insert(format!("{} {path}", method.to_uppercase()), statuses);
            }
        }
        Documented { operations }
    }

    /// The statuses documented for a route, with their codes.
    pub fn statuses(&self, route_key: &str) -> Option<&BTreeMap<u16, BTreeSet<String>>> {
        self.operations.get(route_key)
    }

    /// Checks one answer of the API to `method path` (with its query string, if any) against
    /// the documentation; panics saying what is missing.
    pub fn check(&self, method: &str, path: &str, answer: &Answer) {
        let path = path.split('?').next().unwrap_or(path);
        if path == "/health" || path.starts_with("/local/") {
            return;
        }
        // A route that does not exist is API Gateway's 404, not an operation's answer.
        let Some(matched) = local_api::find_route(method, path) else { return };
        let key = matched.route.key();
        let statuses = self.statuses(key).unwrap_or_else(|| panic!("openapi.yaml does not describe {key}"));
        if answer.status >= 500 {
            return; // `default`: internal, unavailable, busy
        }
        let Some(codes) = statuses.get(&answer.status) else {
            panic!("{key} answered {}, a status openapi.yaml does not document for it: {}", answer.status, answer.text());
        };
        if answer.status >= 400 {
            let body: serde_json::Value = serde_json::from_slice(&answer.body)
                .unwrap_or_else(|_| panic!("{key} answered {} without a JSON error: {}", answer.status, answer.text()));
            let code = body["error"]["code"].as_str().unwrap_or_default();
            assert!(
                codes.contains(code),
                "{key} answered {} `{code}`, which openapi.yaml does not list for that status (it lists {codes:?}): {}",
                answer.status,
                answer.text()
            );
        }
    }
}

/// Follows a local `$ref` (`#/components/responses/Error`).
fn resolve<'a>(spec: &'a Yaml, node: &'a Yaml) -> &'a Yaml {
    match node["$ref"].as_str() {
        None => node,
        Some(reference) => {
            let pointer = reference.strip_prefix("#/").unwrap_or_else(|| panic!("only local references: {reference}"));
            let target = pointer.split('/').fold(spec, |at, part| &at[part]);
            assert!(!target.is_badvalue(), "{reference} points at nothing");
            resolve(spec, target)
        }
    }
}

/// The `error.code` values a response's JSON schema allows: the `enum` of an `allOf` part
/// narrowing the shared `Error` schema. A success documents none.
fn error_codes(spec: &Yaml, response: &Yaml) -> BTreeSet<String> {
    let schema = resolve(spec, &response["content"]["application/json"]["schema"]);
    let parts: Vec<&Yaml> = match schema["allOf"].as_vec() {
        Some(parts) => parts.iter().map(|part| resolve(spec, part)).collect(),
        None => vec![schema],
    };
    parts
        .iter()
        .filter_map(|part| part["properties"]["error"]["properties"]["code"]["enum"].as_vec())
        .flatten()
        .map(|code| code.as_str().expect("a code").to_owned())
        .collect()
}
