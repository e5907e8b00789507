//! Direct method calls in DynamoDB: one item per call (`deviceId`, `requestId`), its state a
//! top-level attribute so that taking and answering are conditional writes. A TTL removes calls
//! nobody waits for any more (a service that died mid-wait).

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::aws::{corrupt_item, sdk_error};
use crate::domain::device_id::DeviceId;
use crate::domain::method::{MethodCall, MethodResponse, MethodState};
use crate::domain::timestamp::Timestamp;
use crate::ports::{CallChange, MethodCalls, StoreError};

/// How long a call item outlives its creation at most (the longest wait is 600 s).
const TTL_SECONDS: i64 = 3600;

#[derive(Clone)]
pub struct DynamoDbMethodCalls {
    client: Client,
    table: String,
}

impl DynamoDbMethodCalls {
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

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, thiserror::Error)]
#[error("method call item lacks or garbles {0}")]
struct BadItem(&'static str);

fn parse(item: &Item, operation: &'static str) -> Result<MethodCall, StoreError> {
    let text = |name: &'static str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| corrupt_item(operation)(BadItem(name)))
    };
    let json = |name: &'static str| -> Result<serde_json::Value, StoreError> {
        serde_json::from_str(text(name)?).map_err(corrupt_item(operation))
    };
    let time = |name: &'static str| -> Result<Timestamp, StoreError> {
        Timestamp::parse(text(name)?).map_err(corrupt_item(operation))
    };
    let state = match text("state")?.as_str() {
        "pending" => MethodState::Pending,
        "taken" => MethodState::Taken {
            at: time("takenAt")?,
        },
        "answered" => MethodState::Answered {
            response: MethodResponse {
                status: item
                    .get("responseStatus")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| corrupt_item(operation)(BadItem("responseStatus")))?,
                payload: json("responsePayload")?,
            },
        },
        _ => return Err(corrupt_item(operation)(BadItem("state"))),
    };
    Ok(MethodCall {
        request_id: text("requestId")?.clone(),
        generation_id: text("generationId")?.clone(),
        method_name: text("methodName")?.clone(),
        payload: json("payload")?,
        created_at: time("createdAt")?,
        state,
    })
}

fn change(written: bool) -> CallChange {
    if written {
        CallChange::Changed
    } else {
        CallChange::NotApplicable
    }
}

impl MethodCalls for DynamoDbMethodCalls {
    async fn put_call(&self, device: &DeviceId, call: &MethodCall) -> Result<(), StoreError> {
        const OPERATION: &str = "recording a method call";
        let payload =
            serde_json::to_string(&call.payload).map_err(|e| StoreError::rejected(OPERATION, e))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("deviceId", s(device.to_string()))
            .item("requestId", s(&call.request_id))
            .item("generationId", s(&call.generation_id))
            .item("methodName", s(&call.method_name))
            .item("payload", s(payload))
            .item("createdAt", s(call.created_at.to_string()))
            .item("state", s("pending"))
            .item(
                "ttl",
                AttributeValue::N((call.created_at.unix_seconds() + TTL_SECONDS).to_string()),
            )
            .condition_expression("attribute_not_exists(requestId)")
            .send()
            .await
            .map_err(sdk_error(OPERATION))?;
        Ok(())
    }

    async fn get_call(
        &self,
        device: &DeviceId,
        request_id: &str,
    ) -> Result<Option<MethodCall>, StoreError> {
        const OPERATION: &str = "reading a method call";
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("deviceId", s(device.to_string()))
            .key("requestId", s(request_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error(OPERATION))?;
        output.item.map(|item| parse(&item, OPERATION)).transpose()
    }

    async fn pending_calls(
        &self,
        device: &DeviceId,
        generation_id: &str,
    ) -> Result<Vec<MethodCall>, StoreError> {
        const OPERATION: &str = "reading pending method calls";
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("deviceId = :device")
            .filter_expression("#state = :pending AND generationId = :gen")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":device", s(device.to_string()))
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":gen", s(generation_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error(OPERATION))?;
        output
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| parse(item, OPERATION))
            .collect()
    }

    async fn take_call(
        &self,
        device: &DeviceId,
        request_id: &str,
        at: Timestamp,
    ) -> Result<CallChange, StoreError> {
        const OPERATION: &str = "taking a method call";
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("deviceId", s(device.to_string()))
            .key("requestId", s(request_id))
            .update_expression("SET #state = :taken, takenAt = :at")
            .condition_expression("#state = :pending")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":taken", s("taken"))
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":at", s(at.to_string()));
        conditional_write!(request, OPERATION).map(change)
    }

    async fn answer_call(
        &self,
        device: &DeviceId,
        generation_id: &str,
        request_id: &str,
        response: &MethodResponse,
    ) -> Result<CallChange, StoreError> {
        const OPERATION: &str = "answering a method call";
        let payload = serde_json::to_string(&response.payload)
            .map_err(|e| StoreError::rejected(OPERATION, e))?;
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("deviceId", s(device.to_string()))
            .key("requestId", s(request_id))
            .update_expression(
                "SET #state = :answered, responseStatus = :status, responsePayload = :payload",
            )
            .condition_expression("#state = :taken AND generationId = :gen")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":answered", s("answered"))
            .expression_attribute_values(":taken", s("taken"))
            .expression_attribute_values(":gen", s(generation_id))
            .expression_attribute_values(":status", AttributeValue::N(response.status.to_string()))
            .expression_attribute_values(":payload", s(payload));
        conditional_write!(request, OPERATION).map(change)
    }

    async fn remove_call(
        &self,
        device: &DeviceId,
        request_id: &str,
        only_pending: bool,
    ) -> Result<CallChange, StoreError> {
        const OPERATION: &str = "removing a method call";
        let mut request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("deviceId", s(device.to_string()))
            .key("requestId", s(request_id));
        if only_pending {
            request = request
                .condition_expression("#state = :pending")
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":pending", s("pending"));
        }
        conditional_write!(request, OPERATION).map(change)
    }
}
