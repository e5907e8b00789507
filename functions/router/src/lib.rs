//! The `router` function: Azure IoT Hub's message routing on the telemetry stream (device
//! messages) and on the router's copy of the registry events queue (twin change, lifecycle and
//! connection-state events, see `hub_shared::routing::event_message`). Each message's
//! envelope is matched against the routes (`hub_shared::routing`), enriched per endpoint, and
//! delivered to each chosen endpoint once; an endpoint that still fails after its retries gets
//! its messages dead-lettered with the reason, without holding back the other endpoints or the
//! shard. Only when even the dead-letter queue cannot take them does the batch report those
//! records as failed, so Kinesis (or SQS) delivers them again (at least once: endpoints may see a message
//! twice, always with the same `hubMessageId`).

pub mod delivery;
pub mod metrics;

use std::collections::{BTreeSet, HashMap};

use aws_lambda_events::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use aws_lambda_events::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use hub_shared::aws::{AwsEndpoint, Clients, DynamoDbTwinStore, SqsQueue};
use hub_shared::config::{ConfigError, Env, vars};
use hub_shared::domain::envelope::TelemetryEnvelope;
use hub_shared::domain::registry::LifecycleEvent;
use hub_shared::error::Chain;
use hub_shared::lambda::{Function, InvocationError};
use hub_shared::ports::{Delivery, Endpoint, QueueSender, TwinStore};
use hub_shared::publish::RetryPolicy;
use hub_shared::routing::{
    MessageView, RouteSource, RouteTable, TELEMETRY_EVENT_TYPE, event_message, event_type,
    source_of, twin_document,
};
use hub_shared::{DeviceId, domain::envelope::Properties};
use serde_json::{Value, json};

use crate::delivery::deliver_all;
use crate::metrics::Report;

/// Largest envelope a dead letter carries whole (SQS takes 256 KiB); a larger one is named by
/// its stream position instead.
const DEAD_LETTER_ENVELOPE_BYTES: usize = 200 * 1024;

#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub table: RouteTable,
    pub twins_table: String,
    pub dead_letter_queue_url: String,
    pub max_attempts: u32,
    /// Per-route and per-endpoint counts as CloudWatch embedded metric format on stdout.
    pub metrics: bool,
}

impl RouterConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let text: String = env.parse_or(vars::ROUTING, "{}".to_owned())?;
        let table = RouteTable::from_json(&text).map_err(|e| ConfigError::Invalid {
            name: vars::ROUTING,
            value: text.chars().take(200).collect(),
            reason: e.to_string(),
        })?;
        let max_attempts: u32 = env.parse_or(vars::ROUTING_MAX_ATTEMPTS, 4)?;
        if !(1..=20).contains(&max_attempts) {
            return Err(ConfigError::Invalid {
                name: vars::ROUTING_MAX_ATTEMPTS,
                value: max_attempts.to_string(),
                reason: "give 1 to 20 attempts".into(),
            });
        }
        let metrics: String = env.parse_or(vars::ROUTING_METRICS, "off".to_owned())?;
        Ok(Self {
            table,
            twins_table: env.required(vars::TWINS_TABLE)?,
            dead_letter_queue_url: env.required(vars::ROUTING_DLQ_URL)?,
            max_attempts,
            metrics: metrics == "emf",
        })
    }
}

/// The function as deployed.
pub type Handler = RouterHandler<AwsEndpoint, DynamoDbTwinStore, SqsQueue>;

/// Builds the function from its configuration, as its `main` does at cold start and the local
/// gateway does for its in-process functions.
pub fn build(config: &RouterConfig, clients: &Clients) -> Handler {
    let table = config.table.clone();
    let endpoints = (0..table.endpoint_names().len())
        .filter_map(|i| table.endpoint(i))
        .map(|(_, spec)| AwsEndpoint::new(spec, clients, table.hub_name()))
        .collect();
    RouterHandler {
        endpoints,
        twins: DynamoDbTwinStore::new(clients.dynamodb.clone(), &config.twins_table),
        dead_letters: SqsQueue::new(clients.sqs.clone(), &config.dead_letter_queue_url),
        retry: RetryPolicy {
            max_attempts: config.max_attempts,
            ..RetryPolicy::default()
        },
        metrics: config.metrics,
        table,
    }
}

