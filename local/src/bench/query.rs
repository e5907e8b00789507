//! `hub-local bench-query`: twin queries (`POST /devices/query`) over a fleet of N devices made
//! for the run, through the local gateway: latency of a page and the DynamoDB calls and items a
//! page costs, for a tag-equality query, a rare match, and a GROUP BY count. The devices are
//! removed afterwards.

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{Value, json};

use super::{Bench, Calls, Latency, fail, tool_error};
use crate::demo::ToolError;

/// Sites the fleet is spread over: a tag-equality query on a site matches 1 device in `SITES`.
const SITES: usize = 10;
/// Requests in flight while the fleet is made.
const CONCURRENCY: usize = 16;
/// Devices per bulk request while the fleet is made and removed.
const BULK_CHUNK: usize = 25;

pub struct QueryCase {
    pub name: &'static str,
    pub query: String,
    pub latency: Latency,
    pub results: usize,
    pub requests: usize,
    /// Devices the hub read to answer one run (its `x-hub-devices-read` headers, summed).
    pub devices_read: usize,
    pub calls: Calls,
}

pub struct QueryReport {
    pub devices: usize,
    pub rounds: usize,
    pub setup: Duration,
    pub cases: Vec<QueryCase>,
}

pub async fn query(
    settings: &std::path::Path,
    devices: usize,
    rounds: usize,
) -> Result<QueryReport, ToolError> {
    let bench = Bench::start(settings, |_| Ok(None)).await?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let ids: Vec<String> = (0..devices).map(|i| format!("bq-{run}-{i:05}")).collect();
    let started = std::time::Instant::now();
    make_fleet(&bench, &ids, |i| {
        json!({
            "bench": run,
            // Values of this run's own, so earlier runs' index entries do not weigh in.
            "site": format!("{run}-site-{}", i % SITES),
            "floor": i % 97,
        })
    })
    .await?;
    let setup = started.elapsed();

    let cases = [
        (
            "one tag equality (1 device in 10), first page of 100",
            format!("SELECT * FROM devices WHERE tags.site = '{run}-site-3'"),
            Some(100),
            false,
        ),
        (
            "two tag equalities (1 device in 970), all pages",
            format!(
                "SELECT deviceId FROM devices WHERE tags.site = '{run}-site-0' AND tags.floor = 96"
            ),
            Some(100),
            true,
        ),
        (
            "no tag equality (registry scan, 10 devices), all pages",
            format!("SELECT deviceId FROM devices WHERE STARTSWITH(deviceId, 'bq-{run}-0000')"),
            Some(100),
            true,
        ),
        (
            "GROUP BY site, COUNT() over the run's devices",
            format!(
                "SELECT tags.site AS site, COUNT() AS devices FROM devices WHERE tags.bench = '{run}' GROUP BY tags.site"
            ),
            None,
            true,
        ),
    ];
    let mut report = Vec::new();
    bench.instrumentation.functions_dynamodb.take();
    bench.instrumentation.authorizer_dynamodb.take();
    for (name, text, page, all_pages) in cases {
        let mut latencies = Vec::new();
        let mut calls = Calls::default();
        let (mut results, mut requests, mut devices_read) = (0, 0, 0);
        for _ in 0..rounds {
            let mut continuation: Option<String> = None;
            loop {
                let mut request = bench
                    .http
                    .post(format!("{}/devices/query", bench.base))
                    .header("authorization", &bench.owner)
                    .json(&json!({ "query": text }));
                if let Some(size) = page {
                    request = request.header("x-ms-max-item-count", size.to_string());
                }
                if let Some(token) = &continuation {
                    request = request.header("x-ms-continuation", token);
                }
                let response = bench
                    .measure(request, 200, "querying", &mut latencies, &mut calls)
                    .await?;
                requests += 1;
                devices_read += response
                    .headers()
                    .get("x-hub-devices-read")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                continuation = response
                    .headers()
                    .get("x-ms-continuation")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let items: Vec<Value> = response.json().await?;
                results += items.len();
                if !all_pages || continuation.is_none() {
                    break;
                }
            }
        }
        report.push(QueryCase {
            name,
            query: text,
            latency: Latency::of(&mut latencies),
            results: results / rounds,
            requests: requests / rounds,
            devices_read: devices_read / rounds,
            calls,
        });
    }
    bulk(&bench, &ids, "delete").await?;
    bench.gateway.shutdown();
    Ok(QueryReport {
        devices,
        rounds,
        setup,
        cases: report,
    })
}

/// Registers the bench devices and gives device `i` the tags `tags(i)`.
pub(super) async fn make_fleet(
    bench: &Bench,
    ids: &[String],
    tags: impl Fn(usize) -> Value,
) -> Result<(), ToolError> {
    bulk(bench, ids, "create").await?;
    let tagged = futures::stream::iter(ids.iter().enumerate().map(|(i, id)| {
        let request = bench
            .http
            .patch(format!("{}/twins/{id}", bench.base))
            .header("authorization", &bench.owner)
            .json(&json!({ "tags": tags(i) }));
        async move {
            let response = request.send().await?;
            if response.status().as_u16() != 200 {
                return Err(fail("tagging a bench twin", response.status()));
            }
            Ok::<(), ToolError>(())
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .collect::<Vec<_>>()
    .await;
    tagged.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(())
}

/// Creates or deletes the bench devices, a few per bulk request (a bulk request is one
/// transaction per device, slow on LocalStack).
pub(super) async fn bulk(bench: &Bench, ids: &[String], mode: &str) -> Result<(), ToolError> {
    let results = futures::stream::iter(ids.chunks(BULK_CHUNK).map(|chunk| {
        let operations: Vec<Value> = chunk
            .iter()
            .map(|id| json!({ "id": id, "importMode": mode }))
            .collect();
        let request = bench
            .http
            .post(format!("{}/devices", bench.base))
            .header("authorization", &bench.owner)
            .json(&operations);
        async move {
            let response = request.send().await?;
            let status = response.status();
            let body: Value = response.json().await.map_err(tool_error)?;
            if status.as_u16() != 200 || body["isSuccessful"] != json!(true) {
                return Err(ToolError::Message(format!(
                    "bulk {mode} answered {status}: {body}"
                )));
            }
            Ok::<(), ToolError>(())
        }
    }))
    .buffer_unordered(4)
    .collect::<Vec<_>>()
    .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(())
}

impl QueryReport {
    pub fn print(&self) {
        println!(
            "twin queries through the local gateway over {} devices (made in {:.0} s), LocalStack DynamoDB:",
            self.devices,
            self.setup.as_secs_f64()
        );
        for case in &self.cases {
            println!("  {}: {}", case.name, case.query);
            println!(
                "    per request: median {:.1} ms, p95 {:.1} ms; {} request(s), {} result(s) per run",
                case.latency.median_ms, case.latency.p95_ms, case.requests, case.results
            );
            println!(
                "    devices read per run: {}; DynamoDB calls per request: {}",
                case.devices_read,
                case.calls
                    .per(&case.calls.function, self.rounds * case.requests.max(1))
            );
        }
    }
}
