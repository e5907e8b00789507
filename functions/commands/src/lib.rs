//! The `commands` function: Azure IoT Hub cloud-to-device messaging. It serves the service routes
//! (send, purge, feedback) and the device routes (receive, complete, reject, abandon), consumes the
//! `command-requests` queue, and sweeps expired messages on a schedule. One Lambda, three event
//! shapes; see `handle`.

pub mod http_api;
pub mod queue;
pub mod requests;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::sqs::SqsEvent;
use hub_shared::aws::{Clients, CommandTables, DynamoDbCommandStore, SqsQueue};
use hub_shared::clock::SharedClock;
use hub_shared::config::{ConfigError, Env, vars};
use hub_shared::connection::{ActivityConfig, DeployedTracker};
use hub_shared::domain::command::DeliveryPolicy;
use hub_shared::error::Chain;
use hub_shared::lambda::{Function, InvocationError};
use hub_shared::ports::{ActivityRecorder, CommandStore, DeadLetters, FeedbackQueue};
use serde_json::{Value, json};

pub use queue::Commands;

/// How many due items one sweep handles.
const SWEEP_LIMIT: usize = 500;

#[derive(Debug, Clone)]
pub struct CommandsConfig {
    pub registry_table: String,
    pub activity: ActivityConfig,
    pub commands_table: String,
    pub feedback_queue_url: String,
    pub dead_letter_queue_url: String,
    pub requests_dead_letter_queue_url: String,
    pub policy: DeliveryPolicy,
}

impl CommandsConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let defaults = DeliveryPolicy::default();
        let policy = DeliveryPolicy {
            max_queue_depth: env.parse_or(vars::C2D_MAX_QUEUE_DEPTH, defaults.max_queue_depth)?,
            lock_duration: env
                .seconds_or(vars::C2D_LOCK_SECONDS, defaults.lock_duration.as_secs())?,
            max_delivery_count: env
                .parse_or(vars::C2D_MAX_DELIVERY_COUNT, defaults.max_delivery_count)?,
            default_ttl: env.seconds_or(
                vars::C2D_DEFAULT_TTL_SECONDS,
                defaults.default_ttl.as_secs(),
            )?,
            max_ttl: env.seconds_or(vars::C2D_MAX_TTL_SECONDS, defaults.max_ttl.as_secs())?,
        };
        if policy.default_ttl > policy.max_ttl
            || policy.lock_duration.is_zero()
            || policy.max_delivery_count == 0
        {
            return Err(ConfigError::Invalid {
                name: vars::C2D_DEFAULT_TTL_SECONDS,
                value: format!("{policy:?}"),
                reason: "the default TTL must not exceed the maximum; lock and delivery count must be positive".into(),
            });
        }
        Ok(Self {
            registry_table: env.required(vars::REGISTRY_TABLE)?,
            activity: ActivityConfig::from_env(env)?,
            commands_table: env.required(vars::COMMANDS_TABLE)?,
            feedback_queue_url: env.required(vars::FEEDBACK_QUEUE_URL)?,
            dead_letter_queue_url: env.required(vars::C2D_DEAD_LETTER_QUEUE_URL)?,
            requests_dead_letter_queue_url: env.required(vars::COMMAND_REQUESTS_DLQ_URL)?,
            policy,
        })
    }
}

/// The function as deployed: queues in DynamoDB, feedback and dead letters in SQS.
pub type Handler = CommandsHandler<DynamoDbCommandStore, SqsQueue, SqsQueue, DeployedTracker>;

/// Builds the function from its configuration, as its `main` does at cold start and the local
/// gateway does for its in-process functions.
pub fn build(config: &CommandsConfig, clients: &Clients) -> Handler {
    let clock = hub_shared::clock::system();
    CommandsHandler {
        commands: Commands {
            store: DynamoDbCommandStore::new(
                clients.dynamodb.clone(),
                CommandTables {
                    commands: config.commands_table.clone(),
                    registry: config.registry_table.clone(),
                },
            ),
            feedback: SqsQueue::new(clients.sqs.clone(), &config.feedback_queue_url),
            dead_letters: SqsQueue::new(clients.sqs.clone(), &config.dead_letter_queue_url),
            policy: config.policy,
            clock: clock.clone(),
        },
        request_dead_letters: SqsQueue::new(
            clients.sqs.clone(),
            &config.requests_dead_letter_queue_url,
        ),
        activity: hub_shared::connection::build(&config.activity, clients),
        clock,
    }
}

/// Constructed with named fields: the three queues are all SQS queues in a deployment.
pub struct CommandsHandler<S, F, D, A> {
    pub commands: Commands<S, F, D>,
    /// Where command requests that can never be processed go.
    pub request_dead_letters: D,
    /// Records the device's `lastActivityTime` and connection state on its calls.
    pub activity: A,
    pub clock: SharedClock,
}

impl<S: CommandStore, F: FeedbackQueue, D: DeadLetters, A: ActivityRecorder>
    CommandsHandler<S, F, D, A>
{
    /// The scheduled sweep. Work it could not finish fails the invocation (after doing the rest),
    /// so Lambda's retries, `Errors` metric and alarms see it; the leftovers stay due.
    pub async fn handle_sweep(&self) -> Result<Value, queue::SweepError> {
        let report = self.commands.sweep(SWEEP_LIMIT).await?;
        if report != queue::SweepReport::default() {
            tracing::info!(?report, "sweep");
        }
        Ok(
            json!({ "expired": report.expired, "deadLettered": report.dead_lettered, "finished": report.finished }),
        )
    }
}

impl<S: CommandStore, F: FeedbackQueue, D: DeadLetters, A: ActivityRecorder> Function
    for CommandsHandler<S, F, D, A>
{
    /// Dispatches on the event's shape: an SQS batch (`Records`), a scheduled sweep (an
    /// EventBridge event, `detail-type`), or an API Gateway request (`requestContext`).
    async fn invoke(&self, event: Value) -> Result<Value, InvocationError> {
        if event.get("Records").is_some() {
            let batch: SqsEvent = hub_shared::lambda::event(event)?;
            return hub_shared::lambda::response(&self.handle_requests(&batch).await);
        }
        if event.get("detail-type").is_some() {
            return self.handle_sweep().await.map_err(|error| {
                tracing::error!(error = %Chain(&error), "sweep failed");
                InvocationError::Failed(error.cause)
            });
        }
        let request: ApiGatewayV2httpRequest = hub_shared::lambda::event(event)?;
        hub_shared::lambda::response(&self.handle_http(&request).await)
    }
}

#[cfg(test)]
mod tests;
