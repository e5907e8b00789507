//! UTC timestamps, written as RFC 3339 the way Azure IoT Hub writes them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Azure's "never": `0001-01-01T00:00:00Z`.
    pub const NEVER: Timestamp = Timestamp(datetime!(0001-01-01 00:00:00 UTC));

    pub fn now() -> Self {
        Self(OffsetDateTime::now_utc())
    }

    pub fn from_datetime(value: OffsetDateTime) -> Self {
        Self(value.to_offset(time::UtcOffset::UTC))
    }

    pub fn from_unix_millis(millis: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
            .ok()
            .map(Self)
    }

    pub fn datetime(self) -> OffsetDateTime {
        self.0
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }

    pub fn unix_millis(self) -> i64 {
        // Millisecond precision fits i64 for every representable date.
        (self.0.unix_timestamp_nanos() / 1_000_000) as i64
    }

    pub fn parse(value: &str) -> Result<Self, time::error::Parse> {
        OffsetDateTime::parse(value, &Rfc3339).map(Self::from_datetime)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Formatting a UTC date between years 1 and 9999 as RFC 3339 cannot fail.
        match self.0.format(&Rfc3339) {
            Ok(text) => f.write_str(&text),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Timestamp::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_is_written_as_azure_does() {
        assert_eq!(Timestamp::NEVER.to_string(), "0001-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::parse("0001-01-01T00:00:00Z").unwrap(),
            Timestamp::NEVER
        );
    }

    #[test]
    fn round_trips_with_sub_second_precision() {
        let ts = Timestamp::from_unix_millis(1_700_000_000_123).unwrap();
        assert_eq!(ts.to_string(), "2023-11-14T22:13:20.123Z");
        assert_eq!(Timestamp::parse(&ts.to_string()).unwrap(), ts);
        assert_eq!(ts.unix_millis(), 1_700_000_000_123);
        assert_eq!(ts.unix_seconds(), 1_700_000_000);
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        let ts = Timestamp::parse("2024-01-01T02:00:00+02:00").unwrap();
        assert_eq!(ts.to_string(), "2024-01-01T00:00:00Z");
    }
}
