//! The telemetry envelope: what the hub writes to the telemetry stream for every device message.
//!
//! Versioned JSON (`"v": 1`), one Kinesis record per device message, partition key = device id.
//! Consumers must ignore fields they do not know; a breaking change bumps `v`. See
//! `docs/telemetry-envelope.md` for the schema.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::device_id::DeviceId;
use crate::domain::timestamp::Timestamp;

pub const ENVELOPE_VERSION: u32 = 1;

/// Azure's limit for one device-to-cloud message and for one batch: 256 KiB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Application properties (`iothub-app-*`), ordered for stable output.
pub type Properties = BTreeMap<String, String>;

/// Properties a device may set on a message (Azure's system properties).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemProperties {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
}

/// A message as the device sent it, before the hub stamps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceMessage {
    pub body: Vec<u8>,
    pub properties: Properties,
    pub system: SystemProperties,
}

impl DeviceMessage {
    /// Size counted against the 256 KiB limit: body plus property names and values, as Azure does.
    pub fn size(&self) -> usize {
        let properties: usize = self.properties.iter().map(|(k, v)| k.len() + v.len()).sum();
        let system = [
            &self.system.message_id,
            &self.system.correlation_id,
            &self.system.content_type,
            &self.system.content_encoding,
        ]
        .iter()
        .filter_map(|v| v.as_ref().map(String::len))
        .sum::<usize>();
        self.body.len() + properties + system
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScope {
    /// Signed with the device's own key.
    Device,
    /// Signed with a shared access policy key that has DeviceConnect.
    Hub,
}

/// How the sender authenticated, like Azure's `iothub-connection-auth-method`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthMethod {
    pub scope: AuthScope,
    #[serde(rename = "type")]
    pub kind: String,
    pub issuer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

impl AuthMethod {
    pub fn device_key() -> Self {
        Self {
            scope: AuthScope::Device,
            kind: "sas".into(),
            issuer: "iothub".into(),
            policy: None,
        }
    }

    pub fn policy(name: &str) -> Self {
        Self {
            scope: AuthScope::Hub,
            kind: "sas".into(),
            issuer: "iothub".into(),
            policy: Some(name.to_owned()),
        }
    }
}

/// Version 1 of the telemetry envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryEnvelope {
    pub v: u32,
    /// Assigned by the hub, unique per accepted message; time-ordered (UUID v7).
    pub hub_message_id: String,
    pub device_id: DeviceId,
    pub device_generation_id: String,
    pub enqueued_time: Timestamp,
    pub auth_method: AuthMethod,
    pub system_properties: SystemProperties,
    pub properties: Properties,
    #[serde(
        serialize_with = "base64_bytes",
        deserialize_with = "from_base64_bytes"
    )]
    pub body: Vec<u8>,
}

/// Who sent a message, stamped by the hub from the authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub device_id: DeviceId,
    pub generation_id: String,
    pub auth_method: AuthMethod,
}

impl TelemetryEnvelope {
    pub fn stamp(message: DeviceMessage, sender: &Sender, enqueued_time: Timestamp) -> Self {
        Self {
            v: ENVELOPE_VERSION,
            hub_message_id: uuid::Uuid::now_v7().to_string(),
            device_id: sender.device_id.clone(),
            device_generation_id: sender.generation_id.clone(),
            enqueued_time,
            auth_method: sender.auth_method.clone(),
            system_properties: message.system,
            properties: message.properties,
            body: message.body,
        }
    }

    pub fn partition_key(&self) -> &str {
        self.device_id.as_str()
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings, maps and numbers into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// A stream record's data as an envelope of the version this build reads, or why not.
    pub fn from_record(bytes: &[u8]) -> Result<Self, String> {
        let envelope =
            Self::from_json(bytes).map_err(|e| format!("not a telemetry envelope: {e}"))?;
        if envelope.v != ENVELOPE_VERSION {
            return Err(format!(
                "envelope version {} is not supported (expected {ENVELOPE_VERSION})",
                envelope.v
            ));
        }
        Ok(envelope)
    }
}

fn base64_bytes<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&BASE64.encode(bytes))
}

fn from_base64_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let encoded = String::deserialize(deserializer)?;
    BASE64.decode(encoded).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender() -> Sender {
        Sender {
            device_id: DeviceId::parse("dev-1").unwrap(),
            generation_id: "638000000000000000".into(),
            auth_method: AuthMethod::device_key(),
        }
    }

    #[test]
    fn envelope_round_trips_and_has_the_documented_shape() {
        let message = DeviceMessage {
            body: b"{\"temperature\":21.5}".to_vec(),
            properties: Properties::from([("alert".into(), "false".into())]),
            system: SystemProperties {
                message_id: Some("m-1".into()),
                ..Default::default()
            },
        };
        let envelope =
            TelemetryEnvelope::stamp(message, &sender(), Timestamp::from_unix_millis(0).unwrap());
        let json: serde_json::Value = serde_json::from_slice(&envelope.to_json()).unwrap();
        assert_eq!(json["v"], 1);
        assert_eq!(json["deviceId"], "dev-1");
        assert_eq!(json["deviceGenerationId"], "638000000000000000");
        assert_eq!(json["enqueuedTime"], "1970-01-01T00:00:00Z");
        assert_eq!(
            json["authMethod"],
            serde_json::json!({"scope": "device", "type": "sas", "issuer": "iothub"})
        );
        assert_eq!(
            json["systemProperties"],
            serde_json::json!({"messageId": "m-1"})
        );
        assert_eq!(json["properties"]["alert"], "false");
        assert_eq!(json["body"], "eyJ0ZW1wZXJhdHVyZSI6MjEuNX0=");
        assert_eq!(
            TelemetryEnvelope::from_json(&envelope.to_json()).unwrap(),
            envelope
        );
        assert_eq!(envelope.partition_key(), "dev-1");
    }

    #[test]
    fn hub_message_ids_are_unique() {
        let a = TelemetryEnvelope::stamp(DeviceMessage::default(), &sender(), Timestamp::now());
        let b = TelemetryEnvelope::stamp(DeviceMessage::default(), &sender(), Timestamp::now());
        assert_ne!(a.hub_message_id, b.hub_message_id);
    }

    #[test]
    fn size_counts_body_and_properties() {
        let message = DeviceMessage {
            body: vec![0; 10],
            properties: Properties::from([("ab".into(), "cde".into())]),
            system: SystemProperties {
                correlation_id: Some("xyz".into()),
                ..Default::default()
            },
        };
        assert_eq!(message.size(), 10 + 5 + 3);
    }
}
