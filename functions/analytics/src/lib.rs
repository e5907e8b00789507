//! The `analytics` function: turns the telemetry stream into window aggregates, device states and
//! rule outcomes (alerts, commands), exactly once in effect however often Kinesis redelivers, and
//! serves the query and rules API. One Lambda, two event shapes; see `handle`.

pub mod batch;
pub mod engine;
pub mod http_api;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::kinesis::KinesisEvent;
use hub_shared::aws::{
    AnalyticsTables, Clients, DynamoDbAnalyticsStore, DynamoDbRuleStore, DynamoDbTwinStore,
    SqsQueue,
};
use hub_shared::config::{ConfigError, Env, vars};
use hub_shared::domain::analytics::{Rule, WindowSize};
use hub_shared::lambda::{Function, InvocationError};
use hub_shared::ports::{AnalyticsStore, NoTags, QueueSender, RuleStore, StoreError, TagReader};
use serde_json::Value;

use crate::engine::{Engine, MAX_RULES, MAX_WINDOWS};
use hub_shared::domain::analytics::MAX_RECENT_READINGS;

#[derive(Debug, Clone)]
pub struct AnalyticsConfig {
    pub analytics_table: String,
    pub alerts_table: String,
    pub rules_table: String,
    /// Twin tags, for rules that select devices by tag.
    pub twins_table: String,
    pub command_requests_queue_url: String,
    pub alerts_queue_url: String,
    pub dead_letter_queue_url: String,
    pub windows: Vec<WindowSize>,
    pub retention: Duration,
    pub rules_cache: Duration,
    /// Readings each device state keeps as raw chart points (0: none; each costs state size).
    pub recent_readings: usize,
}

impl AnalyticsConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let raw_windows: String = env.parse_or(vars::ANALYTICS_WINDOWS, "1m,1h".to_owned())?;
        let invalid = |reason: String| ConfigError::Invalid {
            name: vars::ANALYTICS_WINDOWS,
            value: raw_windows.clone(),
            reason,
        };
        let mut windows = raw_windows
            .split(',')
            .map(|w| w.parse::<WindowSize>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        windows.sort();
        windows.dedup();
        if windows.is_empty() || windows.len() > MAX_WINDOWS {
            return Err(invalid(format!("give 1 to {MAX_WINDOWS} windows")));
        }
        let retention_days: u64 = env.parse_or(vars::ANALYTICS_RETENTION_DAYS, 30)?;
        let recent_readings: usize = env.parse_or(vars::ANALYTICS_RECENT_READINGS, 0)?;
        if recent_readings > MAX_RECENT_READINGS {
            return Err(ConfigError::Invalid {
                name: vars::ANALYTICS_RECENT_READINGS,
                value: recent_readings.to_string(),
                reason: format!("keep at most {MAX_RECENT_READINGS} readings"),
            });
        }
        Ok(Self {
            analytics_table: env.required(vars::ANALYTICS_TABLE)?,
            alerts_table: env.required(vars::ALERTS_TABLE)?,
            rules_table: env.required(vars::RULES_TABLE)?,
            twins_table: env.required(vars::TWINS_TABLE)?,
            command_requests_queue_url: env.required(vars::COMMAND_REQUESTS_QUEUE_URL)?,
            alerts_queue_url: env.required(vars::ALERTS_QUEUE_URL)?,
            dead_letter_queue_url: env.required(vars::ANALYTICS_DLQ_URL)?,
            windows,
            retention: Duration::from_secs(retention_days * 86_400),
            recent_readings,
            rules_cache: env.seconds_or(vars::RULES_CACHE_SECONDS, 10)?,
        })
    }
}

/// The function as deployed.
pub type Handler =
    AnalyticsHandler<DynamoDbAnalyticsStore, DynamoDbRuleStore, SqsQueue, DynamoDbTwinStore>;

/// Builds the function from its configuration, as its `main` does at cold start and the local
/// gateway does for its in-process functions.
pub fn build(config: &AnalyticsConfig, clients: &Clients) -> Handler {
    let queue = |url: &str| SqsQueue::new(clients.sqs.clone(), url);
    AnalyticsHandler::new(
        config.windows.clone(),
        DynamoDbAnalyticsStore::new(
            clients.dynamodb.clone(),
            AnalyticsTables {
                analytics: config.analytics_table.clone(),
                alerts: config.alerts_table.clone(),
            },
            config.retention,
        ),
        DynamoDbRuleStore::new(clients.dynamodb.clone(), &config.rules_table),
        AnalyticsQueues {
            command_requests: queue(&config.command_requests_queue_url),
            alert_events: queue(&config.alerts_queue_url),
            dead_letters: queue(&config.dead_letter_queue_url),
        },
        config.rules_cache,
    )
    .with_recent_readings(config.recent_readings)
    .with_tags(DynamoDbTwinStore::new(
        clients.dynamodb.clone(),
        &config.twins_table,
    ))
}

