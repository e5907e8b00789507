//! `hub-local bench-c2d`: measures cloud-to-device round trips through an in-process local
//! gateway against the local AWS environment, and counts the DynamoDB calls each operation costs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hub_shared::config::Env;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::sas::SymmetricKey;

use crate::demo::{ToolError, device_token, policy_token};
use crate::metrics::Instrumentation;
use crate::{GatewayOptions, Hub};

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub median_ms: f64,
    pub p95_ms: f64,
}

impl Latency {
    fn of(samples: &mut [Duration]) -> Self {
        samples.sort();
        let at = |q: f64| {
            let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        Self {
            median_ms: at(0.5),
            p95_ms: at(0.95),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Calls {
    pub authorizer: BTreeMap<String, u64>,
    pub function: BTreeMap<String, u64>,
}

impl Calls {
    fn add(&mut self, instrumentation: &Instrumentation) {
        for (target, counter) in [
            (&mut self.authorizer, &instrumentation.authorizer_dynamodb),
            (&mut self.function, &instrumentation.functions_dynamodb),
        ] {
            for (operation, count) in counter.take() {
                *target.entry(operation).or_default() += count;
            }
        }
    }

    /// Average calls per operation over `n` runs, as "GetItem 1.00, TransactWriteItems 1.00".
    pub fn per(&self, map: &BTreeMap<String, u64>, n: usize) -> String {
        if map.is_empty() {
            return "none".into();
        }
        map.iter()
            .map(|(op, count)| format!("{op} {:.2}", *count as f64 / n as f64))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub struct C2dReport {
    pub messages: usize,
    pub ack: String,
    pub send: Latency,
    pub round_trip: Latency,
    pub send_calls: Calls,
    pub receive_calls: Calls,
    pub complete_calls: Calls,
}

fn fail(what: &str, status: reqwest::StatusCode) -> ToolError {
    ToolError::Message(format!("{what} answered {status}"))
}

pub async fn c2d(messages: usize, ack: &str) -> Result<C2dReport, crate::demo::ToolError> {
    let instrumentation = Instrumentation::default();
    let hub = Arc::new(
        Hub::from_env_with(&Env::process(), Some(&instrumentation))
            .await
            .map_err(|e| ToolError::Message(e.to_string()))?,
    );
    let options = GatewayOptions {
        http: Some(([127, 0, 0, 1], 0).into()),
        https: None,
        tls_dir: std::env::temp_dir(),
        event_sources: None,
    };
    let gateway = crate::start(Arc::clone(&hub), &options)
        .await
        .map_err(|e| ToolError::Message(e.to_string()))?;
    let base = format!(
        "http://{}",
        gateway
            .http
            .ok_or_else(|| ToolError::Message("no HTTP listener".into()))?
    );
    let http = reqwest::Client::new();
    let device = DeviceId::parse(&format!("bench-{}", uuid::Uuid::new_v4().simple()))
        .map_err(|e| ToolError::Message(e.to_string()))?;
    let owner = policy_token(&hub, "iothubowner", Duration::from_secs(3600)).await?;
    let service = policy_token(&hub, "service", Duration::from_secs(3600)).await?;
    let created = http
        .put(format!("{base}/devices/{device}"))
        .header("authorization", &owner)
        .body(format!(r#"{{"deviceId":"{device}"}}"#))
        .send()
        .await?;
    if !created.status().is_success() {
        return Err(fail("registering the bench device", created.status()));
    }
    let description: serde_json::Value = created.json().await?;
    let key = description["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap_or_default();
    let key = SymmetricKey::from_base64(key).map_err(|e| ToolError::Message(e.to_string()))?;
    let token = device_token(&hub.host_name, &device, &key, Duration::from_secs(3600));
    let queue_path = format!("{base}/devices/{device}/messages/deviceBound");
    let depth_limit = hub.commands.commands.policy.max_queue_depth as usize;

    let mut send_latency = Vec::new();
    let mut round_trips = Vec::new();
    let (mut send_calls, mut receive_calls, mut complete_calls) =
        (Calls::default(), Calls::default(), Calls::default());
    let mut sent = 0;
    while sent < messages {
        // Fill the queue up to its depth limit, then drain it with receive + complete.
        let batch = (messages - sent).min(depth_limit);
        instrumentation.authorizer_dynamodb.take();
        instrumentation.functions_dynamodb.take();
        for i in 0..batch {
            let started = Instant::now();
            let response = http
                .post(&queue_path)
                .header("authorization", &service)
                .header("iothub-ack", ack)
                .body(format!("command {}", sent + i))
                .send()
                .await?;
            send_latency.push(started.elapsed());
            if response.status().as_u16() != 202 {
                return Err(fail("sending", response.status()));
            }
            send_calls.add(&instrumentation);
        }
        for _ in 0..batch {
            let started = Instant::now();
            let received = http
                .get(&queue_path)
                .header("authorization", &token)
                .send()
                .await?;
            if received.status().as_u16() != 200 {
                return Err(fail("receiving", received.status()));
            }
            receive_calls.add(&instrumentation);
            let lock = received
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .trim_matches('"')
                .to_owned();
            let completed = http
                .delete(format!("{queue_path}/{lock}"))
                .header("authorization", &token)
                .send()
                .await?;
            round_trips.push(started.elapsed());
            if completed.status().as_u16() != 204 {
                return Err(fail("completing", completed.status()));
            }
            complete_calls.add(&instrumentation);
        }
        sent += batch;
    }
    if ack != "none" {
        drain_feedback(&http, &base, &service, &device, messages).await?;
    }
    let _ = http
        .delete(format!("{base}/devices/{device}"))
        .header("authorization", &owner)
        .send()
        .await;
    gateway.shutdown();
    Ok(C2dReport {
        messages,
        ack: ack.to_owned(),
        send: Latency::of(&mut send_latency),
        round_trip: Latency::of(&mut round_trips),
        send_calls,
        receive_calls,
        complete_calls,
    })
}

/// Completes the bench device's feedback so it does not linger in the shared queue; releases
/// everyone else's.
async fn drain_feedback(
    http: &reqwest::Client,
    base: &str,
    service: &str,
    device: &DeviceId,
    expected: usize,
) -> Result<(), ToolError> {
    let mut found = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while found < expected && Instant::now() < deadline {
        let response = http
            .get(format!("{base}/messages/serviceBound/feedback"))
            .header("authorization", service)
            .send()
            .await?;
        if response.status().as_u16() == 204 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let lock = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned();
        let records: Vec<serde_json::Value> = response.json().await?;
        let ours = records.iter().all(|r| r["deviceId"] == device.as_str());
        let url = format!("{base}/messages/serviceBound/feedback/{lock}");
        let settle = if ours {
            http.delete(url)
        } else {
            http.post(format!("{url}/abandon"))
        };
        settle.header("authorization", service).send().await?;
        if ours {
            found += records.len();
        }
    }
    Ok(())
}

impl C2dReport {
    pub fn print(&self) {
        let n = self.messages;
        println!(
            "cloud-to-device through the local gateway, {n} messages (ack {}), LocalStack DynamoDB/SQS:",
            self.ack
        );
        println!(
            "  send                   median {:.1} ms, p95 {:.1} ms",
            self.send.median_ms, self.send.p95_ms
        );
        println!(
            "  receive + complete     median {:.1} ms, p95 {:.1} ms",
            self.round_trip.median_ms, self.round_trip.p95_ms
        );
        println!("  DynamoDB calls per operation (function; authorizer):");
        for (name, calls) in [
            ("send", &self.send_calls),
            ("receive", &self.receive_calls),
            ("complete", &self.complete_calls),
        ] {
            println!(
                "    {name:<9} {}; {}",
                calls.per(&calls.function, n),
                calls.per(&calls.authorizer, n)
            );
        }
    }
}

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
    messages: usize,
    devices: usize,
    rate: f64,
    batching_window: Duration,
) -> Result<AnalyticsReport, ToolError> {
    use std::sync::atomic::Ordering;

    let instrumentation = Instrumentation::default();
    let hub = Arc::new(
        Hub::from_env_with(&Env::process(), Some(&instrumentation))
            .await
            .map_err(|e| ToolError::Message(e.to_string()))?,
    );
    let sources = crate::event_sources::EventSourceOptions {
        sweep_every: Duration::from_secs(3600),
        kinesis: crate::kinesis_mapping::KinesisMappingOptions {
            start_at_latest: true,
            batching_window,
            ..Default::default()
        },
        ..Default::default()
    };
    let options = GatewayOptions {
        http: Some(([127, 0, 0, 1], 0).into()),
        https: None,
        tls_dir: std::env::temp_dir(),
        event_sources: Some(sources),
    };
    let gateway = crate::start(Arc::clone(&hub), &options)
        .await
        .map_err(|e| ToolError::Message(e.to_string()))?;
    let base = format!(
        "http://{}",
        gateway
            .http
            .ok_or_else(|| ToolError::Message("no HTTP listener".into()))?
    );
    let http = reqwest::Client::new();
    let owner = policy_token(&hub, "iothubowner", Duration::from_secs(3600)).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut tokens = Vec::new();
    for d in 0..devices {
        let device = DeviceId::parse(&format!("bench-an-{}-{d}", &run[..8]))
            .map_err(|e| ToolError::Message(e.to_string()))?;
        let created = http
            .put(format!("{base}/devices/{device}"))
            .header("authorization", &owner)
            .body(format!(r#"{{"deviceId":"{device}"}}"#))
            .send()
            .await?;
        let description: serde_json::Value = created.json().await?;
        let key = SymmetricKey::from_base64(
            description["authentication"]["symmetricKey"]["primaryKey"]
                .as_str()
                .unwrap_or_default(),
        )
        .map_err(|e| ToolError::Message(e.to_string()))?;
        tokens.push((
            device.clone(),
            device_token(&hub.host_name, &device, &key, Duration::from_secs(3600)),
        ));
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
    gateway.shutdown();
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
