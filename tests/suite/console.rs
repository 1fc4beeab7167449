//! The console (`console/`) is a pure client of the public API. Its API module,
//! `console/api.js`, is generated from `openapi.yaml` here: one function per operation,
//! typed with JSDoc from the schemas (CI type-checks the console against it with
//! TypeScript). The test fails when the file is not what `openapi.yaml` makes; run it with
//! `UPDATE_CONSOLE_CLIENT=1` to write it.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use system_tests::moto::workspace_root;
use yaml_rust2::{Yaml, YamlLoader};

pub fn openapi() -> Yaml {
    let text = std::fs::read_to_string(workspace_root().join("openapi.yaml")).expect("openapi.yaml");
    YamlLoader::load_from_str(&text).expect("openapi.yaml is YAML").remove(0)
}

fn text_or(yaml: &Yaml, default: &str) -> String {
    yaml.as_str().unwrap_or(default).to_owned()
}

/// The TypeScript type (in JSDoc) of a JSON schema.
fn type_of(schema: &Yaml) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        return type_name(reference.rsplit('/').next().unwrap_or("unknown"));
    }
    if let Some(all) = schema["allOf"].as_vec() {
        return all.iter().map(type_of).collect::<Vec<_>>().join(" & ");
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(any) = schema[key].as_vec() {
            let alternatives: BTreeSet<String> = any.iter().map(type_of).collect();
            let alternatives = alternatives.into_iter().collect::<Vec<_>>().join(" | ");
            // Alternatives beside the schema's own properties narrow them: both hold.
            return match schema {
                Yaml::Hash(hash) if hash.contains_key(&Yaml::String("properties".to_owned())) => {
                    let mut own = hash.clone();
                    own.remove(&Yaml::String(key.to_owned()));
                    format!("{} & ({alternatives})", type_of(&Yaml::Hash(own)))
                }
                _ => alternatives,
            };
        }
    }
    if let Some(values) = schema["enum"].as_vec() {
        return values
            .iter()
            .map(|value| match value {
                Yaml::String(text) => format!("{text:?}"),
                Yaml::Integer(n) => n.to_string(),
                Yaml::Boolean(b) => b.to_string(),
                _ => "null".to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" | ");
    }
    let types: Vec<String> = match &schema["type"] {
        Yaml::String(one) => vec![one.clone()],
        Yaml::Array(many) => many.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
        _ if !schema["properties"].is_badvalue() => vec!["object".to_owned()],
        _ => vec![],
    };
    if types.is_empty() {
        return "unknown".to_owned();
    }
    types
        .iter()
        .map(|kind| match kind.as_str() {
            "string" => "string".to_owned(),
            "integer" | "number" => "number".to_owned(),
            "boolean" => "boolean".to_owned(),
            "null" => "null".to_owned(),
            "array" => format!("Array<{}>", type_of(&schema["items"])),
            "object" => object_type(schema),
            _ => "unknown".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn object_type(schema: &Yaml) -> String {
    let required: BTreeSet<&str> = schema["required"].as_vec().into_iter().flatten().filter_map(Yaml::as_str).collect();
    let mut fields = Vec::new();
    if let Some(properties) = schema["properties"].as_hash() {
        for (name, property) in properties {
            let name = name.as_str().unwrap_or_default();
            let optional = if required.contains(name) { "" } else { "?" };
            let key = if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') { name.to_owned() } else { format!("{name:?}") };
            fields.push(format!("{key}{optional}: {}", type_of(property)));
        }
    }
    match &schema["additionalProperties"] {
        Yaml::Hash(_) => {
            let values = type_of(&schema["additionalProperties"]);
            if fields.is_empty() {
                return format!("Record<string, {values}>");
            }
            fields.push(format!("[key: string]: {values}"));
        }
        Yaml::Boolean(false) | Yaml::BadValue => {}
        _ if fields.is_empty() => return "Record<string, unknown>".to_owned(),
        _ => {}
    }
    format!("{{ {} }}", fields.join(", "))
}

/// The camel-case name of a parameter for the request object's `path`/`query` keys: the
/// parameter's own name (JSON keys need no renaming).
fn parameter_entry(parameter: &Yaml) -> (String, String, bool, String) {
    let name = text_or(&parameter["name"], "");
    let place = text_or(&parameter["in"], "");
    let required = parameter["required"].as_bool().unwrap_or(false);
    (place, name, required, type_of(&parameter["schema"]))
}

fn resolve<'a>(spec: &'a Yaml, item: &'a Yaml) -> &'a Yaml {
    match item["$ref"].as_str() {
        Some(reference) => {
            let mut node = spec;
            for part in reference.trim_start_matches("#/").split('/') {
                node = &node[part];
            }
            node
        }
        None => item,
    }
}

/// Writes `text` as JSDoc lines of at most about 96 characters, broken between words.
fn doc_comment(out: &mut String, text: &str) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + word.chars().count() > 96 {
            let _ = writeln!(out, " * {line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, " * {line}");
    }
}

/// A schema's name as a type: `Error` would shadow JavaScript's own.
fn type_name(schema: &str) -> String {
    if schema == "Error" { "ErrorBody".to_owned() } else { schema.to_owned() }
}

pub fn render_client(spec: &Yaml) -> String {
    let mut out = String::new();
    out.push_str(
        "// @ts-check\n// Generated from openapi.yaml by tests/suite/console.rs; do not edit. Regenerate with\n// `UPDATE_CONSOLE_CLIENT=1 cargo test -p system-tests --test suite console::`.\n\n/** @typedef {import(\"./http.js\").Api} Api */\n\n",
    );
    if let Some(schemas) = spec["components"]["schemas"].as_hash() {
        for (name, schema) in schemas {
            let name = name.as_str().unwrap_or_default();
            let _ = writeln!(out, "/** @typedef {{{}}} {} */", type_of(schema), type_name(name));
        }
    }
    out.push('\n');
    let mut operations = Vec::new();
    for (path, item) in spec["paths"].as_hash().into_iter().flatten() {
        let path = path.as_str().unwrap_or_default();
        for (method, operation) in item.as_hash().into_iter().flatten() {
            operations.push((
                text_or(&operation["operationId"], ""),
                path.to_owned(),
                method.as_str().unwrap_or_default().to_uppercase(),
                operation,
            ));
        }
    }
    operations.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, path, method, operation) in operations {
        let mut groups: Vec<(&str, Vec<String>, bool)> = Vec::new();
        for place in ["path", "query", "header"] {
            let mut fields = Vec::new();
            let mut any_required = false;
            for parameter in operation["parameters"].as_vec().into_iter().flatten() {
                let (at, name, required, kind) = parameter_entry(resolve(spec, parameter));
                if at != place {
                    continue;
                }
                any_required |= required;
                let key = if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') { name } else { format!("{name:?}") };
                fields.push(format!("{key}{}: {kind}", if required { "" } else { "?" }));
            }
            if !fields.is_empty() {
                groups.push((place, fields, any_required));
            }
        }
        let mut request = Vec::new();
        for (place, fields, required) in &groups {
            let key = if *place == "header" { "headers" } else { place };
            request.push(format!("{key}{}: {{ {} }}", if *required { "" } else { "?" }, fields.join(", ")));
        }
        let body = &operation["requestBody"];
        if !body.is_badvalue() {
            let required = body["required"].as_bool().unwrap_or(false);
            request.push(format!("body{}: {}", if required { "" } else { "?" }, type_of(&body["content"]["application/json"]["schema"])));
        }
        let success = operation["responses"]
            .as_hash()
            .into_iter()
            .flatten()
            .find(|(status, _)| status.as_str().is_some_and(|s| s.starts_with('2')))
            .map(|(_, response)| resolve(spec, response));
        let answer = success.map_or("unknown".to_owned(), |response| {
            let json = &response["content"]["application/json"]["schema"];
            if json.is_badvalue() { "unknown".to_owned() } else { type_of(json) }
        });
        let csv = success.is_some_and(|response| !response["content"]["text/csv"].is_badvalue());
        let request_type = if request.is_empty() { "{}".to_owned() } else { format!("{{ {} }}", request.join(", ")) };
        let optional = request.is_empty()
            || (groups.iter().all(|(_, _, required)| !required) && (body.is_badvalue() || !body["required"].as_bool().unwrap_or(false)));
        out.push_str("/**\n");
        doc_comment(&mut out, &format!("`{method} {path}`: {}", text_or(&operation["summary"], "")));
        let _ = writeln!(out, " * @param {{Api}} api");
        let _ = writeln!(out, " * @param {{{request_type}{}}} request", if optional { "=" } else { "" });
        let _ = writeln!(out, " * @returns {{Promise<{answer}>}}\n */");
        let default = if optional { " = {}" } else { "" };
        let _ = writeln!(out, "export function {id}(api, request{default}) {{\n  return api.call({method:?}, {path:?}, request);\n}}\n");
        if csv {
            out.push_str("/**\n");
            doc_comment(&mut out, &format!("`{method} {path}` as CSV (`Accept: text/csv`): the file, named by the server."));
            let _ = writeln!(out, " * @param {{Api}} api");
            let _ = writeln!(out, " * @param {{{request_type}{}}} request", if optional { "=" } else { "" });
            let _ = writeln!(out, " * @returns {{Promise<{{ blob: Blob, fileName: string, nextCursor: string | null }}>}}\n */");
            let _ = writeln!(
                out,
                "export function {id}Csv(api, request{default}) {{\n  return api.download({method:?}, {path:?}, request);\n}}\n"
            );
        }
    }
    out
}

#[test]
fn the_console_client_is_generated_from_openapi() {
    let generated = render_client(&openapi());
    let path = workspace_root().join("console/api.js");
    if std::env::var_os("UPDATE_CONSOLE_CLIENT").is_some() {
        std::fs::write(&path, &generated).expect("write console/api.js");
    }
    let kept = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        kept == generated,
        "console/api.js is not what openapi.yaml makes: run `UPDATE_CONSOLE_CLIENT=1 cargo test -p system-tests --test suite console::` and commit it"
    );
    // Every operation has its function.
    for (_, item) in openapi()["paths"].as_hash().expect("paths") {
        for (_, operation) in item.as_hash().expect("operations") {
            let id = text_or(&operation["operationId"], "");
            assert!(kept.contains(&format!("export function {id}(")), "{id}");
        }
    }
}

fn messages(language: &str) -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(workspace_root().join(format!("console/i18n/{language}.json"))).expect("a message file");
    match serde_json::from_str(&text).expect("JSON") {
        serde_json::Value::Object(map) => map,
        _ => panic!("{language}.json is an object of strings"),
    }
}

