//! In-memory implementations of the ports for handler unit tests. Integration tests use the
//! AWS adapters against LocalStack instead.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::domain::device::Device;
use crate::domain::device_id::DeviceId;
use crate::domain::policy::AccessPolicy;
use crate::ports::{
    CreateOutcome, DeleteOutcome, DeviceRegistry, PolicyStore, RecordFailure, RecordSink,
    StoreError, StreamRecord,
};

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
pub struct InMemoryRegistry {
    devices: Mutex<BTreeMap<DeviceId, Device>>,
    outbox: Mutex<Vec<crate::domain::registry::LifecycleEvent>>,
    /// When set, every call fails as if the store were down.
    pub unavailable: std::sync::atomic::AtomicBool,
    /// When set, this many more writes (create, update, delete) succeed; then the store is down.
    pub writes_before_outage: Mutex<Option<usize>>,
    /// Devices whose stored item cannot be read (reads fail as corrupt).
    pub corrupt: Mutex<std::collections::BTreeSet<DeviceId>>,
    /// Connection state by device: the generation it belongs to, marked connected, sequence.
    connections: Mutex<BTreeMap<DeviceId, (String, bool, u64)>>,
}

impl InMemoryRegistry {
    pub fn with(devices: impl IntoIterator<Item = Device>) -> Self {
        let registry = Self::default();
        lock(&registry.devices).extend(devices.into_iter().map(|d| (d.device_id.clone(), d)));
        registry
    }

    pub fn snapshot(&self) -> Vec<Device> {
        lock(&self.devices).values().cloned().collect()
    }

