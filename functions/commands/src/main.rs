use aws_sdk_sqs::Client as SqsClient;
use hub_commands::{Commands, CommandsConfig, CommandsHandler};
use hub_shared::aws::{DynamoDbCommandStore, DynamoDbDeviceRegistry, SqsQueue, sdk_config};
use hub_shared::config::Env;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = CommandsConfig::from_env(&Env::process())?;
    let sdk = sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = SqsClient::new(&sdk);
    let handler = CommandsHandler::new(
        Commands::new(
            DynamoDbCommandStore::new(
                dynamodb.clone(),
                &config.commands_table,
                &config.registry_table,
            ),
            SqsQueue::new(sqs.clone(), &config.feedback_queue_url),
            SqsQueue::new(sqs.clone(), &config.dead_letter_queue_url),
            config.policy,
        ),
        SqsQueue::new(sqs, &config.requests_dead_letter_queue_url),
        DynamoDbDeviceRegistry::new(dynamodb, &config.registry_table),
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
