//! The identity registry in DynamoDB: one item per device, keyed by `deviceId`.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use serde::{Deserialize, Serialize};

use crate::domain::device::{Device, DeviceStatus};
use crate::domain::device_id::DeviceId;
use crate::domain::sas::SymmetricKey;
use crate::domain::timestamp::Timestamp;
use crate::ports::{CreateOutcome, DeleteOutcome, DeviceRegistry, IfMatch, StoreError};

#[derive(Clone)]
pub struct DynamoDbDeviceRegistry {
    client: Client,
    table: String,
}

impl DynamoDbDeviceRegistry {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
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

fn key(id: &DeviceId) -> (String, AttributeValue) {
    ("deviceId".to_owned(), AttributeValue::S(id.to_string()))
}

impl DeviceRegistry for DynamoDbDeviceRegistry {
    async fn get_device(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        let (name, value) = key(id);
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(name, value)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::new("reading a device", e))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let item: DeviceItem = serde_dynamo::from_item(item)
            .map_err(|e| StoreError::new("reading a device", ItemError::from(e)))?;
        Device::try_from(item)
            .map(Some)
            .map_err(|e| StoreError::new("reading a device", e))
    }

    async fn create_device(&self, device: &Device) -> Result<CreateOutcome, StoreError> {
        let item = serde_dynamo::to_item(DeviceItem::from(device))
            .map_err(|e| StoreError::new("creating a device", e))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(deviceId)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(CreateOutcome::Created),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(CreateOutcome::AlreadyExists)
            }
            Err(e) => Err(StoreError::new("creating a device", e)),
        }
    }

    async fn delete_device(
        &self,
        id: &DeviceId,
        condition: &IfMatch,
    ) -> Result<DeleteOutcome, StoreError> {
        let (name, value) = key(id);
        let mut request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(name, value)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        request = match condition {
            IfMatch::Any => request.condition_expression("attribute_exists(deviceId)"),
            IfMatch::Etag(etag) => request
                .condition_expression("attribute_exists(deviceId) AND etag = :etag")
                .expression_attribute_values(":etag", AttributeValue::S(etag.clone())),
        };
        match request.send().await {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException(
                    failed,
                )) => Ok(if failed.item().is_some() { DeleteOutcome::EtagMismatch } else { DeleteOutcome::NotFound }),
                _ => Err(StoreError::new("deleting a device", e)),
            },
        }
    }
}