    /// Lifecycle events not yet removed from the outbox.
    pub fn outbox(&self) -> Vec<crate::domain::registry::LifecycleEvent> {
        lock(&self.outbox).clone()
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.unavailable.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::transient(
                "in-memory registry",
                std::io::Error::other("unavailable"),
            ));
        }
        Ok(())
    }

    fn check_write(&self) -> Result<(), StoreError> {
        self.check()?;
        let mut budget = lock(&self.writes_before_outage);
        match budget.as_mut() {
            Some(0) => Err(StoreError::transient(
                "in-memory registry",
                std::io::Error::other("unavailable from now on"),
            )),
            Some(left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl DeviceRegistry for InMemoryRegistry {
    async fn get_device(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        self.check()?;
        if lock(&self.corrupt).contains(id) {
            return Err(StoreError::corrupt(
                "reading a device",
                std::io::Error::other("primaryKey is not base64"),
            ));
        }
        Ok(lock(&self.devices).get(id).cloned())
    }

    async fn create_device(
        &self,
        device: &Device,
        event: &crate::domain::registry::LifecycleEvent,
    ) -> Result<CreateOutcome, StoreError> {
        self.check_write()?;
        let mut devices = lock(&self.devices);
        if devices.contains_key(&device.device_id) {
            return Ok(CreateOutcome::AlreadyExists);
        }
        devices.insert(device.device_id.clone(), device.clone());
        lock(&self.outbox).push(event.clone());
        Ok(CreateOutcome::Created)
    }

    async fn update_device(
        &self,
        device: &Device,
        expected_etag: &str,
        _previous_status: crate::domain::device::DeviceStatus,
    ) -> Result<crate::ports::UpdateOutcome, StoreError> {
        use crate::ports::UpdateOutcome;
        self.check_write()?;
        let mut devices = lock(&self.devices);
        match devices.get_mut(&device.device_id) {
            None => Ok(UpdateOutcome::NotFound),
            Some(stored) if stored.etag != expected_etag => Ok(UpdateOutcome::EtagMismatch),
            Some(stored) => {
                let (c2d, activity) = (
                    stored.cloud_to_device_message_count,
                    stored.last_activity_time,
                );
                *stored = device.clone();
                stored.cloud_to_device_message_count = c2d;
                stored.last_activity_time = activity;
                Ok(UpdateOutcome::Updated)
            }
        }
    }

    async fn delete_device(
        &self,
        device: &Device,
        expected_etag: &str,
        event: &crate::domain::registry::LifecycleEvent,
    ) -> Result<DeleteOutcome, StoreError> {
        self.check_write()?;
        let mut devices = lock(&self.devices);
        match devices.get(&device.device_id) {
            None => Ok(DeleteOutcome::NotFound),
            Some(stored) if stored.etag != expected_etag => Ok(DeleteOutcome::EtagMismatch),
            Some(_) => {
                devices.remove(&device.device_id);
                lock(&self.outbox).push(event.clone());
                Ok(DeleteOutcome::Deleted)
            }
        }
    }

    async fn list_devices(
        &self,
        limit: usize,
        after: Option<&DeviceId>,
    ) -> Result<crate::ports::DevicePage, StoreError> {
        self.check()?;
        let devices = lock(&self.devices);
        let page: Vec<Device> = devices
            .values()
            .filter(|d| after.is_none_or(|a| d.device_id > *a))
            .take(limit)
            .cloned()
            .collect();
        let more = page
            .last()
            .is_some_and(|last| devices.keys().any(|id| id > &last.device_id));
        let more_after = if more {
            page.last().map(|d| d.device_id.clone())
        } else {
            None
        };
        Ok(crate::ports::DevicePage {
            devices: page,
            more_after,
        })
    }

    async fn statistics(&self) -> Result<crate::domain::registry::RegistryStatistics, StoreError> {
        self.check()?;
        let devices = lock(&self.devices);
        let enabled = devices.values().filter(|d| d.is_enabled()).count() as u64;
        Ok(crate::domain::registry::RegistryStatistics {
            total_device_count: devices.len() as u64,
            enabled_device_count: enabled,
            disabled_device_count: devices.len() as u64 - enabled,
        })
    }

    async fn get_devices(&self, ids: &[DeviceId]) -> Result<Vec<Device>, StoreError> {
        self.check()?;
        let devices = lock(&self.devices);
        Ok(ids
            .iter()
            .filter_map(|id| devices.get(id).cloned())
            .collect())
    }

    async fn count_active_since(
        &self,
        since: crate::domain::timestamp::Timestamp,
    ) -> Result<u64, StoreError> {
        self.check()?;
        let devices = lock(&self.devices);
        Ok(devices
            .values()
            .filter(|d| d.last_activity_time >= since)
            .count() as u64)
    }

    async fn pending_events(
        &self,
        _older_than: crate::domain::timestamp::Timestamp,
        limit: usize,
    ) -> Result<Vec<crate::domain::registry::LifecycleEvent>, StoreError> {
        self.check()?;
        Ok(lock(&self.outbox).iter().take(limit).cloned().collect())
    }
}

impl InMemoryRegistry {
    fn connection_state(&self, device: &Device) -> crate::ports::ConnectionState {
        let (connected, sequence) = match lock(&self.connections).get(&device.device_id) {
            Some((generation, connected, sequence)) if *generation == device.generation_id => {
                (*connected, *sequence)
            }
            _ => (false, 0),
        };
        crate::ports::ConnectionState {
            device_id: device.device_id.clone(),
            generation_id: device.generation_id.clone(),
            etag: device.etag.clone(),
            status: device.status,
            last_activity_time: device.last_activity_time,
            connected,
            sequence,
        }
    }

    /// Applies a connection change if the state is still `seen`.
    fn change_connection(
        &self,
        seen: &crate::ports::ConnectionState,
        activity: Option<crate::domain::timestamp::Timestamp>,
        connected: bool,
        events: &[crate::domain::registry::LifecycleEvent],
    ) -> Result<bool, StoreError> {
        self.check_write()?;
        let mut devices = lock(&self.devices);
        let Some(device) = devices.get_mut(&seen.device_id) else {
            return Ok(false);
        };
        if self.connection_state(device) != *seen {
            return Ok(false);
        }
        if let Some(at) = activity {
            device.last_activity_time = at;
        }
        let sequence = seen.sequence + events.len() as u64;
        lock(&self.connections).insert(
            seen.device_id.clone(),
            (seen.generation_id.clone(), connected, sequence),
        );
        lock(&self.outbox).extend(events.iter().cloned());
        Ok(true)
    }
}

impl crate::ports::Outbox for InMemoryRegistry {
    async fn remove_event(&self, event_id: &str) -> Result<(), StoreError> {
        self.check()?;
        lock(&self.outbox).retain(|e| e.event_id != event_id);
        Ok(())
    }
}

impl crate::ports::ConnectionStore for InMemoryRegistry {
    async fn touch(
        &self,
        id: &DeviceId,
        generation_id: &str,
        at: crate::domain::timestamp::Timestamp,
        since: crate::domain::timestamp::Timestamp,
    ) -> Result<crate::ports::Touch, StoreError> {
        use crate::ports::Touch;
        self.check_write()?;
        let mut devices = lock(&self.devices);
        let Some(device) = devices
            .get_mut(id)
            .filter(|d| d.generation_id == generation_id)
        else {
            return Ok(Touch::Gone);
        };
        let state = self.connection_state(device);
        if state.connected && state.last_activity_time >= since {
            device.last_activity_time = at;
            Ok(Touch::Recorded)
        } else {
            Ok(Touch::NotConnected(state))
        }
    }

    async fn connect(
        &self,
        seen: &crate::ports::ConnectionState,
        at: crate::domain::timestamp::Timestamp,
        events: &[crate::domain::registry::LifecycleEvent],
    ) -> Result<bool, StoreError> {
        self.change_connection(seen, Some(at), true, events)
    }

    async fn silent(
        &self,
        before: crate::domain::timestamp::Timestamp,
        limit: usize,
    ) -> Result<Vec<crate::ports::ConnectionState>, StoreError> {
        self.check()?;
        Ok(lock(&self.devices)
            .values()
            .map(|device| self.connection_state(device))
            .filter(|state| state.connected && state.last_activity_time < before)
            .take(limit)
            .collect())
    }

    async fn disconnect(
        &self,
        seen: &crate::ports::ConnectionState,
        event: &crate::domain::registry::LifecycleEvent,
    ) -> Result<bool, StoreError> {
        self.change_connection(seen, None, false, std::slice::from_ref(event))
    }
}

/// Activity and connection state in an in-memory registry, events to an in-memory queue.
pub type InMemoryActivity = crate::connection::ActivityTracker<InMemoryRegistry, InMemoryQueue>;

/// Activity tracked in `registry` under the default connected window.
pub fn activity_in(registry: InMemoryRegistry) -> InMemoryActivity {
    crate::connection::ActivityTracker::new(
        registry,
        InMemoryQueue::default(),
        "hub.example",
        crate::connection::DEFAULT_CONNECTED_WINDOW,
    )
}

/// Twins with the same conditional semantics as the DynamoDB adapter.
#[derive(Default)]
pub struct InMemoryTwins {
    twins: Mutex<BTreeMap<DeviceId, crate::domain::twin::Twin>>,
    /// The device id index: each indexed device's generation.
    pub indexed: Mutex<BTreeMap<DeviceId, String>>,
    pub writes: std::sync::atomic::AtomicUsize,
    /// Events written with twin changes (the outbox a real store writes them to).
    pub events: Mutex<Vec<crate::domain::registry::LifecycleEvent>>,
}

impl crate::ports::TwinStore for InMemoryTwins {
    async fn get_twin(
        &self,
        id: &DeviceId,
    ) -> Result<Option<crate::domain::twin::Twin>, StoreError> {
        Ok(lock(&self.twins).get(id).cloned())
    }

    async fn twins_of(
        &self,
        devices: &[(DeviceId, String)],
    ) -> Result<std::collections::HashMap<DeviceId, crate::domain::twin::Twin>, StoreError> {
        let twins = lock(&self.twins);
        Ok(devices
            .iter()
            .filter_map(|(device, generation)| {
                twins
                    .get(device)
                    .filter(|twin| &twin.generation_id == generation)
                    .map(|twin| (device.clone(), twin.clone()))
            })
            .collect())
    }

    async fn put_twin(
        &self,
        id: &DeviceId,
        twin: &crate::domain::twin::Twin,
        previous: Option<&crate::domain::twin::Twin>,
        event: Option<&crate::domain::registry::LifecycleEvent>,
    ) -> Result<crate::ports::TwinWrite, StoreError> {
        use crate::ports::TwinWrite;
        let mut twins = lock(&self.twins);
        let ok = match (twins.get(id), previous) {
            (Some(stored), Some(previous)) => {
                stored.version == previous.version && stored.generation_id == previous.generation_id
            }
            (Some(stored), None) => stored.generation_id != twin.generation_id,
            (None, None) => true,
            (None, Some(_)) => false,
        };
        if !ok {
            return Ok(TwinWrite::Conflict);
        }
        twins.insert(id.clone(), twin.clone());
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        lock(&self.events).extend(event.cloned());
        Ok(TwinWrite::Written)
    }

    async fn forget_tags(
        &self,
        _id: &DeviceId,
        _twin: &crate::domain::twin::Twin,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// The index is the twins themselves: exact, in id order.
    async fn tagged(
        &self,
        entry: &str,
        limit: usize,
        after: Option<&DeviceId>,
    ) -> Result<Option<crate::ports::IdPage>, StoreError> {
        let twins = lock(&self.twins);
        let mut ids: Vec<DeviceId> = twins
            .iter()
            .filter(|(id, _)| after.is_none_or(|a| id.as_str() > a.as_str()))
            .filter(|(_, twin)| crate::domain::tag_index::entries(&twin.tags).contains(entry))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let limit = limit.max(1);
        let more_after = (ids.len() > limit).then(|| ids[limit - 1].clone());
        ids.truncate(limit);
        Ok(Some(crate::ports::IdPage { ids, more_after }))
    }

    async fn index_device(&self, id: &DeviceId, generation: &str) -> Result<(), StoreError> {
        lock(&self.indexed).insert(id.clone(), generation.to_owned());
        Ok(())
    }

    async fn forget_device(&self, id: &DeviceId, generation: &str) -> Result<(), StoreError> {
        let mut indexed = lock(&self.indexed);
        if indexed.get(id).is_some_and(|g| g == generation) {
            indexed.remove(id);
        }
        Ok(())
    }

    async fn ids_starting_with(
        &self,
        prefix: &str,
        limit: usize,
        after: Option<&DeviceId>,
    ) -> Result<Option<crate::ports::IdPage>, StoreError> {
        let mut ids: Vec<DeviceId> = lock(&self.indexed)
            .keys()
            .filter(|id| id.as_str().starts_with(prefix))
            .filter(|id| after.is_none_or(|a| id.as_str() > a.as_str()))
            .cloned()
            .collect();
        let limit = limit.max(1);
        let more_after = (ids.len() > limit).then(|| ids[limit - 1].clone());
        ids.truncate(limit);
        Ok(Some(crate::ports::IdPage { ids, more_after }))
    }
}

impl crate::ports::TagReader for InMemoryTwins {
    async fn tags_of(
        &self,
        devices: &[(DeviceId, String)],
    ) -> Result<crate::ports::DeviceTags, StoreError> {
        let twins = lock(&self.twins);
        Ok(devices
            .iter()
            .filter_map(|(device, generation)| {
                twins
                    .get(device)
                    .filter(|twin| twin.generation_id == *generation)
                    .map(|twin| (device.clone(), twin.tags.clone()))
            })
            .collect())
    }
}

#[derive(Default)]
pub struct InMemoryPolicies {
    policies: Mutex<BTreeMap<String, AccessPolicy>>,
}

impl InMemoryPolicies {
    pub fn with(policies: impl IntoIterator<Item = AccessPolicy>) -> Self {
        let store = Self::default();
        lock(&store.policies).extend(policies.into_iter().map(|p| (p.name.clone(), p)));
        store
    }
}

impl PolicyStore for InMemoryPolicies {
    async fn get_policy(&self, name: &str) -> Result<Option<AccessPolicy>, StoreError> {
        Ok(lock(&self.policies).get(name).cloned())
    }

    async fn list_policies(&self) -> Result<Vec<AccessPolicy>, StoreError> {
        Ok(lock(&self.policies).values().cloned().collect())
    }

    async fn set_key(
        &self,
        name: &str,
        slot: crate::ports::KeySlot,
        key: &crate::domain::sas::SymmetricKey,
    ) -> Result<bool, StoreError> {
        let mut policies = lock(&self.policies);
        let Some(policy) = policies.get_mut(name) else {
            return Ok(false);
        };
        match slot {
            crate::ports::KeySlot::Primary => policy.primary_key = key.clone(),
            crate::ports::KeySlot::Secondary => policy.secondary_key = key.clone(),
        }
        Ok(true)
    }
}

/// Stores records in memory; `fail_next` makes the next calls fail every record.
#[derive(Default)]
pub struct InMemoryStream {
    records: Mutex<Vec<StreamRecord>>,
    pub fail_next: std::sync::atomic::AtomicUsize,
}

impl InMemoryStream {
    pub fn records(&self) -> Vec<StreamRecord> {
        lock(&self.records).clone()
    }
}

impl RecordSink for InMemoryStream {
    async fn put_records(
        &self,
        records: &[StreamRecord],
    ) -> Result<Vec<RecordFailure>, StoreError> {
        use std::sync::atomic::Ordering;
        let failing = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Ok(records
                .iter()
                .map(|_| Some("ProvisionedThroughputExceededException".to_owned()))
                .collect());
        }
        lock(&self.records).extend(records.iter().cloned());
        Ok(vec![None; records.len()])
    }
}

/// A freshly registered, enabled device with random keys.
pub fn device(id: &str) -> Device {
    use crate::domain::device::{DeviceStatus, new_etag, new_generation_id};
    use crate::domain::sas::SymmetricKey;
    use crate::domain::timestamp::Timestamp;
    Device {
        device_id: DeviceId::parse(id).unwrap_or_else(|e| panic!("test device id {id:?}: {e}")),
        generation_id: new_generation_id(time::OffsetDateTime::now_utc()),
        etag: new_etag(),
        status: DeviceStatus::Enabled,
        status_reason: None,
        status_updated_time: Timestamp::now(),
        connection_state_updated_time: Timestamp::NEVER,
        last_activity_time: Timestamp::NEVER,
        cloud_to_device_message_count: 0,
        primary_key: SymmetricKey::generate(),
        secondary_key: SymmetricKey::generate(),
        iot_edge: false,
    }
}

/// The built-in policies with random keys.
pub fn built_in_policies() -> Vec<AccessPolicy> {
    use crate::domain::policy::{BUILT_IN_POLICIES, Rights};
    use crate::domain::sas::SymmetricKey;
    BUILT_IN_POLICIES
        .iter()
        .map(|(name, permissions)| AccessPolicy {
            name: (*name).to_owned(),
            rights: Rights::of(permissions),
            primary_key: SymmetricKey::generate(),
            secondary_key: SymmetricKey::generate(),
        })
        .collect()
}

/// Builds an API Gateway request as the gateway would after the authorizer gave `context`.
pub struct RequestBuilder {
    request: aws_lambda_events::apigw::ApiGatewayV2httpRequest,
}

impl RequestBuilder {
    pub fn new(route_key: &str, path: &str, context: &crate::http::AuthContext) -> Self {
        let mut request = aws_lambda_events::apigw::ApiGatewayV2httpRequest::default();
        request.route_key = Some(route_key.to_owned());
        request.raw_path = Some(path.to_owned());
        request.request_context.request_id = Some("test-request".to_owned());
        let mut authorizer = aws_lambda_events::apigw::ApiGatewayRequestAuthorizer::default();
        authorizer.fields = context.to_fields();
        request.request_context.authorizer = Some(authorizer);
        Self { request }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        let value = http::HeaderValue::from_str(value)
            .unwrap_or_else(|e| panic!("test header {name}: {e}"));
        self.request.headers.append(name, value);
        self
    }

    /// Sets the query string parameters (replacing any set before).
    pub fn query(mut self, parameters: &[(&str, &str)]) -> Self {
        self.request.query_string_parameters = parameters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<std::collections::HashMap<_, _>>()
            .into();
        self
    }

    pub fn body(mut self, body: &[u8]) -> Self {
        use base64::Engine as _;
        self.request.body = Some(base64::engine::general_purpose::STANDARD.encode(body));
        self.request.is_base64_encoded = true;
        self
    }

    pub fn text_body(mut self, body: &str) -> Self {
        self.request.body = Some(body.to_owned());
        self
    }

    pub fn build(self) -> aws_lambda_events::apigw::ApiGatewayV2httpRequest {
        self.request
    }
}

/// The response body as text, and the error code when it is an error.
/// One record of a Kinesis event as Lambda delivers it (`eventID` `<shard>:<sequence>`).
pub fn kinesis_record(
    stream: &str,
    shard: &str,
    sequence: &str,
    partition_key: &str,
    data: &[u8],
    arrival_seconds: f64,
) -> serde_json::Value {
    use base64::Engine as _;
    serde_json::json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence,
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "approximateArrivalTimestamp": arrival_seconds,
        },
        "eventSource": "aws:kinesis",
        "eventID": format!("{shard}:{sequence}"),
        "eventSourceARN": format!("arn:aws:kinesis:us-east-1:000000000000:stream/{stream}"),
    })
}

