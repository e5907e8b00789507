//! Ports: the small traits handlers depend on. AWS adapters implement them in `crate::aws`;
//! tests may use in-memory fakes.

use std::future::Future;

use crate::domain::device::Device;
use crate::domain::device_id::DeviceId;
use crate::domain::policy::AccessPolicy;

/// A failure of the storage or streaming service behind a port (throttling, network, service
/// error). Callers answer 503 so the client retries; the cause chain is logged once.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed")]
pub struct StoreError {
    pub operation: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    pub fn new(
        operation: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            operation,
            source: source.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    AlreadyExists,
}

/// Condition for deleting a device: Azure's `If-Match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    Any,
    Etag(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
    EtagMismatch,
}

/// The identity registry.
pub trait DeviceRegistry: Send + Sync {
    /// Reads a device with strong consistency: a deleted or disabled device must stop
    /// authenticating at once.
    fn get_device(
        &self,
        id: &DeviceId,
    ) -> impl Future<Output = Result<Option<Device>, StoreError>> + Send;
    /// Creates a device unless one with the same id exists.
    fn create_device(
        &self,
        device: &Device,
    ) -> impl Future<Output = Result<CreateOutcome, StoreError>> + Send;
    fn delete_device(
        &self,
        id: &DeviceId,
        condition: &IfMatch,
    ) -> impl Future<Output = Result<DeleteOutcome, StoreError>> + Send;
}

/// Shared access policies and their keys.
pub trait PolicyStore: Send + Sync {
    fn get_policy(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<AccessPolicy>, StoreError>> + Send;
}

/// One record for the telemetry stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
}

impl StreamRecord {
    /// Bytes counted against the stream's per-request limit (data plus partition key).
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// Outcome of one record within a batch put: `None` stored, `Some(reason)` not stored.
pub type RecordFailure = Option<String>;

/// An append-only stream of records (Kinesis). One call is one request: at most
/// [`RecordSink::MAX_RECORDS`] records and [`RecordSink::MAX_BYTES`] bytes.
pub trait RecordSink: Send + Sync {
    const MAX_RECORDS: usize = 500;
    const MAX_BYTES: usize = 5 * 1024 * 1024;

    /// Puts records; the result has one entry per record, in order.
    fn put_records(
        &self,
        records: &[StreamRecord],
    ) -> impl Future<Output = Result<Vec<RecordFailure>, StoreError>> + Send;
}

mod analytics;
mod commands;
pub use analytics::*;
pub use commands::*;
