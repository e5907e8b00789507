//! Typed configuration read from the environment once, at cold start.
//!
//! The variable names are shared by Terraform (function environments), the local gateway and the
//! tests, so they are defined once here.

use std::str::FromStr;
use std::time::Duration;

/// Names of the environment variables the hub reads.
pub mod vars {
    /// Host name devices and services put in SAS tokens (`sr`) and connection strings.
    pub const HOST_NAME: &str = "HUB_HOST_NAME";
    pub const REGISTRY_TABLE: &str = "HUB_REGISTRY_TABLE";
    pub const POLICIES_TABLE: &str = "HUB_POLICIES_TABLE";
    pub const TELEMETRY_STREAM: &str = "HUB_TELEMETRY_STREAM";
    pub const TWINS_TABLE: &str = "HUB_TWINS_TABLE";
    /// The twin tag index (registry), which twin writes keep and twin queries read.
    pub const TWIN_TAGS_TABLE: &str = "HUB_TWIN_TAGS_TABLE";
    /// Direct method calls while they are waited for (registry).
    pub const METHOD_CALLS_TABLE: &str = "HUB_METHOD_CALLS_TABLE";
    /// Jobs, their chunks and per-device results (registry).
    pub const JOBS_TABLE: &str = "HUB_JOBS_TABLE";
    /// The queue of job work items (expansion steps and chunks of devices) the registry consumes.
    pub const JOB_WORK_QUEUE_URL: &str = "HUB_JOB_WORK_QUEUE_URL";
    /// Where device lifecycle events (createDeviceIdentity, deleteDeviceIdentity) go.
    pub const REGISTRY_EVENTS_QUEUE_URL: &str = "HUB_REGISTRY_EVENTS_QUEUE_URL";
    /// Seconds of clock difference tolerated when checking SAS expiry.
    pub const SAS_CLOCK_SKEW_SECONDS: &str = "HUB_SAS_CLOCK_SKEW_SECONDS";
    /// Attempts for storing telemetry before the device gets a 503.
    pub const PUBLISH_MAX_ATTEMPTS: &str = "HUB_PUBLISH_MAX_ATTEMPTS";

    // Cloud-to-device messages.
    pub const COMMANDS_TABLE: &str = "HUB_COMMANDS_TABLE";
    pub const FEEDBACK_QUEUE_URL: &str = "HUB_FEEDBACK_QUEUE_URL";
    pub const C2D_DEAD_LETTER_QUEUE_URL: &str = "HUB_C2D_DEAD_LETTER_QUEUE_URL";
    /// Where asynchronous producers put command requests (the function consumes it through its
    /// event source mapping; the local gateway polls it).
    pub const COMMAND_REQUESTS_QUEUE_URL: &str = "HUB_COMMAND_REQUESTS_QUEUE_URL";
    /// Where command requests that can never be processed go, with the reason.
    pub const COMMAND_REQUESTS_DLQ_URL: &str = "HUB_COMMAND_REQUESTS_DLQ_URL";
    pub const C2D_MAX_QUEUE_DEPTH: &str = "HUB_C2D_MAX_QUEUE_DEPTH";
    pub const C2D_LOCK_SECONDS: &str = "HUB_C2D_LOCK_SECONDS";
    pub const C2D_MAX_DELIVERY_COUNT: &str = "HUB_C2D_MAX_DELIVERY_COUNT";
    pub const C2D_DEFAULT_TTL_SECONDS: &str = "HUB_C2D_DEFAULT_TTL_SECONDS";
    pub const C2D_MAX_TTL_SECONDS: &str = "HUB_C2D_MAX_TTL_SECONDS";

