//! Connection state of HTTP devices, and Azure's `deviceConnected` / `deviceDisconnected` events.
//!
//! An HTTP device holds no connection, so "connected" means active within the connected window
//! (`HUB_CONNECTED_WINDOW_SECONDS`), the rule `connectedDeviceCount` and `connectionState` follow.
//! The registry marks connected devices (a sparse index of them by last activity):
//! - a device's request finds it not marked, or marked but silent past the window, and marks it
//!   connected with a `deviceConnected` event (after a `deviceDisconnected` one if the sweep had
//!   not yet seen the silence);
//! - the registry's scheduled sweep finds marked devices silent past the window and unmarks them
//!   with a `deviceDisconnected` event dated when the window ran out.
//!
//! Each change and its events are one conditional transaction (the events go through the outbox,
//! so they are published at least once) and a change bumps the device's connection sequence,
//! Azure's `sequenceNumber`, so consumers can order and deduplicate. Recording the activity of a
//! device already connected stays one conditional write.

use std::time::Duration;

use crate::aws::{Clients, DynamoDbDeviceRegistry, SqsQueue};
use crate::config::{ConfigError, Env, vars};
use crate::domain::registry::{LifecycleEvent, LifecycleOperation};
use crate::domain::timestamp::Timestamp;
use crate::error::Chain;
use crate::ports::{
    ActivityRecorder, ConnectionState, ConnectionStore, Outbox, QueueSender, StoreError, Touch,
};

/// How recently a device must have been active to count as connected, unless configured.
pub const DEFAULT_CONNECTED_WINDOW: Duration = Duration::from_secs(300);

/// How recent an activity the authorizer saw may be and still stand (no write), at most.
pub const ACTIVITY_INTERVAL: Duration = Duration::from_secs(60);

/// Devices a sweep disconnects at most (the next sweep, a minute later, takes the rest).
pub const SWEEP_LIMIT: usize = 1000;

/// Disconnections in flight at once during a sweep.
const SWEEP_CONCURRENCY: usize = 8;

/// Attempts at recording one activity when other requests change the device meanwhile.
const ATTEMPTS: usize = 3;

/// What a function recording device activity needs to know.
#[derive(Debug, Clone)]
pub struct ActivityConfig {
    pub registry_table: String,
    pub events_queue_url: String,
    /// The router's copy of the events queue, when routes read the registry's events.
    pub routing_events_queue_url: Option<String>,
    pub hub_name: String,
    pub connected_window: Duration,
}

impl ActivityConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            registry_table: env.required(vars::REGISTRY_TABLE)?,
            events_queue_url: env.required(vars::REGISTRY_EVENTS_QUEUE_URL)?,
            routing_events_queue_url: env.optional(vars::ROUTING_EVENTS_QUEUE_URL),
            hub_name: env.required(vars::HOST_NAME)?,
            connected_window: env.seconds_or(
                vars::CONNECTED_WINDOW_SECONDS,
                DEFAULT_CONNECTED_WINDOW.as_secs(),
            )?,
        })
    }

    /// The events queue, and the router's copy of it when routes read the events.
    pub fn events_queue(&self, clients: &Clients) -> SqsQueue {
        SqsQueue::new(clients.sqs.clone(), &self.events_queue_url)
            .copying_to(self.routing_events_queue_url.as_deref())
    }
}

/// The tracker as deployed: state in the registry table, events to the lifecycle-event queue.
pub type DeployedTracker = ActivityTracker<DynamoDbDeviceRegistry, SqsQueue>;

/// Builds the deployed tracker, as the functions recording activity do at cold start.
pub fn build(config: &ActivityConfig, clients: &Clients) -> DeployedTracker {
    ActivityTracker::new(
        DynamoDbDeviceRegistry::new(clients.dynamodb.clone(), &config.registry_table),
        config.events_queue(clients),
        &config.hub_name,
        config.connected_window,
    )
}

