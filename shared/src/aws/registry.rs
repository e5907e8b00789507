//! The identity registry in DynamoDB: one item per device, keyed by `deviceId`.
//!
//! Two kinds of reserved items share the table, under keys no device can have (device ids never
//! contain `/`): `/statistics/<shard>` (device counts, kept in the same transactions as creates,
//! deletes and status changes) and `/outbox/<eventId>` (lifecycle events written in the same transaction as the
//! change they describe, deleted once published; the sparse GSI `outbox` finds leftovers).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use serde::{Deserialize, Serialize};

use crate::aws::{build_error, corrupt_item, sdk_error, transaction_error};
use crate::domain::device::{Device, DeviceStatus};
use crate::domain::device_id::DeviceId;
use crate::domain::registry::{LifecycleEvent, RegistryStatistics};
use crate::domain::sas::SymmetricKey;
use crate::domain::timestamp::Timestamp;
use crate::ports::{
    ConnectionState, CreateOutcome, DeleteOutcome, DevicePage, DeviceRegistry, StoreError, Touch,
    UpdateOutcome,
};
use crate::publish::RetryPolicy;

/// Every create and delete adds to a statistics counter in its transaction. DynamoDB cancels
/// concurrent transactions on one item (`TransactionConflict`), so the counts are spread over
/// shards, each write picking one at random, and a read sums them.
const STATISTICS_SHARDS: u8 = 16;
/// For transactions cancelled only because another one held an item they write.
const CONFLICT_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 4,
    base_delay: Duration::from_millis(10),
    max_delay: Duration::from_millis(200),
};
const OUTBOX_SHARD: &str = "0";

#[derive(Clone)]
pub struct DynamoDbDeviceRegistry {
    client: Client,
    table: String,
    twins_table: Option<String>,
}

impl DynamoDbDeviceRegistry {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            twins_table: None,
        }
    }

    /// Deleting a device deletes its twin from this table too.
    pub fn with_twins_table(mut self, table: impl Into<String>) -> Self {
        self.twins_table = Some(table.into());
        self
    }
}

/// The stored item. Keys are stored as given (base64); the table is encrypted at rest.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceItem {
    device_id: String,
    generation_id: String,
    etag: String,
    status: DeviceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status_reason: Option<String>,
    status_updated_time: Timestamp,
    connection_state_updated_time: Timestamp,
    last_activity_time: Timestamp,
    #[serde(default)]
    cloud_to_device_message_count: u64,
    primary_key: String,
    secondary_key: String,
    iot_edge: bool,
}

