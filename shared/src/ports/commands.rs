//! Ports of the cloud-to-device path: the per-device queues, the feedback queue, and plain
//! message queues (dead letters, command requests).

use std::future::Future;
use std::time::Duration;

use crate::domain::command::{AckMode, FeedbackRecord, LockToken, Outcome, QueuedCommand};
use crate::domain::device_id::DeviceId;
use crate::domain::timestamp::Timestamp;
use crate::ports::StoreError;

/// Identifies one device generation's queue: a device id registered again gets a new, empty queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueKey {
    pub device_id: DeviceId,
    pub generation_id: String,
}

/// The head of a device's queue, kept on its registry item: the last sequence number given out
/// and how many messages the queue holds (Azure's `cloudToDeviceMessageCount`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueHead {
    pub queue: QueueKey,
    pub last_sequence_number: u64,
    pub depth: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    Appended,
    /// The head moved (another sender appended first): read it again and retry.
    Conflict,
    /// A request with the same idempotency key was already enqueued.
    Duplicate,
}

/// What the receive path needs to pick the next message without reading bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub sequence_number: u64,
    pub ack: AckMode,
    pub delivery_count: u32,
    pub locked_until: Option<Timestamp>,
    pub expires_at: Timestamp,
}

/// The condition under which a message may leave its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleCondition {
    /// Held under this lock, and the lock has not expired (complete, reject).
    LockedBy(LockToken),
    /// Not held by any receiver (dead-lettering after too many deliveries).
    Unlocked,
    /// Still queued, whoever holds it (expiry, purge).
    Queued,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleOutcome {
    Settled,
    ConditionFailed,
}

/// A message or, once settled, the record kept until its feedback and dead-letter copies are out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCommand {
    pub command: QueuedCommand,
    pub settled: Option<Outcome>,
}

/// The per-device queues (DynamoDB). Every state change is a conditional write.
pub trait CommandStore: Send + Sync {
    /// The queue head of the device's current generation; `None` if the device is not registered.
    fn queue_head(
        &self,
        device: &DeviceId,
    ) -> impl Future<Output = Result<Option<QueueHead>, StoreError>> + Send;

    /// Appends `command` (its sequence number must be `head.last_sequence_number + 1`) if the head
    /// is still `head` and the queue holds fewer than `max_depth` messages, atomically. With an
    /// idempotency key, a second append of the same key is a `Duplicate`.
    fn append(
        &self,
        head: &QueueHead,
        command: &QueuedCommand,
        max_depth: u32,
        idempotency_key: Option<&str>,
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send;

    /// The queued (unsettled) messages, oldest first.
    fn candidates(
        &self,
        queue: &QueueKey,
    ) -> impl Future<Output = Result<Vec<Candidate>, StoreError>> + Send;

    /// Locks a message if it is still available, unexpired and delivered `seen_delivery_count`
    /// times; returns it with the delivery count incremented. `None` if another receiver won.
    fn lock(
        &self,
        queue: &QueueKey,
        sequence_number: u64,
        seen_delivery_count: u32,
        token: &LockToken,
        until: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<QueuedCommand>, StoreError>> + Send;

    /// Releases a lock (abandon) if `token` holds it and it has not expired.
    fn unlock(
        &self,
        queue: &QueueKey,
        token: &LockToken,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<QueuedCommand>, StoreError>> + Send;

    /// Takes a message out of its queue under `condition`, decrementing the queue depth in the same
    /// transaction. With `keep_record` the message stays as a settled record (for feedback or dead
    /// lettering still to be sent) that the sweeper finds if this process dies before `delete`.
    fn settle(
        &self,
        queue: &QueueKey,
        sequence_number: u64,
        condition: &SettleCondition,
        outcome: Outcome,
        keep_record: bool,
        now: Timestamp,
    ) -> impl Future<Output = Result<SettleOutcome, StoreError>> + Send;

    fn get(
        &self,
        queue: &QueueKey,
        sequence_number: u64,
    ) -> impl Future<Output = Result<Option<StoredCommand>, StoreError>> + Send;

    /// Removes a settled record.
    fn delete(
        &self,
        queue: &QueueKey,
        sequence_number: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Messages past their expiry and settled records past their grace time, across all devices.
    fn due(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(QueueKey, u64)>, StoreError>> + Send;
}

/// Feedback records as the service reads them: one batch per receive, settled by its lock token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackBatch {
    pub lock_token: String,
    pub records: Vec<FeedbackRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOutcome {
    Done,
    InvalidToken,
}

/// The delivery-feedback queue (SQS).
pub trait FeedbackQueue: Send + Sync {
    fn publish(
        &self,
        record: &FeedbackRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn receive(
        &self,
        lock: Duration,
    ) -> impl Future<Output = Result<Option<FeedbackBatch>, StoreError>> + Send;
    fn complete(
        &self,
        lock_token: &str,
    ) -> impl Future<Output = Result<TokenOutcome, StoreError>> + Send;
    fn abandon(
        &self,
        lock_token: &str,
    ) -> impl Future<Output = Result<TokenOutcome, StoreError>> + Send;
}

/// A queue that takes JSON messages with a `reason` (dead-letter queues).
pub trait DeadLetters: Send + Sync {
    fn send(&self, body: &str, reason: &str)
    -> impl Future<Output = Result<(), StoreError>> + Send;
}
