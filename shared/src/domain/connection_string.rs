//! Azure IoT Hub connection strings: `HostName=...;DeviceId=...;SharedAccessKey=...` for devices and
//! `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...` for services.

use std::fmt;

use crate::domain::device_id::{DeviceId, DeviceIdError};
use crate::domain::sas::{KeyError, SymmetricKey};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionString {
    Device {
        host_name: String,
        device_id: DeviceId,
        key: SymmetricKey,
    },
    Service {
        host_name: String,
        key_name: String,
        key: SymmetricKey,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    #[error("connection string part {0:?} is not of the form Name=Value")]
    Malformed(String),
    #[error("connection string lacks {0}")]
    Missing(&'static str),
    #[error("connection string has both DeviceId and SharedAccessKeyName")]
    Ambiguous,
    #[error("connection string DeviceId is invalid: {0}")]
    DeviceId(#[from] DeviceIdError),
    #[error("connection string SharedAccessKey is invalid: {0}")]
    Key(#[from] KeyError),
}

impl ConnectionString {
    pub fn parse(value: &str) -> Result<Self, ConnectionStringError> {
        let (mut host, mut device, mut key_name, mut key) = (None, None, None, None);
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            // Keys are base64 and may end in '=', so split at the first '=' only.
            let (name, val) = part
                .split_once('=')
                .ok_or_else(|| ConnectionStringError::Malformed(part.chars().take(32).collect()))?;
            match name {
                "HostName" => host = Some(val),
                "DeviceId" => device = Some(val),
                "SharedAccessKeyName" => key_name = Some(val),
                "SharedAccessKey" => key = Some(val),
                // Other parts (GatewayHostName, ModuleId, ...) are not used by this hub.
                _ => {}
            }
        }
        let host_name = host
            .ok_or(ConnectionStringError::Missing("HostName"))?
            .to_owned();
        let key = SymmetricKey::from_base64(
            key.ok_or(ConnectionStringError::Missing("SharedAccessKey"))?,
        )?;
        match (device, key_name) {
            (Some(_), Some(_)) => Err(ConnectionStringError::Ambiguous),
            (Some(id), None) => Ok(Self::Device {
                host_name,
                device_id: DeviceId::parse(id)?,
                key,
            }),
            (None, Some(name)) => Ok(Self::Service {
                host_name,
                key_name: name.to_owned(),
                key,
            }),
            (None, None) => Err(ConnectionStringError::Missing(
                "DeviceId or SharedAccessKeyName",
            )),
        }
    }

    pub fn host_name(&self) -> &str {
        match self {
            Self::Device { host_name, .. } | Self::Service { host_name, .. } => host_name,
        }
    }
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device {
                host_name,
                device_id,
                key,
            } => write!(
                f,
                "HostName={host_name};DeviceId={device_id};SharedAccessKey={}",
                key.to_base64()
            ),
            Self::Service {
                host_name,
                key_name,
                key,
            } => write!(
                f,
                "HostName={host_name};SharedAccessKeyName={key_name};SharedAccessKey={}",
                key.to_base64()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=";

    #[test]
    fn parses_and_prints_device_connection_strings() {
        let text = format!("HostName=hub.local;DeviceId=dev-1;SharedAccessKey={KEY}");
        let parsed = ConnectionString::parse(&text).unwrap();
        assert!(
            matches!(&parsed, ConnectionString::Device { device_id, .. } if device_id.as_str() == "dev-1")
        );
        assert_eq!(parsed.host_name(), "hub.local");
        assert_eq!(parsed.to_string(), text);
    }

    #[test]
    fn parses_service_connection_strings() {
        let text =
            format!("HostName=hub.local;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}");
        let parsed = ConnectionString::parse(&text).unwrap();
        assert!(
            matches!(&parsed, ConnectionString::Service { key_name, .. } if key_name == "iothubowner")
        );
        assert_eq!(parsed.to_string(), text);
    }

    #[test]
    fn rejects_incomplete_or_ambiguous_strings() {
        assert_eq!(
            ConnectionString::parse("DeviceId=a;SharedAccessKey=x"),
            Err(ConnectionStringError::Missing("HostName"))
        );
        assert_eq!(
            ConnectionString::parse(&format!("HostName=h;SharedAccessKey={KEY}")),
            Err(ConnectionStringError::Missing(
                "DeviceId or SharedAccessKeyName"
            ))
        );
        assert_eq!(
            ConnectionString::parse(&format!(
                "HostName=h;DeviceId=a;SharedAccessKeyName=p;SharedAccessKey={KEY}"
            )),
            Err(ConnectionStringError::Ambiguous)
        );
        assert!(ConnectionString::parse("HostName=h;DeviceId=a b;SharedAccessKey=x").is_err());
    }
}
