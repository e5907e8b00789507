//! Runs jobs in the background from the job-work queue. A job is found in steps (`Expand`: the
//! next devices of its query, stored as chunks with a pending result per device, in one
//! transaction that also moves the job's cursor) and done a chunk at a time (`Chunk`: each
//! device's twin update or method call, its result, then the chunk's counts in one transaction).
//!
//! Every step can run twice (SQS delivers at least once; a crash redelivers): a step whose cursor
//! moved meanwhile writes nothing; a device with a result is not done again; a twin update is
//! written together with the job's id in the twin, and a method call has a request id derived
//! from job and device, so a retry after a crash finds what it did instead of doing it again.
//! The once-a-minute sweep starts scheduled jobs, re-sends lost work items, and ends jobs that
//! ran out of time. Throughput is bounded by the queue mapping's concurrency (docs/jobs.md).

use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::job::{
    ChunkState, DeviceJob, DeviceJobError, DeviceJobOutcome, DeviceJobStatus, Expansion, Job,
    JobAction, JobChunk, JobStatus, JobWork, method_request_id,
};
use hub_shared::domain::method::{MethodCall, MethodRequest, MethodState};
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::error::{ApiError, Chain, ErrorCode};
use hub_shared::http::HandlerError;
use hub_shared::ports::{
    DeviceRegistry, FailureKind, FoundDevices, IfMatch, JobStore, MethodCalls, PolicyStore,
    QueueSender, StoreError, TwinStore,
};
use hub_shared::query::parse_query;
use tokio::time::Instant;

use crate::RegistryHandler;
use crate::devices::not_found;
use crate::jobs::work_item;
use crate::methods::not_online;
use crate::query::{Continuation, fingerprint};
use crate::query_plan::plan;
use crate::twins::Change;

/// Devices one work item does (at once: a method job's chunk waits for its slowest device).
pub const CHUNK_DEVICES: usize = 10;
/// Chunks one expansion step stores: its devices, chunks and the job in one transaction stay
/// within DynamoDB's 100 items.
const STEP_CHUNKS: usize = 8;
/// A pending chunk whose work item was sent this long ago is sent again by the sweep (its item
/// was lost, or is still waiting behind a long backlog: a duplicate does nothing twice).
const RESEND_AFTER: Duration = Duration::from_secs(600);
/// An unfinished expansion untouched this long lost its work item; the sweep sends another.
const STALLED_AFTER: Duration = Duration::from_secs(300);

fn ago(now: Timestamp, duration: Duration) -> Timestamp {
    let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_unix_millis(now.unix_millis().saturating_sub(millis))
        .unwrap_or(Timestamp::NEVER)
}