/// The Kinesis event of `envelopes` on one shard, sequence numbers counting from `first`.
pub fn kinesis_event(
    stream: &str,
    shard: &str,
    first: u64,
    envelopes: &[crate::domain::envelope::TelemetryEnvelope],
) -> serde_json::Value {
    let records: Vec<serde_json::Value> = envelopes
        .iter()
        .enumerate()
        .map(|(i, e)| {
            kinesis_record(
                stream,
                shard,
                &(first + i as u64).to_string(),
                e.partition_key(),
                &e.to_json(),
                1.0,
            )
        })
        .collect();
    serde_json::json!({ "Records": records })
}

pub fn response_body(response: &aws_lambda_events::apigw::ApiGatewayV2httpResponse) -> String {
    use aws_lambda_events::encodings::Body;
    match &response.body {
        None | Some(Body::Empty) => String::new(),
        Some(Body::Text(text)) => text.clone(),
        Some(Body::Binary(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        #[allow(unreachable_patterns)]
        Some(_) => String::new(),
    }
}

pub fn error_code(response: &aws_lambda_events::apigw::ApiGatewayV2httpResponse) -> Option<String> {
    serde_json::from_str::<crate::error::ErrorBody>(&response_body(response))
        .ok()
        .and_then(|b| b.code().map(str::to_owned))
}

pub use commands::{InMemoryCommands, InMemoryDeadLetters, InMemoryFeedback};

mod commands {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::lock;
    use crate::domain::command::{FeedbackRecord, Lock, LockToken, Outcome, QueuedCommand};
    use crate::domain::device_id::DeviceId;
    use crate::domain::timestamp::Timestamp;
    use crate::ports::{
        AppendOutcome, Candidate, CommandStore, DeadLetters, FeedbackBatch, FeedbackQueue,
        QueueHead, QueueKey, SettleCondition, SettleOutcome, StoreError, StoredCommand,
        TokenOutcome,
    };

    fn down() -> StoreError {
        StoreError::transient("in-memory queue", std::io::Error::other("unavailable"))
    }

    #[derive(Default)]
    struct State {
        /// device -> (generation, last sequence number, depth)
        heads: BTreeMap<DeviceId, (String, u64, u32)>,
        items: BTreeMap<(QueueKey, u64), StoredCommand>,
        idempotency: BTreeSet<String>,
    }

    /// The per-device queues with the same conditional semantics as the DynamoDB adapter.
    #[derive(Default)]
    pub struct InMemoryCommands {
        state: Mutex<State>,
        /// Devices whose queue head cannot be read back (a damaged registry item).
        pub damaged: Mutex<BTreeSet<DeviceId>>,
        /// Every call fails as a refused one would (no permission, a missing table).
        pub refused: std::sync::atomic::AtomicBool,
    }

    impl InMemoryCommands {
        pub fn register(&self, device: &DeviceId, generation: &str) {
            lock(&self.state)
                .heads
                .insert(device.clone(), (generation.to_owned(), 0, 0));
        }

        pub fn depth(&self, device: &DeviceId) -> u32 {
            lock(&self.state).heads.get(device).map_or(0, |h| h.2)
        }

        /// Every stored item: queued messages and settled records.
        pub fn items(&self) -> Vec<StoredCommand> {
            lock(&self.state).items.values().cloned().collect()
        }
    }

    impl CommandStore for InMemoryCommands {
        async fn queue_head(&self, device: &DeviceId) -> Result<Option<QueueHead>, StoreError> {
            if self.refused.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::rejected(
                    "in-memory queue",
                    std::io::Error::other("AccessDeniedException"),
                ));
            }
            if lock(&self.damaged).contains(device) {
                return Err(StoreError::corrupt(
                    "reading a queue head",
                    std::io::Error::other("c2dNextSeq is not a number"),
                ));
            }
            Ok(lock(&self.state)
                .heads
                .get(device)
                .map(|(generation, last, depth)| QueueHead {
                    queue: QueueKey {
                        device_id: device.clone(),
                        generation_id: generation.clone(),
                    },
                    last_sequence_number: *last,
                    depth: *depth,
                }))
        }

        async fn append(
            &self,
            head: &QueueHead,
            command: &QueuedCommand,
            max_depth: u32,
            idempotency_key: Option<&str>,
        ) -> Result<AppendOutcome, StoreError> {
            let mut state = lock(&self.state);
            if idempotency_key.is_some_and(|key| state.idempotency.contains(key)) {
                return Ok(AppendOutcome::Duplicate);
            }
            let Some(current) = state.heads.get_mut(&head.queue.device_id) else {
                return Ok(AppendOutcome::Conflict);
            };
            if current.0 != head.queue.generation_id
                || current.1 != head.last_sequence_number
                || current.2 >= max_depth
            {
                return Ok(AppendOutcome::Conflict);
            }
            current.1 = command.sequence_number;
            current.2 += 1;
            if let Some(key) = idempotency_key {
                state.idempotency.insert(key.to_owned());
            }
            state.items.insert(
                (head.queue.clone(), command.sequence_number),
                StoredCommand {
                    command: command.clone(),
                    settled: None,
                },
            );
            Ok(AppendOutcome::Appended)
        }

        async fn candidates(&self, queue: &QueueKey) -> Result<Vec<Candidate>, StoreError> {
            Ok(lock(&self.state)
                .items
                .iter()
                .filter(|((q, _), stored)| q == queue && stored.settled.is_none())
                .map(|(_, stored)| Candidate {
                    sequence_number: stored.command.sequence_number,
                    ack: stored.command.ack,
                    delivery_count: stored.command.delivery_count,
                    locked_until: stored.command.lock.as_ref().map(|l| l.until),
                    expires_at: stored.command.expires_at,
                })
                .collect())
        }

        async fn lock(
            &self,
            queue: &QueueKey,
            sequence_number: u64,
            seen_delivery_count: u32,
            token: &LockToken,
            until: Timestamp,
            now: Timestamp,
        ) -> Result<Option<QueuedCommand>, StoreError> {
            let mut state = lock(&self.state);
            let Some(stored) = state.items.get_mut(&(queue.clone(), sequence_number)) else {
                return Ok(None);
            };
            let command = &mut stored.command;
            let available = command.lock.as_ref().is_none_or(|l| l.until <= now);
            if stored.settled.is_some()
                || !available
                || command.delivery_count != seen_delivery_count
                || command.expires_at <= now
            {
                return Ok(None);
            }
            command.delivery_count += 1;
            command.lock = Some(Lock {
                token: token.clone(),
                until,
            });
            Ok(Some(command.clone()))
        }

        async fn unlock(
            &self,
            queue: &QueueKey,
            token: &LockToken,
            now: Timestamp,
        ) -> Result<Option<QueuedCommand>, StoreError> {
            let mut state = lock(&self.state);
            let Some(stored) = state
                .items
                .get_mut(&(queue.clone(), token.sequence_number()))
            else {
                return Ok(None);
            };
            let held = stored
                .command
                .lock
                .as_ref()
                .is_some_and(|l| l.token == *token && l.until > now);
            if stored.settled.is_some() || !held {
                return Ok(None);
            }
            stored.command.lock = None;
            Ok(Some(stored.command.clone()))
        }

        async fn settle(
            &self,
            queue: &QueueKey,
            sequence_number: u64,
            condition: &SettleCondition,
            outcome: Outcome,
            keep_record: bool,
            now: Timestamp,
        ) -> Result<SettleOutcome, StoreError> {
            let mut state = lock(&self.state);
            let key = (queue.clone(), sequence_number);
            let Some(stored) = state.items.get(&key) else {
                return Ok(SettleOutcome::ConditionFailed);
            };
            let lock_state = stored.command.lock.as_ref();
            let allowed = stored.settled.is_none()
                && match condition {
                    SettleCondition::LockedBy(token) => {
                        lock_state.is_some_and(|l| l.token == *token && l.until > now)
                    }
                    SettleCondition::Unlocked => lock_state.is_none_or(|l| l.until <= now),
                    SettleCondition::Queued => true,
                };
            if !allowed {
                return Ok(SettleOutcome::ConditionFailed);
            }
            if keep_record {
                if let Some(stored) = state.items.get_mut(&key) {
                    stored.settled = Some(outcome);
                    stored.command.lock = None;
                }
            } else {
                state.items.remove(&key);
            }
            if let Some(head) = state.heads.get_mut(&queue.device_id)
                && head.0 == queue.generation_id
            {
                head.2 = head.2.saturating_sub(1);
            }
            Ok(SettleOutcome::Settled)
        }

        async fn get(
            &self,
            queue: &QueueKey,
            sequence_number: u64,
        ) -> Result<Option<StoredCommand>, StoreError> {
            Ok(lock(&self.state)
                .items
                .get(&(queue.clone(), sequence_number))
                .cloned())
        }

        async fn delete(&self, queue: &QueueKey, sequence_number: u64) -> Result<(), StoreError> {
            lock(&self.state)
                .items
                .remove(&(queue.clone(), sequence_number));
            Ok(())
        }

        async fn due(
            &self,
            now: Timestamp,
            limit: usize,
        ) -> Result<Vec<(QueueKey, u64)>, StoreError> {
            Ok(lock(&self.state)
                .items
                .iter()
                .filter(|(_, stored)| stored.settled.is_some() || stored.command.expires_at <= now)
                .map(|(key, _)| key.clone())
                .take(limit)
                .collect())
        }
    }

    /// The feedback queue: records in order, each receivable once per lock.
    #[derive(Default)]
    pub struct InMemoryFeedback {
        records: Mutex<Vec<(String, FeedbackRecord, bool)>>,
        pub unavailable: AtomicBool,
    }

    impl InMemoryFeedback {
        pub fn published(&self) -> Vec<FeedbackRecord> {
            lock(&self.records)
                .iter()
                .map(|(_, r, _)| r.clone())
                .collect()
        }
    }

    impl FeedbackQueue for InMemoryFeedback {
        async fn publish(&self, record: &FeedbackRecord) -> Result<(), StoreError> {
            if self.unavailable.load(Ordering::SeqCst) {
                return Err(down());
            }
            let token = format!("fb-{}", uuid::Uuid::new_v4().simple());
            lock(&self.records).push((token, record.clone(), false));
            Ok(())
        }

        async fn receive(&self, _lock: Duration) -> Result<Option<FeedbackBatch>, StoreError> {
            let mut records = lock(&self.records);
            let Some(entry) = records.iter_mut().find(|(_, _, locked)| !locked) else {
                return Ok(None);
            };
            entry.2 = true;
            Ok(Some(FeedbackBatch {
                lock_token: entry.0.clone(),
                records: vec![entry.1.clone()],
            }))
        }

        async fn complete(&self, lock_token: &str) -> Result<TokenOutcome, StoreError> {
            let mut records = lock(&self.records);
            let before = records.len();
            records.retain(|(token, _, locked)| !(token == lock_token && *locked));
            Ok(if records.len() < before {
                TokenOutcome::Done
            } else {
                TokenOutcome::InvalidToken
            })
        }

        async fn abandon(&self, lock_token: &str) -> Result<TokenOutcome, StoreError> {
            let mut records = lock(&self.records);
            match records
                .iter_mut()
                .find(|(token, _, locked)| token == lock_token && *locked)
            {
                Some(entry) => {
                    entry.2 = false;
                    Ok(TokenOutcome::Done)
                }
                None => Ok(TokenOutcome::InvalidToken),
            }
        }
    }

    #[derive(Default)]
    pub struct InMemoryDeadLetters {
        sent: Mutex<Vec<(String, String)>>,
        pub unavailable: AtomicBool,
    }

    impl InMemoryDeadLetters {
        /// (body, reason) of everything dead-lettered.
        pub fn sent(&self) -> Vec<(String, String)> {
            lock(&self.sent).clone()
        }
    }

    impl DeadLetters for InMemoryDeadLetters {
        async fn send(&self, body: &str, reason: &str) -> Result<(), StoreError> {
            if self.unavailable.load(Ordering::SeqCst) {
                return Err(down());
            }
            lock(&self.sent).push((body.to_owned(), reason.to_owned()));
            Ok(())
        }
    }
}