/// `E` delivers to one custom endpoint (by the table's endpoint positions; `None` for the
/// archive, which the archiver writes), `T` reads twins for routes and enrichments that use
/// them, `D` takes dead letters.
pub struct RouterHandler<E, T, D> {
    pub table: RouteTable,
    pub endpoints: Vec<Option<E>>,
    pub twins: T,
    pub dead_letters: D,
    pub retry: RetryPolicy,
    pub metrics: bool,
}

/// One message to route, and where it came from (for its dead letter and its retry).
struct Incoming<'a> {
    /// `None` for a queue message that is not a registry event.
    source: Option<RouteSource>,
    /// Event Grid's name for it (EventBridge's `detail-type`).
    event_type: &'static str,
    /// `Err`: why it did not decode (it is dead-lettered with the reason).
    envelope: Result<TelemetryEnvelope, String>,
    /// The envelope JSON as the stream holds it, delivered as is when not enriched.
    stored: Option<String>,
    origin: Origin<'a>,
}

#[derive(Clone, Copy)]
enum Origin<'a> {
    Stream(&'a KinesisEventRecord),
    Queue(&'a SqsMessage),
}

/// The envelope as an endpoint receives it: the stream's envelope with the endpoint's
/// enrichments in its application properties; a registry event says its source and has no
/// sender's authentication.
fn routed_body(
    envelope: &TelemetryEnvelope,
    source: RouteSource,
    properties: Properties,
) -> String {
    /// The envelope's fields, borrowed, with other properties: written straight to text.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Routed<'a> {
        v: u32,
        hub_message_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        message_source: Option<&'a str>,
        device_id: &'a str,
        device_generation_id: &'a str,
        enqueued_time: hub_shared::domain::timestamp::Timestamp,
        #[serde(skip_serializing_if = "Option::is_none")]
        auth_method: Option<&'a hub_shared::domain::envelope::AuthMethod>,
        system_properties: &'a hub_shared::domain::envelope::SystemProperties,
        properties: &'a Properties,
        body: String,
    }
    use base64::Engine as _;
    let telemetry = source == RouteSource::DeviceMessages;
    let routed = Routed {
        v: envelope.v,
        hub_message_id: &envelope.hub_message_id,
        message_source: (!telemetry).then(|| source.message_source()),
        device_id: envelope.device_id.as_str(),
        device_generation_id: &envelope.device_generation_id,
        enqueued_time: envelope.enqueued_time,
        auth_method: telemetry.then_some(&envelope.auth_method),
        system_properties: &envelope.system_properties,
        properties: &properties,
        body: base64::engine::general_purpose::STANDARD.encode(&envelope.body),
    };
    // Strings, maps and numbers always serialize.
    serde_json::to_string(&routed).unwrap_or_default()
}

impl<E: Endpoint, T: TwinStore, D: QueueSender> RouterHandler<E, T, D> {
    /// Routes one batch of device messages; the response names the records Kinesis must
    /// deliver again.
    pub async fn handle_kinesis(&self, event: &KinesisEvent) -> (KinesisEventResponse, Report) {
        let incoming: Vec<Incoming> = event
            .records
            .iter()
            .map(|record| {
                let decoded = TelemetryEnvelope::from_record(&record.kinesis.data.0);
                Incoming {
                    source: Some(RouteSource::DeviceMessages),
                    event_type: TELEMETRY_EVENT_TYPE,
                    stored: decoded
                        .is_ok()
                        .then(|| String::from_utf8(record.kinesis.data.0.clone()).ok())
                        .flatten(),
                    envelope: decoded,
                    origin: Origin::Stream(record),
                }
            })
            .collect();
        let (retry, report) = self.route(&incoming).await;
        let mut response = KinesisEventResponse::default();
        response.batch_item_failures = retry
            .into_iter()
            .filter_map(|i| event.records.get(i))
            .map(|r| {
                let mut failure = KinesisBatchItemFailure::default();
                failure.item_identifier = Some(r.kinesis.sequence_number.clone());
                failure
            })
            .collect();
        (response, report)
    }

