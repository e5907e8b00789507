//! Jobs in DynamoDB (`<prefix>-jobs`, keys `jobId` and `item`): the job itself at `#job` (its
//! request, status, expansion cursor and counters; in the sparse `jobs` index by creation time),
//! its chunks at `c#<number>` (the devices one work item does, and whether they were counted),
//! and each device's part at `d#<deviceId>`. Everything expires 30 days after the job's creation.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};

use crate::aws::registry::{Guard, send_guarded};
use crate::aws::{build_error, corrupt_item, sdk_error};
use crate::domain::job::{
    ChunkState, DeviceJob, Expansion, Job, JobChunk, JobSpec, JobStatus, RETENTION,
};
use crate::domain::timestamp::Timestamp;
use crate::ports::{DeviceJobPage, FoundDevices, JobStore, StoreError};

const JOB_ITEM: &str = "#job";
const INDEX: &str = "jobs";

#[derive(Clone)]
pub struct DynamoDbJobStore {
    client: Client,
    table: String,
}

impl DynamoDbJobStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn chunk_key(number: u64) -> String {
    format!("c#{number:012}")
}

fn device_key(device_id: &str) -> String {
    format!("d#{device_id}")
}

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, thiserror::Error)]
#[error("job item lacks or garbles {0}")]
struct BadItem(&'static str);

fn text<'a>(
    item: &'a Item,
    name: &'static str,
    operation: &'static str,
) -> Result<&'a String, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| corrupt_item(operation)(BadItem(name)))
}

fn number(item: &Item, name: &'static str) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn time(
    item: &Item,
    name: &'static str,
    operation: &'static str,
) -> Result<Option<Timestamp>, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(|t| Timestamp::parse(t).map_err(corrupt_item(operation)))
        .transpose()
}

fn parse_job(item: &Item, operation: &'static str) -> Result<Job, StoreError> {
    let spec: JobSpec =
        serde_json::from_str(text(item, "spec", operation)?).map_err(corrupt_item(operation))?;
    let status = JobStatus::parse(text(item, "status", operation)?)
        .ok_or_else(|| corrupt_item(operation)(BadItem("status")))?;
    Ok(Job {
        spec,
        created_time: time(item, "createdTime", operation)?
            .ok_or_else(|| corrupt_item(operation)(BadItem("createdTime")))?,
        status,
        end_time: time(item, "endTime", operation)?,
        failure_reason: item
            .get("failureReason")
            .and_then(|v| v.as_s().ok())
            .cloned(),
        status_message: item
            .get("statusMessage")
            .and_then(|v| v.as_s().ok())
            .cloned(),
        expansion: Expansion {
            cursor: item.get("cursor").and_then(|v| v.as_s().ok()).cloned(),
            next_chunk: number(item, "nextChunk"),
            done: item
                .get("expanded")
                .and_then(|v| v.as_bool().ok())
                .copied()
                .unwrap_or(false),
        },
        device_count: number(item, "deviceCount"),
        succeeded_count: number(item, "succeededCount"),
        failed_count: number(item, "failedCount"),
        running_count: number(item, "runningCount"),
        touched_at: time(item, "touchedAt", operation)?.unwrap_or(Timestamp::NEVER),
    })
}

fn parse_chunk(item: &Item, operation: &'static str) -> Result<JobChunk, StoreError> {
    let key = text(item, "item", operation)?;
    let number = key
        .strip_prefix("c#")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| corrupt_item(operation)(BadItem("item")))?;
    let devices: Vec<String> =
        serde_json::from_str(text(item, "devices", operation)?).map_err(corrupt_item(operation))?;
    let state: ChunkState = serde_json::from_value(serde_json::Value::String(
        text(item, "state", operation)?.clone(),
    ))
    .map_err(corrupt_item(operation))?;
    Ok(JobChunk {
        number,
        devices,
        state,
        sent_at: time(item, "sentAt", operation)?.unwrap_or(Timestamp::NEVER),
    })
}

