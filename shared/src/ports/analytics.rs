//! Ports of the analytics path: its state (aggregates, device states, alerts, checkpoints), the
//! rules, and plain outgoing queues.

use std::collections::HashMap;
use std::future::Future;

use crate::domain::analytics::{
    Alert, AlertReview, DeviceState, Rule, WindowAggregate, WindowSize,
};
use crate::domain::device_id::DeviceId;
use crate::ports::StoreError;

/// One item of analytics state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateKey {
    Device(DeviceId),
    Aggregate {
        device: DeviceId,
        window: WindowSize,
        start: i64,
    },
    Alert {
        rule_id: String,
        device: DeviceId,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum StateItem {
    Device(DeviceState),
    Aggregate(WindowAggregate),
    Alert(Alert),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// The shard's checkpoint is not where this batch expected it: another processor moved it.
    CheckpointMoved,
}

/// What `load` found: the items it could read, and those stored but unreadable (with why), so
/// the records that depend on a damaged item can be set aside without blocking the others.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LoadedState {
    pub items: HashMap<StateKey, StateItem>,
    pub unreadable: HashMap<StateKey, String>,
}

/// Analytics state. Writes are committed together with the shard checkpoint, atomically.
pub trait AnalyticsStore: Send + Sync {
    /// The last sequence number applied for a shard.
    fn checkpoint(
        &self,
        shard: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// The stored items among `keys` (absent keys are simply missing from the answer).
    fn load(
        &self,
        keys: &[StateKey],
    ) -> impl Future<Output = Result<LoadedState, StoreError>> + Send;

    /// Writes `items` and moves the shard checkpoint from `expected` to `checkpoint`, in one
    /// transaction (at most 99 items).
    fn commit(
        &self,
        shard: &str,
        expected: Option<&str>,
        checkpoint: &str,
        items: &[StateItem],
    ) -> impl Future<Output = Result<CommitOutcome, StoreError>> + Send;

    /// A device's aggregates of one window size whose windows start within `[from, to]` (ms).
    fn aggregates(
        &self,
        device: &DeviceId,
        window: WindowSize,
        from: i64,
        to: i64,
    ) -> impl Future<Output = Result<Vec<WindowAggregate>, StoreError>> + Send;

    fn device_state(
        &self,
        device: &DeviceId,
    ) -> impl Future<Output = Result<Option<DeviceState>, StoreError>> + Send;

    /// Alerts, the active ones only if asked (at most `limit`).
    fn alerts(
        &self,
        active_only: bool,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Alert>, StoreError>> + Send;

    /// The operators' reviews of these alerts (by alert id), where there are any. Kept apart from
    /// the alerts, which the stream processor rewrites whole with every evaluation.
    fn reviews(
        &self,
        alert_ids: &[String],
    ) -> impl Future<Output = Result<HashMap<String, AlertReview>, StoreError>> + Send;

    /// Records an operator's review of an alert (replacing any earlier one).
    fn put_review(
        &self,
        alert_id: &str,
        review: &AlertReview,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleWrite {
    Written,
    /// `If-Match` named another version.
    EtagMismatch,
    NotFound,
}

/// The rules (DynamoDB).
pub trait RuleStore: Send + Sync {
    fn list(&self) -> impl Future<Output = Result<Vec<Rule>, StoreError>> + Send;
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<Rule>, StoreError>> + Send;
    /// Creates or replaces a rule. With `if_match`, only if the stored rule has that etag;
    /// with `create_only`, only if there is none.
    fn put(
        &self,
        rule: &Rule,
        if_match: Option<&str>,
        create_only: bool,
    ) -> impl Future<Output = Result<RuleWrite, StoreError>> + Send;
    fn delete(
        &self,
        id: &str,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<RuleWrite, StoreError>> + Send;
}

/// A queue taking JSON messages (SQS).
pub trait QueueSender: Send + Sync {
    /// Sends every body or fails (batched as the queue allows).
    fn send_all(&self, bodies: &[String]) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl<T: QueueSender> QueueSender for &T {
    fn send_all(&self, bodies: &[String]) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).send_all(bodies)
    }
}

/// Twin tags by device, for rules that select devices by tag.
pub type DeviceTags = HashMap<DeviceId, serde_json::Map<String, serde_json::Value>>;

/// Reads devices' twin tags.
pub trait TagReader: Send + Sync {
    /// The tags of each `(device, generation)` whose twin belongs to that generation; devices
    /// without such a twin are missing from the answer.
    fn tags_of(
        &self,
        devices: &[(DeviceId, String)],
    ) -> impl Future<Output = Result<DeviceTags, StoreError>> + Send;
}

/// For a deployment without twins: every device is untagged.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTags;

impl TagReader for NoTags {
    async fn tags_of(&self, _devices: &[(DeviceId, String)]) -> Result<DeviceTags, StoreError> {
        Ok(DeviceTags::new())
    }
}
