//! Jobs, their chunks of devices and each device's part (`<prefix>-jobs`).

use std::future::Future;

use crate::domain::job::{DeviceJob, Expansion, Job, JobChunk, JobStatus};
use crate::domain::timestamp::Timestamp;
use crate::ports::StoreError;

/// A page of a job's device results and the device id the next page starts after.
pub type DeviceJobPage = (Vec<DeviceJob>, Option<String>);

/// Devices found by one expansion step, with the chunks that will do them.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundDevices<'a> {
    pub chunks: &'a [JobChunk],
    /// One pending result per device of the chunks.
    pub device_jobs: &'a [DeviceJob],
}

pub trait JobStore: Send + Sync {
    /// Stores a new job; `false` if a job with its id exists.
    fn create_job(&self, job: &Job) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn get_job(&self, job_id: &str)
    -> impl Future<Output = Result<Option<Job>, StoreError>> + Send;

    /// Every job kept (30 days), newest first.
    fn list_jobs(&self) -> impl Future<Output = Result<Vec<Job>, StoreError>> + Send;

    /// Moves the job to `to` if it is in one of `from`; `false` if it is not.
    fn set_status(
        &self,
        job_id: &str,
        from: &[JobStatus],
        to: JobStatus,
        at: Timestamp,
        reason: Option<&str>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// In one transaction: stores the found chunks and their devices' pending results, counts
    /// the devices, and moves the job's expansion from `expected` to `next`; `false` (and nothing
    /// written) if the expansion is no longer at `expected` (another worker took this step).
    fn add_devices(
        &self,
        job_id: &str,
        expected: &Expansion,
        next: &Expansion,
        found: FoundDevices<'_>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn get_chunk(
        &self,
        job_id: &str,
        number: u64,
    ) -> impl Future<Output = Result<Option<JobChunk>, StoreError>> + Send;

    /// Chunks still pending whose work item was last sent before `sent_before`.
    fn unsent_chunks(
        &self,
        job_id: &str,
        sent_before: Timestamp,
    ) -> impl Future<Output = Result<Vec<JobChunk>, StoreError>> + Send;

    fn mark_sent(
        &self,
        job_id: &str,
        number: u64,
        at: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Pending → running, counting its devices as running, in one transaction; `false` if the
    /// chunk is not pending (a redelivered work item).
    fn start_chunk(
        &self,
        job_id: &str,
        number: u64,
        devices: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Running → counted, moving its devices from running to succeeded and failed, in one
    /// transaction; `false` if it was counted already.
    fn count_chunk(
        &self,
        job_id: &str,
        number: u64,
        devices: u64,
        succeeded: u64,
        failed: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn device_job(
        &self,
        job_id: &str,
        device_id: &str,
    ) -> impl Future<Output = Result<Option<DeviceJob>, StoreError>> + Send;

    /// Writes a device's part unless it already has an outcome (completed, failed or
    /// cancelled); `false` if it has.
    fn put_device_job(
        &self,
        device_job: &DeviceJob,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// A job's device results in device id order, up to `limit`, after `after`.
    fn device_jobs(
        &self,
        job_id: &str,
        limit: usize,
        after: Option<&str>,
    ) -> impl Future<Output = Result<DeviceJobPage, StoreError>> + Send;
}