pub use analytics::{InMemoryAnalytics, InMemoryQueue, InMemoryRules};

mod analytics {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::lock;
    use crate::domain::analytics::{
        Alert, AlertReview, DeviceState, Rule, WindowAggregate, WindowSize,
    };
    use crate::domain::device_id::DeviceId;
    use crate::ports::{
        AnalyticsStore, CommitOutcome, QueueSender, RuleStore, RuleWrite, StateItem, StateKey,
        StoreError,
    };

    fn key_of(item: &StateItem) -> StateKey {
        match item {
            StateItem::Device(state) => StateKey::Device(state.device_id.clone()),
            StateItem::Aggregate(a) => StateKey::Aggregate {
                device: a.device_id.clone(),
                window: a.window,
                start: a.window_start,
            },
            StateItem::Alert(a) => StateKey::Alert {
                rule_id: a.rule_id.clone(),
                device: a.device_id.clone(),
            },
        }
    }

    /// Analytics state with the same commit semantics as DynamoDB: items and checkpoint together.
    #[derive(Default)]
    pub struct InMemoryAnalytics {
        items: Mutex<HashMap<StateKey, StateItem>>,
        checkpoints: Mutex<BTreeMap<String, String>>,
        reviews: Mutex<HashMap<String, AlertReview>>,
        /// The next this many commits fail (as a throttled or unreachable table would).
        pub fail_commits: AtomicUsize,
        pub commits: AtomicUsize,
        pub loads: AtomicUsize,
        /// Stored items that cannot be read back (damaged).
        pub corrupt: Mutex<std::collections::HashSet<StateKey>>,
    }