    /// Routes one batch of the registry's events (its events queue, copied for the router);
    /// the response names the messages SQS must deliver again.
    pub async fn handle_events(&self, event: &SqsEvent) -> (SqsBatchResponse, Report) {
        let incoming: Vec<Incoming> = event
            .records
            .iter()
            .map(|message| {
                let event = serde_json::from_str::<LifecycleEvent>(
                    message.body.as_deref().unwrap_or_default(),
                )
                .map_err(|e| format!("not a registry event: {e}"));
                Incoming {
                    source: event.as_ref().ok().map(|e| source_of(e.op_type)),
                    event_type: event
                        .as_ref()
                        .map_or(TELEMETRY_EVENT_TYPE, |e| event_type(e.op_type)),
                    envelope: event.map(|e| event_message(&e).1),
                    stored: None,
                    origin: Origin::Queue(message),
                }
            })
            .collect();
        let (retry, report) = self.route(&incoming).await;
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = retry
            .into_iter()
            .filter_map(|i| event.records.get(i))
            .map(|m| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = m.message_id.clone().unwrap_or_default();
                failure
            })
            .collect();
        (response, report)
    }

    /// Decides, enriches, delivers and dead-letters; returns the positions of the messages to
    /// deliver again (only those whose dead letters could not be sent).
    async fn route(&self, incoming: &[Incoming<'_>]) -> (BTreeSet<usize>, Report) {
        let mut report = Report::default();
        let mut dead: Vec<(usize, String)> = incoming
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let reason = item.envelope.as_ref().err()?;
                Some((i, dead_letter(item, None, reason)))
            })
            .collect();

        let twins = match self.twins_of(incoming).await {
            Ok(twins) => twins,
            Err(error) => {
                tracing::error!(error = %Chain(&error), "cannot read the twins routes need; the batch is retried");
                return ((0..incoming.len()).collect(), report);
            }
        };

        let mut routed: Vec<Vec<(usize, Delivery)>> = vec![Vec::new(); self.endpoints.len()];
        for (i, item) in incoming.iter().enumerate() {
            let (Ok(envelope), Some(source)) = (&item.envelope, item.source) else {
                continue;
            };
            let twin = twins.get(&envelope.device_id);
            let view = MessageView::new(envelope, twin, self.table.reads_body()).of_source(source);
            let decision = self.table.decide(&view);
            report.decided(&self.table, &decision);
            for &endpoint in &decision.endpoints {
                // Without enrichments an endpoint receives the envelope exactly as stored.
                let body = match (self.table.enriches(endpoint), &item.stored) {
                    (false, Some(stored)) => stored.clone(),
                    _ => routed_body(
                        envelope,
                        source,
                        self.table.enriched(envelope, twin, endpoint),
                    ),
                };
                if let Some(list) = routed.get_mut(endpoint) {
                    list.push((
                        i,
                        Delivery {
                            id: envelope.hub_message_id.clone(),
                            device_id: envelope.device_id.as_str().to_owned(),
                            body,
                            event_type: item.event_type,
                        },
                    ));
                }
            }
        }

        let deliveries = self
            .endpoints
            .iter()
            .zip(&routed)
            .filter_map(|(endpoint, items)| endpoint.as_ref().map(|e| (e, items)))
            .filter(|(_, items)| !items.is_empty())
            .map(|(endpoint, items)| deliver_all(endpoint, items, &self.retry));
        let outcomes = futures::future::join_all(deliveries).await;
        let busy = routed.iter().enumerate().filter(|(i, items)| {
            !items.is_empty() && self.endpoints.get(*i).is_some_and(Option::is_some)
        });
        for ((endpoint, items), outcome) in busy.zip(outcomes) {
            let name = self
                .table
                .endpoint(endpoint)
                .map_or("?", |(name, _)| name)
                .to_owned();
            report.delivered(&name, items.len() - outcome.len());
            report.failed(&name, outcome.len());
            for (position, reason) in outcome {
                let Some((index, _)) = items.get(position) else {
                    continue;
                };
                let Some(item) = incoming.get(*index) else {
                    continue;
                };
                dead.push((*index, dead_letter(item, Some(&name), &reason)));
            }
        }

        let mut retry = BTreeSet::new();
        if !dead.is_empty() {
            let bodies: Vec<String> = dead.iter().map(|(_, body)| body.clone()).collect();
            match self.send_dead_letters(&bodies).await {
                Ok(()) => report.dead_lettered(&dead),
                Err(error) => {
                    tracing::error!(error = %Chain(&error), messages = dead.len(), "dead letters could not be sent; their messages are retried");
                    retry.extend(dead.iter().map(|(index, _)| *index));
                }
            }
        }
        if self.metrics {
            for line in report.emf(time::OffsetDateTime::now_utc()) {
                println!("{line}");
            }
        }
        (retry, report)
    }

    async fn twins_of(
        &self,
        incoming: &[Incoming<'_>],
    ) -> Result<HashMap<DeviceId, Value>, hub_shared::ports::StoreError> {
        if !self.table.reads_twin() {
            return Ok(HashMap::new());
        }
        let devices: BTreeSet<(DeviceId, String)> = incoming
            .iter()
            .filter_map(|item| item.envelope.as_ref().ok())
            .map(|e| (e.device_id.clone(), e.device_generation_id.clone()))
            .collect();
        let devices: Vec<_> = devices.into_iter().collect();
        let twins = self.twins.twins_of(&devices).await?;
        Ok(twins
            .into_iter()
            .map(|(id, twin)| (id, twin_document(&twin)))
            .collect())
    }

    async fn send_dead_letters(
        &self,
        bodies: &[String],
    ) -> Result<(), hub_shared::ports::StoreError> {
        let mut attempt = 0;
        loop {
            match self.dead_letters.send_all(bodies).await {
                Ok(()) => return Ok(()),
                Err(error) if attempt + 1 >= self.retry.max_attempts => return Err(error),
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
            }
        }
    }
}