/// The earliest activity that still counts as connected at `now` under `window`.
pub fn connected_since(now: Timestamp, window: Duration) -> Timestamp {
    let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_unix_millis(now.unix_millis().saturating_sub(window))
        .unwrap_or(Timestamp::NEVER)
}

/// Records activity and keeps connection state, publishing its events.
pub struct ActivityTracker<S, Q> {
    store: S,
    events: Q,
    hub_name: String,
    window: Duration,
}

impl<S: ConnectionStore, Q: QueueSender> ActivityTracker<S, Q> {
    /// `store` keeps the state, `events` is the lifecycle-event queue.
    pub fn new(store: S, events: Q, hub_name: impl Into<String>, window: Duration) -> Self {
        Self {
            store,
            events,
            hub_name: hub_name.into(),
            window,
        }
    }

    /// Where the state is kept.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Where the events go.
    pub fn events(&self) -> &Q {
        &self.events
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX)
    }

    fn connected_since(&self, now: Timestamp) -> Timestamp {
        connected_since(now, self.window)
    }

    /// When a device last active at `at` stops counting as connected.
    fn window_end(&self, at: Timestamp) -> Timestamp {
        Timestamp::from_unix_millis(at.unix_millis().saturating_add(self.window_ms())).unwrap_or(at)
    }

    /// How old a seen activity may be and still stand: a minute, or less under a short window
    /// so that a device active at least once a window never looks silent.
    fn interval_ms(&self) -> i64 {
        let interval = i64::try_from(ACTIVITY_INTERVAL.as_millis()).unwrap_or(i64::MAX);
        interval.min(self.window_ms() / 4)
    }

    fn event(
        &self,
        state: &ConnectionState,
        op_type: LifecycleOperation,
        at: Timestamp,
        sequence: u64,
    ) -> LifecycleEvent {
        LifecycleEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            op_type,
            hub_name: self.hub_name.clone(),
            device_id: state.device_id.clone(),
            generation_id: state.generation_id.clone(),
            etag: state.etag.clone(),
            status: state.status,
            operation_timestamp: at,
            body: Some(serde_json::json!({ "sequenceNumber": sequence_number(sequence, at) })),
        }
    }

    async fn try_record(
        &self,
        id: &crate::DeviceId,
        generation_id: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let since = self.connected_since(at);
        let mut fresh_since = since;
        for _ in 0..ATTEMPTS {
            let state = match self.store.touch(id, generation_id, at, fresh_since).await? {
                Touch::Recorded | Touch::Gone => return Ok(()),
                Touch::NotConnected(state) => state,
            };
            if state.connected && state.last_activity_time >= since {
                // Connected and recent after all: another request connected it meanwhile, or the
                // store compared times as text (RFC 3339 with varying fractions sorts wrongly
                // within a second). Touch it again as connected, however recent.
                fresh_since = Timestamp::NEVER;
                continue;
            }
            let mut events = Vec::with_capacity(2);
            let mut sequence = state.sequence;
            if state.connected {
                sequence += 1;
                let ended = self.window_end(state.last_activity_time);
                events.push(self.event(
                    &state,
                    LifecycleOperation::DeviceDisconnected,
                    ended,
                    sequence,
                ));
            }
            sequence += 1;
            events.push(self.event(&state, LifecycleOperation::DeviceConnected, at, sequence));
            if self.store.connect(&state, at, &events).await? {
                for event in &events {
                    self.publish(event).await;
                }
                return Ok(());
            }
        }
        tracing::warn!(device = %id, "device changed during every attempt to record its activity");
        Ok(())
    }

    /// Publishes an event written to the outbox; a failure leaves it there for the sweep.
    async fn publish(&self, event: &LifecycleEvent) {
        if let Err(error) = publish_event(&self.events, &self.store, event).await {
            tracing::warn!(event = event.event_id, error = %Chain(&error), "lifecycle event left for the sweep");
        }
    }

    async fn disconnect_one(&self, state: &ConnectionState) -> Result<bool, StoreError> {
        let ended = self.window_end(state.last_activity_time);
        let event = self.event(
            state,
            LifecycleOperation::DeviceDisconnected,
            ended,
            state.sequence + 1,
        );
        let disconnected = self.store.disconnect(state, &event).await?;
        if disconnected {
            self.publish(&event).await;
        }
        Ok(disconnected)
    }

    /// The sweep's part: disconnects devices silent past the window at `now` (at most
    /// [`SWEEP_LIMIT`]) and returns how many. Fails when the state cannot be read or written,
    /// after doing what it could.
    pub async fn disconnect_silent(&self, now: Timestamp) -> Result<usize, StoreError> {
        let since = self.connected_since(now);
        let mut silent = self.store.silent(since, SWEEP_LIMIT).await?;
        // The store compares times as text, which can be off within a second.
        silent.retain(|state| state.last_activity_time < since);
        let mut results = Vec::with_capacity(silent.len());
        for states in silent.chunks(SWEEP_CONCURRENCY) {
            results.extend(
                futures::future::join_all(states.iter().map(|state| self.disconnect_one(state)))
                    .await,
            );
        }
        let mut disconnected = 0;
        let mut first_failure = None;
        for result in results {
            match result {
                Ok(true) => disconnected += 1,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(error = %Chain(&error), "device not disconnected by the sweep");
                    first_failure.get_or_insert(error);
                }
            }
        }
        match first_failure {
            None => Ok(disconnected),
            Some(error) => Err(error),
        }
    }
}

