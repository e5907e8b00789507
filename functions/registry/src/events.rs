//! Device lifecycle events (`createDeviceIdentity`, `deleteDeviceIdentity`) for integrations.
//!
//! Each event is written to the registry's outbox in the same transaction as the change it
//! describes, published to SQS right after, and removed from the outbox once published. When
//! publishing fails (or the function dies first), the scheduled sweep publishes it: delivery is at
//! least once, and `eventId` identifies duplicates.

use hub_shared::domain::device::Device;
use hub_shared::domain::registry::{LifecycleEvent, LifecycleOperation};
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::error::Chain;
use hub_shared::ports::{DeviceRegistry, PolicyStore, QueueSender, TwinStore};

use crate::RegistryHandler;

impl<R: DeviceRegistry, T: TwinStore, P: PolicyStore, Q: QueueSender> RegistryHandler<R, T, P, Q> {
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
            operation_timestamp: Timestamp::now(),
        }
    }

    /// Publishes one event and takes it out of the outbox; failures are left to the sweep.
    pub(crate) async fn publish(&self, event: &LifecycleEvent) -> bool {
        let result = async {
            let body = serde_json::to_string(event)
                .map_err(|e| hub_shared::ports::StoreError::new("encoding a lifecycle event", e))?;
            self.events.send_all(&[body]).await?;
            self.registry.remove_event(&event.event_id).await
        }
        .await;
        match result {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(event = event.event_id, error = %Chain(&error), "lifecycle event left for the sweep");
                false
            }
        }
    }

    /// The scheduled sweep: publishes events that stayed in the outbox. Returns how many.
    pub async fn publish_pending(&self) -> usize {
        let grace = i64::try_from(self.outbox_grace.as_millis()).unwrap_or(i64::MAX);
        let older_than =
            Timestamp::from_unix_millis(Timestamp::now().unix_millis().saturating_sub(grace))
                .unwrap_or(Timestamp::NEVER);
        let pending = match self.registry.pending_events(older_than, 100).await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::error!(error = %Chain(&error), "cannot read the lifecycle event outbox");
                return 0;
            }
        };
        let mut published = 0;
        for event in &pending {
            if self.publish(event).await {
                published += 1;
            }
        }
        published
    }
}
