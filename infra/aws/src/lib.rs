//! Production adapters of the domain's ports: a DynamoDB store, an SES v2 mailer and an SNS
//! SMS sender, the code key from Secrets Manager, plus the SDK configuration the functions
//! share (`sdk`: from Lambda's environment, the Amazon Trust Services roots compiled in;
//! bounded retries and timeouts, from `domain::deadline`).

pub mod dynamo;
pub mod events;
pub mod messaging;
pub mod sdk;
pub mod secrets;
pub mod tables;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use domain::deadline::{SDK_ATTEMPT_TIMEOUT, SDK_ATTEMPTS, SDK_CONNECT_TIMEOUT, SDK_OPERATION_TIMEOUT};

pub use dynamo::DynamoStore;
pub use messaging::{SesMailer, SnsTexter};
pub use tables::{TableNames, create_tables};

/// The retries and timeouts of every SDK call: derived in `domain::deadline` so that one
/// attempt of a command, every call slow, still fits in an HTTP function's time.
pub fn sdk_limits() -> (RetryConfig, TimeoutConfig) {
    (
        RetryConfig::standard().with_max_attempts(SDK_ATTEMPTS),
        TimeoutConfig::builder()
            .connect_timeout(SDK_CONNECT_TIMEOUT)
            .operation_attempt_timeout(SDK_ATTEMPT_TIMEOUT)
            .operation_timeout(SDK_OPERATION_TIMEOUT)
            .build(),
    )
}
