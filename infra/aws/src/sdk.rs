//! The SDK configuration of a function, built from what Lambda puts in its environment and
//! nothing else: no `aws-config` (which reads `~/.aws/config` and `~/.aws/credentials` and
//! walks the credential chain), and an HTTPS client that trusts the Amazon Trust Services
//! roots compiled into the binary instead of reading the machine's certificate store (a
//! bundle and, on Debian, a directory of 146 files, read before the first invocation).
//!
//! Why those roots verify the real endpoints: AWS moved its service endpoints (DynamoDB,
//! SES and the others) to certificates issued by Amazon Trust Services ("How to Prepare for
//! AWS's Move to Its Own Certificate Authority", AWS Security Blog; the DynamoDB Developer
//! Guide, "Troubleshooting SSL/TLS connection establishment issues"), whose repository
//! (<https://www.amazontrust.com/repository/>) asks custom trust stores to hold exactly
//! these five: Amazon Root CA 1 to 4 and Starfield Services Root Certificate Authority - G2.
//! The test suite checks that the compiled-in bundle holds those five keys (`tls.rs`).
//!
//! | variable | meaning |
//! |---|---|
//! | `AWS_REGION` (or `AWS_DEFAULT_REGION`) | the region; Lambda sets both |
//! | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` | the execution role's credentials; Lambda sets them |
//! | `AWS_ENDPOINT_URL` | optional: one endpoint for every service (the emulator, `http://127.0.0.1:PORT`, over plain HTTP) |

use std::sync::OnceLock;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider, SharedHttpClient};
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnectorSettings, SharedHttpConnector};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_types::SdkConfig;

/// The five roots AWS endpoints chain to, PEM (see the module's documentation).
pub const AWS_ROOTS: &[u8] = include_bytes!("../certs/amazon-trust-services.pem");

/// An HTTP client for the SDK: HTTPS through rustls (aws-lc) trusting [`AWS_ROOTS`] and the
/// PEM certificates in `extra_roots` (none in production; a test's own authority in the
/// tests), and nothing from the machine; plain HTTP for an `http://` endpoint (the emulator).
/// Nothing is done until the first request needs a connection: parsing the roots, setting up
/// aws-lc and rustls is the first request's work, not start-up's.
pub fn https_client(extra_roots: &[&[u8]]) -> SharedHttpClient {
    SharedHttpClient::new(Deferred { extra_roots: extra_roots.iter().map(|pem| pem.to_vec()).collect(), client: OnceLock::new() })
}

fn build_https(extra_roots: &[Vec<u8>]) -> SharedHttpClient {
    let trust = extra_roots
        .iter()
        .fold(TrustStore::empty().with_pem_certificate(AWS_ROOTS), |trust, pem| trust.with_pem_certificate(pem.as_slice()));
    let context = TlsContext::builder().with_trust_store(trust).build().expect("a TLS context with no extra server names builds");
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::AwsLc)).tls_context(context).build_https()
}

/// [`https_client`]'s client, built on the first `http_connector` call.
#[derive(Debug)]
struct Deferred {
    extra_roots: Vec<Vec<u8>>,
    client: OnceLock<SharedHttpClient>,
}

impl HttpClient for Deferred {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        self.client.get_or_init(|| build_https(&self.extra_roots)).http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.client.get().and_then(|client| client.connector_metadata())
    }
}

/// A variable the configuration needs is not set.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not set")]
pub struct Missing(pub &'static str);

/// What the SDK needs from the environment. No `Debug`: it holds credentials.
#[derive(Clone)]
pub struct Environment {
    region: String,
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    endpoint_url: Option<String>,
}

impl Environment {
    /// From the process's environment.
    pub fn from_env() -> Result<Environment, Missing> {
        Environment::from_lookup(|name| std::env::var(name).ok())
    }

    /// From `var` (a variable's value by its name); empty values count as unset.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Environment, Missing> {
        let get = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        Ok(Environment {
            region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")).ok_or(Missing("AWS_REGION"))?,
            access_key_id: get("AWS_ACCESS_KEY_ID").ok_or(Missing("AWS_ACCESS_KEY_ID"))?,
            secret_access_key: get("AWS_SECRET_ACCESS_KEY").ok_or(Missing("AWS_SECRET_ACCESS_KEY"))?,
            session_token: get("AWS_SESSION_TOKEN"),
            endpoint_url: get("AWS_ENDPOINT_URL"),
        })
    }

    /// The SDK configuration: this region, these credentials, the endpoint if one is given,
    /// [`crate::sdk_limits`], and `http`.
    pub fn config(&self, http: SharedHttpClient) -> SdkConfig {
        let (retry, timeout) = crate::sdk_limits();
        let credentials = Credentials::new(&self.access_key_id, &self.secret_access_key, self.session_token.clone(), None, "environment");
        let mut config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .retry_config(retry)
            .timeout_config(timeout)
            .http_client(http);
        config.set_endpoint_url(self.endpoint_url.clone());
        config.build()
    }
}

/// The configuration every SDK client of a function shares (one HTTPS client, one
/// connection pool), built from the environment on first use.
pub fn from_env() -> Result<SdkConfig, Missing> {
    static CONFIG: OnceLock<SdkConfig> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(config.clone());
    }
    let config = Environment::from_env()?.config(https_client(&[]));
    Ok(CONFIG.get_or_init(|| config).clone())
}

/// An SDK client made on first use. Making one sets up its service's endpoint rules (the
/// partitions' JSON parsed, their patterns compiled): work for the first request that calls
/// the service, not for start-up, and none at all for a request refused before any I/O.
#[derive(Clone)]
pub struct LazyClient<C> {
    make: Option<Make<C>>,
    client: OnceLock<C>,
}

/// What makes a client: its configuration and its `new`.
type Make<C> = (SdkConfig, fn(&SdkConfig) -> C);

impl<C> LazyClient<C> {
    /// `make(&config)` on first use, e.g. `LazyClient::new(config, aws_sdk_dynamodb::Client::new)`.
    pub fn new(config: SdkConfig, make: fn(&SdkConfig) -> C) -> Self {
        LazyClient { make: Some((config, make)), client: OnceLock::new() }
    }

    /// A client made already (the local server, the tests).
    pub fn ready(client: C) -> Self {
        LazyClient { make: None, client: OnceLock::from(client) }
    }

    pub fn get(&self) -> &C {
        self.client.get_or_init(|| {
            let (config, make) = self.make.as_ref().expect("a client not made yet has what makes it");
            make(config)
        })
    }
}

impl<C> From<C> for LazyClient<C> {
    fn from(client: C) -> Self {
        LazyClient::ready(client)
    }
}