    // Stream analytics.
    pub const ANALYTICS_TABLE: &str = "HUB_ANALYTICS_TABLE";
    pub const ALERTS_TABLE: &str = "HUB_ALERTS_TABLE";
    pub const RULES_TABLE: &str = "HUB_RULES_TABLE";
    pub const ALERTS_QUEUE_URL: &str = "HUB_ALERTS_QUEUE_URL";
    /// Telemetry records that can never be processed, with the reason.
    pub const ANALYTICS_DLQ_URL: &str = "HUB_ANALYTICS_DLQ_URL";
    /// Where the (emulated) event source mapping reports batches it gave up on.
    pub const ANALYTICS_FAILURES_QUEUE_URL: &str = "HUB_ANALYTICS_FAILURES_QUEUE_URL";
    /// Tumbling windows, e.g. `1m,1h`.
    pub const ANALYTICS_WINDOWS: &str = "HUB_ANALYTICS_WINDOWS";
    pub const ANALYTICS_RETENTION_DAYS: &str = "HUB_ANALYTICS_RETENTION_DAYS";
    pub const ANALYTICS_RECENT_READINGS: &str = "HUB_ANALYTICS_RECENT_READINGS";
    /// How long the analytics function reuses the rules it read.
    pub const RULES_CACHE_SECONDS: &str = "HUB_RULES_CACHE_SECONDS";
    /// How recently an HTTP device must have been active to count as connected
    /// (`connectionState`, `connectedDeviceCount`).
    pub const CONNECTED_WINDOW_SECONDS: &str = "HUB_CONNECTED_WINDOW_SECONDS";
    /// `true` once every registered device is in the device id index (a deployment made with
    /// it, or one re-indexed since): searches by id prefix may then read the index alone.
    pub const ID_INDEX_COMPLETE: &str = "HUB_ID_INDEX_COMPLETE";

    // Message routing (router)
    /// The routing configuration as JSON (routes, endpoints, enrichments, fallback).
    pub const ROUTING: &str = "HUB_ROUTING";
    /// Where routed messages go that no endpoint took after its retries, with the reason.
    pub const ROUTING_DLQ_URL: &str = "HUB_ROUTING_DLQ_URL";
    /// Attempts per endpoint before a message is dead-lettered.
    pub const ROUTING_MAX_ATTEMPTS: &str = "HUB_ROUTING_MAX_ATTEMPTS";
    /// `emf`: per-route and per-endpoint counts as CloudWatch embedded metrics on stdout.
    pub const ROUTING_METRICS: &str = "HUB_ROUTING_METRICS";
    /// The router's copy of the registry events queue (functions that publish events send
    /// there too when routes read them).
    pub const ROUTING_EVENTS_QUEUE_URL: &str = "HUB_ROUTING_EVENTS_QUEUE_URL";

    // The archive (archiver)
    pub const ARCHIVE_BUCKET: &str = "HUB_ARCHIVE_BUCKET";
    /// Each shard's archived position.
    pub const ARCHIVE_CHECKPOINTS_TABLE: &str = "HUB_ARCHIVE_CHECKPOINTS_TABLE";
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} has the invalid value {value:?}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

/// Reads variables through a lookup function, so tests need not touch the process environment.
pub struct Env<F: Fn(&str) -> Option<String>> {
    lookup: F,
}

impl Env<fn(&str) -> Option<String>> {
    pub fn process() -> Self {
        Self {
            lookup: |name| std::env::var(name).ok(),
        }
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn from_fn(lookup: F) -> Self {
        Self { lookup }
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        (self.lookup)(name)
            .filter(|v| !v.trim().is_empty())
            .ok_or(ConfigError::Missing(name))
    }

    /// A variable that may be absent (empty counts as absent).
    pub fn optional(&self, name: &'static str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    pub fn parse_or<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match (self.lookup)(name).filter(|v| !v.trim().is_empty()) {
            None => Ok(default),
            Some(value) => value
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    name,
                    value,
                    reason: e.to_string(),
                }),
        }
    }

    pub fn seconds_or(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.parse_or(name, default).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_required_and_defaulted_values() {
        let env = Env::from_fn(|name| match name {
            "A" => Some("x".into()),
            "N" => Some(" 42 ".into()),
            "BAD" => Some("forty".into()),
            "BLANK" => Some("  ".into()),
            _ => None,
        });
        assert_eq!(env.required("A").unwrap(), "x");
        assert_eq!(env.required("B"), Err(ConfigError::Missing("B")));
        assert_eq!(env.required("BLANK"), Err(ConfigError::Missing("BLANK")));
        assert_eq!(env.parse_or("N", 0u32).unwrap(), 42);
        assert_eq!(env.parse_or("MISSING", 7u32).unwrap(), 7);
        assert!(matches!(
            env.parse_or("BAD", 0u32),
            Err(ConfigError::Invalid { name: "BAD", .. })
        ));
        assert_eq!(env.seconds_or("N", 1).unwrap(), Duration::from_secs(42));
    }
}
