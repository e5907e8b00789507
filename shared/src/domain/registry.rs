//! Registry-wide types: statistics, device lifecycle events, and Azure's bulk operation shapes.

use serde::{Deserialize, Serialize};

use crate::domain::device::{Authentication, Capabilities, DeviceStatus};
use crate::domain::device_id::DeviceId;
use crate::domain::timestamp::Timestamp;

/// Azure's `RegistryStatistics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryStatistics {
    pub total_device_count: u64,
    pub enabled_device_count: u64,
    pub disabled_device_count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LifecycleOperation {
    CreateDeviceIdentity,
    DeleteDeviceIdentity,
    /// A twin patch (service tags and desired properties, the device's reported properties, a
    /// job's update): Azure's `twinChangeNotification`.
    UpdateTwin,
    /// A service replaced tags and desired properties (`PUT /twins/{id}`).
    ReplaceTwin,
    /// A device became active after being silent for the connected window (HTTP devices hold
    /// no connection): Azure's `deviceConnectionStateNotification`.
    DeviceConnected,
    /// A connected device has been silent for the connected window.
    DeviceDisconnected,
}

impl LifecycleOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleOperation::CreateDeviceIdentity => "createDeviceIdentity",
            LifecycleOperation::DeleteDeviceIdentity => "deleteDeviceIdentity",
            LifecycleOperation::UpdateTwin => "updateTwin",
            LifecycleOperation::ReplaceTwin => "replaceTwin",
            LifecycleOperation::DeviceConnected => "deviceConnected",
            LifecycleOperation::DeviceDisconnected => "deviceDisconnected",
        }
    }
}

/// A device lifecycle notification, as Azure's `deviceLifecycleNotification` carries it; the
/// `eventId` lets consumers drop the duplicates at-least-once delivery can bring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleEvent {
    pub event_id: String,
    pub op_type: LifecycleOperation,
    pub hub_name: String,
    pub device_id: DeviceId,
    pub generation_id: String,
    pub etag: String,
    pub status: DeviceStatus,
    pub operation_timestamp: Timestamp,
    /// Twin changes: what changed, as Azure's notification body (`version`, and the `tags` and
    /// `properties.desired` / `properties.reported` the change wrote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

/// What a bulk request asks for each device (Azure's `importMode`). Azure reads it without
/// regard to case, and its SDKs differ (`create` from one, `UpdateIfMatchETag` from another).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ImportMode {
    Create,
    Update,
    #[serde(rename = "updateIfMatchETag")]
    UpdateIfMatchEtag,
    Delete,
    #[serde(rename = "deleteIfMatchETag")]
    DeleteIfMatchEtag,
}

impl ImportMode {
    const NAMES: [&'static str; 5] = [
        "create",
        "update",
        "updateIfMatchETag",
        "delete",
        "deleteIfMatchETag",
    ];
    const ALL: [ImportMode; 5] = [
        ImportMode::Create,
        ImportMode::Update,
        ImportMode::UpdateIfMatchEtag,
        ImportMode::Delete,
        ImportMode::DeleteIfMatchEtag,
    ];
}

impl<'de> Deserialize<'de> for ImportMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::NAMES
            .iter()
            .position(|known| known.eq_ignore_ascii_case(&name))
            .map(|i| Self::ALL[i])
            .ok_or_else(|| serde::de::Error::unknown_variant(&name, &Self::NAMES))
    }
}

/// One entry of a bulk request (Azure's `ExportImportDevice`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportImportDevice {
    pub id: DeviceId,
    pub import_mode: ImportMode,
    #[serde(rename = "eTag", alias = "etag", default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub status: Option<DeviceStatus>,
    #[serde(default)]
    pub status_reason: Option<String>,
    #[serde(default)]
    pub authentication: Option<Authentication>,
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
}

/// Azure's `DeviceRegistryOperationError`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistryOperationError {
    pub device_id: String,
    pub error_code: String,
    pub error_status: String,
}

/// Azure's `BulkRegistryOperationResult`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkRegistryOperationResult {
    pub is_successful: bool,
    pub errors: Vec<DeviceRegistryOperationError>,
    pub warnings: Vec<DeviceRegistryOperationError>,
}

/// Most operations one bulk request may carry.
pub const MAX_BULK_OPERATIONS: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_entries_use_azure_names() {
        let entry: ExportImportDevice = serde_json::from_str(
            r#"{"id":"d1","importMode":"updateIfMatchETag","eTag":"abc","status":"disabled"}"#,
        )
        .unwrap();
        assert_eq!(
            (entry.import_mode, entry.etag.as_deref()),
            (ImportMode::UpdateIfMatchEtag, Some("abc"))
        );
        assert!(
            serde_json::from_str::<ExportImportDevice>(r#"{"id":"d1","importMode":"upsert"}"#)
                .is_err()
        );
        for (given, mode) in [
            ("UpdateIfMatchETag", ImportMode::UpdateIfMatchEtag),
            ("Delete", ImportMode::Delete),
            ("CREATE", ImportMode::Create),
        ] {
            let parsed: ImportMode = serde_json::from_value(serde_json::json!(given)).unwrap();
            assert_eq!(parsed, mode);
        }
        let result = BulkRegistryOperationResult {
            is_successful: false,
            ..Default::default()
        };
        assert_eq!(serde_json::to_value(result).unwrap()["isSuccessful"], false);
    }
}
