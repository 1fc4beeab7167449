//! The functions' HTTPS client (`aws_adapters::sdk`) trusts the Amazon Trust Services roots
//! compiled into it, and nothing else: not the machine's certificate store, not a
//! certificate outside those roots. A TLS server on loopback (rustls, through tokio-rustls,
//! which the SDK's HTTPS client already builds on) presents a certificate for 127.0.0.1
//! issued by an authority the test makes with the `openssl` command; an SDK call through the
//! production client is refused during the handshake, and the same client with that
//! authority added to its trust store gets through to an answer (the positive control).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_adapters::sdk::{Environment, https_client};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use system_tests::moto::workspace_root;
use system_tests::runtime_api::RuntimeApi;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::lambda::function_binary;

/// The SHA-256 of each root's subject public key info, as Amazon Trust Services publishes
/// them (<https://www.amazontrust.com/repository/>): Amazon Root CA 1 to 4, Starfield
/// Services Root Certificate Authority - G2.
const AMAZON_TRUST_SERVICES_KEYS: [&str; 5] = [
    "fbe3018031f9586bcbf41727e417b7d1c45c2f47f93be372a17b96b50757d5a2",
    "7f4296fc5b6a4e3b35d3c369623e364ab1af381d8fa7121533c9d6c633ea2461",
    "36abc32656acfc645c61b71613c4bf21c787f5cabbee48348d58597803d7abc9",
    "f7ecded5c66047d28ed6466b543c40e0743abe81d109254dcf845d4c2c7853c5",
    "2b071c59a0a0ae76b0eadb2bad23bad4580b69c3601b630c2eaf0613afa83f92",
];

fn openssl(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl command runs");
    assert!(output.status.success(), "openssl {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tls-test-{}", domain::entropy::SystemEntropy::hex(6)));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// An authority outside the trusted roots, and a certificate it issued for 127.0.0.1 (P-256
