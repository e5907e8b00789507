//! Where routed messages go: one trait for every custom endpoint type.

use std::future::Future;

use super::{RecordFailure, StoreError};

/// One message for an endpoint: the routed envelope as JSON, with its id to deduplicate by
/// (Azure's at-least-once delivery: a message may arrive twice, never with two ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The hub's message id (`hubMessageId`).
    pub id: String,
    /// The sending device: the partition key, FIFO group or ordering key.
    pub device_id: String,
    pub body: String,
}

/// How much one call may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointLimits {
    pub messages: usize,
    pub bytes: usize,
    /// Largest single message.
    pub message_bytes: usize,
}

/// A queue, topic, stream or event bus taking routed messages.
pub trait Endpoint: Send + Sync {
    fn limits(&self) -> EndpointLimits;

    /// Delivers one call's worth; the result has one entry per delivery, in order (`None`
    /// delivered, `Some(reason)` not delivered and worth retrying). `Err`: the call failed as a
    /// whole (transient or not, as its kind says).
    fn deliver(
        &self,
        batch: &[Delivery],
    ) -> impl Future<Output = Result<Vec<RecordFailure>, StoreError>> + Send;
}