    impl InMemoryAnalytics {
        pub fn item(&self, key: &StateKey) -> Option<StateItem> {
            lock(&self.items).get(key).cloned()
        }

        pub fn all(&self) -> HashMap<StateKey, StateItem> {
            lock(&self.items).clone()
        }
    }

    impl AnalyticsStore for InMemoryAnalytics {
        async fn checkpoint(&self, shard: &str) -> Result<Option<String>, StoreError> {
            Ok(lock(&self.checkpoints).get(shard).cloned())
        }

        async fn load(&self, keys: &[StateKey]) -> Result<crate::ports::LoadedState, StoreError> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            let items = lock(&self.items);
            let corrupt = lock(&self.corrupt);
            let mut loaded = crate::ports::LoadedState::default();
            for key in keys {
                if corrupt.contains(key) {
                    loaded
                        .unreadable
                        .insert(key.clone(), "the item does not decode".into());
                } else if let Some(item) = items.get(key) {
                    loaded.items.insert(key.clone(), item.clone());
                }
            }
            Ok(loaded)
        }

        async fn commit(
            &self,
            shard: &str,
            expected: Option<&str>,
            checkpoint: &str,
            items: &[StateItem],
        ) -> Result<CommitOutcome, StoreError> {
            if self
                .fail_commits
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(StoreError::transient(
                    "in-memory commit",
                    std::io::Error::other("throttled"),
                ));
            }
            let mut checkpoints = lock(&self.checkpoints);
            if checkpoints.get(shard).map(String::as_str) != expected {
                return Ok(CommitOutcome::CheckpointMoved);
            }
            assert!(items.len() < 100, "a transaction holds at most 100 items");
            let mut stored = lock(&self.items);
            for item in items {
                stored.insert(key_of(item), item.clone());
            }
            checkpoints.insert(shard.to_owned(), checkpoint.to_owned());
            self.commits.fetch_add(1, Ordering::SeqCst);
            Ok(CommitOutcome::Committed)
        }

        async fn aggregates(
            &self,
            device: &DeviceId,
            window: WindowSize,
            from: i64,
            to: i64,
        ) -> Result<Vec<WindowAggregate>, StoreError> {
            let mut found: Vec<WindowAggregate> = lock(&self.items)
                .values()
                .filter_map(|i| match i {
                    StateItem::Aggregate(a)
                        if a.device_id == *device
                            && a.window == window
                            && (from..=to).contains(&a.window_start) =>
                    {
                        Some(a.clone())
                    }
                    _ => None,
                })
                .collect();
            found.sort_by_key(|a| a.window_start);
            Ok(found)
        }

        async fn device_state(&self, device: &DeviceId) -> Result<Option<DeviceState>, StoreError> {
            Ok(
                match lock(&self.items).get(&StateKey::Device(device.clone())) {
                    Some(StateItem::Device(state)) => Some(state.clone()),
                    _ => None,
                },
            )
        }

        async fn alerts(&self, active_only: bool, limit: usize) -> Result<Vec<Alert>, StoreError> {
            Ok(lock(&self.items)
                .values()
                .filter_map(|i| match i {
                    StateItem::Alert(a) if a.active || !active_only => Some(a.clone()),
                    _ => None,
                })
                .take(limit)
                .collect())
        }

        async fn reviews(
            &self,
            alert_ids: &[String],
        ) -> Result<HashMap<String, AlertReview>, StoreError> {
            let reviews = lock(&self.reviews);
            Ok(alert_ids
                .iter()
                .filter_map(|id| reviews.get(id).map(|r| (id.clone(), r.clone())))
                .collect())
        }

        async fn put_review(&self, alert_id: &str, review: &AlertReview) -> Result<(), StoreError> {
            lock(&self.reviews).insert(alert_id.to_owned(), review.clone());
            Ok(())
        }
    }

    #[derive(Default)]
    pub struct InMemoryRules {
        rules: Mutex<BTreeMap<String, Rule>>,
        pub lists: AtomicUsize,
    }

    impl InMemoryRules {
        pub fn with(rules: impl IntoIterator<Item = Rule>) -> Self {
            let store = Self::default();
            lock(&store.rules).extend(rules.into_iter().map(|r| (r.id.clone(), r)));
            store
        }
    }

    impl RuleStore for InMemoryRules {
        async fn list(&self) -> Result<Vec<Rule>, StoreError> {
            self.lists.fetch_add(1, Ordering::SeqCst);
            Ok(lock(&self.rules).values().cloned().collect())
        }

        async fn get(&self, id: &str) -> Result<Option<Rule>, StoreError> {
            Ok(lock(&self.rules).get(id).cloned())
        }

        async fn put(
            &self,
            rule: &Rule,
            if_match: Option<&str>,
            create_only: bool,
        ) -> Result<RuleWrite, StoreError> {
            let mut rules = lock(&self.rules);
            match (rules.get(&rule.id), if_match, create_only) {
                (Some(_), _, true) => return Ok(RuleWrite::EtagMismatch),
                (Some(existing), Some(etag), false) if existing.etag != etag => {
                    return Ok(RuleWrite::EtagMismatch);
                }
                (None, Some(_), false) => return Ok(RuleWrite::NotFound),
                _ => {}
            }
            rules.insert(rule.id.clone(), rule.clone());
            Ok(RuleWrite::Written)
        }

        async fn delete(&self, id: &str, if_match: Option<&str>) -> Result<RuleWrite, StoreError> {
            let mut rules = lock(&self.rules);
            match (rules.get(id), if_match) {
                (None, _) => Ok(RuleWrite::NotFound),
                (Some(existing), Some(etag)) if existing.etag != etag => {
                    Ok(RuleWrite::EtagMismatch)
                }
                _ => {
                    rules.remove(id);
                    Ok(RuleWrite::Written)
                }
            }
        }
    }

    /// A queue that keeps what it was sent.
    #[derive(Default)]
    pub struct InMemoryQueue {
        sent: Mutex<Vec<String>>,
        pub unavailable: AtomicBool,
    }

    impl InMemoryQueue {
        pub fn sent(&self) -> Vec<String> {
            lock(&self.sent).clone()
        }
    }

    impl QueueSender for InMemoryQueue {
        async fn send_all(&self, bodies: &[String]) -> Result<(), StoreError> {
            if self.unavailable.load(Ordering::SeqCst) && !bodies.is_empty() {
                return Err(StoreError::transient(
                    "in-memory queue",
                    std::io::Error::other("unavailable"),
                ));
            }
            lock(&self.sent).extend(bodies.iter().cloned());
            Ok(())
        }
    }
}

