//! The hub's functions, in process: the same handler code the Lambdas run, built once with the
//! same AWS adapters and configuration, invoked through a JSON round trip as Lambda would.

use std::sync::Arc;

use aws_lambda_events::apigw::{
    ApiGatewayV2CustomAuthorizerV2Request, ApiGatewayV2httpRequest, ApiGatewayV2httpResponse,
};
use hub_analytics::{AnalyticsConfig, AnalyticsHandler};
use hub_authorize::{Authorizer, AuthorizerConfig, AuthorizerResponse};
use hub_commands::{Commands, CommandsConfig, CommandsHandler};
use hub_ingest::{IngestConfig, IngestHandler};
use hub_registry::{RegistryConfig, RegistryHandler};
use hub_shared::aws::{
    DynamoDbAnalyticsStore, DynamoDbCommandStore, DynamoDbDeviceRegistry, DynamoDbPolicyStore,
    DynamoDbRuleStore, DynamoDbTwinStore, KinesisRecordSink, SqsQueue,
};
use hub_shared::config::{ConfigError, Env, vars};
use hub_shared::routes::Function;
use serde::Serialize;

use crate::metrics::{CallCounter, Instrumentation};
use serde::de::DeserializeOwned;

pub type CommandsService =
    CommandsHandler<DynamoDbCommandStore, SqsQueue, SqsQueue, DynamoDbDeviceRegistry>;
pub type RegistryService =
    RegistryHandler<DynamoDbDeviceRegistry, DynamoDbTwinStore, DynamoDbPolicyStore, SqsQueue>;
pub type AnalyticsService =
    AnalyticsHandler<DynamoDbAnalyticsStore, DynamoDbRuleStore, SqsQueue, DynamoDbTwinStore>;

pub struct Hub {
    pub authorizer: Authorizer<DynamoDbDeviceRegistry, DynamoDbPolicyStore>,
    pub registry: RegistryService,
    pub ingest: IngestHandler<KinesisRecordSink, DynamoDbDeviceRegistry>,
    pub commands: CommandsService,
    pub analytics: AnalyticsService,
    /// Where the emulated Kinesis event source mapping reports batches it gave up on.
    pub analytics_failures_queue_url: String,
    /// The queue the `commands` function consumes through its event source mapping.
    pub command_requests_queue_url: String,
    pub sqs: aws_sdk_sqs::Client,
    /// Direct access to the tables, for the local tools (tokens, connection strings).
    pub devices: DynamoDbDeviceRegistry,
    pub policies: DynamoDbPolicyStore,
    pub kinesis: aws_sdk_kinesis::Client,
    pub telemetry_stream: String,
    pub host_name: String,
    pub instrumentation: Option<Instrumentation>,
}

/// Why an invocation did not produce a response, as Lambda would report it.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the event or response did not survive the Lambda JSON boundary: {0}")]
    Payload(#[from] serde_json::Error),
    #[error("the function panicked")]
    Panicked,
}

impl From<tokio::task::JoinError> for InvokeError {
    fn from(_: tokio::task::JoinError) -> Self {
        InvokeError::Panicked
    }
}

