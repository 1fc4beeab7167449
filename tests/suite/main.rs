//! The system test suite: one binary (linking the AWS SDK once), many modules.
//!
//! Tests marked with `both!` run twice: against the embedded store and against DynamoDB,
//! SES and SNS on moto (started by the tooling on a free loopback port).

/// Runs `async fn $name(backend: Backend)` once per backend.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn embedded() {
                super::$name(system_tests::world::Backend::Embedded).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn dynamodb_on_moto() {
                super::$name(system_tests::world::Backend::Moto).await
            }
        }
    };
}

mod activation;
mod billing;
mod console;
mod contract;
mod directory;
mod events;
mod fixtures;
mod lambda;
mod lifecycle;
mod outbox;
mod permissions;
mod profile;
mod properties;
mod reliability;
mod rules;
mod security;
mod shapes;
mod template;
mod tls;