/// Where the function's outputs go, by name: in a deployment all three are SQS queues.
pub struct AnalyticsQueues<Q> {
    /// Commands for devices, consumed by the commands function.
    pub command_requests: Q,
    /// Alert raised/cleared events for integrations.
    pub alert_events: Q,
    /// Records that can never be processed, with the reason.
    pub dead_letters: Q,
}

/// `T` reads twin tags for rules that select devices by tag; without twins (`NoTags`) such rules
/// select no device.
pub struct AnalyticsHandler<A, R, Q, T = NoTags> {
    pub engine: Engine,
    pub store: A,
    pub rule_store: R,
    pub tags: T,
    pub command_requests: Q,
    pub alert_events: Q,
    pub dead_letters: Q,
    rules_cache: Mutex<Option<(Instant, Arc<Vec<Rule>>)>>,
    rules_ttl: Duration,
}

impl<A: AnalyticsStore, R: RuleStore, Q: QueueSender> AnalyticsHandler<A, R, Q> {
    pub fn new(
        windows: Vec<WindowSize>,
        store: A,
        rule_store: R,
        queues: AnalyticsQueues<Q>,
        rules_ttl: Duration,
    ) -> Self {
        Self {
            engine: Engine::new(windows),
            store,
            rule_store,
            tags: NoTags,
            command_requests: queues.command_requests,
            alert_events: queues.alert_events,
            dead_letters: queues.dead_letters,
            rules_cache: Mutex::new(None),
            rules_ttl,
        }
    }

    /// Keeps the latest `readings` of each device in its state (raw points for charts).
    pub fn with_recent_readings(mut self, readings: usize) -> Self {
        self.engine.recent_readings = readings;
        self
    }

    /// Reads twin tags with `tags`, for rules that select devices by tag.
    pub fn with_tags<T: TagReader>(self, tags: T) -> AnalyticsHandler<A, R, Q, T> {
        AnalyticsHandler {
            engine: self.engine,
            store: self.store,
            rule_store: self.rule_store,
            tags,
            command_requests: self.command_requests,
            alert_events: self.alert_events,
            dead_letters: self.dead_letters,
            rules_cache: self.rules_cache,
            rules_ttl: self.rules_ttl,
        }
    }
}

impl<A: AnalyticsStore, R: RuleStore, Q: QueueSender, T: TagReader> AnalyticsHandler<A, R, Q, T> {
    /// The enabled rules, read at most once per cache period (at most `MAX_RULES`).
    pub async fn rules(&self) -> Result<Arc<Vec<Rule>>, StoreError> {
        if let Some((read_at, rules)) = self
            .rules_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && read_at.elapsed() < self.rules_ttl
        {
            return Ok(Arc::clone(rules));
        }
        let mut rules: Vec<Rule> = self
            .rule_store
            .list()
            .await?
            .into_iter()
            .filter(|r| r.enabled)
            .collect();
        if rules.len() > MAX_RULES {
            tracing::warn!(
                rules = rules.len(),
                "more enabled rules than the hub evaluates; the first {MAX_RULES} by id are used"
            );
            rules.truncate(MAX_RULES);
        }
        let rules = Arc::new(rules);
        *self.rules_cache.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), Arc::clone(&rules)));
        Ok(rules)
    }

    /// Forgets the cached rules (after the rules API changed them).
    pub fn invalidate_rules(&self) {
        *self.rules_cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl<A: AnalyticsStore, R: RuleStore, Q: QueueSender, T: TagReader> Function
    for AnalyticsHandler<A, R, Q, T>
{
    /// Dispatches on the event's shape: Kinesis records (`Records`), or an API Gateway request.
    async fn invoke(&self, event: Value) -> Result<Value, InvocationError> {
        if event.get("Records").is_some() {
            let batch: KinesisEvent = hub_shared::lambda::event(event)?;
            return hub_shared::lambda::response(&self.handle_kinesis(&batch).await);
        }
        let request: ApiGatewayV2httpRequest = hub_shared::lambda::event(event)?;
        hub_shared::lambda::response(&self.handle_http(&request).await)
    }
}

#[cfg(test)]
mod tests;