/// What a dead letter says: why, which endpoint, which message and where it came from. A
/// stream record is named by its position (it stays on the stream for its retention) and carries
/// its envelope when under 200 KB; a registry event carries its queue message id and its body,
/// all there is of it once SQS deletes the message.
fn dead_letter(item: &Incoming<'_>, endpoint: Option<&str>, reason: &str) -> String {
    let envelope = item.envelope.as_ref().ok();
    let mut letter = json!({
        "reason": reason,
        "endpoint": endpoint,
        "hubMessageId": envelope.map(|e| e.hub_message_id.as_str()),
        "deviceId": envelope.map(|e| e.device_id.as_str()),
    });
    match item.origin {
        Origin::Stream(record) => {
            if envelope.is_none() {
                letter["deviceId"] = json!(record.kinesis.partition_key);
            }
            letter["sequenceNumber"] = json!(record.kinesis.sequence_number);
            letter["eventSourceArn"] = json!(record.event_source_arn);
            letter["envelope"] = envelope
                .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
                .filter(|v| v.to_string().len() <= DEAD_LETTER_ENVELOPE_BYTES)
                .unwrap_or(Value::Null);
        }
        Origin::Queue(message) => {
            letter["messageSource"] = json!(item.source.map(RouteSource::message_source));
            letter["sqsMessageId"] = json!(message.message_id);
            letter["eventSourceArn"] = json!(message.event_source_arn);
            letter["body"] = json!(message.body.as_deref().map(within_dead_letter));
        }
    }
    letter.to_string()
}

/// `body` cut to what a dead letter can hold once escaped: registry events are a few KB, but a
/// message someone else put in the queue can be up to 256 KiB.
fn within_dead_letter(body: &str) -> &str {
    let mut end = body.len().min(DEAD_LETTER_ENVELOPE_BYTES / 2);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    &body[..end]
}

impl<E: Endpoint, T: TwinStore, D: QueueSender> Function for RouterHandler<E, T, D> {
    async fn invoke(&self, event: Value) -> Result<Value, InvocationError> {
        // The router has two mappings: the telemetry stream, and the registry events' queue.
        // Each handler's future is boxed: both inline, with the SDK calls beneath them, are
        // deeper than the compiler lays out by default.
        let from_queue = event["Records"][0]["eventSource"] == "aws:sqs";
        if from_queue {
            let batch: SqsEvent = hub_shared::lambda::event(event)?;
            let (response, _) = Box::pin(self.handle_events(&batch)).await;
            hub_shared::lambda::response(&response)
        } else {
            let batch: KinesisEvent = hub_shared::lambda::event(event)?;
            let (response, _) = Box::pin(self.handle_kinesis(&batch)).await;
            hub_shared::lambda::response(&response)
        }
    }
}

#[cfg(test)]
mod tests;
