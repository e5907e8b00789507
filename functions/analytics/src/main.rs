use hub_analytics::{AnalyticsConfig, AnalyticsHandler};
use hub_shared::aws::{
    DynamoDbAnalyticsStore, DynamoDbRuleStore, DynamoDbTwinStore, SqsQueue, sdk_config,
};
use hub_shared::config::Env;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = AnalyticsConfig::from_env(&Env::process())?;
    let sdk = sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let handler = AnalyticsHandler::new(
        config.windows.clone(),
        DynamoDbAnalyticsStore::new(
            dynamodb.clone(),
            &config.analytics_table,
            &config.alerts_table,
            config.retention,
        ),
        DynamoDbRuleStore::new(dynamodb.clone(), &config.rules_table),
        SqsQueue::new(sqs.clone(), &config.command_requests_queue_url),
        SqsQueue::new(sqs.clone(), &config.alerts_queue_url),
        SqsQueue::new(sqs, &config.dead_letter_queue_url),
        config.rules_cache,
    )
    .with_tags(DynamoDbTwinStore::new(dynamodb, &config.twins_table));
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
