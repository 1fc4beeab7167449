//! `local-api`: runs every function locally behind one HTTP server.
//!
//! ```text
//! local-api [--demo] [--port 8080] [--store embedded|dynamodb] [--table-prefix local]
//!           [--create-tables] [--messaging outbox|aws] [--now <RFC 3339>]
//! local-api token --sub <id> [--role operator|service] [--hours 12]
//! ```
//!
//! With `--store dynamodb`, the AWS SDK's usual environment applies (`AWS_REGION`,
//! credentials, and `AWS_ENDPOINT_URL` for an emulator).

use std::net::SocketAddr;
use std::sync::Arc;

use domain::clock::TravelClock;
use domain::embedded::{EmbeddedStore, Outbox};
use domain::env::{Env, FixedKey, SecretSource, Senders, Settings};
use domain::pricing::PricingConfig;
use domain::secrets::CodeKey;
use domain::store::Store;
use local_api::deliverer::Deliverer;
use local_api::demo::{OPERATOR_SUBJECT, PERSONS, SERVICE_SUBJECT};
use local_api::{JwtConfig, Server};

struct Options {
    demo: bool,
    port: u16,
    store: String,
    table_prefix: String,
    create_tables: bool,
    messaging: String,
    /// Where the server's clock starts; it runs from there and `/local/clock` moves it.
    now: Option<time::OffsetDateTime>,
}

fn usage() -> ! {
    eprintln!(
        "usage: local-api [--demo] [--port 8080] [--store embedded|dynamodb] [--table-prefix local] [--create-tables] [--messaging outbox|aws] [--now 2027-11-20T09:00:00+03:00]\n       local-api token --sub <id> [--role operator|service] [--hours 12]"
    );
    std::process::exit(2)
}

fn value(arguments: &mut impl Iterator<Item = String>) -> String {
    arguments.next().unwrap_or_else(|| usage())
}

fn print_token(mut arguments: impl Iterator<Item = String>) {
    let (mut subject, mut role, mut hours) = (None, None, 12i64);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--sub" => subject = Some(value(&mut arguments)),
            "--role" => role = Some(value(&mut arguments)),
            "--hours" => hours = value(&mut arguments).parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let subject = subject.unwrap_or_else(|| usage());
    println!("{}", JwtConfig::from_env().mint(&subject, role.as_deref(), hours * 3600));
}