impl Hub {
    /// Builds every function from the environment, as each Lambda's `main` does at cold start.
    pub async fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
    ) -> Result<Self, ConfigError> {
        Self::from_env_with(env, None).await
    }

    /// As `from_env`, counting DynamoDB calls when `instrumentation` is given.
    pub async fn from_env_with<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
        instrumentation: Option<&Instrumentation>,
    ) -> Result<Self, ConfigError> {
        let authorizer_config = AuthorizerConfig::from_env(env)?;
        let registry_config = RegistryConfig::from_env(env)?;
        let ingest_config = IngestConfig::from_env(env)?;
        let commands_config = CommandsConfig::from_env(env)?;
        let analytics_config = AnalyticsConfig::from_env(env)?;
        let analytics_failures_queue_url = env.required(vars::ANALYTICS_FAILURES_QUEUE_URL)?;
        let command_requests_queue_url = env.required(vars::COMMAND_REQUESTS_QUEUE_URL)?;
        let sdk = hub_shared::aws::sdk_config().await;
        let dynamodb_client = |counter: Option<&CallCounter>| {
            let mut config = aws_sdk_dynamodb::config::Builder::from(&sdk);
            if let Some(counter) = counter {
                config = config.interceptor(counter.clone());
            }
            aws_sdk_dynamodb::Client::from_conf(config.build())
        };
        let authorizer_dynamodb = dynamodb_client(instrumentation.map(|i| &i.authorizer_dynamodb));
        let dynamodb = dynamodb_client(instrumentation.map(|i| &i.functions_dynamodb));
        let analytics_dynamodb = dynamodb_client(instrumentation.map(|i| &i.analytics_dynamodb));
        let kinesis = aws_sdk_kinesis::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let commands = CommandsHandler::new(
            Commands::new(
                DynamoDbCommandStore::new(
                    dynamodb.clone(),
                    &commands_config.commands_table,
                    &commands_config.registry_table,
                ),
                SqsQueue::new(sqs.clone(), &commands_config.feedback_queue_url),
                SqsQueue::new(sqs.clone(), &commands_config.dead_letter_queue_url),
                commands_config.policy,
            ),
            SqsQueue::new(sqs.clone(), &commands_config.requests_dead_letter_queue_url),
            DynamoDbDeviceRegistry::new(dynamodb.clone(), &commands_config.registry_table),
        );
        let analytics = AnalyticsHandler::new(
            analytics_config.windows.clone(),
            DynamoDbAnalyticsStore::new(
                analytics_dynamodb.clone(),
                &analytics_config.analytics_table,
                &analytics_config.alerts_table,
                analytics_config.retention,
            ),
            DynamoDbRuleStore::new(analytics_dynamodb.clone(), &analytics_config.rules_table),
            SqsQueue::new(sqs.clone(), &analytics_config.command_requests_queue_url),
            SqsQueue::new(sqs.clone(), &analytics_config.alerts_queue_url),
            SqsQueue::new(sqs.clone(), &analytics_config.dead_letter_queue_url),
            analytics_config.rules_cache,
        )
        .with_tags(DynamoDbTwinStore::new(
            analytics_dynamodb,
            &analytics_config.twins_table,
        ));
        let devices = DynamoDbDeviceRegistry::new(
            authorizer_dynamodb.clone(),
            &authorizer_config.registry_table,
        );
        let policies =
            DynamoDbPolicyStore::new(authorizer_dynamodb, &authorizer_config.policies_table);
        Ok(Self {
            authorizer: Authorizer::new(
                devices.clone(),
                policies.clone(),
                &authorizer_config.host_name,
                authorizer_config.clock_skew,
            ),
            registry: RegistryHandler::new(
                DynamoDbDeviceRegistry::new(dynamodb.clone(), &registry_config.registry_table)
                    .with_twins_table(&registry_config.twins_table),
                DynamoDbTwinStore::new(dynamodb.clone(), &registry_config.twins_table),
                DynamoDbPolicyStore::new(dynamodb.clone(), &registry_config.policies_table),
                SqsQueue::new(sqs.clone(), &registry_config.registry_events_queue_url),
                &registry_config.host_name,
            ),
            ingest: IngestHandler::new(
                KinesisRecordSink::new(kinesis.clone(), &ingest_config.telemetry_stream),
                ingest_config.retry,
                DynamoDbDeviceRegistry::new(dynamodb, &ingest_config.registry_table),
            ),
            commands,
            analytics,
            analytics_failures_queue_url,
            command_requests_queue_url,
            sqs,
            devices,
            policies,
            kinesis,
            telemetry_stream: ingest_config.telemetry_stream,
            host_name: authorizer_config.host_name,
            instrumentation: instrumentation.cloned(),
        })
    }

    pub async fn authorize(
        self: &Arc<Self>,
        event: serde_json::Value,
    ) -> Result<AuthorizerResponse, InvokeError> {
        invoke(
            self,
            event,
            |hub, event: ApiGatewayV2CustomAuthorizerV2Request| async move {
                hub.authorizer.handle(&event).await
            },
        )
        .await
    }

    pub async fn invoke_route(
        self: &Arc<Self>,
        function: Function,
        event: serde_json::Value,
    ) -> Result<ApiGatewayV2httpResponse, InvokeError> {
        match function {
            Function::Registry => {
                invoke(self, event, |hub, event: ApiGatewayV2httpRequest| async move {
                    hub.registry.handle_http(&event).await
                })
                .await
            }
            Function::Ingest => {
                invoke(self, event, |hub, event: ApiGatewayV2httpRequest| async move { hub.ingest.handle(&event).await })
                    .await
            }
            Function::Commands => {
                invoke(self, event, |hub, event: ApiGatewayV2httpRequest| async move {
                    hub.commands.handle_http(&event).await
                })
                .await
            }
            Function::Analytics => {
                invoke(self, event, |hub, event: ApiGatewayV2httpRequest| async move {
                    hub.analytics.handle_http(&event).await
                })
                .await
            }
        }
    }

    /// Invokes the `analytics` function with a Kinesis batch.
    pub async fn invoke_analytics(
        self: &Arc<Self>,
        event: serde_json::Value,
    ) -> Result<serde_json::Value, InvokeError> {
        if let Some(instrumentation) = &self.instrumentation {
            let records = event["Records"].as_array().map_or(0, Vec::len) as u64;
            instrumentation
                .analytics_batches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            instrumentation
                .analytics_records
                .fetch_add(records, std::sync::atomic::Ordering::Relaxed);
        }
        let message_ids = self
            .instrumentation
            .as_ref()
            .map(|_| committed_message_ids(&event))
            .unwrap_or_default();
        let hub = Arc::clone(self);
        let response = tokio::spawn(async move { hub.analytics.handle(event).await })
            .await
            .map_err(|_| InvokeError::Panicked)??;
        if let Some(instrumentation) = &self.instrumentation {
            // Records before the first reported failure were committed.
            let failed: Vec<&str> = response["batchItemFailures"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter_map(|x| x["itemIdentifier"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let now = std::time::Instant::now();
            let mut committed = instrumentation
                .analytics_committed
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for (sequence, message_id) in message_ids {
                if failed.contains(&sequence.as_str()) {
                    break;
                }
                if let Some(id) = message_id {
                    committed.entry(id).or_insert(now);
                }
            }
        }
        Ok(response)
    }

    /// Invokes the `registry` function with a non-HTTP event (the scheduled outbox sweep).
    pub async fn invoke_registry(
        self: &Arc<Self>,
        event: serde_json::Value,
    ) -> Result<serde_json::Value, InvokeError> {
        let hub = Arc::clone(self);
        let response = tokio::spawn(async move { hub.registry.handle(event).await })
            .await
            .map_err(|_| InvokeError::Panicked)??;
        Ok(response)
    }

    /// Invokes the `commands` function with a non-HTTP event (an SQS batch, a scheduled sweep).
    pub async fn invoke_commands(
        self: &Arc<Self>,
        event: serde_json::Value,
    ) -> Result<serde_json::Value, InvokeError> {
        let hub = Arc::clone(self);
        let response = tokio::spawn(async move { hub.commands.handle(event).await })
            .await
            .map_err(|_| InvokeError::Panicked)??;
        Ok(response)
    }
}

/// (sequence number, device message id) of each record of a Kinesis batch event.
fn committed_message_ids(event: &serde_json::Value) -> Vec<(String, Option<String>)> {
    use base64::Engine as _;
    event["Records"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .map(|r| {
                    let sequence = r["kinesis"]["sequenceNumber"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let message_id = r["kinesis"]["data"]
                        .as_str()
                        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                        .and_then(|bytes| {
                            hub_shared::domain::envelope::TelemetryEnvelope::from_json(&bytes).ok()
                        })
                        .and_then(|e| e.system_properties.message_id);
                    (sequence, message_id)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Deserializes the event into the function's input type, runs it on its own task (a panic
/// becomes an invocation error, as in Lambda), and passes the response back through JSON.
async fn invoke<E, R, F, Fut>(
    hub: &Arc<Hub>,
    event: serde_json::Value,
    function: F,
) -> Result<R, InvokeError>
where
    E: DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
    F: FnOnce(Arc<Hub>, E) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
{
    let event: E = serde_json::from_value(event)?;
    let response = tokio::spawn(function(Arc::clone(hub), event))
        .await
        .map_err(|_| InvokeError::Panicked)?;
    Ok(serde_json::from_value(serde_json::to_value(response)?)?)
}
