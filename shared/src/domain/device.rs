//! Device identities: the registry's record and its Azure IoT Hub JSON shape.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::device_id::DeviceId;
use crate::domain::sas::{KeyError, SymmetricKey};
use crate::domain::timestamp::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    #[default]
    Enabled,
    Disabled,
}

/// A registered device as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub device_id: DeviceId,
    /// Changes whenever a device id is deleted and registered again.
    pub generation_id: String,
    /// Changes on every update of the identity.
    pub etag: String,
    pub status: DeviceStatus,
    pub status_reason: Option<String>,
    pub status_updated_time: Timestamp,
    pub connection_state_updated_time: Timestamp,
    pub last_activity_time: Timestamp,
    pub cloud_to_device_message_count: u64,
    pub primary_key: SymmetricKey,
    pub secondary_key: SymmetricKey,
    pub iot_edge: bool,
}

impl Device {
    pub fn is_enabled(&self) -> bool {
        self.status == DeviceStatus::Enabled
    }

    pub fn keys(&self) -> [&SymmetricKey; 2] {
        [&self.primary_key, &self.secondary_key]
    }

    /// Azure's JSON shape for this device.
    pub fn to_description(&self) -> DeviceDescription {
        DeviceDescription {
            device_id: Some(self.device_id.clone()),
            generation_id: Some(self.generation_id.clone()),
            etag: Some(self.etag.clone()),
            connection_state: Some("Disconnected".to_owned()),
            status: Some(self.status),
            status_reason: self.status_reason.clone(),
            connection_state_updated_time: Some(self.connection_state_updated_time),
            status_updated_time: Some(self.status_updated_time),
            last_activity_time: Some(self.last_activity_time),
            cloud_to_device_message_count: Some(self.cloud_to_device_message_count),
            authentication: Some(Authentication {
                kind: AuthenticationType::Sas,
                symmetric_key: Some(SymmetricKeyPair {
                    primary_key: Some(self.primary_key.to_base64()),
                    secondary_key: Some(self.secondary_key.to_base64()),
                }),
                x509_thumbprint: Some(X509Thumbprint::default()),
            }),
            capabilities: Some(Capabilities {
                iot_edge: self.iot_edge,
            }),
        }
    }
}

/// A new generation id: .NET ticks (100 ns since 0001-01-01), as Azure's look.
pub fn new_generation_id(now: OffsetDateTime) -> String {
    const UNIX_EPOCH_TICKS: i128 = 621_355_968_000_000_000;
    (now.unix_timestamp_nanos() / 100 + UNIX_EPOCH_TICKS).to_string()
}

/// A new etag: base64 of a random decimal number, as Azure's look.
pub fn new_etag() -> String {
    BASE64.encode(rand::random::<u32>().to_string())
}

/// The device JSON of Azure IoT Hub's registry API (api-version 2021-04-12). Every field is
/// optional on input; the hub fills all of them on output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeviceDescription {
    pub device_id: Option<DeviceId>,
    pub generation_id: Option<String>,
    pub etag: Option<String>,
    pub connection_state: Option<String>,
    pub status: Option<DeviceStatus>,
    pub status_reason: Option<String>,
    pub connection_state_updated_time: Option<Timestamp>,
    pub status_updated_time: Option<Timestamp>,
    pub last_activity_time: Option<Timestamp>,
    pub cloud_to_device_message_count: Option<u64>,
    pub authentication: Option<Authentication>,
    pub capabilities: Option<Capabilities>,
}