#[derive(Debug, thiserror::Error)]
enum ItemError {
    #[error("stored device item is malformed: {0}")]
    Shape(#[from] serde_dynamo::Error),
    #[error("stored device item has an invalid {0}")]
    Field(&'static str),
}

impl From<&Device> for DeviceItem {
    fn from(device: &Device) -> Self {
        Self {
            device_id: device.device_id.to_string(),
            generation_id: device.generation_id.clone(),
            etag: device.etag.clone(),
            status: device.status,
            status_reason: device.status_reason.clone(),
            status_updated_time: device.status_updated_time,
            connection_state_updated_time: device.connection_state_updated_time,
            last_activity_time: device.last_activity_time,
            cloud_to_device_message_count: device.cloud_to_device_message_count,
            primary_key: device.primary_key.to_base64(),
            secondary_key: device.secondary_key.to_base64(),
            iot_edge: device.iot_edge,
        }
    }
}

impl TryFrom<DeviceItem> for Device {
    type Error = ItemError;

    fn try_from(item: DeviceItem) -> Result<Self, Self::Error> {
        Ok(Device {
            device_id: DeviceId::parse(&item.device_id)
                .map_err(|_| ItemError::Field("deviceId"))?,
            generation_id: item.generation_id,
            etag: item.etag,
            status: item.status,
            status_reason: item.status_reason,
            status_updated_time: item.status_updated_time,
            connection_state_updated_time: item.connection_state_updated_time,
            last_activity_time: item.last_activity_time,
            cloud_to_device_message_count: item.cloud_to_device_message_count,
            primary_key: SymmetricKey::from_base64(&item.primary_key)
                .map_err(|_| ItemError::Field("primaryKey"))?,
            secondary_key: SymmetricKey::from_base64(&item.secondary_key)
                .map_err(|_| ItemError::Field("secondaryKey"))?,
            iot_edge: item.iot_edge,
        })
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn parse_device(
    item: HashMap<String, AttributeValue>,
    operation: &'static str,
) -> Result<Device, StoreError> {
    let item: DeviceItem = serde_dynamo::from_item(item)
        .map_err(|e| StoreError::corrupt(operation, ItemError::from(e)))?;
    Device::try_from(item).map_err(corrupt_item(operation))
}

fn status_counts(status: DeviceStatus, sign: i64) -> (i64, i64) {
    match status {
        DeviceStatus::Enabled => (sign, 0),
        DeviceStatus::Disabled => (0, sign),
    }
}

/// Whether the first cancellation reason is a failed condition, and whether it came with the
/// item (the item exists, so the etag differed) or without (no item).
fn first_condition_failure(
    error: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError>,
) -> Option<bool> {
    match error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
            let reason = cancelled.cancellation_reasons().first()?;
            (reason.code() == Some("ConditionalCheckFailed"))
                .then(|| reason.item().is_some_and(|i| !i.is_empty()))
        }
        _ => None,
    }
}

fn statistics_key(shard: u8) -> String {
    format!("/statistics/{shard}")
}

fn rand_shard() -> u8 {
    uuid::Uuid::new_v4().as_bytes()[0] % STATISTICS_SHARDS
}

/// True when DynamoDB cancelled a transaction only because of concurrent transactions (no
/// condition failed): trying again is the documented remedy.
fn conflicted(error: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError>) -> bool {
    match error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => only_conflicts(
            cancelled
                .cancellation_reasons()
                .iter()
                .map(|reason| reason.code()),
        ),
        _ => false,
    }
}

/// Cancellation reason codes, one per item: `None` (or "None") for items that were fine.
fn only_conflicts<'a>(codes: impl Iterator<Item = Option<&'a str>> + Clone) -> bool {
    codes
        .clone()
        .any(|code| code == Some("TransactionConflict"))
        && codes
            .into_iter()
            .all(|code| matches!(code, Some("TransactionConflict" | "None") | None))
}

pub(crate) type TransactWrite =
    aws_sdk_dynamodb::operation::transact_write_items::builders::TransactWriteItemsFluentBuilder;

/// Sends a write transaction, trying again (rebuilt from the same request, so the same
/// conditions) while it only conflicts with others.
pub(crate) async fn send_transaction(
    request: TransactWrite,
) -> Result<
    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput,
    aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError>,