fn parse_device_job(item: &Item, operation: &'static str) -> Result<DeviceJob, StoreError> {
    serde_json::from_str(text(item, "document", operation)?).map_err(corrupt_item(operation))
}

fn status_text(status: impl serde::Serialize) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl DynamoDbJobStore {
    /// One item of a job, read consistently.
    async fn item(
        &self,
        job_id: &str,
        key: String,
        operation: &'static str,
    ) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("jobId", s(job_id))
            .key("item", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error(operation))?;
        Ok(output.item)
    }

    fn expires(&self, created: Timestamp) -> AttributeValue {
        n(created.unix_seconds() + RETENTION.as_secs() as i64)
    }

    fn device_job_put(
        &self,
        device_job: &DeviceJob,
        operation: &'static str,
    ) -> Result<Put, StoreError> {
        let document =
            serde_json::to_string(device_job).map_err(|e| StoreError::rejected(operation, e))?;
        Put::builder()
            .table_name(&self.table)
            .item("jobId", s(&device_job.job_id))
            .item("item", s(device_key(&device_job.device_id)))
            .item("status", s(status_text(device_job.status)))
            .item("document", s(document))
            .item("ttl", self.expires(device_job.created_date_time_utc))
            .build()
            .map_err(build_error(operation))
    }
}

impl JobStore for DynamoDbJobStore {
    async fn create_job(&self, job: &Job) -> Result<bool, StoreError> {
        const OPERATION: &str = "creating a job";
        let spec =
            serde_json::to_string(&job.spec).map_err(|e| StoreError::rejected(OPERATION, e))?;
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("jobId", s(&job.spec.job_id))
            .item("item", s(JOB_ITEM))
            .item("kind", s("job"))
            .item("createdTime", s(job.created_time.to_string()))
            .item("touchedAt", s(job.created_time.to_string()))
            .item("spec", s(spec))
            .item("status", s(job.status.as_str()))
            .item("nextChunk", n(0))
            .item("expanded", AttributeValue::Bool(false))
            .item("deviceCount", n(0))
            .item("succeededCount", n(0))
            .item("failedCount", n(0))
            .item("runningCount", n(0))
            .item("ttl", self.expires(job.created_time))
            .condition_expression("attribute_not_exists(jobId)");
        conditional_write!(request, OPERATION)
    }

    async fn get_job(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        const OPERATION: &str = "reading a job";
        self.item(job_id, JOB_ITEM.to_owned(), OPERATION)
            .await?
            .map(|item| parse_job(&item, OPERATION))
            .transpose()
    }