/// The literal keys of `t("…")` calls in the console's scripts.
fn keys_used() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for path in walk(&workspace_root().join("console")) {
        if path.extension().and_then(|e| e.to_str()) != Some("js") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a script");
        // `t("key"`, where `t` is the whole name (not `split("` or `at("`).
        for (at, _) in text.match_indices("t(\"") {
            if text[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                continue;
            }
            if let Some(key) = text[at + 3..].split('"').next()
                && key.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && key.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                keys.insert(key.to_owned());
            }
        }
    }
    keys
}

/// Every string the console shows exists in Arabic and in English; every refusal the API
/// can give, every audit action, status and message kind has its sentence.
#[test]
fn every_string_of_the_console_is_in_both_languages() {
    let arabic = messages("ar");
    let english = messages("en");
    let ar: BTreeSet<&String> = arabic.keys().collect();
    let en: BTreeSet<&String> = english.keys().collect();
    assert_eq!(ar, en, "the same keys in ar.json and en.json");
    for (key, value) in arabic.iter().chain(english.iter()) {
        assert!(value.as_str().is_some_and(|text| !text.trim().is_empty()), "{key} is a non-empty string");
    }
    let mut wanted = keys_used();
    assert!(wanted.len() > 150, "the scan finds the console's keys ({})", wanted.len());
    wanted.extend(domain::error::Kind::ALL.iter().map(|kind| format!("error.{}", kind.code())));
    wanted.extend(["internal", "unavailable", "network", "unknown", "unexpected"].map(|code| format!("error.{code}")));
    wanted.extend(domain::audit::AuditAction::ALL.iter().map(|action| format!("action.{}", action.as_str())));
    wanted.extend(["pending_activation", "active", "suspended", "expired"].map(|status| format!("status.{status}")));
    wanted.extend(["queued", "sent", "failed", "superseded"].map(|state| format!("message.{state}")));
    let slots = openapi()["components"]["schemas"]["Profile"]["properties"]["messages"]["propertyNames"]["enum"].clone();
    wanted.extend(slots.as_vec().expect("the message kinds").iter().map(|slot| format!("slot.{}", slot.as_str().unwrap_or_default())));
    let missing: Vec<&String> = wanted.iter().filter(|key| !arabic.contains_key(key.as_str())).collect();
    assert!(missing.is_empty(), "missing strings: {missing:?}");
    // Arabic strings are Arabic (a forgotten English copy would pass the key check).
    let untranslated: Vec<&String> = arabic
        .iter()
        .filter(|(key, value)| {
            let words = value
                .as_str()
                .unwrap_or_default()
                .split('{')
                .map(|part| part.split_once('}').map_or(part, |(_, rest)| rest))
                .collect::<String>();
            !key.starts_with("app.other")
                && value.as_str() == english[key.as_str()].as_str()
                && words.chars().any(|c| c.is_ascii_alphabetic())
        })
        .map(|(key, _)| key)
        .collect();
    assert!(untranslated.is_empty(), "not translated: {untranslated:?}");
}

