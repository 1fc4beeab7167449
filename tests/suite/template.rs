//! `template.yaml` and the code must agree: the tables the code creates locally are the
//! ones the template deploys, and every route a function serves is an event of that
//! function in the template (and nothing else is).

use std::collections::BTreeSet;

use aws_adapters::tables::table_specs;
use domain::error::Kind;
use domain::store::Table;
use gateway::routes::functions;
use system_tests::moto::workspace_root;
use system_tests::openapi::Documented;
use yaml_rust2::{Yaml, YamlLoader};

pub fn template() -> Yaml {
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).expect("template.yaml");
    YamlLoader::load_from_str(&text).expect("template.yaml is YAML").remove(0)
}

pub fn resources(template: &Yaml) -> Vec<(String, Yaml)> {
    template["Resources"]
        .as_hash()
        .expect("Resources")
        .iter()
        .map(|(name, body)| (name.as_str().expect("a name").to_owned(), body.clone()))
        .collect()
}

/// The product's functions: every `AWS::Serverless::Function` but the inline custom-resource
/// handler that applies the account's SMS settings at deploy time.
pub fn product_functions(template: &Yaml) -> Vec<(String, Yaml)> {
    resources(template)
        .into_iter()
        .filter(|(_, body)| body["Type"].as_str() == Some("AWS::Serverless::Function") && body["Properties"]["InlineCode"].is_badvalue())
        .collect()
}

fn text(yaml: &Yaml) -> String {
    yaml.as_str().map(str::to_owned).unwrap_or_else(|| panic!("expected text, found {yaml:?}"))
}

fn logical_name(table: Table) -> &'static str {
    match table {
        Table::Users => "UsersTable",
        Table::Balances => "BalancesTable",
        Table::Audit => "AuditTable",
        Table::Outbox => "OutboxTable",
    }
}

