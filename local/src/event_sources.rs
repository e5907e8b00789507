//! What Lambda does besides HTTP, emulated: the SQS event source mapping of the `commands`
//! function (batches, partial batch responses) and its EventBridge sweep schedule.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::SqsBatchResponse;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::hub::Hub;
use crate::kinesis_mapping::{self, KinesisMappingOptions};

#[derive(Debug, Clone)]
pub struct EventSourceOptions {
    /// How often the sweep runs (EventBridge: once a minute in AWS).
    pub sweep_every: Duration,
    /// Records per invocation, as the mapping's batch size.
    pub batch_size: i32,
    /// The analytics function's Kinesis mapping.
    pub kinesis: KinesisMappingOptions,
}

impl Default for EventSourceOptions {
    fn default() -> Self {
        Self {
            sweep_every: Duration::from_secs(5),
            batch_size: 10,
            kinesis: KinesisMappingOptions::default(),
        }
    }
}

pub fn spawn(hub: Arc<Hub>, options: &EventSourceOptions) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(poll_command_requests(Arc::clone(&hub), options.batch_size)),
        tokio::spawn(kinesis_mapping::run(
            Arc::clone(&hub),
            options.kinesis.clone(),
        )),
        tokio::spawn(sweep(hub, options.sweep_every)),
    ]
}

async fn sweep(hub: Arc<Hub>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let event =
            json!({ "detail-type": "Scheduled Event", "source": "aws.events", "detail": {} });
        // EventBridge invokes both targets of the schedule rule.
        let (commands, registry) = tokio::join!(
            hub.invoke_commands(event.clone()),
            hub.invoke_registry(event)
        );
        for error in [commands.err(), registry.err()].into_iter().flatten() {
            tracing::error!(%error, "sweep invocation failed");
        }
    }
}

/// Long-polls the queue, invokes the function with each batch, and deletes the records it did
/// not report as failed. Failed records become visible again after the queue's visibility
/// timeout; SQS's redrive policy moves them to the dead-letter queue after maxReceiveCount.
async fn poll_command_requests(hub: Arc<Hub>, batch_size: i32) {
    let queue_url = hub.command_requests_queue_url.clone();
    loop {
        let received = hub
            .sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(batch_size.clamp(1, 10))
            .wait_time_seconds(2)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await;
        let messages = match received {
            Ok(output) => output.messages.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(error = %hub_shared::error::Chain(&error), "polling command requests failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
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
        let failed: Vec<String> = match hub.invoke_commands(json!({ "Records": records })).await {
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
        if !done.is_empty()
            && let Err(error) = hub
                .sqs
                .delete_message_batch()
                .queue_url(&queue_url)
                .set_entries(Some(done))
                .send()
                .await
        {
            tracing::warn!(error = %hub_shared::error::Chain(&error), "deleting processed command requests failed; they will be redelivered");
        }
    }
}