/// keys): the authority's PEM, the server's chain and key.
struct TestPki {
    authority: Vec<u8>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn test_pki() -> TestPki {
    let dir = scratch();
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        &dir,
        &[&["req", "-x509"], &key[..], &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Test authority"]].concat(),
    );
    openssl(&dir, &[&["req"], &key[..], &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]].concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("extensions");
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    let read = |name: &str| std::fs::read(dir.join(name)).expect("a file openssl wrote");
    let pki = TestPki {
        authority: read("ca.pem"),
        chain: CertificateDer::pem_slice_iter(&read("server.pem")).collect::<Result<_, _>>().expect("the server's certificate"),
        key: PrivateKeyDer::from_pem_slice(&read("server.key")).expect("the server's key"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    pki
}

/// A TLS server on loopback answering every request as DynamoDB answers a missing table.
/// It counts the handshakes that completed and those that failed.
struct TlsServer {
    endpoint: String,
    handshakes: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

async fn tls_server(pki: &TestPki) -> TlsServer {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .expect("a certificate and its key");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = TlsServer {
        endpoint: format!("https://{}", listener.local_addr().expect("an address")),
        handshakes: Arc::default(),
        refused: Arc::default(),
    };
    let (handshakes, refused) = (server.handshakes.clone(), server.refused.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let stream = match acceptor.accept(stream).await {
                Ok(stream) => stream,
                Err(_) => {
                    refused.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
            };
            handshakes.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    hyper::Response::builder().status(400).header("content-type", "application/x-amz-json-1.0").body(Full::new(
                        Bytes::from_static(
                            br#"{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"the test's TLS server"}"#,
                        ),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    server
}

/// A DynamoDB client as a function builds it, through `http`, pointed at `endpoint`.
fn dynamodb(endpoint: &str, http: aws_sdk_dynamodb::config::SharedHttpClient) -> aws_sdk_dynamodb::Client {
    let lambda = |name: &str| match name {
        "AWS_REGION" => Some("me-south-1".to_owned()),
        "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("test".to_owned()),
        "AWS_ENDPOINT_URL" => Some(endpoint.to_owned()),
        _ => None,
    };
    aws_sdk_dynamodb::Client::new(&Environment::from_lookup(lambda).expect("Lambda's variables").config(http))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_outside_the_amazon_roots_is_refused_and_one_inside_the_trust_store_is_accepted() {
    let pki = test_pki();
    let server = tls_server(&pki).await;

    // The production client: the handshake fails on the certificate's issuer.
    let refused = dynamodb(&server.endpoint, https_client(&[])).describe_table().table_name("users").send().await.expect_err("refused");
    let chain = gateway::cause_chain(&refused);
    assert!(refused.as_service_error().is_none(), "no answer got through: {chain}");
    assert!(chain.contains("invalid peer certificate: UnknownIssuer"), "refused for the certificate's issuer: {chain}");
    assert_eq!(server.handshakes.load(Ordering::SeqCst), 0, "no handshake completed");
    assert!(server.refused.load(Ordering::SeqCst) >= 1, "the server saw the client abort: {chain}");

    // The same client with the test's authority added: through TLS to the server's answer.
    let answered = dynamodb(&server.endpoint, https_client(&[&pki.authority])).describe_table().table_name("users").send().await;
    let error = answered.expect_err("the test server answers with an error");
    let service = error.as_service_error().unwrap_or_else(|| panic!("an answer from the server: {}", gateway::cause_chain(&error)));
    assert!(service.is_resource_not_found_exception(), "{service:?}");
    assert!(server.handshakes.load(Ordering::SeqCst) >= 1, "a handshake completed");
}

/// A function binary does not read the machine's certificate store: naming the test's
/// authority in `SSL_CERT_FILE` and `SSL_CERT_DIR` (which the SDK's default client would
/// trust) does not make it trusted, so `activate`, asked to resend an activation, cannot
/// reach the test's server over TLS and answers a bare 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_ignores_the_certificate_store_of_its_machine() {
    let pki = test_pki();
    let server = tls_server(&pki).await;
    let store = scratch();
    std::fs::write(store.join("authority.pem"), &pki.authority).expect("the store");
    let event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(workspace_root().join("infra/events/activate.json")).expect("the event"))
            .expect("JSON");
    let runtime = RuntimeApi::start().await;
    runtime.queue("resend", event);
    let mut process = runtime
        .function(&function_binary("activate"), "activate", &server.endpoint, &aws_adapters::TableNames::with_prefix("tls"))
        .env("CODE_KEY_SECRET_ARN", "arn:aws:secretsmanager:me-south-1:123456789012:secret:code-key-AbCdEf")
        .env("SSL_CERT_FILE", store.join("authority.pem"))
        .env("SSL_CERT_DIR", &store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the process starts");
    let answer = tokio::time::timeout(Duration::from_secs(60), runtime.answer("resend")).await.expect("an answer").expect("no error");
    process.kill().await.expect("stop the function");
    let _ = std::fs::remove_dir_all(&store);
    assert_eq!(answer["statusCode"], 500, "{answer}");
    assert_eq!(server.handshakes.load(Ordering::SeqCst), 0, "no handshake completed");
    assert!(server.refused.load(Ordering::SeqCst) >= 1, "it tried the test's server");
}

/// The roots compiled into the functions are exactly the five Amazon Trust Services roots:
/// their keys, hashed by `openssl`, are the ones amazontrust.com publishes.
#[test]
fn the_compiled_in_roots_are_the_five_amazon_trust_services_roots() {
    let bundled = std::fs::read(workspace_root().join("infra/aws/certs/amazon-trust-services.pem")).expect("the bundle");
    assert_eq!(bundled, aws_adapters::sdk::AWS_ROOTS, "the file is what the functions compile in");
    let dir = scratch();
    let mut keys: Vec<String> = CertificateDer::pem_slice_iter(aws_adapters::sdk::AWS_ROOTS)
        .enumerate()
        .map(|(n, certificate)| {
            let der = format!("root{n}.der");
            std::fs::write(dir.join(&der), certificate.expect("a certificate").as_ref()).expect("write");
            openssl(&dir, &["x509", "-inform", "DER", "-in", &der, "-pubkey", "-noout", "-out", &format!("key{n}.pem")]);
            openssl(&dir, &["pkey", "-pubin", "-in", &format!("key{n}.pem"), "-outform", "DER", "-out", &format!("key{n}.der")]);
            openssl(&dir, &["dgst", "-sha256", "-r", &format!("key{n}.der")]).split_whitespace().next().expect("a digest").to_owned()
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    keys.sort();
    let mut published = AMAZON_TRUST_SERVICES_KEYS.map(str::to_owned).to_vec();
    published.sort();
    assert_eq!(keys, published);
}
