//! `hub-local bench-c2d`: cloud-to-device round trips through the local gateway, and the DynamoDB
//! calls each operation costs.

use std::time::{Duration, Instant};

use hub_shared::domain::device_id::DeviceId;

use super::{Bench, Calls, Latency, fail};
use crate::demo::ToolError;

pub struct C2dReport {
    pub messages: usize,
    pub ack: String,
    pub send: Latency,
    pub round_trip: Latency,
    pub send_calls: Calls,
    pub receive_calls: Calls,
    pub complete_calls: Calls,
}

pub async fn c2d(
    settings: &std::path::Path,
    messages: usize,
    ack: &str,
) -> Result<C2dReport, crate::demo::ToolError> {
    let bench = Bench::start(settings, |_| Ok(None)).await?;
    let Bench {
        instrumentation,
        hub,
        base,
        http,
        ..
    } = &bench;
    let service = bench.service_token().await?;
    let (device, token) = bench
        .register(&format!("bench-{}", uuid::Uuid::new_v4().simple()))
        .await?;
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
            let send = http
                .post(&queue_path)
                .header("authorization", &service)
                .header("iothub-ack", ack)
                .body(format!("command {}", sent + i));
            bench
                .measure(send, 202, "sending", &mut send_latency, &mut send_calls)
                .await?;
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
            receive_calls.add(instrumentation);
            let lock = lock_token(&received);
            let completed = http
                .delete(format!("{queue_path}/{lock}"))
                .header("authorization", &token)
                .send()
                .await?;
            round_trips.push(started.elapsed());
            if completed.status().as_u16() != 204 {
                return Err(fail("completing", completed.status()));
            }
            complete_calls.add(instrumentation);
        }
        sent += batch;
    }
    if ack != "none" {
        drain_feedback(http, base, &service, &device, messages).await?;
    }
    bench.unregister(&device).await;
    bench.gateway.shutdown();
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

/// The lock token a receive answered, from its `ETag`.
fn lock_token(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned()
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
        let lock = lock_token(&response);
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
