//! AWS adapters for the ports, and SDK set-up. Endpoints come from the standard SDK environment
//! (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`, ...), which is how LocalStack is reached.

pub mod analytics;
mod batch_get;
pub mod commands;
pub mod kinesis;
pub mod policies;
pub mod registry;
pub mod sqs;
pub mod twins;

pub use analytics::{DynamoDbAnalyticsStore, DynamoDbRuleStore};
pub use commands::DynamoDbCommandStore;
pub use kinesis::KinesisRecordSink;
pub use policies::DynamoDbPolicyStore;
pub use registry::DynamoDbDeviceRegistry;
pub use sqs::SqsQueue;
pub use twins::DynamoDbTwinStore;

/// Loads the SDK configuration once, at cold start.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}
