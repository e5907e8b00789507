//! Jobs (Azure's `/jobs/v2`): a twin update or a direct method run on every device a query
//! condition selects, in the background, with per-device results and the job's statistics.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::domain::method::{MethodError, MethodRequest, MethodResponse};
use crate::domain::timestamp::Timestamp;

/// Azure's default and largest `maxExecutionTimeInSeconds` (an hour by default; jobs older than
/// 30 days are forgotten, so no job may run longer).
pub const DEFAULT_MAX_EXECUTION: Duration = Duration::from_secs(3600);
pub const MAX_EXECUTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long a job and its per-device results are kept (Azure keeps jobs for 30 days).
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
pub const MAX_JOB_ID_CHARS: usize = 128;
/// A query condition is a WHERE clause: the query language's own limit applies to the whole text.
pub const MAX_CONDITION_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobType {
    ScheduleUpdateTwin,
    ScheduleDeviceMethod,
}

impl JobType {
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::ScheduleUpdateTwin => "scheduleUpdateTwin",
            JobType::ScheduleDeviceMethod => "scheduleDeviceMethod",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [JobType::ScheduleUpdateTwin, JobType::ScheduleDeviceMethod]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobStatus {
    /// Accepted, starting now.
    Queued,
    /// Accepted, waiting for its start time.
    Scheduled,
    Running,
    Completed,
    /// Ran past `maxExecutionTimeInSeconds`, or could not run at all.
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Scheduled,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];
    /// States a job leaves only by finishing, failing or being cancelled.
    pub const ACTIVE: [JobStatus; 3] =
        [JobStatus::Queued, JobStatus::Scheduled, JobStatus::Running];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }

    pub fn is_active(self) -> bool {
        Self::ACTIVE.contains(&self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("the job is not valid JSON: {0}")]
    Json(String),
    #[error("jobId must be 1 to {MAX_JOB_ID_CHARS} letters, digits or -_.:")]
    JobId,
    #[error("the jobId in the body ({0}) differs from the one in the path")]
    JobIdMismatch(String),
    #[error("type must be scheduleUpdateTwin or scheduleDeviceMethod")]
    Type,
    #[error("queryCondition is required (a WHERE condition over device twins)")]
    Condition,
    #[error("queryCondition is longer than {MAX_CONDITION_BYTES} bytes")]
    ConditionTooLong,
    #[error("startTime must be an ISO 8601 date and time")]
    StartTime,
    #[error("maxExecutionTimeInSeconds must be a whole number from 1 to {}", MAX_EXECUTION.as_secs())]
    MaxExecution,
    #[error("a scheduleUpdateTwin job needs updateTwin with tags or properties.desired")]
    UpdateTwin,
    #[error("updateTwin may change only tags and properties.desired; {0} cannot be written")]
    UpdateTwinField(String),
    #[error("a scheduleDeviceMethod job needs cloudToDeviceMethod: {0}")]
    Method(String),
}

/// The twin change of a `scheduleUpdateTwin` job: merge patches of tags and desired properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwinUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Value>,
}

/// What a job does to each device.
#[derive(Debug, Clone, PartialEq)]
pub enum JobAction {
    UpdateTwin(TwinUpdate),
    Method(MethodRequest),
}

/// A job as the service asked for it (Azure's `JobRequest`), validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    pub job_id: String,
    #[serde(rename = "type")]
    pub job_type: JobType,
    pub query_condition: String,
    pub start_time: Timestamp,
    pub max_execution_time_in_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_twin: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_to_device_method: Option<Value>,
}

pub fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= MAX_JOB_ID_CHARS
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

fn non_empty_object(value: Option<&Value>) -> Option<&Map<String, Value>> {
    value.and_then(Value::as_object).filter(|m| !m.is_empty())
}