> {
    let mut attempt = 1;
    loop {
        match request.clone().send().await {
            Err(error) if attempt < CONFLICT_RETRY.max_attempts && conflicted(&error) => {
                tokio::time::sleep(CONFLICT_RETRY.delay(attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Which item of a transaction holds the condition that decides it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Guard {
    First,
    Last,
}

/// Sends a transaction (retried while it only conflicts) whose `guard` item's condition is an
/// answer, not a failure: `Ok(true)` written, `Ok(false)` that condition failed and nothing was
/// written, `Err` any other failure.
pub(crate) async fn send_guarded(
    request: TransactWrite,
    guard: Guard,
    operation: &'static str,
) -> Result<bool, StoreError> {
    match send_transaction(request).await {
        Ok(_) => Ok(true),
        Err(error) => {
            let refused = match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                    let reasons = cancelled.cancellation_reasons();
                    let reason = match guard {
                        Guard::First => reasons.first(),
                        Guard::Last => reasons.last(),
                    };
                    reason.and_then(|r| r.code()) == Some("ConditionalCheckFailed")
                }
                _ => false,
            };
            if refused {
                Ok(false)
            } else {
                Err(transaction_error(operation)(error))
            }
        }
    }
}

impl DynamoDbDeviceRegistry {
    fn statistics_update(
        &self,
        total: i64,
        enabled: i64,
        disabled: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("deviceId", s(statistics_key(rand_shard())))
            .update_expression("ADD totalDeviceCount :total, enabledDeviceCount :enabled, disabledDeviceCount :disabled")
            .expression_attribute_values(":total", n(total))
            .expression_attribute_values(":enabled", n(enabled))
            .expression_attribute_values(":disabled", n(disabled))
            .build()
            .map_err(build_error("updating registry statistics"))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn outbox_put(&self, event: &LifecycleEvent) -> Result<TransactWriteItem, StoreError> {
        outbox_item(&self.table, event)
    }
}

/// The outbox item of an event in the registry `table`, for a transaction that writes the change
/// the event describes.
pub(crate) fn outbox_item(
    table: &str,
    event: &LifecycleEvent,
) -> Result<TransactWriteItem, StoreError> {
    const OPERATION: &str = "recording a lifecycle event";
    let body = serde_json::to_string(event).map_err(|e| StoreError::rejected(OPERATION, e))?;
    let put = Put::builder()
        .table_name(table)
        .item("deviceId", s(format!("/outbox/{}", event.event_id)))
        .item("event", s(body))
        .item("outboxShard", s(OUTBOX_SHARD))
        .item("createdAt", n(event.operation_timestamp.unix_millis()))
        .build()
        .map_err(build_error(OPERATION))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

impl DynamoDbDeviceRegistry {
    /// A device's item, read consistently.
    async fn read_item(
        &self,
        id: &DeviceId,
        operation: &'static str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("deviceId", s(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error(operation))?;
        Ok(output.item)
    }
}

impl DeviceRegistry for DynamoDbDeviceRegistry {
    async fn get_device(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        const OPERATION: &str = "reading a device";
        self.read_item(id, OPERATION)
            .await?
            .map(|item| parse_device(item, OPERATION))
            .transpose()
    }

    async fn create_device(
        &self,
        device: &Device,
        event: &LifecycleEvent,
    ) -> Result<CreateOutcome, StoreError> {
        const OPERATION: &str = "creating a device";
        let item = serde_dynamo::to_item(DeviceItem::from(device))
            .map_err(|e| StoreError::rejected(OPERATION, e))?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(deviceId)")
            .build()
            .map_err(build_error(OPERATION))?;
        let (enabled, disabled) = status_counts(device.status, 1);
        let request = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(self.statistics_update(1, enabled, disabled)?)
            .transact_items(self.outbox_put(event)?);
        match send_transaction(request).await {
            Ok(_) => Ok(CreateOutcome::Created),
            Err(e) if first_condition_failure(&e).is_some() => Ok(CreateOutcome::AlreadyExists),
            Err(e) => Err(transaction_error(OPERATION)(e)),
        }
    }

    async fn update_device(
        &self,
        device: &Device,
        expected_etag: &str,
        previous_status: DeviceStatus,
    ) -> Result<UpdateOutcome, StoreError> {
        const OPERATION: &str = "updating a device";
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("deviceId", s(device.device_id.to_string()))
            .update_expression(
                "SET etag = :etag, #status = :status, statusUpdatedTime = :statusTime, primaryKey = :primary, \
                 secondaryKey = :secondary, iotEdge = :edge REMOVE statusReason",
            )
            .condition_expression("attribute_exists(deviceId) AND etag = :expected")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":etag", s(&device.etag))
            .expression_attribute_values(":expected", s(expected_etag))
            .expression_attribute_values(":status", s(if device.is_enabled() { "enabled" } else { "disabled" }))
            .expression_attribute_values(":statusTime", s(device.status_updated_time.to_string()))
            .expression_attribute_values(":primary", s(device.primary_key.to_base64()))
            .expression_attribute_values(":secondary", s(device.secondary_key.to_base64()))
            .expression_attribute_values(":edge", AttributeValue::Bool(device.iot_edge))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(reason) = &device.status_reason {
            update = update
                .update_expression(
                    "SET etag = :etag, #status = :status, statusUpdatedTime = :statusTime, primaryKey = :primary, \
                     secondaryKey = :secondary, iotEdge = :edge, statusReason = :reason",
                )
                .expression_attribute_values(":reason", s(reason));
        }
        let update = update.build().map_err(build_error(OPERATION))?;
        let mut request = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build());
        if previous_status != device.status {
            let (enabled, disabled) = status_counts(device.status, 1);
            let (was_enabled, was_disabled) = status_counts(previous_status, 1);
            request = request.transact_items(self.statistics_update(
                0,
                enabled - was_enabled,
                disabled - was_disabled,
            )?);
        }
        match send_transaction(request).await {
            Ok(_) => Ok(UpdateOutcome::Updated),
            Err(e) => match first_condition_failure(&e) {
                Some(true) => Ok(UpdateOutcome::EtagMismatch),
                Some(false) => Ok(UpdateOutcome::NotFound),
                None => Err(transaction_error(OPERATION)(e)),
            },
        }
    }

    async fn delete_device(
        &self,
        device: &Device,
        expected_etag: &str,
        event: &LifecycleEvent,
    ) -> Result<DeleteOutcome, StoreError> {
        const OPERATION: &str = "deleting a device";
        let delete = Delete::builder()
            .table_name(&self.table)
            .key("deviceId", s(device.device_id.to_string()))
            .condition_expression("attribute_exists(deviceId) AND etag = :expected")
            .expression_attribute_values(":expected", s(expected_etag))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error(OPERATION))?;
        let (enabled, disabled) = status_counts(device.status, -1);
        let mut request = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(self.statistics_update(-1, enabled, disabled)?)
            .transact_items(self.outbox_put(event)?);
        if let Some(twins) = &self.twins_table {
            let twin = Delete::builder()
                .table_name(twins)
                .key("deviceId", s(device.device_id.to_string()))
                .build()
                .map_err(|e| StoreError::rejected(OPERATION, e))?;
            request = request.transact_items(TransactWriteItem::builder().delete(twin).build());
        }
        match send_transaction(request).await {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(e) => match first_condition_failure(&e) {
                Some(true) => Ok(DeleteOutcome::EtagMismatch),
                Some(false) => Ok(DeleteOutcome::NotFound),
                None => Err(transaction_error(OPERATION)(e)),
            },
        }
    }

    async fn list_devices(
        &self,
        limit: usize,
        after: Option<&DeviceId>,
    ) -> Result<DevicePage, StoreError> {
        const OPERATION: &str = "listing devices";
        let mut start = after.map(|id| HashMap::from([("deviceId".to_owned(), s(id.to_string()))]));
        let mut devices = Vec::with_capacity(limit);
        // `Limit` counts the items a scan reads, including the reserved ones the filter drops:
        // scan on until the page is full or the table ends.
        loop {
            let wanted = limit.max(1) - devices.len();
            let output = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("attribute_exists(generationId)")
                .limit(i32::try_from(wanted).unwrap_or(i32::MAX))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error(OPERATION))?;
            for item in output.items.unwrap_or_default() {
                devices.push(parse_device(item, OPERATION)?);
            }
            start = output.last_evaluated_key;
            if start.is_none() || devices.len() >= limit.max(1) {
                break;
            }
        }
        // The scan may stop on a reserved item: its id is as good a place to continue from.
        let more_after = start
            .and_then(|key| key.get("deviceId").and_then(|v| v.as_s().ok()).cloned())
            .map(|id| DeviceId::parse(&id).unwrap_or_else(|_| DeviceId::reserved(&id)));
        Ok(DevicePage {
            devices,
            more_after,
        })
    }

    async fn get_devices(&self, ids: &[DeviceId]) -> Result<Vec<Device>, StoreError> {
        const OPERATION: &str = "reading devices";
        let mut devices = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(100) {
            let keys = chunk
                .iter()
                .map(|id| HashMap::from([("deviceId".to_owned(), s(id.to_string()))]))
                .collect();
            let keys = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(build_error(OPERATION))?;
            let request = HashMap::from([(self.table.clone(), keys)]);
            for (_, item) in
                super::batch_get::batch_get_all(&self.client, request, OPERATION).await?
            {
                // Reserved items (statistics, the outbox) have no generation.
                if item.contains_key("generationId") {
                    devices.push(parse_device(item, OPERATION)?);
                }
            }
        }
        Ok(devices)
    }

    async fn count_active_since(&self, since: Timestamp) -> Result<u64, StoreError> {
        const OPERATION: &str = "counting active devices";
        let mut start = None;
        let mut count = 0u64;
        // A scan that returns counts only: it reads (and is billed for) the whole table, which
        // is why statistics are asked for now and then, not per request of a dashboard.
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("attribute_exists(generationId) AND lastActivityTime >= :since")
                .expression_attribute_values(":since", s(since.to_string()))
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error(OPERATION))?;
            count += u64::try_from(output.count).unwrap_or(0);
            start = output.last_evaluated_key;
            if start.is_none() {
                return Ok(count);
            }
        }
    }

    async fn statistics(&self) -> Result<RegistryStatistics, StoreError> {
        const OPERATION: &str = "reading registry statistics";
        let keys = (0..STATISTICS_SHARDS)
            .map(|shard| HashMap::from([("deviceId".to_owned(), s(statistics_key(shard)))]))
            .collect();
        let keys = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(build_error(OPERATION))?;
        let request = HashMap::from([(self.table.clone(), keys)]);
        // A shard may hold a negative count (a device created on one, deleted on another).
        let mut sums = [0i64; 3];
        for (_, item) in super::batch_get::batch_get_all(&self.client, request, OPERATION).await? {
            let count = |name: &str| {
                item.get(name)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0)
            };
            for (sum, name) in sums.iter_mut().zip([
                "totalDeviceCount",
                "enabledDeviceCount",
                "disabledDeviceCount",
            ]) {
                *sum = sum.saturating_add(count(name));
            }
        }
        let [total, enabled, disabled] = sums.map(|sum| u64::try_from(sum).unwrap_or(0));
        Ok(RegistryStatistics {
            total_device_count: total,
            enabled_device_count: enabled,
            disabled_device_count: disabled,
        })
    }

    async fn pending_events(
        &self,
        older_than: Timestamp,
        limit: usize,
    ) -> Result<Vec<LifecycleEvent>, StoreError> {
        const OPERATION: &str = "reading the lifecycle event outbox";
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("outbox")
            .key_condition_expression("outboxShard = :shard AND createdAt <= :older")
            .expression_attribute_values(":shard", s(OUTBOX_SHARD))
            .expression_attribute_values(":older", n(older_than.unix_millis()))
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(sdk_error(OPERATION))?;
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                let body = item
                    .get("event")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                serde_json::from_str(&body).map_err(corrupt_item(OPERATION))
            })
            .collect()
    }
}

