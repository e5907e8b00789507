//! `hub-local bench-jobs`: a twin-update job (`PUT /jobs/v2/{id}`) over N devices made for the
//! run, executed by the emulated job-work mapping as deployed (one work item of up to 10 devices
//! at a time): time from creation to completion, devices per second, and the DynamoDB calls the
//! job cost per device. The devices are removed afterwards.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::query::{bulk, make_fleet};
use super::{Bench, Calls, fail, tool_error};
use crate::demo::ToolError;

pub struct JobsReport {
    pub devices: usize,
    pub setup: Duration,
    pub elapsed: Duration,
    pub statistics: Value,
    pub calls: Calls,
}

pub async fn jobs(settings: &std::path::Path, devices: usize) -> Result<JobsReport, ToolError> {
    let bench = Bench::start(settings, |hub| {
        crate::event_sources::EventSourceOptions::deployed(hub)
            .map(Some)
            .map_err(tool_error)
    })
    .await?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let ids: Vec<String> = (0..devices).map(|i| format!("bj-{run}-{i:05}")).collect();
    let started = Instant::now();
    make_fleet(&bench, &ids, |_| json!({ "benchJob": run })).await?;
    let setup = started.elapsed();

    bench.instrumentation.functions_dynamodb.take();
    let job_id = format!("bench-{run}");
    let started = Instant::now();
    let response = bench
        .http
        .put(format!("{}/jobs/v2/{job_id}", bench.base))
        .header("authorization", &bench.owner)
        .json(&json!({
            "type": "scheduleUpdateTwin",
            "queryCondition": format!("tags.benchJob = '{run}'"),
            "updateTwin": { "properties": { "desired": { "benchFirmware": run } } },
        }))
        .send()
        .await?;
    if response.status().as_u16() != 200 {
        return Err(fail("creating the bench job", response.status()));
    }
    let job = loop {
        let job: Value = bench
            .http
            .get(format!("{}/jobs/v2/{job_id}", bench.base))
            .header("authorization", &bench.owner)
            .send()
            .await?
            .json()
            .await?;
        match job["status"].as_str() {
            Some("completed") => break job,
            Some("failed" | "cancelled") => {
                return Err(ToolError::Message(format!("the bench job ended: {job}")));
            }
            _ if started.elapsed() > Duration::from_secs(3600) => {
                return Err(ToolError::Message(format!(
                    "the bench job is not done: {job}"
                )));
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let elapsed = started.elapsed();
    let mut calls = Calls::default();
    calls.add(&bench.instrumentation);
    // The measurement is made: a failed clean-up is reported, not fatal.
    if let Err(error) = bulk(&bench, &ids, "delete").await {
        eprintln!("the bench devices bj-{run}-* were not all removed: {error}");
    }
    bench.gateway.shutdown();
    Ok(JobsReport {
        devices,
        setup,
        elapsed,
        statistics: job["deviceJobStatistics"].clone(),
        calls,
    })
}

impl JobsReport {
    pub fn print(&self) {
        println!(
            "a twin-update job through the local gateway over {} devices (made in {:.0} s), LocalStack:",
            self.devices,
            self.setup.as_secs_f64()
        );
        println!(
            "  created to completed: {:.1} s ({:.1} devices/s); statistics {}",
            self.elapsed.as_secs_f64(),
            self.devices as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON),
            self.statistics
        );
        println!(
            "  DynamoDB calls per device (functions, job polls included): {}",
            self.calls.per(&self.calls.function, self.devices)
        );
    }
}
