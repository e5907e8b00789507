use std::convert::Infallible;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use hub_registry::{RegistryConfig, RegistryHandler};
use hub_shared::aws::{DynamoDbDeviceRegistry, sdk_config};
use hub_shared::config::Env;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = RegistryConfig::from_env(&Env::process())?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let handler = RegistryHandler::new(DynamoDbDeviceRegistry::new(
        dynamodb,
        &config.registry_table,
    ));
    let handler = &handler;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            Ok::<_, Infallible>(handler.handle(&event.payload).await)
        },
    ))
    .await
}