/// Method calls with the DynamoDB adapter's conditional state changes.
#[derive(Default)]
pub struct InMemoryMethodCalls {
    calls: Mutex<BTreeMap<(DeviceId, String), crate::domain::method::MethodCall>>,
}

impl crate::ports::MethodCalls for InMemoryMethodCalls {
    async fn put_call(
        &self,
        device: &DeviceId,
        call: &crate::domain::method::MethodCall,
    ) -> Result<(), StoreError> {
        lock(&self.calls).insert((device.clone(), call.request_id.clone()), call.clone());
        Ok(())
    }

    async fn get_call(
        &self,
        device: &DeviceId,
        request_id: &str,
    ) -> Result<Option<crate::domain::method::MethodCall>, StoreError> {
        Ok(lock(&self.calls)
            .get(&(device.clone(), request_id.to_owned()))
            .cloned())
    }

    async fn pending_calls(
        &self,
        device: &DeviceId,
        generation_id: &str,
    ) -> Result<Vec<crate::domain::method::MethodCall>, StoreError> {
        Ok(lock(&self.calls)
            .iter()
            .filter(|((d, _), call)| {
                d == device
                    && call.generation_id == generation_id
                    && call.state == crate::domain::method::MethodState::Pending
            })
            .map(|(_, call)| call.clone())
            .collect())
    }

