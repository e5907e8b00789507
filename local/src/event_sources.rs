//! What Lambda does besides HTTP, emulated with the deployed settings (`settings`): the SQS event
//! source mappings of the `commands` function and of the registry's job work (batches, batching
//! window, partial batch responses),
//! the Kinesis mappings of `analytics`, the router and the archiver (`kinesis_mapping`), the
//! router's SQS mapping on its copy of the registry events, and the EventBridge schedule of the
//! sweeps.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::SqsBatchResponse;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::hub::{FunctionName, Hub};
use crate::kinesis_mapping::{self, KinesisMappingOptions};
use crate::settings::SettingsError;

#[derive(Debug, Clone)]
pub struct EventSourceOptions {
    /// How often the schedule runs its targets; `None` leaves it to the caller
    /// (`Hub::run_schedule`), as tests do to sweep at a moment of their choosing.
    pub schedule_every: Option<Duration>,
    pub command_requests: SqsMappingOptions,
    pub job_work: SqsMappingOptions,
    pub kinesis: KinesisMappingOptions,
    /// The router's mapping, when routes deliver beyond the stream.
    pub routing: Option<KinesisMappingOptions>,
    /// The archiver's mapping, when a route fills the archive.
    pub archive: Option<KinesisMappingOptions>,
    /// The router's mapping on its copy of the registry events, when routes read them.
    pub routing_events: Option<SqsMappingOptions>,
}

#[derive(Debug, Clone)]
pub struct SqsMappingOptions {
    pub function: FunctionName,
    pub queue_url: String,
    pub batch_size: i32,
    pub batching_window: Duration,
}

impl EventSourceOptions {
    /// The settings Terraform deploys (batch sizes, windows, retries, the schedule's rate).
    pub fn deployed(hub: &Hub) -> Result<Self, SettingsError> {
        let settings = &hub.settings;
        Ok(Self {
            schedule_every: Some(settings.schedule.period()?),
            command_requests: SqsMappingOptions::deployed(&settings.command_requests_mapping)?,
            job_work: SqsMappingOptions::deployed(&settings.job_work_mapping)?,
            kinesis: KinesisMappingOptions::deployed(&settings.telemetry_mapping)?,
            routing: settings
                .routing_mapping
                .as_ref()
                .map(KinesisMappingOptions::deployed)
                .transpose()?,
            archive: settings
                .archive_mapping
                .as_ref()
                .map(KinesisMappingOptions::deployed)
                .transpose()?,
            routing_events: settings
                .routing_events_mapping
                .as_ref()
                .map(SqsMappingOptions::deployed)
                .transpose()?,
        })
    }
}

impl SqsMappingOptions {
    fn deployed(sqs: &crate::settings::SqsMappingSettings) -> Result<Self, SettingsError> {
        Ok(Self {
            function: function_named(&sqs.function)?,
            queue_url: sqs.queue_url.clone(),
            batch_size: sqs.batch_size,
            batching_window: Duration::from_secs(sqs.maximum_batching_window_in_seconds),
        })
    }
}

pub(crate) fn function_named(name: &str) -> Result<FunctionName, SettingsError> {
    FunctionName::parse(name).ok_or(SettingsError::MissingFunction("(event source target)"))
}

pub fn spawn(hub: Arc<Hub>, options: &EventSourceOptions) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(poll_queue(
            Arc::clone(&hub),
            options.command_requests.clone(),
        )),
        tokio::spawn(poll_queue(Arc::clone(&hub), options.job_work.clone())),
        tokio::spawn(kinesis_mapping::run(
            Arc::clone(&hub),
            options.kinesis.clone(),
        )),
    ];
    if let Some(events) = &options.routing_events {
        tasks.push(tokio::spawn(poll_queue(Arc::clone(&hub), events.clone())));
    }
    for mapping in [&options.routing, &options.archive].into_iter().flatten() {
        tasks.push(tokio::spawn(kinesis_mapping::run(
            Arc::clone(&hub),
            mapping.clone(),
        )));
    }
    if let Some(every) = options.schedule_every {
        tasks.push(tokio::spawn(schedule(hub, every)));
    }
    tasks
}

async fn schedule(hub: Arc<Hub>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        for (target, error) in hub.run_schedule().await {
            tracing::error!(function = target.as_str(), %error, "scheduled invocation failed");
        }
    }
}

/// Long-polls the queue, gathers up to a batch within the batching window, invokes the function,
/// and deletes the records it did not report as failed. Failed records become visible again after
/// the queue's visibility timeout; SQS's redrive policy moves them to the dead-letter queue after
/// maxReceiveCount.
pub async fn poll_queue(hub: Arc<Hub>, options: SqsMappingOptions) {
    let queue_url = options.queue_url.clone();
    let batch_size = options.batch_size.max(1);
    loop {
        let mut messages = Vec::new();
        let deadline = tokio::time::Instant::now() + options.batching_window;
        loop {
            let wanted = (batch_size - messages.len() as i32).clamp(1, 10);
            let received = hub
                .clients
                .sqs
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(wanted)
                .wait_time_seconds(if messages.is_empty() { 2 } else { 0 })
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await;
            match received {
                Ok(output) => messages.extend(output.messages.unwrap_or_default()),
                Err(error) => {
                    tracing::warn!(error = %hub_shared::error::Chain(&error), queue = %queue_url, "polling a mapped queue failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            if messages.is_empty() || messages.len() as i32 >= batch_size {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if messages.is_empty() {
            continue;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attributes: serde_json::Map<String, Value> = m
                    .attributes()
                    .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), json!(v))).collect())
                    .unwrap_or_default();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": format!("arn:aws:sqs:local:000000000000:{}", queue_url.rsplit('/').next().unwrap_or_default()),
                    "awsRegion": "local",
                })
            })
            .collect();
        let failed: Vec<String> = match hub
            .invoke(options.function, json!({ "Records": records }))
            .await
        {
            Ok(response) => match serde_json::from_value::<SqsBatchResponse>(response) {
                Ok(batch) => batch
                    .batch_item_failures
                    .into_iter()
                    .map(|f| f.item_identifier)
                    .collect(),
                Err(error) => {
                    tracing::error!(%error, "the function's batch response is malformed; the whole batch is retried");
                    continue;
                }
            },
            Err(error) => {
                tracing::error!(%error, "the function failed; the whole batch is retried");
                continue;
            }
        };
        let done: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .filter(|m| !failed.iter().any(|id| Some(id.as_str()) == m.message_id()))
            .filter_map(|m| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(m.message_id().unwrap_or_default())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .ok()
            })
            .collect();
        // SQS deletes at most 10 messages per call.
        for chunk in done.chunks(10) {
            if let Err(error) = hub
                .clients
                .sqs
                .delete_message_batch()
                .queue_url(&queue_url)
                .set_entries(Some(chunk.to_vec()))
                .send()
                .await
            {
                tracing::warn!(error = %hub_shared::error::Chain(&error), queue = %queue_url, "deleting processed messages failed; they will be redelivered");
            }
        }
    }
}