/// The local server serves every file of `console/` (and nothing it does not list), with the
/// security headers, and the local sign-in mints tokens the API accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_server_serves_the_console_and_its_sign_in() {
    let on_disk: BTreeSet<String> = walk(&workspace_root().join("console"))
        .into_iter()
        .map(|path| path.strip_prefix(workspace_root().join("console")).expect("inside").to_string_lossy().into_owned())
        .collect();
    let served: BTreeSet<String> = local_api::console::FILES.iter().map(|file| file.name.to_owned()).collect();
    assert_eq!(served, on_disk, "local_api::console::FILES lists exactly console/");

    let world = system_tests::world::World::new(system_tests::world::Backend::Embedded).await;
    local_api::demo::seed(&world.env).await.expect("the demo data");
    let client = world.serve().await;
    for path in ["/", "/activate", "/console/app.js", "/console/i18n/ar.json"] {
        let answer = client.call("GET", path, None, &[], None).await;
        assert_eq!(answer.status, 200, "{path}");
        assert!(answer.header("content-security-policy").is_some_and(|csp| csp.contains("script-src 'self'")), "{path}");
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    }
    assert!(client.call("GET", "/", None, &[], None).await.text().contains("/console/app.js"));
    assert_eq!(client.call("GET", "/console/../Cargo.toml", None, &[], None).await.status, 404);
    let config = client.call("GET", "/config.json", None, &[], None).await.json();
    assert_eq!(config["auth"]["mode"], "local");

    let identities = client.call("GET", "/local/identities", None, &[], None).await.json();
    let manager = identities["identities"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|i| i["subject"] == "1012345672")
        .expect("the demo manager")
        .clone();
    assert_eq!(manager["organization"], "7001234567");
    assert!(manager["note"]["ar"].as_str().is_some_and(|note| note.contains("مدير")));
    let signed = client.call("POST", "/local/sign-in", None, &[], Some(&serde_json::json!({ "subject": "1012345672" }))).await.json();
    let token = signed["token"].as_str().expect("a token");
    assert_eq!(client.get("/v1/organizations/7001234567/balance", token).await.status, 200, "the API accepts it");
    let refused = client.call("POST", "/local/sign-in", None, &[], Some(&serde_json::json!({ "subject": "not an id" }))).await;
    assert_eq!(refused.status, 422);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

