//! Production adapters of the domain's ports: a DynamoDB store, an SES v2 mailer and an SNS
//! SMS sender, plus the shared SDK configuration (bounded retries and timeouts).

pub mod dynamo;
pub mod messaging;
pub mod tables;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

pub use dynamo::DynamoStore;
pub use messaging::{SesMailer, SnsTexter};
pub use tables::{TableNames, create_tables};

/// SDK configuration from the environment (region, credentials, `AWS_ENDPOINT_URL` for an
/// emulator), with bounded retries and timeouts: a request that API Gateway will cut off
/// after 30 s must not retry for longer than that.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(8))
                .build(),
        )
        .load()
        .await
}