impl JobSpec {
    /// Azure's `JobRequest` body for the job named in the path. A missing start time means now.
    pub fn parse(path_job_id: &str, body: &[u8], now: Timestamp) -> Result<Self, JobError> {
        if !valid_job_id(path_job_id) {
            return Err(JobError::JobId);
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| JobError::Json(e.to_string()))?;
        let Value::Object(fields) = &value else {
            return Err(JobError::Json("the job must be a JSON object".into()));
        };
        if let Some(id) = fields.get("jobId").and_then(Value::as_str)
            && id != path_job_id
        {
            return Err(JobError::JobIdMismatch(id.to_owned()));
        }
        let job_type = fields
            .get("type")
            .and_then(Value::as_str)
            .and_then(JobType::parse)
            .ok_or(JobError::Type)?;
        let query_condition = fields
            .get("queryCondition")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or(JobError::Condition)?
            .to_owned();
        if query_condition.len() > MAX_CONDITION_BYTES {
            return Err(JobError::ConditionTooLong);
        }
        let start_time = match fields.get("startTime") {
            None | Some(Value::Null) => now,
            Some(Value::String(text)) => Timestamp::parse(text).map_err(|_| JobError::StartTime)?,
            Some(_) => return Err(JobError::StartTime),
        };
        let max_execution_time_in_seconds = match fields.get("maxExecutionTimeInSeconds") {
            None | Some(Value::Null) => DEFAULT_MAX_EXECUTION.as_secs(),
            Some(v) => v
                .as_u64()
                .filter(|s| (1..=MAX_EXECUTION.as_secs()).contains(s))
                .ok_or(JobError::MaxExecution)?,
        };
        let mut spec = JobSpec {
            job_id: path_job_id.to_owned(),
            job_type,
            query_condition,
            start_time,
            max_execution_time_in_seconds,
            update_twin: None,
            cloud_to_device_method: None,
        };
        match job_type {
            JobType::ScheduleUpdateTwin => {
                let update = fields
                    .get("updateTwin")
                    .and_then(Value::as_object)
                    .ok_or(JobError::UpdateTwin)?;
                // Azure's SDKs send the twin's identity fields along (deviceId, etag "*").
                if let Some(field) = update.keys().find(|k| {
                    !["deviceId", "etag", "tags", "properties", "version"].contains(&k.as_str())
                }) {
                    return Err(JobError::UpdateTwinField(field.clone()));
                }
                if let Some(properties) = update.get("properties").and_then(Value::as_object)
                    && let Some(field) = properties.keys().find(|k| *k != "desired")
                {
                    return Err(JobError::UpdateTwinField(format!("properties.{field}")));
                }
                let tags = non_empty_object(update.get("tags"));
                let desired =
                    non_empty_object(update.get("properties").and_then(|p| p.get("desired")));
                if tags.is_none() && desired.is_none() {
                    return Err(JobError::UpdateTwin);
                }
                spec.update_twin = Some(Value::Object(update.clone()));
            }
            JobType::ScheduleDeviceMethod => {
                let method = fields
                    .get("cloudToDeviceMethod")
                    .filter(|m| m.is_object())
                    .ok_or_else(|| JobError::Method("it is missing".into()))?;
                let bytes =
                    serde_json::to_vec(method).map_err(|e| JobError::Json(e.to_string()))?;
                MethodRequest::parse(&bytes)
                    .map_err(|e: MethodError| JobError::Method(e.to_string()))?;
                spec.cloud_to_device_method = Some(method.clone());
            }
        }
        spec.action()?;
        Ok(spec)
    }

    /// What the job does to each device.
    pub fn action(&self) -> Result<JobAction, JobError> {
        match self.job_type {
            JobType::ScheduleUpdateTwin => {
                let update = self.update_twin.as_ref().ok_or(JobError::UpdateTwin)?;
                Ok(JobAction::UpdateTwin(TwinUpdate {
                    tags: non_empty_object(update.get("tags"))
                        .cloned()
                        .map(Value::Object),
                    desired: non_empty_object(
                        update.get("properties").and_then(|p| p.get("desired")),
                    )
                    .cloned()
                    .map(Value::Object),
                }))
            }
            JobType::ScheduleDeviceMethod => {
                let method = self
                    .cloud_to_device_method
                    .as_ref()
                    .ok_or_else(|| JobError::Method("it is missing".into()))?;
                let bytes =
                    serde_json::to_vec(method).map_err(|e| JobError::Json(e.to_string()))?;
                MethodRequest::parse(&bytes)
                    .map(JobAction::Method)
                    .map_err(|e| JobError::Method(e.to_string()))
            }
        }
    }

    /// After this the job fails instead of going on.
    pub fn deadline(&self) -> Timestamp {
        let millis = i64::try_from(self.max_execution_time_in_seconds)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        Timestamp::from_unix_millis(self.start_time.unix_millis().saturating_add(millis))
            .unwrap_or(self.start_time)
    }

    /// The twin query whose answers are the job's devices.
    pub fn query_text(&self) -> String {
        format!("SELECT * FROM devices WHERE {}", self.query_condition)
    }
}