impl<R: DeviceRegistry, T: TwinStore, P: PolicyStore, Q: QueueSender, M: MethodCalls, J: JobStore>
    RegistryHandler<R, T, P, Q, M, J>
{
    /// A batch of work items; the ones that failed transiently are retried by the mapping.
    pub(crate) async fn work_jobs(&self, batch: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for message in &batch.records {
            let body = message.body.as_deref().unwrap_or_default();
            let work: JobWork = match serde_json::from_str(body) {
                Ok(work) => work,
                Err(error) => {
                    // Not something this hub wrote: retrying cannot make it readable.
                    tracing::error!(%error, body, "a job work item is malformed and dropped");
                    continue;
                }
            };
            let outcome = match &work {
                JobWork::Expand { job_id } => self.expand(job_id).await,
                JobWork::Chunk { job_id, chunk, .. } => self.do_chunk(job_id, *chunk).await,
            };
            if let Err(error) = outcome {
                tracing::warn!(?work, error = %Chain(&error), "job work item will be retried");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message.message_id.clone().unwrap_or_default();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// Starts a job whose time has come; `None` if it is not to run (gone, finished, or not yet).
    async fn running_job(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        let Some(mut job) = self.jobs.get_job(job_id).await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        if matches!(job.status, JobStatus::Queued | JobStatus::Scheduled) {
            if now < job.spec.start_time {
                return Ok(None);
            }
            self.jobs
                .set_status(
                    job_id,
                    &[JobStatus::Queued, JobStatus::Scheduled],
                    JobStatus::Running,
                    now,
                    None,
                )
                .await?;
            job.status = JobStatus::Running;
        }
        if job.status == JobStatus::Running && now > job.spec.deadline() {
            self.fail_late(job_id, now).await?;
            return Ok(None);
        }
        Ok((job.status == JobStatus::Running).then_some(job))
    }

    async fn fail_late(&self, job_id: &str, now: Timestamp) -> Result<(), StoreError> {
        self.jobs
            .set_status(
                job_id,
                &JobStatus::ACTIVE,
                JobStatus::Failed,
                now,
                Some("the job ran past its maxExecutionTimeInSeconds; devices not done were not done"),
            )
            .await
            .map(|_| ())
    }

    /// One expansion step: the next devices of the job's query, as chunks.
    async fn expand(&self, job_id: &str) -> Result<(), StoreError> {
        let Some(job) = self.running_job(job_id).await? else {
            return Ok(());
        };
        if job.expansion.done {
            return self.complete_if_done(job_id).await;
        }
        let text = job.spec.query_text();
        let query = match parse_query(&text) {
            Ok(query) => query,
            Err(error) => {
                // Checked when the job was created: only a stored job damaged since lands here.
                let reason = format!("the job's query does not parse: {}", error.located(&text));
                return self
                    .jobs
                    .set_status(
                        job_id,
                        &JobStatus::ACTIVE,
                        JobStatus::Failed,
                        self.clock.now(),
                        Some(&reason),
                    )
                    .await
                    .map(|_| ());
            }
        };
        let start = Continuation {
            q: fingerprint(&text),
            after: job.expansion.cursor.clone(),
            served: 0,
        };
        let page = self
            .documents(&query, &plan(&query), CHUNK_DEVICES * STEP_CHUNKS, start)
            .await
            .map_err(store_only)?;
        let ids: Vec<String> = page
            .items
            .iter()
            .filter_map(|twin| {
                twin.get("deviceId")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .collect();
        let now = self.clock.now();
        let chunks: Vec<JobChunk> = ids
            .chunks(CHUNK_DEVICES)
            .zip(job.expansion.next_chunk..)
            .map(|(devices, number)| JobChunk {
                number,
                devices: devices.to_vec(),
                state: ChunkState::Pending,
                sent_at: now,
            })
            .collect();
        let device_jobs: Vec<DeviceJob> = ids
            .iter()
            .map(|device| DeviceJob {
                device_id: device.clone(),
                job_id: job_id.to_owned(),
                job_type: job.spec.job_type,
                status: DeviceJobStatus::Pending,
                created_date_time_utc: now,
                start_time_utc: None,
                end_time_utc: None,
                last_updated_date_time_utc: now,
                outcome: None,
                error: None,
            })
            .collect();
        let next = Expansion {
            cursor: page.next.as_ref().and_then(|c| c.after.clone()),
            next_chunk: job.expansion.next_chunk + chunks.len() as u64,
            done: page.next.is_none(),
        };
        let found = FoundDevices {
            chunks: &chunks,
            device_jobs: &device_jobs,
        };
        if !self
            .jobs
            .add_devices(job_id, &job.expansion, &next, found)
            .await?
        {
            // Another delivery of this step got there first.
            return Ok(());
        }
        let mut items: Vec<String> = chunks
            .iter()
            .map(|chunk| {
                work_item(&JobWork::Chunk {
                    job_id: job_id.to_owned(),
                    chunk: chunk.number,
                    devices: chunk.devices.clone(),
                })
            })
            .collect();
        if !next.done {
            items.push(work_item(&JobWork::Expand {
                job_id: job_id.to_owned(),
            }));
        }
        if let Err(error) = self.job_work.send_all(&items).await {
            // The step is stored: the sweep sends its chunks and the next step again.
            tracing::warn!(job = job_id, error = %Chain(&error), "job work items wait for the sweep");
        }
        if next.done {
            self.complete_if_done(job_id).await?;
        }
        Ok(())
    }

    /// Marks a running job completed once every device it found has an outcome.
    async fn complete_if_done(&self, job_id: &str) -> Result<(), StoreError> {
        if let Some(job) = self.jobs.get_job(job_id).await?
            && job.status == JobStatus::Running
            && job.all_done()
        {
            self.jobs
                .set_status(
                    job_id,
                    &[JobStatus::Running],
                    JobStatus::Completed,
                    self.clock.now(),
                    None,
                )
                .await?;
        }
        Ok(())
    }

    /// Does a chunk's devices (those without an outcome) and counts the chunk once.
    async fn do_chunk(&self, job_id: &str, number: u64) -> Result<(), StoreError> {
        let Some(chunk) = self.jobs.get_chunk(job_id, number).await? else {
            return Ok(());
        };
        if chunk.state == ChunkState::Counted {
            return Ok(());
        }
        let job = self.running_job(job_id).await?;
        let Some(current) = self.jobs.get_job(job_id).await? else {
            return Ok(());
        };
        let devices = chunk.devices.len() as u64;
        // `first`: this delivery moved the chunk from pending (another may have raced it).
        let (started, first) = match (&job, chunk.state) {
            (Some(_), ChunkState::Pending) => {
                (true, self.jobs.start_chunk(job_id, number, devices).await?)
            }
            (_, ChunkState::Running) => (true, false),
            _ => (false, false),
        };
        // The chunk's first delivery: no device of it has a result yet beyond the pending one,
        // which need not be read.
        let results = futures::future::join_all(chunk.devices.iter().map(|device| {
            self.do_device(
                job.as_ref(),
                &current,
                device,
                first.then_some(chunk.sent_at),
            )
        }))
        .await;
        let mut succeeded = 0;
        let mut failed = 0;
        for result in results {
            match result? {
                DeviceJobStatus::Completed => succeeded += 1,
                DeviceJobStatus::Failed => failed += 1,
                _ => {}
            }
        }
        if started {
            self.jobs
                .count_chunk(job_id, number, devices, succeeded, failed)
                .await?;
        }
        self.complete_if_done(job_id).await
    }

    /// One device's part: its recorded outcome if it has one, else the job's action (or, for a
    /// job no longer running, cancelled). `first_since`: this is the chunk's first delivery,
    /// whose pending results were written then, so they are not read. Store failures are
    /// returned to retry the chunk.
    async fn do_device(
        &self,
        job: Option<&Job>,
        current: &Job,
        device: &str,
        first_since: Option<Timestamp>,
    ) -> Result<DeviceJobStatus, StoreError> {
        let job_id = &current.spec.job_id;
        let existing = match first_since {
            Some(_) => None,
            None => self.jobs.device_job(job_id, device).await?,
        };
        if let Some(existing) = &existing
            && !matches!(
                existing.status,
                DeviceJobStatus::Pending | DeviceJobStatus::Running
            )
        {
            return Ok(existing.status);
        }
        let now = self.clock.now();
        let mut record = existing.unwrap_or_else(|| DeviceJob {
            device_id: device.to_owned(),
            job_id: job_id.clone(),
            job_type: current.spec.job_type,
            status: DeviceJobStatus::Pending,
            created_date_time_utc: first_since.unwrap_or(now),
            start_time_utc: None,
            end_time_utc: None,
            last_updated_date_time_utc: now,
            outcome: None,
            error: None,
        });
        let result = match job {
            None => Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "the job was {} before this device's turn",
                    current.status.as_str()
                ),
            )),
            Some(job) => {
                record.start_time_utc.get_or_insert(now);
                self.act(job, device).await?
            }
        };
        let end = self.clock.now();
        record.end_time_utc = Some(end);
        record.last_updated_date_time_utc = end;
        match result {
            Ok(outcome) => {
                record.status = DeviceJobStatus::Completed;
                record.outcome = outcome;
            }
            Err(error) if job.is_none() => {
                record.status = DeviceJobStatus::Cancelled;
                record.error = Some(device_error(&error));
            }
            Err(error) => {
                record.status = DeviceJobStatus::Failed;
                record.error = Some(device_error(&error));
            }
        }
        if !self.jobs.put_device_job(&record).await? {
            // Another delivery recorded its outcome first: that one counts.
            return Ok(self
                .jobs
                .device_job(job_id, device)
                .await?
                .map_or(record.status, |d| d.status));
        }
        if matches!(
            job.and_then(|j| j.spec.action().ok()),
            Some(JobAction::Method(_))
        ) && let Ok(id) = DeviceId::parse(device)
            && let Err(error) = self
                .methods
                .remove_call(&id, &method_request_id(job_id, device), false)
                .await
        {
            tracing::warn!(device, error = %Chain(&error), "a job's answered method call stays until its TTL");
        }
        Ok(record.status)
    }

    /// The job's action on one device: `Ok(Err)` is the device's failure (recorded), `Err` a
    /// store failure (the chunk is retried).
    async fn act(
        &self,
        job: &Job,
        device: &str,
    ) -> Result<Result<Option<DeviceJobOutcome>, ApiError>, StoreError> {
        let device_id = match DeviceId::parse(device) {
            Ok(id) => id,
            Err(error) => return Ok(Err(ApiError::bad_request(error.to_string()))),
        };
        let action = match job.spec.action() {
            Ok(action) => action,
            Err(error) => return Ok(Err(ApiError::bad_request(error.to_string()))),
        };
        let result = match action {
            JobAction::UpdateTwin(update) => self
                .change_twin(
                    &device_id,
                    &IfMatch::Any,
                    &Change::Patch {
                        tags: update.tags,
                        desired: update.desired,
                    },
                    Some(&job.spec.job_id),
                )
                .await
                .map(|_| None),
            JobAction::Method(invocation) => self
                .job_method(&job.spec.job_id, &device_id, &invocation)
                .await
                .map(|response| {
                    Some(DeviceJobOutcome {
                        device_method_response: response,
                    })
                }),
        };
        match result {
            Ok(outcome) => Ok(Ok(outcome)),
            Err(HandlerError::Api(error)) => Ok(Err(error)),
            Err(HandlerError::Store(error)) if error.kind == FailureKind::Corrupt => Ok(Err(
                ApiError::new(ErrorCode::ServerError, Chain(&error).to_string()),
            )),
            Err(HandlerError::Store(error)) => Err(error),
        }
    }

    /// A job's method call to one device, made once: a retry finds the call it made before.
    async fn job_method(
        &self,
        job_id: &str,
        device_id: &DeviceId,
        invocation: &MethodRequest,
    ) -> Result<hub_shared::domain::method::MethodResponse, HandlerError> {
        let request_id = method_request_id(job_id, device_id.as_str());
        let started = Instant::now();
        if self
            .methods
            .get_call(device_id, &request_id)
            .await?
            .is_none()
        {
            let device = self
                .registry
                .get_device(device_id)
                .await?
                .ok_or_else(|| not_found(device_id))?;
            if !device.is_enabled() {
                return Err(not_online(device_id.as_str()));
            }
            let call = MethodCall {
                request_id: request_id.clone(),
                generation_id: device.generation_id,
                method_name: invocation.method_name.clone(),
                payload: invocation.payload.clone(),
                created_at: self.clock.now(),
                state: MethodState::Pending,
            };
            self.methods.put_call(device_id, &call).await?;
        }
        self.await_answer(device_id, &request_id, invocation, started)
            .await
    }

    /// The sweep's part for jobs: starts those whose time came, re-sends lost work items, fails
    /// those past their time. Answers how many work items it sent.
    pub async fn sweep_jobs(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let mut sent = 0;
        for job in self.jobs.list_jobs().await? {
            let job_id = &job.spec.job_id;
            if !job.status.is_active() {
                continue;
            }
            if now > job.spec.deadline() {
                self.fail_late(job_id, now).await?;
                continue;
            }
            if now < job.spec.start_time {
                continue;
            }
            let mut items = Vec::new();
            let stalled = !job.expansion.done && job.touched_at < ago(now, STALLED_AFTER);
            if stalled || job.status != JobStatus::Running {
                items.push(work_item(&JobWork::Expand {
                    job_id: job_id.clone(),
                }));
            }
            let unsent = self
                .jobs
                .unsent_chunks(job_id, ago(now, RESEND_AFTER))
                .await?;
            for chunk in &unsent {
                items.push(work_item(&JobWork::Chunk {
                    job_id: job_id.clone(),
                    chunk: chunk.number,
                    devices: chunk.devices.clone(),
                }));
            }
            if job.expansion.done && unsent.is_empty() {
                self.complete_if_done(job_id).await?;
            }
            if items.is_empty() {
                continue;
            }
            self.job_work.send_all(&items).await?;
            for chunk in &unsent {
                self.jobs.mark_sent(job_id, chunk.number, now).await?;
            }
            sent += items.len();
        }
        Ok(sent)
    }
}

fn device_error(error: &ApiError) -> DeviceJobError {
    DeviceJobError {
        code: error.code.as_str().to_owned(),
        description: error.message.clone(),
    }
}

/// Expansion reads only stores; an API answer there is a bug, kept as a rejected call.
fn store_only(error: HandlerError) -> StoreError {
    match error {
        HandlerError::Store(error) => error,
        HandlerError::Api(error) => StoreError::rejected("finding a job's devices", error),
    }
}