#[test]
fn the_tables_the_code_creates_are_the_tables_the_template_deploys() {
    let template = template();
    let deployed: Vec<String> = resources(&template)
        .into_iter()
        .filter(|(_, body)| body["Type"].as_str() == Some("AWS::DynamoDB::Table"))
        .map(|(name, _)| name)
        .collect();
    let specs = table_specs();
    assert_eq!(deployed.len(), specs.len(), "the template deploys {deployed:?}");
    for spec in specs {
        let name = logical_name(spec.table);
        let properties = &template["Resources"][name]["Properties"];
        assert!(!properties.is_badvalue(), "{name} is missing from template.yaml");
        let attributes: BTreeSet<(String, String)> = properties["AttributeDefinitions"]
            .as_vec()
            .expect("attributes")
            .iter()
            .map(|a| (text(&a["AttributeName"]), text(&a["AttributeType"])))
            .collect();
        let expected: BTreeSet<(String, String)> = spec.attributes.iter().map(|a| ((*a).to_owned(), "S".to_owned())).collect();
        assert_eq!(attributes, expected, "{name}: attribute definitions");
        let keys: Vec<(String, String)> =
            properties["KeySchema"].as_vec().expect("keys").iter().map(|k| (text(&k["AttributeName"]), text(&k["KeyType"]))).collect();
        assert_eq!(keys, vec![("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())], "{name}: key schema");
        let indexes: BTreeSet<(String, String, Option<String>, String)> = properties["GlobalSecondaryIndexes"]
            .as_vec()
            .map(|list| {
                list.iter()
                    .map(|index| {
                        let schema = index["KeySchema"].as_vec().expect("index keys");
                        let sort = schema.iter().find(|k| k["KeyType"].as_str() == Some("RANGE")).map(|k| text(&k["AttributeName"]));
                        let hash =
                            schema.iter().find(|k| k["KeyType"].as_str() == Some("HASH")).map(|k| text(&k["AttributeName"])).expect("hash");
                        (text(&index["IndexName"]), hash, sort, text(&index["Projection"]["ProjectionType"]))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let expected: BTreeSet<_> = spec
            .indexes
            .iter()
            .map(|i| (i.name.to_owned(), i.partition_key.to_owned(), i.sort_key.map(str::to_owned), "ALL".to_owned()))
            .collect();
        assert_eq!(indexes, expected, "{name}: indexes");
        let ttl = properties["TimeToLiveSpecification"]["AttributeName"].as_str().map(str::to_owned);
        assert_eq!(ttl, spec.ttl_attribute.map(str::to_owned), "{name}: time to live");
        assert_eq!(properties["BillingMode"].as_str(), Some("PAY_PER_REQUEST"), "{name}");
        assert_eq!(properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(), Some(true), "{name}: PITR");
        assert_eq!(properties["DeletionProtectionEnabled"].as_bool(), Some(true), "{name}: deletion protection");
    }
}

/// `(binary, method, path, public)` of every HTTP event in the template.
pub fn template_routes() -> BTreeSet<(String, String, String, bool)> {
    let template = template();
    let mut routes = BTreeSet::new();
    for (_, body) in product_functions(&template) {
        let binary = text(&body["Metadata"]["BuildProperties"]["Binary"]);
        for (_, event) in body["Properties"]["Events"].as_hash().into_iter().flatten() {
            if event["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let properties = &event["Properties"];
            let public = properties["Auth"]["Authorizer"].as_str() == Some("NONE");
            routes.insert((binary.clone(), text(&properties["Method"]), text(&properties["Path"]), public));
        }
    }
    routes
}

#[test]
fn every_route_is_served_by_the_function_the_template_sends_it_to() {
    let served: BTreeSet<(String, String, String, bool)> = functions()
        .into_iter()
        .flat_map(|(function, routes)| {
            routes.into_iter().map(move |r| (function.to_owned(), r.method().to_owned(), r.path().to_owned(), r.public))
        })
        .collect();
    assert_eq!(template_routes(), served);
}

#[test]
fn every_function_builds_a_distinct_workspace_binary() {
    let template = template();
    let mut binaries = BTreeSet::new();
    for (name, body) in product_functions(&template) {
        assert_eq!(body["Metadata"]["BuildMethod"].as_str(), Some("rust-cargolambda"), "{name}");
        let binary = text(&body["Metadata"]["BuildProperties"]["Binary"]);
        let manifest = workspace_root().join("functions").join(&binary).join("Cargo.toml");
        let cargo = std::fs::read_to_string(&manifest).unwrap_or_else(|_| panic!("{name}: no crate at {}", manifest.display()));
        assert!(cargo.contains(&format!("name = \"{binary}\"")), "{name}: functions/{binary} builds a binary named {binary}");
        assert!(binaries.insert(binary.clone()), "{binary} is built twice");
    }
    assert!(template["Globals"]["Function"]["Architectures"].as_vec().is_some(), "the architecture comes from a parameter");
    assert_eq!(template["Parameters"]["Architecture"]["Default"].as_str(), Some("arm64"));
}

#[test]
fn the_sms_settings_handler_may_only_set_sms_attributes() {
    let template = template();
    let inline: Vec<(String, Yaml)> = resources(&template)
        .into_iter()
        .filter(|(_, body)| body["Type"].as_str() == Some("AWS::Serverless::Function") && !body["Properties"]["InlineCode"].is_badvalue())
        .collect();
    assert_eq!(inline.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(), ["SmsSettingsFunction"]);
    let (_, body) = &inline[0];
    let allowed: Vec<String> = body["Properties"]["Policies"]
        .as_vec()
        .into_iter()
        .flatten()
        .flat_map(|policy| policy["Statement"].as_vec().cloned().unwrap_or_default())
        .flat_map(|statement| actions(&statement))
        .collect();
    assert_eq!(allowed, ["sns:SetSMSAttributes"]);
    assert!(body["Properties"]["InlineCode"].as_str().unwrap().contains("\"DefaultSMSType\": \"Transactional\""));
    let settings = &template["Resources"]["SmsSettings"]["Properties"];
    assert_eq!(settings["MonthlySpendLimit"].as_str(), Some("SmsMonthlySpendLimit"), "the spend limit is a parameter");
    assert_eq!(template["Parameters"]["SmsMonthlySpendLimit"]["Type"].as_str(), Some("Number"));
}

fn mentions_audit_table(resource: &Yaml) -> bool {
    match resource {
        Yaml::Array(items) => items.iter().any(mentions_audit_table),
        Yaml::String(text) => text.contains("AuditTable"),
        other => format!("{other:?}").contains("AuditTable"),
    }
}

fn actions(statement: &Yaml) -> Vec<String> {
    match &statement["Action"] {
        Yaml::Array(items) => items.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect(),
        Yaml::String(one) => vec![one.clone()],
        _ => vec![],
    }
}

#[test]
fn no_function_may_change_or_delete_audit_entries() {
    let template = template();
    let forbidden = ["dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"];
    for (name, body) in resources(&template) {
        if body["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let statements: Vec<Yaml> = body["Properties"]["Policies"]
            .as_vec()
            .into_iter()
            .flatten()
            .flat_map(|policy| policy["Statement"].as_vec().cloned().unwrap_or_default())
            .collect();
        let on_audit: Vec<&Yaml> = statements.iter().filter(|s| mentions_audit_table(&s["Resource"])).collect();
        for statement in &on_audit {
            if statement["Effect"].as_str() == Some("Allow") {
                for action in actions(statement) {
                    assert!(!forbidden.contains(&action.as_str()) && !action.ends_with('*'), "{name} may {action} on the audit table");
                }
            }
        }
        let writes = on_audit.iter().any(|s| s["Effect"].as_str() == Some("Allow") && actions(s).iter().any(|a| a == "dynamodb:PutItem"));
        if writes {
            let denied: Vec<String> = on_audit.iter().filter(|s| s["Effect"].as_str() == Some("Deny")).flat_map(|s| actions(s)).collect();
            for action in forbidden {
                assert!(denied.iter().any(|d| d == action), "{name} writes audit entries but does not deny {action}");
            }
        }
    }
}

/// `(method, path, public)` of every operation in `openapi.yaml`.
fn openapi_routes() -> BTreeSet<(String, String, bool)> {
    let text = std::fs::read_to_string(workspace_root().join("openapi.yaml")).expect("openapi.yaml");
    let spec = YamlLoader::load_from_str(&text).expect("openapi.yaml is YAML").remove(0);
    assert_eq!(spec["openapi"].as_str(), Some("3.1.0"));
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_hash().expect("paths") {
        let path = path.as_str().expect("a path");
        for (method, operation) in item.as_hash().expect("operations") {
            let method = method.as_str().expect("a method").to_uppercase();
            let public = operation["security"].as_vec().is_some_and(|s| s.is_empty());
            assert!(
                operation["responses"]["default"]["$ref"].as_str() == Some("#/components/responses/ServerError"),
                "{method} {path}: server errors are documented"
            );
            routes.insert((method, path.to_owned(), public));
        }
    }
    routes
}

#[test]
fn the_openapi_file_describes_exactly_the_mounted_and_deployed_routes() {
    let described = openapi_routes();
    let deployed: BTreeSet<(String, String, bool)> =
        template_routes().into_iter().map(|(_, method, path, public)| (method, path, public)).collect();
    assert_eq!(described, deployed, "openapi.yaml and template.yaml");
    for (method, path, _) in &described {
        // The local server finds each described route on a concrete path.
        let concrete = path.replace("{org}", "7001234567").replace("{id}", "1000000008").replace("{channel}", "email");
        let matched = local_api::find_route(method, &concrete).unwrap_or_else(|| panic!("the local server does not mount {method} {path}"));
        assert_eq!(matched.route.key, format!("{method} {path}"));
    }
}

/// What openapi.yaml lists per status is what the server can say there: each code is one the
/// server has, under the status the gateway gives it; a refusal lists its codes; an operation
/// behind the authorizer documents 401. (That each answer the suite gets is listed, the
/// client every API test uses checks: `system_tests::openapi`.)
#[test]
fn the_documented_refusals_are_real_codes_under_their_status() {
    let documented = Documented::get();
    for (_, routes) in functions() {
        for route in routes {
            let statuses = documented.statuses(route.key).unwrap_or_else(|| panic!("{} is not described", route.key));
            for (status, codes) in statuses {
                if *status < 400 {
                    assert!(codes.is_empty(), "{}: a {status} is not a refusal", route.key);
                    continue;
                }
                assert!(!codes.is_empty(), "{} {status}: the codes are listed", route.key);
                for code in codes {
                    let kind = Kind::ALL
                        .iter()
                        .find(|kind| kind.code() == code)
                        .unwrap_or_else(|| panic!("{} {status}: no code {code}", route.key));
                    assert_eq!(gateway::status_of(kind.class()), *status, "{} lists {code} under {status}", route.key);
                }
            }
            let unauthenticated = statuses.get(&401).is_some_and(|codes| codes.contains("unauthenticated"));
            assert_eq!(unauthenticated, !route.public, "{}: 401 for the routes behind the authorizer", route.key);
        }
    }
}

fn statements(function: &Yaml) -> Vec<Yaml> {
    function["Properties"]["Policies"]
        .as_vec()
        .into_iter()
        .flatten()
        .flat_map(|policy| policy["Statement"].as_vec().cloned().unwrap_or_default())
        .collect()
}

/// A statement's resources as the template names them (`UsersTable.Arn`,
/// `${UsersTable.Arn}/index/by_email`, `CodeHmacKey`, …), conditional ones included.
fn resource_names(statement: &Yaml) -> Vec<String> {
    fn flatten(yaml: &Yaml, into: &mut Vec<String>) {
        match yaml {
            Yaml::String(text) if text != "HasSesConfigurationSet" && text != "AWS::NoValue" => into.push(text.clone()),
            Yaml::Array(items) => items.iter().for_each(|item| flatten(item, into)),
            Yaml::Hash(map) => map.values().for_each(|value| flatten(value, into)),
            _ => {}
        }
    }
    let mut names = Vec::new();
    flatten(&statement["Resource"], &mut names);
    if let Some(not) = statement["NotResource"].as_str() {
        names.push(format!("NOT {not}"));
    }
    names
}

/// Everything each function may do, as `action on resource`: the template's whole word on
/// what a function can reach (SAM adds only logging, X-Ray and, for deliver, reading DynamoDB
/// streams). Tenant isolation rests on the code's keys within these tables (README, "Tenant
/// isolation"); no function reaches anything else.
#[test]
fn every_function_reaches_exactly_what_it_needs() {
    let users = "UsersTable.Arn";
    let key_table = |actions: &[&str], resources: &[&str]| -> Vec<String> {
        resources.iter().flat_map(|resource| actions.iter().map(move |action| format!("{action} on {resource}"))).collect()
    };
    let read_write = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem"];
    let audit = key_table(&["dynamodb:PutItem"], &["AuditTable.Arn"]);
    let outbox = key_table(&["dynamodb:PutItem"], &["OutboxTable.Arn"]);
    let secret = key_table(&["secretsmanager:GetSecretValue"], &["CodeHmacKey"]);
    let query = |index: &str| format!("dynamodb:Query on ${{UsersTable.Arn}}/index/{index}");
    let expected: Vec<(&str, Vec<String>)> = vec![
        ("operator", [key_table(&read_write, &[users, "BalancesTable.Arn"]), audit.clone()].concat()),
        ("subscribe", [secret.clone(), key_table(&read_write, &[users, "BalancesTable.Arn"]), audit.clone(), outbox.clone()].concat()),
        (
            "activate",
            [secret.clone(), key_table(&read_write, &[users]), vec![query("by_link_token")], audit.clone(), outbox.clone()].concat(),
        ),
        ("grant", [key_table(&read_write, &[users]), audit.clone()].concat()),
        ("authorize", key_table(&["dynamodb:GetItem"], &[users])),
        (
            "modify",
            [
                secret.clone(),
                key_table(&read_write, &[users]),
                vec![query("by_email"), query("by_mobile")],
                audit.clone(),
                outbox.clone(),
                key_table(&["dynamodb:GetItem", "dynamodb:BatchGetItem"], &["OutboxTable.Arn"]),
            ]
            .concat(),
        ),
        ("suspend", [key_table(&read_write, &[users]), audit.clone(), outbox.clone()].concat()),
        (
            "expiry-sweep",
            [
                key_table(&read_write, &[users]),
                vec![query("by_expiry_day")],
                audit.clone(),
                outbox.clone(),
                key_table(&["sqs:SendMessage"], &["SweepFailures.Arn"]),
            ]
            .concat(),
        ),
        (
            "directory",
            [
                secret.clone(),
                key_table(
                    &["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"],
                    &[users, "BalancesTable.Arn", "AuditTable.Arn", "${AuditTable.Arn}/index/by_target"],
                ),
                audit.clone(),
            ]
            .concat(),
        ),
        (
            "deliver",
            [
                secret.clone(),
                key_table(&read_write, &[users]),
                vec![query("by_undelivered")],
                key_table(&["dynamodb:GetItem", "dynamodb:BatchGetItem"], &["OutboxTable.Arn"]),
                key_table(
                    &["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"],
                    &["OutboxTable.StreamArn"],
                ),
                key_table(
                    &[
                        "sqs:SendMessage",
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:ChangeMessageVisibility",
                        "sqs:GetQueueAttributes",
                    ],
                    &["DeliveryFailures.Arn"],
                ),
                key_table(
                    &["ses:SendEmail"],
                    &[
                        "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${MailDomain}",
                        "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:configuration-set/${SesConfigurationSet}",
                    ],
                ),
                vec!["sns:Publish on NOT arn:${AWS::Partition}:sns:*:*:*".to_owned()],
            ]
            .concat(),
        ),
        (
            "publish",
            [
                key_table(&["events:PutEvents"], &["ChangeEvents.Arn"]),
                key_table(
                    &["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"],
                    &["OutboxTable.StreamArn"],
                ),
                key_table(&["sqs:SendMessage"], &["PublishFailures.Arn"]),
            ]
            .concat(),
        ),
    ];
    let template = template();
    let functions = product_functions(&template);
    assert_eq!(functions.len(), expected.len());
    for (binary, reach) in expected {
        let (name, body) = functions
            .iter()
            .find(|(_, body)| body["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary))
            .unwrap_or_else(|| panic!("no function builds {binary}"));
        let allowed: BTreeSet<String> = statements(body)
            .iter()
            .filter(|statement| statement["Effect"].as_str() == Some("Allow"))
            .flat_map(|statement| {
                let resources = resource_names(statement);
                actions(statement)
                    .into_iter()
                    .flat_map(move |action| resources.clone().into_iter().map(move |r| format!("{action} on {r}")))
            })
            .collect();
        assert_eq!(allowed, reach.into_iter().collect::<BTreeSet<_>>(), "{name} ({binary})");
        assert!(
            body["Properties"]["Policies"].as_vec().is_some_and(|policies| policies.iter().all(|p| !p["Statement"].is_badvalue())),
            "{name}: only inline statements, no managed policies"
        );
    }
}

/// The time budgets of `domain::deadline` are the timeouts the template deploys.
#[test]
fn function_timeouts_are_the_deadline_module_s() {
    use domain::deadline::{DELIVER_FUNCTION_TIMEOUT, HTTP_FUNCTION_TIMEOUT, SWEEP_FUNCTION_TIMEOUT};
    let template = template();
    let seconds = |yaml: &Yaml| yaml.as_i64().map(|s| std::time::Duration::from_secs(s as u64));
    assert_eq!(seconds(&template["Globals"]["Function"]["Timeout"]), Some(HTTP_FUNCTION_TIMEOUT));
    for (name, body) in product_functions(&template) {
        let expected = match name.as_str() {
            "ExpirySweepFunction" => Some(SWEEP_FUNCTION_TIMEOUT),
            "DeliverFunction" | "PublishFunction" => Some(DELIVER_FUNCTION_TIMEOUT),
            _ => None,
        };
        assert_eq!(seconds(&body["Properties"]["Timeout"]), expected, "{name}");
    }
}

/// Nothing secret is configuration: the code key's functions get the secret's ARN and may
/// read that secret; no other function may read any.
#[test]
fn the_code_key_is_read_from_secrets_manager_not_configured() {
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).expect("template.yaml");
    assert!(!text.contains("resolve:secretsmanager"), "no secret is resolved into a function's configuration");
    let template = template();
    for (name, body) in product_functions(&template) {
        let variables = &body["Properties"]["Environment"]["Variables"];
        let reads: Vec<String> = statements(&body)
            .iter()
            .filter(|s| actions(s).iter().any(|a| a.starts_with("secretsmanager:")))
            .flat_map(resource_names)
            .collect();
        let binary = text_of(&body["Metadata"]["BuildProperties"]["Binary"]);
        // The directory seals listing cursors under a key derived from it.
        if ["subscribe", "activate", "modify", "deliver", "directory"].contains(&binary.as_str()) {
            assert_eq!(variables["CODE_KEY_SECRET_ARN"].as_str(), Some("CodeHmacKey"), "{name}");
            assert_eq!(reads, ["CodeHmacKey"], "{name}");
        } else {
            assert!(variables["CODE_KEY_SECRET_ARN"].is_badvalue() && reads.is_empty(), "{name} has no business with the key");
        }
    }
}

fn text_of(yaml: &Yaml) -> String {
    yaml.as_str().expect("text").to_owned()
}

fn alarms(template: &Yaml) -> Vec<(String, Yaml)> {
    resources(template).into_iter().filter(|(_, body)| body["Type"].as_str() == Some("AWS::CloudWatch::Alarm")).collect()
}

/// `(namespace, metric, dimension value)` of an alarm.
fn watched(alarm: &Yaml) -> (String, String, String) {
    let properties = &alarm["Properties"];
    let dimension = properties["Dimensions"][0]["Value"].as_str().unwrap_or_default().to_owned();
    (text_of(&properties["Namespace"]), text_of(&properties["MetricName"]), dimension)
}

#[test]
fn operations_are_watched_and_every_alarm_notifies_the_topic() {
    let template = template();
    assert_eq!(template["Parameters"]["AlarmTopicArn"]["Type"].as_str(), Some("String"));
    assert_eq!(template["Globals"]["Function"]["Tracing"].as_str(), Some("Active"), "X-Ray on every function");
    let alarms = alarms(&template);
    for (name, alarm) in &alarms {
        assert_eq!(alarm["Properties"]["AlarmActions"][0].as_str(), Some("AlarmTopicArn"), "{name} notifies the topic");
    }
    let watched: BTreeSet<(String, String, String)> = alarms.iter().map(|(_, alarm)| watched(alarm)).collect();
    for (name, _) in product_functions(&template) {
        for metric in ["Errors", "Throttles"] {
            assert!(watched.contains(&("AWS/Lambda".into(), metric.into(), name.clone())), "{name}: {metric}");
        }
    }
    for expected in [
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "DeliveryFailuresDead.QueueName"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "SweepFailures.QueueName"),
        ("AWS/Lambda", "IteratorAge", "DeliverFunction"),
        ("AWS/Lambda", "Invocations", "ExpirySweepFunction"),
        (domain::metrics::NAMESPACE, "SweepFailures", "ExpirySweepFunction"),
        (domain::metrics::NAMESPACE, "MessagesUndeliverable", "DeliverFunction"),
        (domain::metrics::NAMESPACE, "MessagesPossiblyDuplicated", "DeliverFunction"),
        ("AWS/ApiGateway", "5xx", "HttpApi"),
    ] {
        let expected = (expected.0.to_owned(), expected.1.to_owned(), expected.2.to_owned());
        assert!(watched.contains(&expected), "{expected:?}");
    }
    assert_eq!(domain::metrics::Metric::SweepFailures(1).name(), "SweepFailures", "the sweep's alarm watches the metric the sweep emits");
    assert_eq!(domain::metrics::Metric::MessagesUndeliverable(1).name(), "MessagesUndeliverable");
    assert_eq!(domain::metrics::Metric::MessagesPossiblyDuplicated(1).name(), "MessagesPossiblyDuplicated");
}

/// The sweep runs hourly; a run that fails after it started is retried and then kept, and
/// so is an event that never reached it.
#[test]
fn the_sweep_runs_hourly_and_a_failed_run_is_kept() {
    let template = template();
    let sweep = &template["Resources"]["ExpirySweepFunction"]["Properties"];
    let schedule = &sweep["Events"]["Hourly"]["Properties"];
    assert_eq!(schedule["Schedule"].as_str(), Some("rate(1 hour)"));
    assert_eq!(schedule["DeadLetterConfig"]["Arn"].as_str(), Some("SweepFailures.Arn"));
    let config = &sweep["EventInvokeConfig"];
    assert_eq!(config["DestinationConfig"]["OnFailure"]["Type"].as_str(), Some("SQS"));
    assert_eq!(config["DestinationConfig"]["OnFailure"]["Destination"].as_str(), Some("SweepFailures.Arn"));
    assert_eq!(config["MaximumRetryAttempts"].as_i64(), Some(2));
    let lease = domain::deadline::SWEEP_FUNCTION_TIMEOUT.as_secs();
    assert!(lease < 3600, "a run's lease lapses before the next hourly run");
}

/// `deliver` paces at its share of the account's rates: its reserved concurrency is the
/// `DELIVER_CONCURRENCY` it divides them by. Its failure destination is consumed (the queue
/// is an event source, with a dead-letter queue after a few receives) and the redrive runs
/// on a schedule as often as a message's first wait allows.
#[test]
fn deliver_is_paced_and_its_failures_are_consumed_and_redriven() {
    let template = template();
    let deliver = &template["Resources"]["DeliverFunction"]["Properties"];
    let reserved = deliver["ReservedConcurrentExecutions"].as_i64().expect("reserved concurrency");
    assert_eq!(deliver["Environment"]["Variables"]["DELIVER_CONCURRENCY"].as_str(), Some(reserved.to_string().as_str()));
    assert_eq!(deliver["Environment"]["Variables"]["SES_MAX_SEND_RATE"].as_str(), Some("SesMaxSendRate"));
    let failed = &deliver["Events"]["FailedBatches"]["Properties"];
    assert_eq!(failed["Queue"].as_str(), Some("DeliveryFailures.Arn"));
    assert_eq!(failed["FunctionResponseTypes"][0].as_str(), Some("ReportBatchItemFailures"));
    let stream = &deliver["Events"]["Outbox"]["Properties"];
    assert_eq!(stream["DestinationConfig"]["OnFailure"]["Destination"].as_str(), Some("DeliveryFailures.Arn"));
    let queue = &template["Resources"]["DeliveryFailures"]["Properties"];
    assert_eq!(queue["RedrivePolicy"]["deadLetterTargetArn"].as_str(), Some("DeliveryFailuresDead.Arn"));
    let visibility = queue["VisibilityTimeout"].as_i64().expect("a visibility timeout");
    assert!(visibility as u64 >= 6 * domain::deadline::DELIVER_FUNCTION_TIMEOUT.as_secs(), "AWS's advice for a queue a function reads");
    assert_eq!(visibility, domain::outbox::REDRIVE_AFTER.whole_seconds(), "a failed batch comes back after a message's first wait");
    assert!(queue["MessageRetentionPeriod"].as_i64().expect("retention") <= 86_400, "no longer than the stream keeps the records it names");
    let redrive = &deliver["Events"]["Redrive"]["Properties"];
    assert_eq!(redrive["Schedule"].as_str(), Some("rate(5 minutes)"));
    assert!(domain::outbox::REDRIVE_AFTER >= time::Duration::minutes(5) * 3, "a due message waits at most a third more for the schedule");
}