/// In AWS the console is static files in a private bucket that only its CloudFront
/// distribution reads (origin access control), served with security headers, and it is the
/// one browser origin the API's CORS admits.
#[test]
fn the_console_is_served_privately_through_cloudfront_and_is_the_api_s_only_browser_origin() {
    let template = crate::template::template();
    let resources = &template["Resources"];
    let block = &resources["ConsoleBucket"]["Properties"]["PublicAccessBlockConfiguration"];
    for setting in ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"] {
        assert_eq!(block[setting].as_bool(), Some(true), "{setting}");
    }
    let statements = resources["ConsoleBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"].as_vec().expect("statements");
    let allows: Vec<&Yaml> = statements.iter().filter(|s| s["Effect"].as_str() == Some("Allow")).collect();
    assert_eq!(allows.len(), 1, "one reader");
    assert_eq!(allows[0]["Principal"]["Service"].as_str(), Some("cloudfront.amazonaws.com"));
    assert_eq!(allows[0]["Action"].as_str(), Some("s3:GetObject"));
    let source = allows[0]["Condition"]["StringEquals"]["AWS:SourceArn"].as_str().expect("bound to one distribution");
    assert!(source.contains("distribution/${ConsoleDistribution}"), "{source}");

    let distribution = &resources["ConsoleDistribution"]["Properties"]["DistributionConfig"];
    let origin = &distribution["Origins"][0];
    assert_eq!(origin["OriginAccessControlId"].as_str(), Some("ConsoleOriginAccessControl.Id"));
    assert_eq!(distribution["DefaultCacheBehavior"]["ViewerProtocolPolicy"].as_str(), Some("redirect-to-https"));
    assert_eq!(distribution["DefaultCacheBehavior"]["ResponseHeadersPolicyId"].as_str(), Some("ConsoleSecurityHeaders"));
    let policy = &resources["ConsoleSecurityHeaders"]["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]["ContentSecurityPolicy"]
        ["ContentSecurityPolicy"];
    // `!Sub [text, variables]`: the issuer's host is cut from its URL.
    let csp = policy[0].as_str().expect("a CSP");
    assert!(policy[1]["IssuerHost"].as_vec().is_some(), "the issuer's host, by !Select over its URL's parts");
    for directive in ["script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    // The provider by origin — a path in connect-src would block its discovery document and
    // its token endpoint (Cognito's is on another host) — never the issuer URL itself.
    assert!(csp.contains("https://${IssuerHost} ${OidcTokenEndpointOrigin};"), "{csp}");
    assert!(!csp.contains("${JwtIssuer}"), "{csp}");
    // The local server sends the same script and style rules.
    let local = local_api::console::content_security_policy();
    for directive in ["script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"] {
        assert!(local.contains(directive), "{directive} locally");
    }

    let cors = &resources["HttpApi"]["Properties"]["CorsConfiguration"];
    let origins: Vec<&str> = cors["AllowOrigins"].as_vec().expect("origins").iter().filter_map(Yaml::as_str).collect();
    assert_eq!(origins, ["https://${ConsoleDistribution.DomainName}"]);
    let exposed: BTreeSet<&str> = cors["ExposeHeaders"].as_vec().expect("exposed").iter().filter_map(Yaml::as_str).collect();
    for header in ["content-disposition", "next-cursor", "retry-after"] {
        assert!(exposed.contains(header), "the console reads {header}");
    }
    let allowed: BTreeSet<&str> = cors["AllowHeaders"].as_vec().expect("headers").iter().filter_map(Yaml::as_str).collect();
    assert!(allowed.contains("idempotency-key") && allowed.contains("authorization"));
}
