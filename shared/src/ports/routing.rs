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
    /// What the message is, by Event Grid's event types (EventBridge's `detail-type`).
    pub event_type: &'static str,
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
        batch: &[&Delivery],
    ) -> impl Future<Output = Result<Vec<RecordFailure>, StoreError>> + Send;
}

/// Where archive objects are written (S3): a put replaces an object of the same key whole.
pub trait ObjectStore: Send + Sync {
    fn put_object(
        &self,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// How far each shard has been archived: the padded sequence number of its last archived record.
pub trait ArchiveCheckpoints: Send + Sync {
    fn checkpoint(
        &self,
        shard: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Moves the shard's checkpoint from `from` (`None`: never archived) to `to`; `Ok(false)`
    /// when another processor moved it first.
    fn advance(
        &self,
        shard: &str,
        from: Option<&str>,
        to: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