/// Connected devices are spread over this many partitions of the `connected` index, so marking
/// and unmarking them is not one hot key.
const CONNECTION_SHARDS: u8 = 8;
const CONNECTED_INDEX: &str = "connected";

/// The attributes of a device's connection state, as the `connected` index projects them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionItem {
    device_id: String,
    generation_id: String,
    etag: String,
    status: DeviceStatus,
    last_activity_time: Timestamp,
    #[serde(default)]
    conn_shard: Option<u8>,
    #[serde(default)]
    connection_sequence: u64,
}

fn parse_connection(
    item: HashMap<String, AttributeValue>,
    operation: &'static str,
) -> Result<ConnectionState, StoreError> {
    let item: ConnectionItem = serde_dynamo::from_item(item)
        .map_err(|e| StoreError::corrupt(operation, ItemError::from(e)))?;
    Ok(ConnectionState {
        device_id: DeviceId::parse(&item.device_id)
            .map_err(|_| StoreError::corrupt(operation, ItemError::Field("deviceId")))?,
        generation_id: item.generation_id,
        etag: item.etag,
        status: item.status,
        last_activity_time: item.last_activity_time,
        connected: item.conn_shard.is_some(),
        sequence: item.connection_sequence,
    })
}

impl DynamoDbDeviceRegistry {
    /// The update of a device's connection state from `seen`, conditional on it unchanged.
    fn connection_update(
        &self,
        seen: &ConnectionState,
        expression: &str,
        sequence: u64,
    ) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        let marked = if seen.connected {
            "attribute_exists(connShard)"
        } else {
            "attribute_not_exists(connShard)"
        };
        let counted = if seen.sequence == 0 {
            "attribute_not_exists(connectionSequence)"
        } else {
            "connectionSequence = :previous"
        };
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("deviceId", s(seen.device_id.to_string()))
            .update_expression(expression)
            .condition_expression(format!(
                "generationId = :gen AND lastActivityTime = :seenAt AND {marked} AND {counted}"
            ))
            .expression_attribute_values(":gen", s(&seen.generation_id))
            .expression_attribute_values(":seenAt", s(seen.last_activity_time.to_string()))
            .expression_attribute_values(
                ":sequence",
                n(i64::try_from(sequence).unwrap_or(i64::MAX)),
            );
        if seen.sequence != 0 {
            update = update.expression_attribute_values(
                ":previous",
                n(i64::try_from(seen.sequence).unwrap_or(i64::MAX)),
            );
        }
        update
    }

    async fn change_connection(
        &self,
        update: Update,
        events: &[LifecycleEvent],
        operation: &'static str,
    ) -> Result<bool, StoreError> {
        let mut request = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build());
        for event in events {
            request = request.transact_items(self.outbox_put(event)?);
        }
        send_guarded(request, Guard::First, operation).await
    }
}

