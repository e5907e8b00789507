use hub_registry::{RegistryConfig, RegistryHandler};
use hub_shared::aws::{
    DynamoDbDeviceRegistry, DynamoDbPolicyStore, DynamoDbTwinStore, SqsQueue, sdk_config,
};
use hub_shared::config::Env;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = RegistryConfig::from_env(&Env::process())?;
    let sdk = sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let handler = RegistryHandler::new(
        DynamoDbDeviceRegistry::new(dynamodb.clone(), &config.registry_table)
            .with_twins_table(&config.twins_table),
        DynamoDbTwinStore::new(dynamodb.clone(), &config.twins_table),
        DynamoDbPolicyStore::new(dynamodb, &config.policies_table),
        SqsQueue::new(
            aws_sdk_sqs::Client::new(&sdk),
            &config.registry_events_queue_url,
        ),
        &config.host_name,
    );
    let handler = &handler;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            handler
                .handle(event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}
