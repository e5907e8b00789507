//! `hub-local bench-analytics`: telemetry-to-aggregate latency through the local gateway and the
//! emulated Kinesis mapping, and the analytics function's DynamoDB calls per batch.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Bench, Latency, fail};
use crate::demo::ToolError;

pub struct AnalyticsReport {
    pub messages: usize,
    pub devices: usize,
    pub latency: Latency,
    pub batches: u64,
    pub records: u64,
    pub calls: BTreeMap<String, u64>,
}

/// Sends `messages` telemetry messages from `devices` devices through the gateway at about
/// `rate` per second, and measures when each becomes visible in the analytics state (the device
/// state and the window aggregates are committed in the same transaction).
pub async fn analytics(
    settings: &std::path::Path,
    messages: usize,
    devices: usize,
    rate: f64,
    batching_window: Option<Duration>,
) -> Result<AnalyticsReport, ToolError> {
    use std::sync::atomic::Ordering;

    // The deployed mapping, positioned at the end of the stream and with the batching window
    // under measurement; no sweeps to disturb the timing.
    let bench = Bench::start(settings, |hub| {
        let mut sources =
            crate::event_sources::EventSourceOptions::deployed(hub).map_err(super::tool_error)?;
        sources.schedule_every = None;
        sources.kinesis.start_at_latest = true;
        if let Some(window) = batching_window {
            sources.kinesis.batching_window = window;
        }
        Ok(Some(sources))
    })
    .await?;
    let Bench {
        instrumentation,
        base,
        http,
        ..
    } = &bench;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut tokens = Vec::new();
    for d in 0..devices {
        tokens.push(
            bench
                .register(&format!("bench-an-{}-{d}", &run[..8]))
                .await?,
        );
    }
    // Let the mapping position itself at the end of every shard before sending.
    tokio::time::sleep(Duration::from_secs(2)).await;
    instrumentation.analytics_dynamodb.take();
    let batches_before = instrumentation.analytics_batches.load(Ordering::Relaxed);
    let records_before = instrumentation.analytics_records.load(Ordering::Relaxed);

    let mut sent_at = Vec::with_capacity(messages);
    let pause = Duration::from_secs_f64(1.0 / rate.max(0.1));
    for i in 0..messages {
        let d = i % devices;
        let (device, token) = &tokens[d];
        let started = Instant::now();
        let message_id = format!("{run}-{i}");
        sent_at.push((message_id.clone(), started));
        let response = http
            .post(format!("{base}/devices/{device}/messages/events"))
            .header("authorization", token)
            .header("iothub-messageid", &message_id)
            .body(format!(
                r#"{{"temperature":{},"humidity":{}}}"#,
                20 + i % 10,
                40 + i % 7
            ))
            .send()
            .await?;
        if response.status().as_u16() != 204 {
            return Err(fail("sending telemetry", response.status()));
        }
        if let Some(rest) = pause.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let committed = instrumentation
            .analytics_committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        latencies = sent_at
            .iter()
            .filter_map(|(id, sent)| {
                committed
                    .get(id)
                    .map(|done| done.saturating_duration_since(*sent))
            })
            .collect();
        if latencies.len() == messages {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if latencies.len() < messages {
        return Err(ToolError::Message(format!(
            "only {} of {messages} messages became visible",
            latencies.len()
        )));
    }
    let calls = instrumentation.analytics_dynamodb.take();
    bench.gateway.shutdown();
    Ok(AnalyticsReport {
        messages,
        devices,
        latency: Latency::of(&mut latencies),
        batches: instrumentation.analytics_batches.load(Ordering::Relaxed) - batches_before,
        records: instrumentation.analytics_records.load(Ordering::Relaxed) - records_before,
        calls,
    })
}

impl AnalyticsReport {
    pub fn print(&self) {
        println!(
            "analytics through the local gateway: {} messages from {} devices",
            self.messages, self.devices
        );
        println!(
            "  device POST -> aggregate visible   median {:.1} ms, p95 {:.1} ms",
            self.latency.median_ms, self.latency.p95_ms
        );
        println!(
            "  batches {} ({:.1} records each)",
            self.batches,
            self.records as f64 / self.batches.max(1) as f64
        );
        let per_batch: Vec<String> = self
            .calls
            .iter()
            .map(|(op, n)| format!("{op} {:.2}", *n as f64 / self.batches.max(1) as f64))
            .collect();
        println!("  DynamoDB calls per batch: {}", per_batch.join(", "));
    }
}