    async fn take_call(
        &self,
        device: &DeviceId,
        request_id: &str,
        at: crate::domain::timestamp::Timestamp,
    ) -> Result<crate::ports::CallChange, StoreError> {
        use crate::domain::method::MethodState;
        let mut calls = lock(&self.calls);
        Ok(
            match calls.get_mut(&(device.clone(), request_id.to_owned())) {
                Some(call) if call.state == MethodState::Pending => {
                    call.state = MethodState::Taken { at };
                    crate::ports::CallChange::Changed
                }
                _ => crate::ports::CallChange::NotApplicable,
            },
        )
    }

    async fn answer_call(
        &self,
        device: &DeviceId,
        generation_id: &str,
        request_id: &str,
        response: &crate::domain::method::MethodResponse,
    ) -> Result<crate::ports::CallChange, StoreError> {
        use crate::domain::method::MethodState;
        let mut calls = lock(&self.calls);
        Ok(
            match calls.get_mut(&(device.clone(), request_id.to_owned())) {
                Some(call)
                    if matches!(call.state, MethodState::Taken { .. })
                        && call.generation_id == generation_id =>
                {
                    call.state = MethodState::Answered {
                        response: response.clone(),
                    };
                    crate::ports::CallChange::Changed
                }
                _ => crate::ports::CallChange::NotApplicable,
            },
        )
    }

    async fn remove_call(
        &self,
        device: &DeviceId,
        request_id: &str,
        only_pending: bool,
    ) -> Result<crate::ports::CallChange, StoreError> {
        let mut calls = lock(&self.calls);
        let key = (device.clone(), request_id.to_owned());
        let removable = calls.get(&key).is_some_and(|call| {
            !only_pending || call.state == crate::domain::method::MethodState::Pending
        });
        Ok(if removable {
            calls.remove(&key);
            crate::ports::CallChange::Changed
        } else {
            crate::ports::CallChange::NotApplicable
        })
    }
}

pub use jobs::InMemoryJobs;

mod jobs {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::lock;
    use crate::domain::job::{
        ChunkState, DeviceJob, DeviceJobStatus, Expansion, Job, JobChunk, JobStatus,
    };
    use crate::domain::timestamp::Timestamp;
    use crate::ports::{DeviceJobPage, FoundDevices, JobStore, StoreError};

