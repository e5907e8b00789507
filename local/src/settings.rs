//! What the local gateway needs to play Lambda, read from the Terraform configuration itself
//! (`terraform output -json local_emulation`, written to `.local/hub-settings.json` by
//! `localstack/up.sh`): each function's environment, exactly as Terraform sets it, and the
//! settings of the event source mappings and the schedule. One source, so a variable missing from
//! a function or a mapping setting that differs from the deployed one shows up locally too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::hub::FunctionName;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source} (run `localstack/up.sh` first; `make run` does)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not the Terraform output `local_emulation`: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the settings have no function named {0}")]
    MissingFunction(&'static str),
    #[error(
        "schedule expression {0:?} is not one the local gateway can run (use rate(N minute|minutes|hour|hours|day|days))"
    )]
    Schedule(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct LocalSettings {
    pub functions: BTreeMap<String, FunctionSettings>,
    pub telemetry_mapping: KinesisMappingSettings,
    /// The router's mapping on the same stream; absent when no route delivers anywhere.
    #[serde(default)]
    pub routing_mapping: Option<KinesisMappingSettings>,
    /// The archiver's mapping; absent when no route fills the archive.
    #[serde(default)]
    pub archive_mapping: Option<KinesisMappingSettings>,
    pub command_requests_mapping: SqsMappingSettings,
    pub job_work_mapping: SqsMappingSettings,
    /// The router's mapping on its copy of the registry events; absent when no route reads
    /// events.
    #[serde(default)]
    pub routing_events_mapping: Option<SqsMappingSettings>,
    pub schedule: ScheduleSettings,
    /// Set by tests that run a configuration Terraform did not deploy (variables it would add):
    /// such a hub's AWS calls are not recorded for the IAM audit, which compares calls with the
    /// deployed grants.
    #[serde(skip)]
    pub not_deployed: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FunctionSettings {
    pub environment: BTreeMap<String, String>,
    pub timeout_seconds: u64,
}

/// A Kinesis event source mapping (analytics', the router's), in Terraform's terms.
#[derive(Debug, Clone, Deserialize)]
pub struct KinesisMappingSettings {
    pub function: String,
    pub stream_name: String,
    pub batch_size: usize,
    pub maximum_batching_window_in_seconds: u64,
    /// -1: retry until the record expires.
    pub maximum_retry_attempts: i64,
    /// -1: no limit.
    pub maximum_record_age_in_seconds: i64,
    pub bisect_batch_on_function_error: bool,
    pub starting_position: String,
    pub on_failure_queue_url: String,
}

/// An SQS event source mapping (the commands function's command requests, the registry's job
/// work items).
#[derive(Debug, Clone, Deserialize)]
pub struct SqsMappingSettings {
    pub function: String,
    pub queue_url: String,
    pub batch_size: i32,
    pub maximum_batching_window_in_seconds: u64,
}

/// The EventBridge rule that runs the sweeps.
#[derive(Debug, Clone, Deserialize)]
pub struct ScheduleSettings {
    pub expression: String,
    pub targets: Vec<String>,
}

impl ScheduleSettings {
    /// The period of a `rate(...)` expression.
    pub fn period(&self) -> Result<Duration, SettingsError> {
        let invalid = || SettingsError::Schedule(self.expression.clone());
        let inner = self
            .expression
            .trim()
            .strip_prefix("rate(")
            .and_then(|rest| rest.strip_suffix(')'))
            .ok_or_else(invalid)?;
        let (value, unit) = inner.trim().split_once(' ').ok_or_else(invalid)?;
        let value: u64 = value.parse().map_err(|_| invalid())?;
        let seconds = match (value, unit.trim()) {
            (1, "minute") | (2.., "minutes") => 60,
            (1, "hour") | (2.., "hours") => 3_600,
            (1, "day") | (2.., "days") => 86_400,
            _ => return Err(invalid()),
        };
        Ok(Duration::from_secs(value * seconds))
    }
}

impl LocalSettings {
    /// The default place `localstack/up.sh` writes them.
    pub const DEFAULT_PATH: &'static str = ".local/hub-settings.json";

    /// Where the settings are: `HUB_LOCAL_SETTINGS`, else the default path.
    pub fn default_path() -> PathBuf {
        std::env::var_os("HUB_LOCAL_SETTINGS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(Self::DEFAULT_PATH))
    }

    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| SettingsError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    pub fn function(&self, name: FunctionName) -> Result<&FunctionSettings, SettingsError> {
        self.functions
            .get(name.as_str())
            .ok_or(SettingsError::MissingFunction(name.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(expression: &str) -> ScheduleSettings {
        ScheduleSettings {
            expression: expression.into(),
            targets: vec![],
        }
    }

    #[test]
    fn rate_expressions_become_periods_as_eventbridge_reads_them() {
        assert_eq!(
            schedule("rate(1 minute)").period().unwrap(),
            Duration::from_secs(60)
        );
        assert_eq!(
            schedule("rate(5 minutes)").period().unwrap(),
            Duration::from_secs(300)
        );
        assert_eq!(
            schedule("rate(2 hours)").period().unwrap(),
            Duration::from_secs(7_200)
        );
        for bad in [
            "rate(1 minutes)",
            "rate(2 minute)",
            "cron(0 * * * ? *)",
            "rate(x minutes)",
        ] {
            assert!(schedule(bad).period().is_err(), "{bad}");
        }
    }
}
