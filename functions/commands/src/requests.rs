//! The `command-requests` queue: asynchronous producers (rules, bulk sends) put `CommandRequest`s
//! on it and this function enqueues them, with SQS partial batch responses.
//!
//! A request that can never succeed (not JSON, invalid fields, unknown device) goes to the
//! requests' dead-letter queue with the reason, and counts as processed so it does not block the
//! batch. A request that may succeed later (full queue, throttling) is reported as a batch item
//! failure: SQS redelivers it, and after the queue's maxReceiveCount its redrive policy moves it to
//! the same dead-letter queue. A request whose device's stored queue is damaged is dead-lettered
//! at once; a refused call (permissions, a missing table) is retried, so nothing is lost while
//! the deployment is fixed. The request id is the idempotency key: a redelivered request that was
//! already enqueued is not enqueued again.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hub_shared::domain::command::{CommandRequest, MAX_COMMAND_BYTES, NewCommand};
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::error::Chain;
use hub_shared::ports::{ActivityRecorder, CommandStore, DeadLetters, FeedbackQueue};

use crate::CommandsHandler;
use crate::http_api::validate_property;
use crate::queue::EnqueueError;

enum Verdict {
    Done,
    Retry,
}

impl<S: CommandStore, F: FeedbackQueue, D: DeadLetters, A: ActivityRecorder>
    CommandsHandler<S, F, D, A>
{
    pub async fn handle_requests(&self, event: &SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for message in &event.records {
            if let Verdict::Retry = self.process_request(message).await {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message.message_id.clone().unwrap_or_default();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    async fn process_request(&self, message: &SqsMessage) -> Verdict {
        let body = message.body.as_deref().unwrap_or_default();
        let request = match parse_request(body, self.commands.policy.max_ttl, self.clock.now()) {
            Ok(request) => request,
            Err(reason) => return self.reject_request(body, &reason).await,
        };
        let (device, new, key) = request;
        match self.commands.enqueue(&device, new, Some(&key)).await {
            Ok(enqueued) => {
                tracing::debug!(request = key, device = %device, duplicate = enqueued.duplicate, "command request enqueued");
                Verdict::Done
            }
            Err(EnqueueError::DeviceNotFound(device)) => {
                self.reject_request(body, &format!("device {device} is not registered"))
                    .await
            }
            // The device's stored item is damaged: every retry would read the same bytes.
            Err(EnqueueError::Store(error))
                if error.kind == hub_shared::ports::FailureKind::Corrupt =>
            {
                self.reject_request(
                    body,
                    &format!(
                        "the stored queue of device {device} cannot be read: {}",
                        Chain(&error)
                    ),
                )
                .await
            }
            Err(error) => {
                tracing::warn!(request = key, error = %Chain(&error), "command request will be retried");
                Verdict::Retry
            }
        }
    }

    async fn reject_request(&self, body: &str, reason: &str) -> Verdict {
        match self.request_dead_letters.send(body, reason).await {
            Ok(()) => {
                tracing::warn!(reason, "command request dead-lettered");
                Verdict::Done
            }
            Err(error) => {
                tracing::error!(error = %Chain(&error), "cannot dead-letter a command request; it will be retried");
                Verdict::Retry
            }
        }
    }
}

/// Validates a request; the error is the reason it can never be processed.
fn parse_request(
    body: &str,
    max_ttl: std::time::Duration,
    now: Timestamp,
) -> Result<(hub_shared::DeviceId, NewCommand, String), String> {
    let request: CommandRequest =
        serde_json::from_str(body).map_err(|e| format!("not a valid command request: {e}"))?;
    if request.request_id.is_empty() || request.request_id.len() > 128 {
        return Err("requestId must be 1 to 128 characters".into());
    }
    let payload = BASE64
        .decode(&request.body)
        .map_err(|_| "body is not base64".to_owned())?;
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(format!(
            "the message is {} bytes; the limit is {MAX_COMMAND_BYTES}",
            payload.len()
        ));
    }
    for (name, value) in &request.properties {
        validate_property(name, value).map_err(|e| e.message)?;
    }
    let ttl = match request.ttl_seconds {
        Some(0) => return Err("ttlSeconds must be positive".into()),
        Some(seconds) if seconds > max_ttl.as_secs() => {
            return Err(format!(
                "ttlSeconds is above the maximum of {}",
                max_ttl.as_secs()
            ));
        }
        Some(seconds) => Some(seconds),
        None => None,
    };
    let expires_at = ttl.and_then(|seconds| {
        Timestamp::from_unix_millis(
            now.unix_millis()
                .saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX / 1000) * 1000),
        )
    });
    let new = NewCommand {
        message_id: request.message_id,
        correlation_id: request.correlation_id,
        properties: request.properties,
        body: payload,
        ack: request.ack,
        expires_at,
    };
    Ok((request.device_id, new, request.request_id))
}