/// `type` may be left out, as Azure's REST API allows: symmetric keys are the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthenticationType {
    #[default]
    Sas,
    SelfSigned,
    CertificateAuthority,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    #[serde(rename = "type", default)]
    pub kind: AuthenticationType,
    pub symmetric_key: Option<SymmetricKeyPair>,
    pub x509_thumbprint: Option<X509Thumbprint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyPair {
    pub primary_key: Option<String>,
    pub secondary_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct X509Thumbprint {
    pub primary_thumbprint: Option<String>,
    pub secondary_thumbprint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    pub iot_edge: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptionError {
    #[error("authentication type {0:?} is not supported; this hub supports \"sas\" only")]
    UnsupportedAuthentication(AuthenticationType),
    #[error("{which} key is invalid: {source}")]
    Key {
        which: &'static str,
        source: KeyError,
    },
}

impl DeviceDescription {
    /// The keys asked for, generating any that were not given (32 random bytes each).
    pub fn keys_or_generate(&self) -> Result<(SymmetricKey, SymmetricKey), DescriptionError> {
        let pair = match &self.authentication {
            None => None,
            Some(auth) if auth.kind == AuthenticationType::Sas => auth.symmetric_key.as_ref(),
            Some(auth) => return Err(DescriptionError::UnsupportedAuthentication(auth.kind)),
        };
        let key =
            |which: &'static str, given: Option<&String>| match given.filter(|k| !k.is_empty()) {
                Some(encoded) => SymmetricKey::from_base64(encoded)
                    .map_err(|source| DescriptionError::Key { which, source }),
                None => Ok(SymmetricKey::generate()),
            };
        Ok((
            key("primary", pair.and_then(|p| p.primary_key.as_ref()))?,
            key("secondary", pair.and_then(|p| p.secondary_key.as_ref()))?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_missing_keys_and_keeps_given_ones() {
        let given = SymmetricKey::generate();
        let description = DeviceDescription {
            authentication: Some(Authentication {
                kind: AuthenticationType::Sas,
                symmetric_key: Some(SymmetricKeyPair {
                    primary_key: Some(given.to_base64()),
                    secondary_key: None,
                }),
                x509_thumbprint: None,
            }),
            ..Default::default()
        };
        let (primary, secondary) = description.keys_or_generate().unwrap();
        assert_eq!(primary, given);
        assert_ne!(secondary, given);
        let (a, b) = DeviceDescription::default().keys_or_generate().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn rejects_certificates_and_bad_keys() {
        let with = |kind, key: &str| DeviceDescription {
            authentication: Some(Authentication {
                kind,
                symmetric_key: Some(SymmetricKeyPair {
                    primary_key: Some(key.into()),
                    secondary_key: None,
                }),
                x509_thumbprint: None,
            }),
            ..Default::default()
        };
        assert!(matches!(
            with(AuthenticationType::SelfSigned, "").keys_or_generate(),
            Err(DescriptionError::UnsupportedAuthentication(
                AuthenticationType::SelfSigned
            ))
        ));
        assert!(matches!(
            with(AuthenticationType::Sas, "c2hvcnQ=").keys_or_generate(),
            Err(DescriptionError::Key {
                which: "primary",
                ..
            })
        ));
    }

    #[test]
    fn authentication_type_defaults_to_symmetric_keys() {
        let description: DeviceDescription = serde_json::from_str(
            r#"{"authentication":{"symmetricKey":{"primaryKey":"c2hvcnQ="}}}"#,
        )
        .unwrap();
        assert_eq!(
            description.authentication.map(|a| a.kind),
            Some(AuthenticationType::Sas)
        );
    }

    #[test]
    fn generation_ids_look_like_ticks_and_grow() {
        let earlier = new_generation_id(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(earlier, "621355968000000000");
        let now = new_generation_id(OffsetDateTime::now_utc());
        assert_eq!(now.len(), 18);
        assert!(now > earlier);
    }

    #[test]
    fn description_uses_azure_field_names() {
        let json = serde_json::to_value(DeviceDescription {
            device_id: Some(DeviceId::parse("d").unwrap()),
            status: Some(DeviceStatus::Disabled),
            last_activity_time: Some(Timestamp::NEVER),
            capabilities: Some(Capabilities { iot_edge: false }),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(json["deviceId"], "d");
        assert_eq!(json["status"], "disabled");
        assert_eq!(json["lastActivityTime"], "0001-01-01T00:00:00Z");
        assert_eq!(json["capabilities"]["iotEdge"], false);
    }
}
