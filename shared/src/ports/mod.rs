//! Ports: the small traits handlers depend on. AWS adapters implement them in `crate::aws`;
//! tests may use in-memory fakes.

use std::future::Future;

use crate::domain::device::{Device, DeviceStatus};
use crate::domain::device_id::DeviceId;
use crate::domain::policy::AccessPolicy;
use crate::domain::registry::{LifecycleEvent, RegistryStatistics};
use crate::domain::sas::SymmetricKey;
use crate::domain::timestamp::Timestamp;
use crate::domain::twin::Twin;

/// What kind of failure a [`StoreError`] is, which decides what the caller does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Throttling, a timeout, a service that did not answer: the same call may succeed later.
    /// HTTP callers get 503 and retry; stream and queue consumers retry the record.
    Transient,
    /// A stored item the hub cannot read: retrying reads the same bytes. HTTP callers get 500;
    /// consumers dead-letter what depends on it, with the reason.
    Corrupt,
    /// The service refused the call as made (access denied, a missing table or queue, an invalid
    /// request): a deployment or programming error that no retry fixes until someone does.
    /// HTTP callers get 500; consumers retry, so nothing is lost once the deployment is fixed.
    Rejected,
}

/// A failure of the storage or streaming service behind a port. The cause chain is logged once,
/// where the failure is answered.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed")]
pub struct StoreError {
    pub operation: &'static str,
    pub kind: FailureKind,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    pub fn new(
        operation: &'static str,
        kind: FailureKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            operation,
            kind,
            source: source.into(),
        }
    }

    pub fn transient(
        operation: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::new(operation, FailureKind::Transient, source)
    }

    pub fn corrupt(
        operation: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::new(operation, FailureKind::Corrupt, source)
    }

    pub fn rejected(
        operation: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::new(operation, FailureKind::Rejected, source)
    }

    pub fn is_transient(&self) -> bool {
        self.kind == FailureKind::Transient
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    Updated,
    NotFound,
    EtagMismatch,
}

/// A page of devices and, if more follow, the last device of the page (the next page starts
/// after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePage {
    pub devices: Vec<Device>,
    pub more_after: Option<DeviceId>,
}

/// The identity registry. Creating, updating (status) and deleting keep the statistics and
/// record lifecycle events in the same transaction; the events wait in an outbox until published.
pub trait DeviceRegistry: Outbox {
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
        event: &LifecycleEvent,
    ) -> impl Future<Output = Result<CreateOutcome, StoreError>> + Send;

    /// Replaces a device's identity fields (not its queue head or activity) if its etag is still
    /// `expected_etag`.
    fn update_device(
        &self,
        device: &Device,
        expected_etag: &str,
        previous_status: DeviceStatus,
    ) -> impl Future<Output = Result<UpdateOutcome, StoreError>> + Send;

    /// Deletes a device (and its twin) if its etag is still `expected_etag`.
    fn delete_device(
        &self,
        device: &Device,
        expected_etag: &str,
        event: &LifecycleEvent,
    ) -> impl Future<Output = Result<DeleteOutcome, StoreError>> + Send;

    /// The devices of `ids` that exist, with strong consistency, in as few reads as the store
    /// allows (up to 100 per read).
    fn get_devices(
        &self,
        ids: &[DeviceId],
    ) -> impl Future<Output = Result<Vec<Device>, StoreError>> + Send;

    /// Devices in storage order, at most `limit`, after the device `after`.
    fn list_devices(
        &self,
        limit: usize,
        after: Option<&DeviceId>,
    ) -> impl Future<Output = Result<DevicePage, StoreError>> + Send;

    fn statistics(&self) -> impl Future<Output = Result<RegistryStatistics, StoreError>> + Send;

    /// How many devices were active (`lastActivityTime`) at or after `since`.
    fn count_active_since(
        &self,
        since: Timestamp,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Lifecycle events written before `older_than` and not yet published.
    fn pending_events(
        &self,
        older_than: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LifecycleEvent>, StoreError>> + Send;
}

/// The registry's event outbox: events are written there in the transaction of the change they
/// describe and removed once published.
pub trait Outbox: Send + Sync {
    /// Removes a published event from the outbox.
    fn remove_event(&self, event_id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl<T: Outbox> Outbox for &T {
    fn remove_event(&self, event_id: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).remove_event(event_id)
    }
}

/// Records that a device was active (Azure's `lastActivityTime`), and what follows from it.
pub trait ActivityRecorder: Send + Sync {
    /// Records activity of a device generation at `at`; `seen` is the activity the authorizer
    /// read, which lets a recent one stand. Never fails the caller: activity is informational.
    fn record(
        &self,
        id: &DeviceId,
        generation_id: &str,
        at: Timestamp,
        seen: Option<Timestamp>,
    ) -> impl Future<Output = ()> + Send;
}

/// A device's connection state as the registry keeps it (see `crate::connection`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionState {
    pub device_id: DeviceId,
    pub generation_id: String,
    pub etag: String,
    pub status: DeviceStatus,
    pub last_activity_time: Timestamp,
    /// Marked connected (it stays marked until the sweep finds it silent).
    pub connected: bool,
    /// Connection changes so far (0 before the first), the events' `sequenceNumber`.
    pub sequence: u64,
}

/// What recording activity found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touch {
    /// The device is connected and its activity was recorded.
    Recorded,
    /// No such device generation: nothing to record.
    Gone,
    /// Recorded nothing: the device is not marked connected, or was silent too long.
    NotConnected(ConnectionState),
}

