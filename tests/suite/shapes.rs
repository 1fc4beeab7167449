//! What openapi.yaml's schemas promise, through the API: a request they allow is taken as a
//! person writes it (Arabic-Indic digits, ASCII whitespace around IDs, `37308.0` for an
//! integer), one they forbid is refused for its shape, and a well-formed request the server
//! cannot use is a rule's 422. (Every answer is also checked against the file by the client.)

use domain::organization::{PricingPlan, SizeTier};
use serde_json::json;
use system_tests::http::Answer;
use system_tests::world::{Backend, Client, World};

use crate::fixtures::citizen;

const ORG: &str = "7000000606";

async fn world() -> (World, Client, String) {
    let world = World::new(Backend::Embedded).await;
    let manager = citizen(606);
    world.onboard(ORG, PricingPlan::Qiwa, &manager, &[("1-10", SizeTier::Small)]).await;
    let client = world.serve().await;
    let token = client.token_for(&domain::identity::PersonId::parse(&manager).expect("valid"));
    (world, client, token)
}

fn refused(answer: &Answer) -> (u16, String, String) {
    let field = answer.json()["error"]["field"].as_str().unwrap_or_default().to_owned();
    (answer.status, answer.code(), field)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_numbers_are_integers_however_they_are_written() {
    let (_world, client, _) = world().await;
    let operator = client.operator_token();
    let credits = format!("/v1/organizations/{ORG}/balance/credits");
    let credit = client.post(&credits, &operator, &json!({ "amount_halalas": 37308.0, "payment_reference": "PAY-1" })).await;
    assert_eq!((credit.status, credit.json()["credited_halalas"].clone()), (201, json!(37308)), "{}", credit.text());

    let auth = format!("Bearer {operator}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let exponent = client.send("POST", &credits, &headers, br#"{"amount_halalas": 1e3, "payment_reference": "PAY-2"}"#.to_vec()).await;
    assert_eq!((exponent.status, exponent.json()["balance_halalas"].clone()), (201, json!(38308)), "{}", exponent.text());

    let fraction = client.post(&credits, &operator, &json!({ "amount_halalas": 2.5, "payment_reference": "PAY-3" })).await;
    assert_eq!(refused(&fraction), (400, "invalid_request".into(), "amount_halalas".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_take_arabic_digits_and_ascii_whitespace_only() {
    let (_world, client, token) = world().await;
    // Tab, Arabic-Indic and Extended Arabic-Indic digits, a space: the organization, found.
    let spelled = client.get("/v1/organizations/%09%D9%A7%DB%B000000606%20", &token).await;
    assert_eq!((spelled.status, spelled.json()["id"].clone()), (200, json!(ORG)), "{}", spelled.text());
    // A no-break space is not ASCII whitespace: not an organization number, so none found.
    let nbsp = client.get("/v1/organizations/%C2%A07000000606", &token).await;
    assert_eq!(refused(&nbsp).0, 404);

    let service = client.service_token();
    let check = |organization: &str| json!({ "organization_id": organization, "user_id": format!("\n{}\t", citizen(606)), "establishment_id": " ١-١٠ ", "service": "iqama.renew" });
    let answer = client.post("/v1/authorizations/check", &service, &check("\r\n7000000606 ")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = client.post("/v1/authorizations/check", &service, &check("\u{a0}7000000606")).await;
    assert_eq!(refused(&answer), (422, "invalid_organization_id".into(), "organization_id".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_text_counts_what_was_sent_and_is_never_only_whitespace() {
    let (world, client, _) = world().await;
    world.register(&citizen(607), &["1-1"], None).await;
    let operator = client.operator_token();
    let organization = |unified: &str, name: String| {
        json!({
            "unified_number": unified,
            "name": name,
            "pricing_plan": "muqeem",
            "manager_id": citizen(607),
            "establishments": [{ "id": "1-1", "name": "Main", "size": "micro" }],
        })
    };
    for (case, name) in [("only spaces", " \u{3000} ".to_owned()), ("201 characters as sent", format!("{} ", "a".repeat(200)))] {
        let answer = client.post("/v1/organizations", &operator, &organization("7000000607", name)).await;
        assert_eq!(refused(&answer), (422, "invalid_field".into(), "name".into()), "{case}");
    }
    let answer = client.post("/v1/organizations", &operator, &organization("7000000607", format!(" {} ", "a".repeat(198)))).await;
    assert_eq!((answer.status, answer.json()["name"].clone()), (201, json!("a".repeat(198))), "kept trimmed: {}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shapes_the_schemas_forbid_are_refused_naming_the_field() {
    let (_world, client, token) = world().await;
    let user = format!("/v1/organizations/{ORG}/users/{}", citizen(606));
    let quote = format!("/v1/organizations/{ORG}/subscriptions/quote");
    let person =
        |language: serde_json::Value| json!({ "persons": [{ "id": citizen(606), "establishments": ["1-10"], "language": language }] });
    let cases = [
        ("null is not an absent field", "POST", quote.clone(), person(json!(null)), "persons[0].language"),
        ("null is not an unchanged email", "PATCH", user.clone(), json!({ "version": 1, "email": null }), "email"),
        ("a version and nothing to change", "PATCH", user.clone(), json!({ "version": 1 }), "body"),
        ("a code of five digits", "POST", "/v1/activations/mobile".into(), json!({ "organization_id": ORG, "code": "12345" }), "code"),
    ];
    for (case, method, path, body, field) in cases {
        let answer = client.call(method, &path, Some(&token), &[], Some(&body)).await;
        assert_eq!(refused(&answer), (400, "invalid_request".into(), field.into()), "{case}: {}", answer.text());
    }
    for query in ["action=user.subscribed,", "action=", "from=2026-1-5", "from=2026-11-23%2008:00:00Z", "limit=0", "format=xml"] {
        let answer = client.get(&format!("/v1/organizations/{ORG}/audit?{query}"), &token).await;
        assert_eq!((answer.status, answer.code()), (400, "invalid_request".into()), "{query}: {}", answer.text());
    }
    for query in ["action=user.subscribed,organization.onboarded", "from=2026-11-23&to=2026-11-23T23:00:00%2B03:00"] {
        let answer = client.get(&format!("/v1/organizations/{ORG}/audit?{query}"), &token).await;
        assert_eq!(answer.status, 200, "{query}: {}", answer.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_formed_requests_the_server_cannot_use_are_a_rules_422() {
    let (_world, client, token) = world().await;
    // A cursor the server did not issue: any string is a well-formed one.
    for cursor in ["not-a-cursor", "eyJwayI6Ik9SRyM3MDAwMDAwMDAxIn0"] {
        let answer = client.get(&format!("/v1/organizations/{ORG}/users?cursor={cursor}"), &token).await;
        assert_eq!(refused(&answer), (422, "invalid_cursor".into(), "cursor".into()), "{cursor}");
    }
    // One establishment under two spellings: valid JSON, so not a shape error.
    let permissions = format!("/v1/organizations/{ORG}/users/{}/permissions", citizen(606));
    let body = json!({ "version": 0, "grants": { "1-10": [], "١-١٠": [] } });
    let answer = client.call("PUT", &permissions, Some(&token), &[], Some(&body)).await;
    assert_eq!((answer.status, answer.code()), (422, "invalid_field".into()), "{}", answer.text());
}

/// The patterns openapi.yaml gives identifiers, codes and free text accept exactly what the
/// server's parsers accept, on text made to sit near each rule's edges.
mod patterns {
    use domain::identity::{IdError, PersonId};
    use domain::organization::{EstablishmentId, OrganizationId};
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    use proptest::prelude::*;
    use regex::Regex;
    use yaml_rust2::{Yaml, YamlLoader};

    /// The pattern at `pointer` in openapi.yaml, compiled once.
    fn pattern(pointer: &[&str]) -> Regex {
        static SPEC: OnceLock<Yaml> = OnceLock::new();
        static COMPILED: OnceLock<Mutex<HashMap<String, Regex>>> = OnceLock::new();
        let spec = SPEC.get_or_init(|| {
            let text = std::fs::read_to_string(system_tests::moto::workspace_root().join("openapi.yaml")).expect("openapi.yaml");
            YamlLoader::load_from_str(&text).expect("YAML").remove(0)
        });
        let mut compiled = COMPILED.get_or_init(Default::default).lock().expect("not poisoned");
        let regex = compiled.entry(pointer.join("/")).or_insert_with(|| {
            let node = pointer.iter().fold(spec, |at, part| &at[*part]);
            Regex::new(node["pattern"].as_str().unwrap_or_else(|| panic!("a pattern at {pointer:?}"))).expect("a valid pattern")
        });
        regex.clone()
    }

    fn schema(name: &str) -> Regex {
        pattern(&["components", "schemas", name])
    }

    /// Digits of three scripts, whitespace ASCII and not, separators, letters, a control.
    const PIECES: &[&str] = &[
        "0", "1", "2", "5", "6", "7", "9", "٠", "١", "٢", "٥", "٦", "٧", "٩", "۰", "۱", "۲", "۵", "۶", "۷", "۹", "-", "+", " ", "\t", "\n",
        "\r", "\u{c}", "\u{b}", "\u{a0}", "\u{3000}", "(", ")", ".", "a", "Z", "_", "\u{7f}", "\u{85}", "é", "ب",
    ];

    fn text_near(core: &'static str) -> impl Strategy<Value = String> {
        let piece = prop::sample::select(PIECES);
        (
            prop::collection::vec(piece.clone(), 0..3),
            proptest::string::string_regex(core).expect("a core"),
            prop::collection::vec(piece, 0..3),
        )
            .prop_map(|(before, core, after)| format!("{}{core}{}", before.concat(), after.concat()))
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(PIECES), 0..16).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn ids(near in text_near("[0-9٠-٩۰-۹7٧۷12]{8,11}"), any in any_text()) {
            let (organization, person) = (schema("OrganizationId"), schema("PersonId"));
            for text in [&near, &any] {
                prop_assert_eq!(organization.is_match(text), OrganizationId::parse(text).is_ok(), "{:?}", text);
                // A wrong check digit is a rule (422), not a shape.
                let shaped = !matches!(PersonId::parse(text), Err(IdError::WrongLength | IdError::WrongPrefix));
                prop_assert_eq!(person.is_match(text), shaped, "{:?}", text);
            }
        }

        #[test]
        fn establishments_and_codes(near in text_near("[0-9٠-٩-]{1,14}"), any in any_text()) {
            let (establishment, code) = (schema("EstablishmentId"), schema("Code"));
            for text in [&near, &any] {
                prop_assert_eq!(establishment.is_match(text), EstablishmentId::parse(text).is_ok(), "{:?}", text);
                prop_assert_eq!(code.is_match(text), domain::parse::code("code", text).is_ok(), "{:?}", text);
            }
        }

        #[test]
        fn mobiles(near in text_near("[+]?[0٠9٩6٦5٥ ()-]{0,6}[5٥][0-9 .-]{7,10}"), any in any_text()) {
            let mobile = schema("Mobile");
            for text in [&near, &any] {
                prop_assert_eq!(mobile.is_match(text), domain::contact::SaudiMobile::parse(text).is_ok(), "{:?}", text);
            }
        }

        #[test]
        fn nationalities_and_link_tokens(near in text_near("[A-Za-z0-9_-]{1,3}|[A-Za-z0-9_-]{42,44}"), any in any_text()) {
            let (nationality, token) = (schema("Nationality"), schema("ActivationToken"));
            for text in [&near, &any] {
                prop_assert_eq!(nationality.is_match(text), domain::person::Nationality::parse(text).is_some(), "{:?}", text);
                let link = domain::actions::activate::ConfirmEmail::new(text).is_ok();
                prop_assert_eq!(token.is_match(text), link, "{:?}", text);
            }
        }

        #[test]
        fn free_text(text in any_text(), long in "[a ]{95,105}") {
            let free = schema("Text100");
            for text in [&text, &long] {
                let documented = free.is_match(text) && (1..=100).contains(&text.chars().count());
                prop_assert_eq!(documented, domain::parse::text("name", text, 100).is_ok(), "{:?}", text);
            }
        }

        #[test]
        fn idempotency_keys(key in "[ -~\u{a0}é]{0,3}|[!-~]{198,202}") {
            let pattern = pattern(&["components", "parameters", "IdempotencyKey", "schema"]);
            let documented = pattern.is_match(&key) && (1..=200).contains(&key.chars().count());
            prop_assert_eq!(documented, domain::idempotency::valid_key(&key), "{:?}", key);
        }
    }
}