    async fn list_jobs(&self) -> Result<Vec<Job>, StoreError> {
        const OPERATION: &str = "listing jobs";
        let mut jobs = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(INDEX)
                .key_condition_expression("kind = :job")
                .expression_attribute_values(":job", s("job"))
                .scan_index_forward(false)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error(OPERATION))?;
            for item in output.items.unwrap_or_default() {
                jobs.push(parse_job(&item, OPERATION)?);
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(jobs),
            }
        }
    }

    async fn set_status(
        &self,
        job_id: &str,
        from: &[JobStatus],
        to: JobStatus,
        at: Timestamp,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        const OPERATION: &str = "changing a job's status";
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(job_id))
            .key("item", s(JOB_ITEM))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":at", s(at.to_string()));
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!(":from{i}")).collect();
        for (placeholder, status) in placeholders.iter().zip(from) {
            request = request.expression_attribute_values(placeholder, s(status.as_str()));
        }
        let mut set = vec!["#status = :to", "touchedAt = :at"];
        if !to.is_active() {
            set.push("endTime = :at");
        }
        if let Some(reason) = reason {
            set.push("failureReason = :reason");
            request = request.expression_attribute_values(":reason", s(reason));
        }
        let request = request
            .update_expression(format!("SET {}", set.join(", ")))
            .condition_expression(format!(
                "attribute_exists(jobId) AND #status IN ({})",
                placeholders.join(", ")
            ));
        conditional_write!(request, OPERATION)
    }

    async fn add_devices(
        &self,
        job_id: &str,
        expected: &Expansion,
        next: &Expansion,
        found: FoundDevices<'_>,
    ) -> Result<bool, StoreError> {
        const OPERATION: &str = "recording a job's devices";
        let created = Timestamp::now();
        let mut items = Vec::new();
        for chunk in found.chunks {
            let devices = serde_json::to_string(&chunk.devices)
                .map_err(|e| StoreError::rejected(OPERATION, e))?;
            let put = Put::builder()
                .table_name(&self.table)
                .item("jobId", s(job_id))
                .item("item", s(chunk_key(chunk.number)))
                .item("devices", s(devices))
                .item("state", s(status_text(chunk.state)))
                .item("sentAt", s(chunk.sent_at.to_string()))
                .item("ttl", self.expires(created))
                .build()
                .map_err(build_error(OPERATION))?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        for device_job in found.device_jobs {
            let put = self.device_job_put(device_job, OPERATION)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("jobId", s(job_id))
            .key("item", s(JOB_ITEM))
            .expression_attribute_values(":expected", n(expected.next_chunk))
            .expression_attribute_values(":next", n(next.next_chunk))
            .expression_attribute_values(":done", AttributeValue::Bool(next.done))
            .expression_attribute_values(":found", n(found.device_jobs.len()))
            .expression_attribute_values(":at", s(created.to_string()));
        let mut set = "nextChunk = :next, expanded = :done, touchedAt = :at".to_owned();
        update = match &next.cursor {
            Some(cursor) => {
                set.push_str(", #cursor = :cursor");
                update.expression_attribute_values(":cursor", s(cursor))
            }
            None => update,
        };
        let remove = if next.cursor.is_none() {
            " REMOVE #cursor"
        } else {
            ""
        };
        let update = update
            .expression_attribute_names("#cursor", "cursor")
            .update_expression(format!("SET {set} ADD deviceCount :found{remove}"))
            .condition_expression("nextChunk = :expected AND expanded = :false")
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .build()
            .map_err(build_error(OPERATION))?;
        items.push(TransactWriteItem::builder().update(update).build());
        let request = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items));
        send_guarded(request, Guard::Last, OPERATION).await
    }

    async fn get_chunk(&self, job_id: &str, number: u64) -> Result<Option<JobChunk>, StoreError> {
        const OPERATION: &str = "reading a job chunk";
        self.item(job_id, chunk_key(number), OPERATION)
            .await?
            .map(|item| parse_chunk(&item, OPERATION))
            .transpose()
    }

    async fn unsent_chunks(
        &self,
        job_id: &str,
        sent_before: Timestamp,
    ) -> Result<Vec<JobChunk>, StoreError> {
        const OPERATION: &str = "finding a job's unsent chunks";
        let mut chunks = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("jobId = :job AND begins_with(#item, :chunk)")
                .filter_expression("#state = :pending AND sentAt < :before")
                .expression_attribute_names("#item", "item")
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":job", s(job_id))
                .expression_attribute_values(":chunk", s("c#"))
                .expression_attribute_values(":pending", s("pending"))
                .expression_attribute_values(":before", s(sent_before.to_string()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error(OPERATION))?;
            for item in output.items.unwrap_or_default() {
                chunks.push(parse_chunk(&item, OPERATION)?);
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(chunks),
            }
        }
    }

    async fn mark_sent(&self, job_id: &str, number: u64, at: Timestamp) -> Result<(), StoreError> {
        const OPERATION: &str = "marking a job chunk sent";
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(job_id))
            .key("item", s(chunk_key(number)))
            .update_expression("SET sentAt = :at")
            .condition_expression("attribute_exists(jobId)")
            .expression_attribute_values(":at", s(at.to_string()));
        conditional_write!(request, OPERATION).map(|_| ())
    }

    async fn start_chunk(
        &self,
        job_id: &str,
        number: u64,
        devices: u64,
    ) -> Result<bool, StoreError> {
        self.move_chunk(
            job_id,
            number,
            ChunkState::Pending,
            ChunkState::Running,
            "ADD runningCount :running",
            &[(":running", devices as i64)],
        )
        .await
    }

    async fn count_chunk(
        &self,
        job_id: &str,
        number: u64,
        devices: u64,
        succeeded: u64,
        failed: u64,
    ) -> Result<bool, StoreError> {
        self.move_chunk(
            job_id,
            number,
            ChunkState::Running,
            ChunkState::Counted,
            "ADD runningCount :running, succeededCount :succeeded, failedCount :failed",
            &[
                (":running", -(devices as i64)),
                (":succeeded", succeeded as i64),
                (":failed", failed as i64),
            ],
        )
        .await
    }

    async fn device_job(
        &self,
        job_id: &str,
        device_id: &str,
    ) -> Result<Option<DeviceJob>, StoreError> {
        const OPERATION: &str = "reading a device's job";
        self.item(job_id, device_key(device_id), OPERATION)
            .await?
            .map(|item| parse_device_job(&item, OPERATION))
            .transpose()
    }

    async fn put_device_job(&self, device_job: &DeviceJob) -> Result<bool, StoreError> {
        const OPERATION: &str = "recording a device's job";
        let put = self.device_job_put(device_job, OPERATION)?;
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(put.item().clone()))
            .condition_expression("attribute_not_exists(jobId) OR #status IN (:pending, :running)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":running", s("running"));
        conditional_write!(request, OPERATION)
    }

    async fn device_jobs(
        &self,
        job_id: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<DeviceJobPage, StoreError> {
        const OPERATION: &str = "reading a job's devices";
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .expression_attribute_names("#item", "item")
            .expression_attribute_values(":job", s(job_id));
        request = request
            .key_condition_expression("jobId = :job AND begins_with(#item, :devices)")
            .expression_attribute_values(":devices", s("d#"));
        if let Some(after) = after {
            request = request
                .exclusive_start_key("jobId", s(job_id))
                .exclusive_start_key("item", s(device_key(after)));
        }
        let output = request.send().await.map_err(sdk_error(OPERATION))?;
        let items = output.items.unwrap_or_default();
        let jobs = items
            .iter()
            .map(|item| parse_device_job(item, OPERATION))
            .collect::<Result<Vec<_>, _>>()?;
        let more_after = output
            .last_evaluated_key
            .filter(|key| !key.is_empty())
            .and(jobs.last().map(|j| j.device_id.clone()));
        Ok((jobs, more_after))
    }
}

