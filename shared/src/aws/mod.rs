//! AWS adapters for the ports, and SDK set-up. Endpoints come from the standard SDK environment
//! (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`, ...), which is how LocalStack is reached.

/// Sends a conditional write: `Ok(true)` written, `Ok(false)` its condition failed (an answer,
/// not an error), `Err` the call failed. A macro because each operation's error type has its own
/// `is_conditional_check_failed_exception`.
macro_rules! conditional_write {
    ($request:expr, $operation:expr) => {
        match $request.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err($crate::aws::sdk_error($operation)(e)),
        }
    };
}

pub mod analytics;
pub mod archive;
mod batch_get;
pub mod commands;
pub mod endpoints;
pub mod jobs;
pub mod kinesis;
pub mod methods;
pub mod policies;
pub mod registry;
pub mod sqs;
pub mod twins;

pub use analytics::{AnalyticsTables, DynamoDbAnalyticsStore, DynamoDbRuleStore};
pub use archive::{DynamoDbArchiveCheckpoints, S3Archive};
pub use commands::{CommandTables, DynamoDbCommandStore};
pub use endpoints::AwsEndpoint;
pub use jobs::DynamoDbJobStore;
pub use kinesis::KinesisRecordSink;
pub use methods::DynamoDbMethodCalls;
pub use policies::DynamoDbPolicyStore;
pub use registry::DynamoDbDeviceRegistry;
pub use sqs::SqsQueue;
pub use twins::DynamoDbTwinStore;

pub mod failures;

pub use failures::{build_error, corrupt_item, sdk_error, transaction_error};

/// Loads the SDK configuration once, at cold start.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The AWS clients a function builds its adapters from, made once at cold start.
#[derive(Clone, Debug)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// Routing endpoints only (SNS topics, EventBridge buses).
    pub sns: aws_sdk_sns::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
    /// The archive's bucket.
    pub s3: aws_sdk_s3::Client,
}

impl Clients {
    pub fn from_sdk(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            kinesis: aws_sdk_kinesis::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            sns: aws_sdk_sns::Client::new(sdk),
            eventbridge: aws_sdk_eventbridge::Client::new(sdk),
            s3: aws_sdk_s3::Client::from_conf(
                // Path-style addressing: emulators serve buckets under their own host name.
                aws_sdk_s3::config::Builder::from(sdk)
                    .force_path_style(true)
                    .build(),
            ),
        }
    }

    /// Clients from the standard SDK environment (region, credentials, `AWS_ENDPOINT_URL`).
    pub async fn load() -> Self {
        Self::from_sdk(&sdk_config().await)
    }
}