/// The SDK configuration of the local server: aws-config's (profiles, SSO, the credential
/// chain, `AWS_ENDPOINT_URL`), with the functions' retries and timeouts. The functions
/// themselves read only Lambda's variables (`aws_adapters::sdk`).
async fn sdk_config() -> aws_config::SdkConfig {
    let (retry, timeout) = aws_adapters::sdk_limits();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).retry_config(retry).timeout_config(timeout).load().await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut arguments = std::env::args().skip(1).peekable();
    if arguments.peek().map(String::as_str) == Some("token") {
        arguments.next();
        print_token(arguments);
        return Ok(());
    }
    let mut options = Options {
        demo: false,
        port: 8080,
        store: "embedded".into(),
        table_prefix: "local".into(),
        create_tables: false,
        messaging: "outbox".into(),
        now: None,
    };
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--demo" => options.demo = true,
            "--port" => options.port = value(&mut arguments).parse().unwrap_or_else(|_| usage()),
            "--store" => options.store = value(&mut arguments),
            "--table-prefix" => options.table_prefix = value(&mut arguments),
            "--create-tables" => options.create_tables = true,
            "--messaging" => options.messaging = value(&mut arguments),
            "--now" => options.now = Some(domain::clock::parse_rfc3339(&value(&mut arguments)).unwrap_or_else(|| usage())),
            "--help" | "-h" => usage(),
            _ => usage(),
        }
    }
    lambda_http::tracing::init_default_subscriber();

    let embedded = Arc::new(EmbeddedStore::new());
    let mut stream = None;
    let mut bus: Option<Arc<dyn domain::events::EventBus>> = None;
    let store: Arc<dyn Store> = match options.store.as_str() {
        "embedded" => embedded.clone(),
        "dynamodb" => {
            let config = sdk_config().await;
            let client = aws_sdk_dynamodb::Client::new(&config);
            let names = aws_adapters::TableNames::with_prefix(&options.table_prefix);
            if options.create_tables {
                aws_adapters::create_tables(&client, &names).await?;
            }
            stream = Some((aws_sdk_dynamodbstreams::Client::new(&config), client.clone(), names.outbox.clone()));
            // The change events also go to the emulator's EventBridge, on a bus of this
            // prefix (created if missing), as the publish function puts them in AWS.
            let events = aws_sdk_eventbridge::Client::new(&config);
            let bus_name = format!("{}-changes", options.table_prefix);
            if let Err(error) = events.create_event_bus().name(&bus_name).send().await {
                use aws_sdk_eventbridge::error::ProvideErrorMetadata;
                if error.code() != Some("ResourceAlreadyExistsException") {
                    return Err(format!("the event bus {bus_name}: {}", error.code().unwrap_or("unreachable")).into());
                }
            }
            bus = Some(Arc::new(aws_adapters::events::EventBridgeBus::new(aws_adapters::sdk::LazyClient::ready(events), bus_name)));
            Arc::new(aws_adapters::DynamoStore::new(client, names))
        }
        _ => usage(),
    };
    let outbox: Option<Arc<Outbox>>;
    let senders = match options.messaging.as_str() {
        "outbox" => {
            let printing = Arc::new(Outbox::printing());
            outbox = Some(printing.clone());
            Senders { mailer: printing.clone(), texts: printing }
        }
        "aws" => {
            let config = sdk_config().await;
            let from = std::env::var("MAIL_FROM").map_err(|_| "MAIL_FROM is required with --messaging aws")?;
            outbox = None;
            // Paced at the account's rates, as in AWS (`SES_MAX_SEND_RATE`, `SMS_MAX_SEND_RATE`).
            let rate = domain::pace::SendRate::from_lookup(|name| std::env::var(name).ok())?;
            domain::pace::Paced::senders(
                Arc::new(aws_adapters::SesMailer::new(aws_sdk_sesv2::Client::new(&config), from, None)),
                Arc::new(aws_adapters::SnsTexter::new(aws_sdk_sns::Client::new(&config), std::env::var("SMS_SENDER_ID").ok())),
                rate,
            )
        }
        _ => usage(),
    };
    let code_key = match std::env::var("CODE_HMAC_KEY") {
        Ok(text) => gateway::bootstrap::parse_code_key(&text)?,
        // A fresh key per run: codes from a previous run stop working, which is fine locally.
        Err(_) => CodeKey::new(domain::entropy::SystemEntropy::hex(32).into_bytes()).expect("64 bytes"),
    };
    let mut settings = Settings::bundled(format!("http://127.0.0.1:{}/activate#token=", options.port));
    if let Ok(json) = std::env::var("PRICING") {
        settings.pricing = PricingConfig::from_json(&json)?;
    }
    let clock = Arc::new(TravelClock::starting_at(options.now));
    let env = Env { store, clock: clock.clone(), entropy: Arc::new(domain::entropy::SystemEntropy), settings: Arc::new(settings) };
    let secrets: Arc<dyn SecretSource> = Arc::new(FixedKey(code_key));
    let ports = deliver_function::Ports { env: env.clone(), secrets: secrets.clone(), senders };
    let deliverer = match stream {
        None => Deliverer::embedded(ports, embedded),
        Some((streams, dynamodb, table)) => Deliverer::stream(ports, streams, dynamodb, table),
    };
    let deliverer = Arc::new(match bus {
        Some(bus) => deliverer.with_bus(bus),
        None => deliverer,
    });
    tokio::spawn(deliverer.clone().run());
    if options.demo {
        local_api::demo::seed(&env).await?;
    }
    let jwt = JwtConfig::from_env();
    let server = Server { env, secrets, jwt: jwt.clone(), outbox, clock: Some(clock.clone()), deliverer };
    let (address, task) = server.bind(SocketAddr::from(([127, 0, 0, 1], options.port))).await?;

    println!("\nlocal-api listening on http://{address} (store: {}, messaging: {})", options.store, options.messaging);
    println!("Console: http://{address}/ (sign in as any demo person, or as the operator)");
    println!("Clock: {} (move it with POST /local/clock?days=30)", domain::clock::key_timestamp(domain::clock::Clock::now(clock.as_ref())));
    if options.demo {
        let hours = 12 * 3600;
        println!("\nDemo tokens (valid 12 hours):");
        println!("  operator   OPERATOR_TOKEN={}", jwt.mint(OPERATOR_SUBJECT, Some("operator"), hours));
        println!("  service    SERVICE_TOKEN={}", jwt.mint(SERVICE_SUBJECT, Some("service"), hours));
        for person in PERSONS {
            let variable = person.name_en.split(' ').next().unwrap_or("USER").to_uppercase();
            println!(
                "  {:<10} {variable}_TOKEN={}   # {} — {}",
                variable.to_lowercase(),
                jwt.mint(person.id, None, hours),
                person.id,
                person.note
            );
        }
        println!("\nOrganizations: 7001234567 (Muqeem plan, 1,000 SAR) and 7009876543 (Qiwa plan, 5,000 SAR).");
        println!("Messages are printed below and listed at GET /local/outbox.\n");
    }
    task.await?;
    Ok(())
}