impl<S: ConnectionStore, Q: QueueSender> ActivityRecorder for ActivityTracker<S, Q> {
    async fn record(
        &self,
        id: &crate::DeviceId,
        generation_id: &str,
        at: Timestamp,
        seen: Option<Timestamp>,
    ) {
        if seen.is_some_and(|seen| at.unix_millis() - seen.unix_millis() < self.interval_ms()) {
            return;
        }
        if let Err(error) = self.try_record(id, generation_id, at).await {
            tracing::warn!(device = %id, error = %Chain(&error), "cannot record device activity");
        }
    }
}

/// Publishes one event from the outbox and takes it out.
pub async fn publish_event<Q: QueueSender, O: Outbox>(
    queue: &Q,
    outbox: &O,
    event: &LifecycleEvent,
) -> Result<(), StoreError> {
    let body = serde_json::to_string(event)
        .map_err(|e| StoreError::rejected("encoding a lifecycle event", e))?;
    queue.send_all(&[body]).await?;
    outbox.remove_event(&event.event_id).await
}

/// Azure's `sequenceNumber`: 64 hex digits that sort as the changes happened (the device's
/// change count first, then the time).
pub fn sequence_number(sequence: u64, at: Timestamp) -> String {
    format!(
        "{sequence:032X}{:032X}",
        u64::try_from(at.unix_millis()).unwrap_or(0)
    )
}

