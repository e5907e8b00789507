//! Device lifecycle events (`createDeviceIdentity`, `deleteDeviceIdentity`) and twin change
//! events (`updateTwin`, `replaceTwin`) for integrations; connection-state events
//! (`deviceConnected`, `deviceDisconnected`) come from `hub_shared::connection` the same way.
//!
//! Each event is written to the registry's outbox in the same transaction as the change it
//! describes, published to SQS right after, and removed from the outbox once published. When
//! publishing fails (or the function dies first), the scheduled sweep publishes it: delivery is at
//! least once, and `eventId` identifies duplicates.

use hub_shared::domain::device::Device;
use hub_shared::domain::registry::{LifecycleEvent, LifecycleOperation};
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::error::Chain;
use hub_shared::ports::{
    DeviceRegistry, JobStore, MethodCalls, PolicyStore, QueueSender, StoreError, TwinStore,
};

use crate::RegistryHandler;

impl<R: DeviceRegistry, T: TwinStore, P: PolicyStore, Q: QueueSender, M: MethodCalls, J: JobStore>
    RegistryHandler<R, T, P, Q, M, J>
{
    pub(crate) fn lifecycle_event(
        &self,
        op_type: LifecycleOperation,
        device: &Device,
    ) -> LifecycleEvent {
        LifecycleEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            op_type,
            hub_name: self.hub_name.clone(),
            device_id: device.device_id.clone(),
            generation_id: device.generation_id.clone(),
            etag: device.etag.clone(),
            status: device.status,
            operation_timestamp: self.clock.now(),
            body: None,
        }
    }

    /// Publishes one event and takes it out of the outbox.
    async fn try_publish(&self, event: &LifecycleEvent) -> Result<(), StoreError> {
        hub_shared::connection::publish_event(&self.events, &self.registry, event).await
    }

    /// Publishes one event right after the change it describes; a failure leaves it in the
    /// outbox for the sweep (the change itself succeeded, so the caller is not told otherwise).
    pub(crate) async fn publish(&self, event: &LifecycleEvent) {
        if let Err(error) = self.try_publish(event).await {
            tracing::warn!(event = event.event_id, error = %Chain(&error), "lifecycle event left for the sweep");
        }
    }

    /// The scheduled sweep: publishes events that stayed in the outbox and returns how many. It
    /// fails if the outbox cannot be read or any event could not be published, so the
    /// invocation fails and Lambda's retries, `Errors` metric and alarms see it; the events stay
    /// in the outbox for the next sweep.
    pub async fn publish_pending(&self) -> Result<usize, StoreError> {
        let grace = i64::try_from(self.outbox_grace.as_millis()).unwrap_or(i64::MAX);
        let older_than =
            Timestamp::from_unix_millis(self.clock.now().unix_millis().saturating_sub(grace))
                .unwrap_or(Timestamp::NEVER);
        let pending = self.registry.pending_events(older_than, 100).await?;
        let mut published = 0;
        let mut first_failure = None;
        for event in &pending {
            match self.try_publish(event).await {
                Ok(()) => published += 1,
                Err(error) => {
                    tracing::warn!(event = event.event_id, error = %Chain(&error), "lifecycle event not published by the sweep");
                    first_failure.get_or_insert(error);
                }
            }
        }
        match first_failure {
            None => Ok(published),
            Some(error) => Err(error),
        }
    }
}
