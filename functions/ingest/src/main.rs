use std::convert::Infallible;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use hub_ingest::{IngestConfig, IngestHandler};
use hub_shared::aws::{DynamoDbDeviceRegistry, KinesisRecordSink, sdk_config};
use hub_shared::config::Env;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = IngestConfig::from_env(&Env::process())?;
    let sdk = sdk_config().await;
    let handler = IngestHandler::new(
        KinesisRecordSink::new(aws_sdk_kinesis::Client::new(&sdk), &config.telemetry_stream),
        config.retry,
        DynamoDbDeviceRegistry::new(aws_sdk_dynamodb::Client::new(&sdk), &config.registry_table),
    );
    let handler = &handler;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            Ok::<_, Infallible>(handler.handle(&event.payload).await)
        },
    ))
    .await
}