/// Per-device counts (Azure's `deviceJobStatistics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatistics {
    pub device_count: u64,
    pub failed_count: u64,
    pub succeeded_count: u64,
    pub running_count: u64,
    pub pending_count: u64,
}

/// How far the job has found its devices: the query's continuation and the next chunk's number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expansion {
    /// Where the job's query continues (`None` before the first step).
    pub cursor: Option<String>,
    pub next_chunk: u64,
    /// Every matching device has its chunk.
    pub done: bool,
}

/// A job and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub spec: JobSpec,
    pub created_time: Timestamp,
    pub status: JobStatus,
    pub end_time: Option<Timestamp>,
    pub failure_reason: Option<String>,
    pub status_message: Option<String>,
    pub expansion: Expansion,
    pub device_count: u64,
    pub succeeded_count: u64,
    pub failed_count: u64,
    pub running_count: u64,
    /// Last change of status or expansion (the sweep finds stalled expansions by it).
    pub touched_at: Timestamp,
}

impl Job {
    pub fn new(spec: JobSpec, now: Timestamp) -> Self {
        let status = if spec.start_time > now {
            JobStatus::Scheduled
        } else {
            JobStatus::Queued
        };
        Self {
            spec,
            created_time: now,
            status,
            end_time: None,
            failure_reason: None,
            status_message: None,
            expansion: Expansion::default(),
            device_count: 0,
            succeeded_count: 0,
            failed_count: 0,
            running_count: 0,
            touched_at: now,
        }
    }

    pub fn statistics(&self) -> JobStatistics {
        JobStatistics {
            device_count: self.device_count,
            failed_count: self.failed_count,
            succeeded_count: self.succeeded_count,
            running_count: self.running_count,
            pending_count: self
                .device_count
                .saturating_sub(self.failed_count + self.succeeded_count + self.running_count),
        }
    }

    /// Every device found has an outcome.
    pub fn all_done(&self) -> bool {
        self.expansion.done && self.succeeded_count + self.failed_count >= self.device_count
    }

