//! The start-up demo: registers a device through the HTTP API, sends it a telemetry message over
//! HTTPS the way a device SDK would, and reads the record back from Kinesis. Proves the whole
//! local pipeline works and shows a newcomer what went where.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hub_shared::domain::connection_string::ConnectionString;
use hub_shared::domain::device::DeviceDescription;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::envelope::TelemetryEnvelope;
use hub_shared::domain::sas::{SasToken, SymmetricKey};
use hub_shared::ports::{DeviceRegistry, PolicyStore};

use crate::hub::Hub;
use crate::stream::{TailError, TelemetryTail};

pub const API_VERSION: &str = "2021-04-12";

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    Message(String),
    #[error(transparent)]
    Store(#[from] hub_shared::ports::StoreError),
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Tail(#[from] TailError),
}

fn expiry_in(ttl: Duration) -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        + ttl.as_secs()
}

/// A service token for a shared access policy, read from the policies table.
pub async fn policy_token(hub: &Hub, policy: &str, ttl: Duration) -> Result<String, ToolError> {
    let policy = hub
        .policies
        .get_policy(policy)
        .await?
        .ok_or_else(|| ToolError::Message(format!("no shared access policy named {policy}")))?;
    Ok(SasToken::generate(
        &hub.host_name,
        &policy.primary_key,
        expiry_in(ttl),
        Some(&policy.name),
    ))
}

/// A device's primary key, read from the registry.
pub async fn device_key(hub: &Hub, device: &DeviceId) -> Result<SymmetricKey, ToolError> {
    let record = hub
        .devices
        .get_device(device)
        .await?
        .ok_or_else(|| ToolError::Message(format!("device {device} is not registered")))?;
    Ok(record.primary_key)
}

pub fn device_token(
    host_name: &str,
    device: &DeviceId,
    key: &SymmetricKey,
    ttl: Duration,
) -> String {
    SasToken::generate(
        &format!("{host_name}/devices/{device}"),
        key,
        expiry_in(ttl),
        None,
    )
}

pub struct DemoReport {
    pub connection_string: ConnectionString,
    pub shard_id: String,
    pub sequence_number: String,
    pub envelope: TelemetryEnvelope,
}

/// Registers `device` (if new) and sends it one message through `base_url`.
pub async fn run(
    hub: &Hub,
    base_url: &str,
    ca_cert: Option<&Path>,
    device: &DeviceId,
) -> Result<DemoReport, ToolError> {
    let mut client = reqwest::Client::builder().timeout(Duration::from_secs(15));
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .map_err(|e| ToolError::Message(format!("cannot read {}: {e}", path.display())))?;
        client = client.tls_certs_merge([reqwest::Certificate::from_pem(&pem)?]);
    }
    let client = client.build()?;
    let owner = policy_token(hub, "iothubowner", Duration::from_secs(600)).await?;
    let device_url = format!("{base_url}/devices/{device}?api-version={API_VERSION}");

    let created = client
        .put(&device_url)
        .header("authorization", &owner)
        .json(&serde_json::json!({ "deviceId": device.as_str() }))
        .send()
        .await?;
    let response = match created.status().as_u16() {
        200 => created,
        409 => {
            client
                .get(&device_url)
                .header("authorization", &owner)
                .send()
                .await?
        }
        status => {
            return Err(ToolError::Message(format!(
                "registering {device} answered {status}: {}",
                created.text().await?
            )));
        }
    };
    let description: DeviceDescription = response.json().await?;
    let key = description
        .authentication
        .and_then(|a| a.symmetric_key)
        .and_then(|k| k.primary_key)
        .ok_or_else(|| ToolError::Message("the registry answered no primary key".into()))?;
    let key = SymmetricKey::from_base64(&key).map_err(|e| ToolError::Message(e.to_string()))?;

    let mut tail =
        TelemetryTail::from_now(hub.clients.kinesis.clone(), &hub.telemetry_stream).await?;
    let message_id = format!("demo-{}", uuid::Uuid::new_v4());
    let sent = client
        .post(format!(
            "{base_url}/devices/{device}/messages/events?api-version={API_VERSION}"
        ))
        .header(
            "authorization",
            device_token(&hub.host_name, device, &key, Duration::from_secs(600)),
        )
        .header("content-type", "application/json")
        .header("iothub-messageid", &message_id)
        .header("iothub-app-source", "hub-local-demo")
        .body(r#"{"temperature":21.5,"humidity":40.2}"#)
        .send()
        .await?;
    if sent.status().as_u16() != 204 {
        let status = sent.status();
        return Err(ToolError::Message(format!(
            "sending telemetry answered {status}: {}",
            sent.text().await?
        )));
    }

    let is_ours = |data: &[u8]| {
        TelemetryEnvelope::from_json(data)
            .is_ok_and(|e| e.system_properties.message_id.as_deref() == Some(message_id.as_str()))
    };
    let records = tail
        .read_until(Duration::from_secs(20), |records| {
            records.iter().any(|r| is_ours(&r.data))
        })
        .await?;
    let record = records
        .iter()
        .find(|r| is_ours(&r.data))
        .ok_or_else(|| ToolError::Message("the demo message was not found on the stream".into()))?;
    let envelope = TelemetryEnvelope::from_json(&record.data)
        .map_err(|e| ToolError::Message(e.to_string()))?;
    Ok(DemoReport {
        connection_string: ConnectionString::Device {
            host_name: hub.host_name.clone(),
            device_id: device.clone(),
            key,
        },
        shard_id: record.shard_id.clone(),
        sequence_number: record.sequence_number.clone(),
        envelope,
    })
}
