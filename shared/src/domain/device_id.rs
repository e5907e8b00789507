//! Device identifiers, validated by Azure IoT Hub's rules.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest device id Azure IoT Hub accepts.
pub const MAX_DEVICE_ID_LEN: usize = 128;

/// Special characters Azure allows in device ids besides ASCII letters and digits.
const ALLOWED_SPECIAL: &[u8] = b"-:.+%_#*?!(),=@;$'";

/// A device id: case-sensitive, 1..=128 characters of ASCII 7-bit alphanumerics plus
/// `- : . + % _ # * ? ! ( ) , = @ ; $ '`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct DeviceId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    #[error("device id is empty")]
    Empty,
    #[error("device id is {0} characters long; the maximum is {MAX_DEVICE_ID_LEN}")]
    TooLong(usize),
    #[error(
        "device id contains {0:?}, which is not allowed; use ASCII letters, digits and - : . + % _ # * ? ! ( ) , = @ ; $ '"
    )]
    InvalidCharacter(char),
}

impl DeviceId {
    pub fn parse(value: &str) -> Result<Self, DeviceIdError> {
        if value.is_empty() {
            return Err(DeviceIdError::Empty);
        }
        if let Some(bad) = value.chars().find(|c| {
            !(c.is_ascii_alphanumeric() || (c.is_ascii() && ALLOWED_SPECIAL.contains(&(*c as u8))))
        }) {
            return Err(DeviceIdError::InvalidCharacter(bad));
        }
        // All characters are ASCII here, so the byte length is the character count.
        if value.len() > MAX_DEVICE_ID_LEN {
            return Err(DeviceIdError::TooLong(value.len()));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key of the registry's reserved items (`/statistics`, `/outbox/...`), which no device can
    /// have; only used as a position to continue a listing from.
    pub fn reserved(key: &str) -> Self {
        Self(key.to_owned())
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DeviceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        DeviceId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_allowed_character() {
        let id = "aZ09-:.+%_#*?!(),=@;$'";
        assert_eq!(DeviceId::parse(id).unwrap().as_str(), id);
    }

    #[test]
    fn is_case_sensitive() {
        assert_ne!(
            DeviceId::parse("Dev").unwrap(),
            DeviceId::parse("dev").unwrap()
        );
    }

    #[test]
    fn accepts_128_and_rejects_129_characters() {
        assert!(DeviceId::parse(&"a".repeat(128)).is_ok());
        assert_eq!(
            DeviceId::parse(&"a".repeat(129)),
            Err(DeviceIdError::TooLong(129))
        );
    }

    #[test]
    fn rejects_empty_space_slash_and_non_ascii() {
        assert_eq!(DeviceId::parse(""), Err(DeviceIdError::Empty));
        for bad in ["a b", "a/b", "a\\b", "é", "a&b", "a\"b", "a<b", "a\nb"] {
            assert!(DeviceId::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<DeviceId>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<DeviceId>("\"not ok\"").is_err());
    }
}