impl DynamoDbJobStore {
    /// A chunk's state change and the job's counters, in one transaction; `false` if the chunk
    /// was not in `from`.
    async fn move_chunk(
        &self,
        job_id: &str,
        number: u64,
        from: ChunkState,
        to: ChunkState,
        counters: &str,
        values: &[(&str, i64)],
    ) -> Result<bool, StoreError> {
        const OPERATION: &str = "counting a job chunk";
        let chunk = Update::builder()
            .table_name(&self.table)
            .key("jobId", s(job_id))
            .key("item", s(chunk_key(number)))
            .update_expression("SET #state = :to")
            .condition_expression("#state = :from")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":from", s(status_text(from)))
            .expression_attribute_values(":to", s(status_text(to)))
            .build()
            .map_err(build_error(OPERATION))?;
        let mut job = Update::builder()
            .table_name(&self.table)
            .key("jobId", s(job_id))
            .key("item", s(JOB_ITEM))
            .update_expression(counters);
        for (name, value) in values {
            job = job.expression_attribute_values(*name, n(value));
        }
        let job = job.build().map_err(build_error(OPERATION))?;
        let request = self
            .client
            .transact_write_items()
            .set_transact_items(Some(vec![
                TransactWriteItem::builder().update(chunk).build(),
                TransactWriteItem::builder().update(job).build(),
            ]));
        send_guarded(request, Guard::First, OPERATION).await
    }
}
