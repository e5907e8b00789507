//! SQS queues: the delivery-feedback queue the service reads, and dead-letter queues.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::operation::change_message_visibility::ChangeMessageVisibilityError;
use aws_sdk_sqs::operation::delete_message::DeleteMessageError;
use aws_sdk_sqs::types::MessageAttributeValue;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64_URL;

use crate::aws::{build_error, corrupt_item, sdk_error};
use crate::domain::command::FeedbackRecord;
use crate::ports::{DeadLetters, FeedbackBatch, FeedbackQueue, StoreError, TokenOutcome};

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    /// Queues that get a copy of every message sent (`send_all`).
    copies: Vec<String>,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
            copies: Vec::new(),
        }
    }

    /// Sends a copy of every message to `url` too (the registry's events to the router's
    /// queue, when routes read them): a fan-out as SNS would do, without a topic in front of
    /// a queue that back ends already read. A send succeeds once every queue has the message.
    pub fn copying_to(mut self, url: Option<&str>) -> Self {
        self.copies
            .extend(url.filter(|u| !u.is_empty()).map(str::to_owned));
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Lock tokens are receipt handles, base64url-encoded so they fit in a URL path and an `ETag`.
fn receipt_handle(lock_token: &str) -> Option<String> {
    BASE64_URL
        .decode(lock_token.trim().trim_matches('"'))
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

impl DeadLetters for SqsQueue {
    async fn send(&self, body: &str, reason: &str) -> Result<(), StoreError> {
        const OPERATION: &str = "sending to a dead-letter queue";
        let reason = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason)
            .build()
            .map_err(build_error(OPERATION))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_attributes("reason", reason)
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error(OPERATION))
    }
}

impl FeedbackQueue for SqsQueue {
    async fn publish(&self, record: &FeedbackRecord) -> Result<(), StoreError> {
        const OPERATION: &str = "publishing feedback";
        let body = serde_json::to_string(record).map_err(|e| StoreError::rejected(OPERATION, e))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error(OPERATION))
    }

    async fn receive(&self, lock: Duration) -> Result<Option<FeedbackBatch>, StoreError> {
        const OPERATION: &str = "receiving feedback";
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(1)
            .visibility_timeout(i32::try_from(lock.as_secs()).unwrap_or(i32::MAX))
            .wait_time_seconds(0)
            .send()
            .await
            .map_err(sdk_error(OPERATION))?;
        let Some(message) = output.messages.unwrap_or_default().into_iter().next() else {
            return Ok(None);
        };
        let record: FeedbackRecord = serde_json::from_str(message.body().unwrap_or_default())
            .map_err(corrupt_item(OPERATION))?;
        Ok(Some(FeedbackBatch {
            lock_token: BASE64_URL.encode(message.receipt_handle().unwrap_or_default()),
            records: vec![record],
        }))
    }

    async fn complete(&self, lock_token: &str) -> Result<TokenOutcome, StoreError> {
        let Some(handle) = receipt_handle(lock_token) else {
            return Ok(TokenOutcome::InvalidToken);
        };
        match self
            .client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(handle)
            .send()
            .await
        {
            Ok(_) => Ok(TokenOutcome::Done),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DeleteMessageError::ReceiptHandleIsInvalid(_))
                ) =>
            {
                Ok(TokenOutcome::InvalidToken)
            }
            Err(e) => Err(sdk_error("completing feedback")(e)),
        }
    }

    async fn abandon(&self, lock_token: &str) -> Result<TokenOutcome, StoreError> {
        let Some(handle) = receipt_handle(lock_token) else {
            return Ok(TokenOutcome::InvalidToken);
        };
        let result = self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await;
        match result {
            Ok(_) => Ok(TokenOutcome::Done),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(
                        ChangeMessageVisibilityError::ReceiptHandleIsInvalid(_)
                            | ChangeMessageVisibilityError::MessageNotInflight(_)
                    )
                ) =>
            {
                Ok(TokenOutcome::InvalidToken)
            }
            Err(e) => Err(sdk_error("abandoning feedback")(e)),
        }
    }
}

/// Most bytes of one `SendMessageBatch` (the sum of its bodies), as SQS counts them.
const BATCH_BYTES: usize = 256 * 1024;

/// Bodies cut into calls of at most 10 messages and [`BATCH_BYTES`], in order (a body larger
/// than that goes alone, for SQS to judge).
fn batches(bodies: &[String]) -> Vec<&[String]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, body) in bodies.iter().enumerate() {
        if i > start && (i - start == 10 || bytes + body.len() > BATCH_BYTES) {
            out.push(&bodies[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += body.len();
    }
    if start < bodies.len() {
        out.push(&bodies[start..]);
    }
    out
}

impl crate::ports::QueueSender for SqsQueue {
    async fn send_all(&self, bodies: &[String]) -> Result<(), StoreError> {
        for url in std::iter::once(&self.url).chain(&self.copies) {
            self.send_to(url, bodies).await?;
        }
        Ok(())
    }
}

impl SqsQueue {
    async fn send_to(&self, url: &str, bodies: &[String]) -> Result<(), StoreError> {
        const OPERATION: &str = "sending to a queue";
        for chunk in batches(bodies) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|e| StoreError::rejected(OPERATION, e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(sdk_error(OPERATION))?;
            if let Some(failed) = output.failed().first() {
                // SenderFault marks entries SQS will never take as sent; the others may pass later.
                let kind = if output.failed().iter().any(|f| f.sender_fault()) {
                    crate::ports::FailureKind::Rejected
                } else {
                    crate::ports::FailureKind::Transient
                };
                return Err(StoreError::new(
                    OPERATION,
                    kind,
                    std::io::Error::other(format!(
                        "{} of {} messages refused: {}",
                        output.failed().len(),
                        chunk.len(),
                        failed.code()
                    )),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_to_ten_messages_and_the_byte_limit() {
        let small: Vec<String> = (0..23).map(|i| i.to_string()).collect();
        let sizes: Vec<usize> = batches(&small).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [10, 10, 3]);
        let big: Vec<String> = (0..5).map(|_| "x".repeat(100 * 1024)).collect();
        let sizes: Vec<usize> = batches(&big).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert!(batches(&[]).is_empty());
    }
}
