//! Direct methods (Azure's `POST /twins/{id}/methods`) for devices on HTTPS: a service invokes a
//! method by name and waits for the device's answer; the device long-polls for calls and posts
//! its answer. A call is kept only while someone waits for it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::timestamp::Timestamp;

/// Azure's bounds: a response timeout of 5 to 300 s (30 by default), a connect timeout of 0 to
/// 300 s (0 by default), a method name of up to 100 characters, a payload of up to 128 KB.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
pub const MIN_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MethodError {
    #[error("the method invocation is not valid JSON: {0}")]
    Json(String),
    #[error("methodName must be 1 to {MAX_NAME_CHARS} characters")]
    Name,
    #[error("responseTimeoutInSeconds must be a whole number from 5 to 300")]
    ResponseTimeout,
    #[error("connectTimeoutInSeconds must be a whole number from 0 to 300")]
    ConnectTimeout,
    #[error("the payload is {0} bytes; the limit is {MAX_PAYLOAD_BYTES}")]
    PayloadTooLarge(usize),
    #[error("status must be a whole number")]
    Status,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Invocation {
    method_name: Option<String>,
    #[serde(default)]
    payload: Value,
    response_timeout_in_seconds: Option<Value>,
    connect_timeout_in_seconds: Option<Value>,
}

/// What a service asks of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodRequest {
    pub method_name: String,
    pub payload: Value,
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
}

fn seconds(value: Option<&Value>, default: Duration) -> Option<Duration> {
    match value {
        None | Some(Value::Null) => Some(default),
        Some(v) => v.as_u64().map(Duration::from_secs),
    }
}

impl MethodRequest {
    /// Azure's `CloudToDeviceMethod` body.
    pub fn parse(body: &[u8]) -> Result<Self, MethodError> {
        let invocation: Invocation =
            serde_json::from_slice(body).map_err(|e| MethodError::Json(e.to_string()))?;
        let method_name = invocation
            .method_name
            .filter(|n| !n.is_empty() && n.chars().count() <= MAX_NAME_CHARS)
            .ok_or(MethodError::Name)?;
        let response_timeout = seconds(
            invocation.response_timeout_in_seconds.as_ref(),
            DEFAULT_RESPONSE_TIMEOUT,
        )
        .filter(|t| (MIN_RESPONSE_TIMEOUT..=MAX_TIMEOUT).contains(t))
        .ok_or(MethodError::ResponseTimeout)?;
        let connect_timeout = seconds(
            invocation.connect_timeout_in_seconds.as_ref(),
            Duration::ZERO,
        )
        .filter(|t| *t <= MAX_TIMEOUT)
        .ok_or(MethodError::ConnectTimeout)?;
        let size = serde_json::to_vec(&invocation.payload)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_PAYLOAD_BYTES {
            return Err(MethodError::PayloadTooLarge(size));
        }
        Ok(Self {
            method_name,
            payload: invocation.payload,
            response_timeout,
            connect_timeout,
        })
    }
}

/// A device's answer: a status of its choosing (Azure passes it through) and a JSON payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResponse {
    pub status: i64,
    #[serde(default)]
    pub payload: Value,
}

impl MethodResponse {
    pub fn parse(body: &[u8]) -> Result<Self, MethodError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| MethodError::Json(e.to_string()))?;
        let status = value
            .get("status")
            .and_then(Value::as_i64)
            .ok_or(MethodError::Status)?;
        let payload = value.get("payload").cloned().unwrap_or(Value::Null);
        let size = serde_json::to_vec(&payload)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_PAYLOAD_BYTES {
            return Err(MethodError::PayloadTooLarge(size));
        }
        Ok(Self { status, payload })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum MethodState {
    /// Waiting for the device to take it.
    Pending,
    /// Taken by the device at this time; its answer is awaited.
    Taken {
        at: Timestamp,
    },
    Answered {
        response: MethodResponse,
    },
}

/// One invocation while it is waited for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MethodCall {
    /// Time-ordered (UUID v7), so a device takes its calls oldest first.
    pub request_id: String,
    pub generation_id: String,
    pub method_name: String,
    pub payload: Value,
    pub created_at: Timestamp,
    pub state: MethodState,
}

/// What a device receives when it takes a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MethodDelivery {
    pub request_id: String,
    pub method_name: String,
    pub payload: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocations_are_checked_as_azure_does() {
        let request = MethodRequest::parse(br#"{"methodName":"reboot","payload":{"delay":5}}"#)
            .expect("valid");
        assert_eq!(request.response_timeout, DEFAULT_RESPONSE_TIMEOUT);
        assert_eq!(request.connect_timeout, Duration::ZERO);
        let request = MethodRequest::parse(
            br#"{"methodName":"m","responseTimeoutInSeconds":5,"connectTimeoutInSeconds":300}"#,
        )
        .expect("valid");
        assert_eq!(request.payload, Value::Null);
        assert_eq!(request.connect_timeout, MAX_TIMEOUT);
        for (body, error) in [
            (&br#"{"payload":1}"#[..], MethodError::Name),
            (br#"{"methodName":""}"#, MethodError::Name),
            (
                br#"{"methodName":"m","responseTimeoutInSeconds":4}"#,
                MethodError::ResponseTimeout,
            ),
            (
                br#"{"methodName":"m","responseTimeoutInSeconds":"9"}"#,
                MethodError::ResponseTimeout,
            ),
            (
                br#"{"methodName":"m","connectTimeoutInSeconds":301}"#,
                MethodError::ConnectTimeout,
            ),
        ] {
            assert_eq!(MethodRequest::parse(body), Err(error));
        }
        assert!(matches!(
            MethodRequest::parse(b"nope"),
            Err(MethodError::Json(_))
        ));
        let big = format!(
            r#"{{"methodName":"m","payload":"{}"}}"#,
            "x".repeat(MAX_PAYLOAD_BYTES)
        );
        assert!(matches!(
            MethodRequest::parse(big.as_bytes()),
            Err(MethodError::PayloadTooLarge(_))
        ));
        assert_eq!(
            MethodResponse::parse(br#"{"status":201,"payload":{"ok":true}}"#),
            Ok(MethodResponse {
                status: 201,
                payload: serde_json::json!({"ok": true})
            })
        );
        assert_eq!(
            MethodResponse::parse(br#"{"payload":1}"#),
            Err(MethodError::Status)
        );
    }
}