// The fakes come with the functions' dev-dependencies (`cargo test --workspace`).
#[cfg(all(test, feature = "fakes"))]
mod tests {
    use super::*;
    use crate::domain::device_id::DeviceId;
    use crate::fakes::{InMemoryQueue, InMemoryRegistry};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000 + seconds * 1000).unwrap()
    }

    fn tracker<'a>(
        registry: &'a InMemoryRegistry,
        queue: &'a InMemoryQueue,
    ) -> ActivityTracker<&'a InMemoryRegistry, &'a InMemoryQueue> {
        ActivityTracker::new(registry, queue, "hub.example", Duration::from_secs(300))
    }

    fn published(queue: &InMemoryQueue) -> Vec<(String, String)> {
        queue
            .sent()
            .iter()
            .map(|body| {
                let event: serde_json::Value = serde_json::from_str(body).unwrap();
                (
                    event["opType"].as_str().unwrap().to_owned(),
                    event["body"]["sequenceNumber"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn setup() -> (InMemoryRegistry, InMemoryQueue, DeviceId, String) {
        let device = crate::fakes::device("thermo-1");
        let (id, generation) = (device.device_id.clone(), device.generation_id.clone());
        (
            InMemoryRegistry::with([device]),
            InMemoryQueue::default(),
            id,
            generation,
        )
    }

    #[tokio::test]
    async fn a_device_connects_once_while_active_and_disconnects_when_silent() {
        let (registry, queue, id, generation) = setup();
        let tracker = tracker(&registry, &queue);
        tracker.record(&id, &generation, at(0), None).await;
        tracker.record(&id, &generation, at(90), Some(at(0))).await;
        tracker
            .record(&id, &generation, at(100), Some(at(90)))
            .await;
        assert_eq!(tracker.disconnect_silent(at(300)).await.unwrap(), 0);
        assert_eq!(tracker.disconnect_silent(at(391)).await.unwrap(), 1);
        assert_eq!(tracker.disconnect_silent(at(392)).await.unwrap(), 0);
        tracker
            .record(&id, &generation, at(500), Some(at(90)))
            .await;

        let events = published(&queue);
        let operations: Vec<&str> = events.iter().map(|(op, _)| op.as_str()).collect();
        assert_eq!(
            operations,
            ["deviceConnected", "deviceDisconnected", "deviceConnected"]
        );
        assert!(events.windows(2).all(|pair| pair[0].1 < pair[1].1));
        assert!(events.iter().all(|(_, number)| number.len() == 64));
        assert!(
            registry.outbox().is_empty(),
            "published events leave the outbox"
        );
        let disconnected: serde_json::Value = serde_json::from_str(&queue.sent()[1]).unwrap();
        // Dated when the window after the last recorded activity (90 s) ran out.
        assert_eq!(disconnected["operationTimestamp"], at(390).to_string());
    }

    #[tokio::test]
    async fn a_device_back_before_the_sweep_saw_its_silence_disconnects_then_connects() {
        let (registry, queue, id, generation) = setup();
        let tracker = tracker(&registry, &queue);
        tracker.record(&id, &generation, at(0), None).await;
        tracker
            .record(&id, &generation, at(1000), Some(at(0)))
            .await;
        let operations: Vec<String> = published(&queue).into_iter().map(|(op, _)| op).collect();
        assert_eq!(
            operations,
            ["deviceConnected", "deviceDisconnected", "deviceConnected"]
        );
        assert_eq!(tracker.disconnect_silent(at(1001)).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn unknown_devices_and_old_generations_record_nothing() {
        let (registry, queue, id, _) = setup();
        let tracker = tracker(&registry, &queue);
        tracker
            .record(&id, "an-older-generation", at(0), None)
            .await;
        let stranger = DeviceId::parse("stranger").unwrap();
        tracker.record(&stranger, "g", at(0), None).await;
        assert!(queue.sent().is_empty());
        assert_eq!(registry.snapshot()[0].last_activity_time, Timestamp::NEVER);
    }

    #[tokio::test]
    async fn events_that_cannot_be_published_wait_in_the_outbox() {
        let (registry, queue, id, generation) = setup();
        queue
            .unavailable
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let tracker = tracker(&registry, &queue);
        tracker.record(&id, &generation, at(0), None).await;
        assert_eq!(registry.snapshot()[0].last_activity_time, at(0));
        let outbox = registry.outbox();
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox[0].op_type, LifecycleOperation::DeviceConnected);
    }

    #[test]
    fn a_short_window_shortens_how_long_a_seen_activity_stands() {
        let (registry, queue) = (InMemoryRegistry::default(), InMemoryQueue::default());
        let short = ActivityTracker::new(&registry, &queue, "h", Duration::from_secs(20));
        assert_eq!(short.interval_ms(), 5_000);
        assert_eq!(tracker(&registry, &queue).interval_ms(), 60_000);
    }
}