    /// Azure's `JobResponse`.
    pub fn to_json(&self) -> Value {
        let spec = &self.spec;
        json!({
            "jobId": spec.job_id,
            "queryCondition": spec.query_condition,
            "createdTime": self.created_time,
            "startTime": spec.start_time,
            "endTime": self.end_time,
            "maxExecutionTimeInSeconds": spec.max_execution_time_in_seconds,
            "type": spec.job_type,
            "cloudToDeviceMethod": spec.cloud_to_device_method,
            "updateTwin": spec.update_twin,
            "status": self.status,
            "failureReason": self.failure_reason,
            "statusMessage": self.status_message,
            "deviceJobStatistics": self.statistics(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeviceJobStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

/// Why a device's part of a job failed (Azure's `error` of a device job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceJobError {
    pub code: String,
    pub description: String,
}

/// One device's part of a job (Azure's device job, as `SELECT * FROM devices.jobs` shows it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJob {
    pub device_id: String,
    pub job_id: String,
    pub job_type: JobType,
    pub status: DeviceJobStatus,
    pub created_date_time_utc: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time_utc: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time_utc: Option<Timestamp>,
    pub last_updated_date_time_utc: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<DeviceJobOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DeviceJobError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJobOutcome {
    pub device_method_response: MethodResponse,
}

/// The queue's work items: find the next devices of a job, or do a chunk of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum JobWork {
    #[serde(rename_all = "camelCase")]
    Expand { job_id: String },
    #[serde(rename_all = "camelCase")]
    Chunk {
        job_id: String,
        chunk: u64,
        devices: Vec<String>,
    },
}

/// A chunk of a job's devices, done by one work item and counted once.
#[derive(Debug, Clone, PartialEq)]
pub struct JobChunk {
    pub number: u64,
    pub devices: Vec<String>,
    pub state: ChunkState,
    /// When its work item was last sent (the sweep re-sends chunks whose item was lost).
    pub sent_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChunkState {
    Pending,
    Running,
    Counted,
}

/// The request id of a job's method call to a device: the same for every attempt, so a retried
/// work item finds the call it made before instead of calling the device again.
pub fn method_request_id(job_id: &str, device_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{job_id}\n{device_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::parse("2026-12-02T10:00:00Z").unwrap()
    }

    #[test]
    fn a_twin_job_parses_with_azure_defaults() {
        let body = br#"{"jobId":"j1","type":"scheduleUpdateTwin","queryCondition":"tags.site = 'a'",
            "updateTwin":{"deviceId":"*","etag":"*","tags":{"x":1},"properties":{"desired":{"fw":"2"}}}}"#;
        let spec = JobSpec::parse("j1", body, now()).unwrap();
        assert_eq!(spec.start_time, now());
        assert_eq!(spec.max_execution_time_in_seconds, 3600);
        assert_eq!(
            spec.query_text(),
            "SELECT * FROM devices WHERE tags.site = 'a'"
        );
        let JobAction::UpdateTwin(update) = spec.action().unwrap() else {
            panic!("not a twin update")
        };
        assert_eq!(update.tags, Some(json!({"x": 1})));
        assert_eq!(update.desired, Some(json!({"fw": "2"})));
        let job = Job::new(spec, now());
        assert_eq!(job.status, JobStatus::Queued);
        assert_eq!(job.to_json()["type"], "scheduleUpdateTwin");
        assert_eq!(job.to_json()["deviceJobStatistics"]["pendingCount"], 0);
    }

    #[test]
    fn a_method_job_in_the_future_is_scheduled() {
        let body = br#"{"type":"scheduleDeviceMethod","queryCondition":"deviceId IN ['a']",
            "startTime":"2026-12-02T11:00:00Z","maxExecutionTimeInSeconds":60,
            "cloudToDeviceMethod":{"methodName":"reboot","responseTimeoutInSeconds":10}}"#;
        let spec = JobSpec::parse("j2", body, now()).unwrap();
        assert!(
            matches!(spec.action().unwrap(), JobAction::Method(m) if m.method_name == "reboot")
        );
        assert_eq!(
            spec.deadline(),
            Timestamp::parse("2026-12-02T11:01:00Z").unwrap()
        );
        assert_eq!(Job::new(spec, now()).status, JobStatus::Scheduled);
    }

    #[test]
    fn bad_jobs_say_what_is_wrong() {
        let cases: [(&str, &[u8], JobError); 8] = [
            ("a b", b"{}", JobError::JobId),
            ("j", b"[1]", JobError::Json("the job must be a JSON object".into())),
            ("j", br#"{"jobId":"k","type":"scheduleUpdateTwin"}"#, JobError::JobIdMismatch("k".into())),
            ("j", br#"{"type":"export","queryCondition":"x = 1"}"#, JobError::Type),
            ("j", br#"{"type":"scheduleUpdateTwin","queryCondition":" "}"#, JobError::Condition),
            ("j", br#"{"type":"scheduleUpdateTwin","queryCondition":"a = 1","updateTwin":{"tags":{}}}"#, JobError::UpdateTwin),
            ("j", br#"{"type":"scheduleUpdateTwin","queryCondition":"a = 1","maxExecutionTimeInSeconds":0,"updateTwin":{"tags":{"a":1}}}"#, JobError::MaxExecution),
            ("j", br#"{"type":"scheduleUpdateTwin","queryCondition":"a = 1","updateTwin":{"properties":{"reported":{"a":1}}}}"#, JobError::UpdateTwinField("properties.reported".into())),
        ];
        for (id, body, expected) in cases {
            assert_eq!(
                JobSpec::parse(id, body, now()).unwrap_err(),
                expected,
                "{id} {}",
                String::from_utf8_lossy(body)
            );
        }
        let method = br#"{"type":"scheduleDeviceMethod","queryCondition":"a = 1","cloudToDeviceMethod":{"methodName":""}}"#;
        assert!(matches!(
            JobSpec::parse("j", method, now()),
            Err(JobError::Method(_))
        ));
    }

    #[test]
    fn statistics_count_what_is_not_done_as_pending() {
        let spec = JobSpec::parse(
            "j",
            br#"{"type":"scheduleUpdateTwin","queryCondition":"a = 1","updateTwin":{"tags":{"a":1}}}"#,
            now(),
        )
        .unwrap();
        let mut job = Job::new(spec, now());
        job.device_count = 10;
        job.succeeded_count = 4;
        job.failed_count = 1;
        job.running_count = 2;
        assert_eq!(job.statistics().pending_count, 3);
        assert!(!job.all_done());
        job.expansion.done = true;
        job.succeeded_count = 9;
        job.running_count = 0;
        assert!(job.all_done());
    }

    #[test]
    fn method_request_ids_are_stable_uuids() {
        let id = method_request_id("job", "dev");
        assert_eq!(id, method_request_id("job", "dev"));
        assert_ne!(id, method_request_id("job", "dev2"));
        assert!(uuid::Uuid::parse_str(&id).is_ok());
    }
}