    /// Jobs, chunks and device results in memory, with the adapter's conditions.
    #[derive(Default)]
    pub struct InMemoryJobs {
        /// When set, this many more device results are recorded; then recording fails
        /// (transiently), as when a worker dies between doing devices and recording them.
        pub results_before_outage: Mutex<Option<usize>>,
        jobs: Mutex<BTreeMap<String, Job>>,
        chunks: Mutex<BTreeMap<(String, u64), JobChunk>>,
        devices: Mutex<BTreeMap<(String, String), DeviceJob>>,
    }

    impl JobStore for InMemoryJobs {
        async fn create_job(&self, job: &Job) -> Result<bool, StoreError> {
            let mut jobs = lock(&self.jobs);
            if jobs.contains_key(&job.spec.job_id) {
                return Ok(false);
            }
            jobs.insert(job.spec.job_id.clone(), job.clone());
            Ok(true)
        }

        async fn get_job(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
            Ok(lock(&self.jobs).get(job_id).cloned())
        }

        async fn list_jobs(&self) -> Result<Vec<Job>, StoreError> {
            let mut jobs: Vec<Job> = lock(&self.jobs).values().cloned().collect();
            jobs.sort_by_key(|j| std::cmp::Reverse(j.created_time));
            Ok(jobs)
        }

        async fn set_status(
            &self,
            job_id: &str,
            from: &[JobStatus],
            to: JobStatus,
            at: Timestamp,
            reason: Option<&str>,
        ) -> Result<bool, StoreError> {
            let mut jobs = lock(&self.jobs);
            match jobs.get_mut(job_id) {
                Some(job) if from.contains(&job.status) => {
                    job.status = to;
                    job.touched_at = at;
                    if !to.is_active() {
                        job.end_time = Some(at);
                    }
                    if let Some(reason) = reason {
                        job.failure_reason = Some(reason.to_owned());
                    }
                    Ok(true)
                }
                _ => Ok(false),
            }
        }

        async fn add_devices(
            &self,
            job_id: &str,
            expected: &Expansion,
            next: &Expansion,
            found: FoundDevices<'_>,
        ) -> Result<bool, StoreError> {
            let mut jobs = lock(&self.jobs);
            let Some(job) = jobs.get_mut(job_id) else {
                return Ok(false);
            };
            if job.expansion.next_chunk != expected.next_chunk || job.expansion.done {
                return Ok(false);
            }
            job.expansion = next.clone();
            job.touched_at = Timestamp::now();
            job.device_count += found.device_jobs.len() as u64;
            for chunk in found.chunks {
                lock(&self.chunks).insert((job_id.to_owned(), chunk.number), chunk.clone());
            }
            for device in found.device_jobs {
                lock(&self.devices).insert(
                    (job_id.to_owned(), device.device_id.clone()),
                    device.clone(),
                );
            }
            Ok(true)
        }

        async fn get_chunk(
            &self,
            job_id: &str,
            number: u64,
        ) -> Result<Option<JobChunk>, StoreError> {
            Ok(lock(&self.chunks)
                .get(&(job_id.to_owned(), number))
                .cloned())
        }

        async fn unsent_chunks(
            &self,
            job_id: &str,
            sent_before: Timestamp,
        ) -> Result<Vec<JobChunk>, StoreError> {
            Ok(lock(&self.chunks)
                .iter()
                .filter(|((job, _), c)| {
                    job == job_id && c.state == ChunkState::Pending && c.sent_at < sent_before
                })
                .map(|(_, c)| c.clone())
                .collect())
        }

        async fn mark_sent(
            &self,
            job_id: &str,
            number: u64,
            at: Timestamp,
        ) -> Result<(), StoreError> {
            if let Some(chunk) = lock(&self.chunks).get_mut(&(job_id.to_owned(), number)) {
                chunk.sent_at = at;
            }
            Ok(())
        }

        async fn start_chunk(
            &self,
            job_id: &str,
            number: u64,
            devices: u64,
        ) -> Result<bool, StoreError> {
            let mut chunks = lock(&self.chunks);
            match chunks.get_mut(&(job_id.to_owned(), number)) {
                Some(chunk) if chunk.state == ChunkState::Pending => {
                    chunk.state = ChunkState::Running;
                    if let Some(job) = lock(&self.jobs).get_mut(job_id) {
                        job.running_count += devices;
                    }
                    Ok(true)
                }
                _ => Ok(false),
            }
        }

        async fn count_chunk(
            &self,
            job_id: &str,
            number: u64,
            devices: u64,
            succeeded: u64,
            failed: u64,
        ) -> Result<bool, StoreError> {
            let mut chunks = lock(&self.chunks);
            match chunks.get_mut(&(job_id.to_owned(), number)) {
                Some(chunk) if chunk.state == ChunkState::Running => {
                    chunk.state = ChunkState::Counted;
                    if let Some(job) = lock(&self.jobs).get_mut(job_id) {
                        job.running_count = job.running_count.saturating_sub(devices);
                        job.succeeded_count += succeeded;
                        job.failed_count += failed;
                    }
                    Ok(true)
                }
                _ => Ok(false),
            }
        }

        async fn device_job(
            &self,
            job_id: &str,
            device_id: &str,
        ) -> Result<Option<DeviceJob>, StoreError> {
            Ok(lock(&self.devices)
                .get(&(job_id.to_owned(), device_id.to_owned()))
                .cloned())
        }

        async fn put_device_job(&self, device_job: &DeviceJob) -> Result<bool, StoreError> {
            if let Some(left) = lock(&self.results_before_outage).as_mut() {
                if *left == 0 {
                    return Err(StoreError::transient(
                        "in-memory jobs",
                        std::io::Error::other("unavailable"),
                    ));
                }
                *left -= 1;
            }
            let mut devices = lock(&self.devices);
            let key = (device_job.job_id.clone(), device_job.device_id.clone());
            if devices.get(&key).is_some_and(|d| {
                !matches!(
                    d.status,
                    DeviceJobStatus::Pending | DeviceJobStatus::Running
                )
            }) {
                return Ok(false);
            }
            devices.insert(key, device_job.clone());
            Ok(true)
        }

        async fn device_jobs(
            &self,
            job_id: &str,
            limit: usize,
            after: Option<&str>,
        ) -> Result<DeviceJobPage, StoreError> {
            let devices = lock(&self.devices);
            let mut page: Vec<DeviceJob> = devices
                .iter()
                .filter(|((job, device), _)| {
                    job == job_id && after.is_none_or(|a| device.as_str() > a)
                })
                .map(|(_, d)| d.clone())
                .take(limit + 1)
                .collect();
            let more = (page.len() > limit).then(|| {
                page.truncate(limit);
                page.last().map(|d| d.device_id.clone())
            });
            Ok((page, more.flatten()))
        }
    }
}