impl crate::ports::Outbox for DynamoDbDeviceRegistry {
    async fn remove_event(&self, event_id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("deviceId", s(format!("/outbox/{event_id}")))
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error("removing a published lifecycle event"))
    }
}

impl crate::ports::ConnectionStore for DynamoDbDeviceRegistry {
    async fn touch(
        &self,
        id: &DeviceId,
        generation_id: &str,
        at: Timestamp,
        since: Timestamp,
    ) -> Result<Touch, StoreError> {
        const OPERATION: &str = "recording device activity";
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("deviceId", s(id.to_string()))
            .update_expression("SET lastActivityTime = :at")
            .condition_expression(
                "generationId = :gen AND attribute_exists(connShard) AND lastActivityTime >= :since",
            )
            .expression_attribute_values(":at", s(at.to_string()))
            .expression_attribute_values(":gen", s(generation_id))
            .expression_attribute_values(":since", s(since.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => return Ok(Touch::Recorded),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(sdk_error(OPERATION)(e)),
        }
        // Not connected, silent too long, or another generation: only a read tells which. This
        // happens when a device connects, not on its every request.
        let Some(item) = self.read_item(id, OPERATION).await? else {
            return Ok(Touch::Gone);
        };
        let state = parse_connection(item, OPERATION)?;
        if state.generation_id != generation_id {
            return Ok(Touch::Gone);
        }
        Ok(Touch::NotConnected(state))
    }

    async fn connect(
        &self,
        seen: &ConnectionState,
        at: Timestamp,
        events: &[LifecycleEvent],
    ) -> Result<bool, StoreError> {
        const OPERATION: &str = "marking a device connected";
        let sequence = seen.sequence + events.len() as u64;
        let update = self
            .connection_update(
                seen,
                "SET lastActivityTime = :at, connShard = :shard, connectionSequence = :sequence",
                sequence,
            )
            .expression_attribute_values(":at", s(at.to_string()))
            .expression_attribute_values(
                ":shard",
                n(i64::from(
                    uuid::Uuid::new_v4().as_bytes()[0] % CONNECTION_SHARDS,
                )),
            )
            .build()
            .map_err(build_error(OPERATION))?;
        self.change_connection(update, events, OPERATION).await
    }

    async fn silent(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<ConnectionState>, StoreError> {
        const OPERATION: &str = "finding silent connected devices";
        let mut silent = Vec::new();
        for shard in 0..CONNECTION_SHARDS {
            let mut start = None;
            while silent.len() < limit {
                let output = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(CONNECTED_INDEX)
                    .key_condition_expression("connShard = :shard AND lastActivityTime < :before")
                    .expression_attribute_values(":shard", n(i64::from(shard)))
                    .expression_attribute_values(":before", s(before.to_string()))
                    .limit(i32::try_from(limit - silent.len()).unwrap_or(i32::MAX))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(sdk_error(OPERATION))?;
                for item in output.items.unwrap_or_default() {
                    silent.push(parse_connection(item, OPERATION)?);
                }
                start = output.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
        }
        Ok(silent)
    }

    async fn disconnect(
        &self,
        seen: &ConnectionState,
        event: &LifecycleEvent,
    ) -> Result<bool, StoreError> {
        const OPERATION: &str = "marking a device disconnected";
        let update = self
            .connection_update(
                seen,
                "SET connectionSequence = :sequence REMOVE connShard",
                seen.sequence + 1,
            )
            .build()
            .map_err(build_error(OPERATION))?;
        self.change_connection(update, std::slice::from_ref(event), OPERATION)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pure_conflicts_are_tried_again() {
        let retry = |codes: &[Option<&str>]| only_conflicts(codes.iter().copied());
        assert!(retry(&[Some("None"), Some("TransactionConflict"), None]));
        assert!(retry(&[Some("TransactionConflict")]));
        // A failed condition is an answer (412, 404, 409), not bad luck.
        assert!(!retry(&[
            Some("ConditionalCheckFailed"),
            Some("TransactionConflict")
        ]));
        assert!(!retry(&[Some("None"), Some("ThrottlingError")]));
        assert!(!retry(&[]));
    }

    #[test]
    fn statistics_shards_are_reserved_keys_and_all_used() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            seen.insert(rand_shard());
        }
        assert_eq!(seen.len(), usize::from(STATISTICS_SHARDS));
        assert!(DeviceId::parse(&statistics_key(3)).is_err());
    }
}
