//! Device twins in DynamoDB: one item per device id (`deviceId`), holding the device generation,
//! the twin version (for conditional writes) and the twin document.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::device_id::DeviceId;
use crate::domain::twin::Twin;
use crate::ports::{StoreError, TwinStore, TwinWrite};

#[derive(Clone)]
pub struct DynamoDbTwinStore {
    client: Client,
    table: String,
}

impl DynamoDbTwinStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

impl TwinStore for DynamoDbTwinStore {
    async fn get_twin(&self, id: &DeviceId) -> Result<Option<Twin>, StoreError> {
        const OPERATION: &str = "reading a twin";
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("deviceId", s(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::new(OPERATION, e))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let document = item
            .get("document")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        serde_json::from_str(&document)
            .map(Some)
            .map_err(|e| StoreError::new(OPERATION, e))
    }

    async fn put_twin(
        &self,
        id: &DeviceId,
        twin: &Twin,
        expected: Option<(u64, &str)>,
    ) -> Result<TwinWrite, StoreError> {
        const OPERATION: &str = "writing a twin";
        let document = serde_json::to_string(twin).map_err(|e| StoreError::new(OPERATION, e))?;
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("deviceId", s(id.to_string()))
            .item("generationId", s(&twin.generation_id))
            .item("version", AttributeValue::N(twin.version.to_string()))
            .item("document", s(document));
        request = match expected {
            Some((version, generation)) => request
                .condition_expression("version = :version AND generationId = :gen")
                .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
                .expression_attribute_values(":gen", s(generation)),
            // No twin yet, or one left by an earlier generation of the id.
            None => request
                .condition_expression("attribute_not_exists(deviceId) OR generationId <> :gen")
                .expression_attribute_values(":gen", s(&twin.generation_id)),
        };
        match request.send().await {
            Ok(_) => Ok(TwinWrite::Written),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(TwinWrite::Conflict)
            }
            Err(e) => Err(StoreError::new(OPERATION, e)),
        }
    }
}