/// Connection state in the registry: activity of connected devices, and the changes between
/// connected and not, each written with its event into the outbox in one transaction.
pub trait ConnectionStore: Outbox {
    /// Records activity at `at` of a device marked connected and active since `since`.
    fn touch(
        &self,
        id: &DeviceId,
        generation_id: &str,
        at: Timestamp,
        since: Timestamp,
    ) -> impl Future<Output = Result<Touch, StoreError>> + Send;

    /// Marks a device connected, active at `at`, with `events` in the outbox, if its state is
    /// still `seen`; false when it changed meanwhile.
    fn connect(
        &self,
        seen: &ConnectionState,
        at: Timestamp,
        events: &[LifecycleEvent],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Devices marked connected whose last activity is before `before`, at most `limit`.
    fn silent(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ConnectionState>, StoreError>> + Send;

    /// Marks a device disconnected with `event` in the outbox, if its state is still `seen`;
    /// false when it changed meanwhile (it was active again).
    fn disconnect(
        &self,
        seen: &ConnectionState,
        event: &LifecycleEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl<T: ConnectionStore> ConnectionStore for &T {
    fn touch(
        &self,
        id: &DeviceId,
        generation_id: &str,
        at: Timestamp,
        since: Timestamp,
    ) -> impl Future<Output = Result<Touch, StoreError>> + Send {
        (**self).touch(id, generation_id, at, since)
    }

    fn connect(
        &self,
        seen: &ConnectionState,
        at: Timestamp,
        events: &[LifecycleEvent],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).connect(seen, at, events)
    }

    fn silent(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ConnectionState>, StoreError>> + Send {
        (**self).silent(before, limit)
    }

    fn disconnect(
        &self,
        seen: &ConnectionState,
        event: &LifecycleEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).disconnect(seen, event)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwinWrite {
    Written,
    /// The twin changed since it was read.
    Conflict,
}

/// Device twins, one per device id (a twin of an older generation counts as absent).
pub trait TwinStore: Send + Sync {
    fn get_twin(
        &self,
        id: &DeviceId,
    ) -> impl Future<Output = Result<Option<Twin>, StoreError>> + Send;
    /// The twins of each `(device, generation)` that has one of that generation, in as few
    /// reads as the store allows (a page of a fleet list, not one read per device).
    fn twins_of(
        &self,
        devices: &[(DeviceId, String)],
    ) -> impl Future<Output = Result<std::collections::HashMap<DeviceId, Twin>, StoreError>> + Send;
    /// Writes `twin` if the stored one is still `previous` (by version and generation; `None`:
    /// none stored, or one of another generation). Keeps the tag index, if the store has one.
    /// Writes the twin if it is still `previous`, with `event` in the registry's event outbox
    /// in the same transaction (so no twin change goes without its event).
    fn put_twin(
        &self,
        id: &DeviceId,
        twin: &Twin,
        previous: Option<&Twin>,
        event: Option<&LifecycleEvent>,
    ) -> impl Future<Output = Result<TwinWrite, StoreError>> + Send;
    /// Removes the tag index entries of a deleted device's last twin (entries a later twin of
    /// the same generation wrote stay; a new generation's are untouched).
    fn forget_tags(
        &self,
        id: &DeviceId,
        twin: &Twin,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Devices whose tags may hold the index entry `entry` (`domain::tag_index`), in device id
    /// order after `after`, at most `limit`; `None` if the store keeps no tag index. A superset:
    /// callers check each twin they read.
    fn tagged(
        &self,
        entry: &str,
        limit: usize,
        after: Option<&DeviceId>,
    ) -> impl Future<Output = Result<Option<IdPage>, StoreError>> + Send;
    /// Records a device of `generation` in the device id index (`tag_index::id_entry`), so a
    /// query by id prefix reads the devices it names rather than the registry. Written before
    /// the device (a superset again: an entry without a device is skipped); idempotent; a no-op
    /// for a store without an index.
    fn index_device(
        &self,
        id: &DeviceId,
        generation: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Removes a deleted device's id index entry, unless a newer generation of the id wrote it.
    fn forget_device(
        &self,
        id: &DeviceId,
        generation: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Indexed devices whose id starts with `prefix` (at least `tag_index::ID_PREFIX_CHARS`
    /// characters), in id order after `after`, at most `limit`; `None` without an index.
    fn ids_starting_with(
        &self,
        prefix: &str,
        limit: usize,
        after: Option<&DeviceId>,
    ) -> impl Future<Output = Result<Option<IdPage>, StoreError>> + Send;
}

/// A page of device ids and, if more follow, the last id of the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPage {
    pub ids: Vec<DeviceId>,
    pub more_after: Option<DeviceId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySlot {
    Primary,
    Secondary,
}

/// Shared access policies and their keys.
pub trait PolicyStore: Send + Sync {
    fn get_policy(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<AccessPolicy>, StoreError>> + Send;
    fn list_policies(&self) -> impl Future<Output = Result<Vec<AccessPolicy>, StoreError>> + Send;
    /// Replaces one key of a policy; the other keeps working, so clients move over without
    /// downtime. `false` if there is no such policy.
    fn set_key(
        &self,
        name: &str,
        slot: KeySlot,
        key: &SymmetricKey,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
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
mod jobs;
mod methods;
mod routing;
pub use analytics::*;
pub use commands::*;
pub use jobs::*;
pub use methods::*;
pub use routing::*;
