//! `hub-local bench-twins`: device twin operations through the local gateway (service patch,
//! device report, twin read), the DynamoDB calls each costs, and how soon a device waiting on
//! `…/twin/properties/desired?waitSeconds=` sees a service's change.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Bench, Calls, Latency, fail};
use crate::demo::ToolError;

pub struct TwinsReport {
    pub rounds: usize,
    pub notifications: usize,
    pub service_patch: Latency,
    pub device_report: Latency,
    pub read: Latency,
    pub notify: Latency,
    pub service_patch_calls: Calls,
    pub device_report_calls: Calls,
    pub read_calls: Calls,
}

pub async fn twins(
    settings: &std::path::Path,
    rounds: usize,
    notifications: usize,
) -> Result<TwinsReport, ToolError> {
    let bench = Bench::start(settings, |_| Ok(None)).await?;
    let Bench {
        instrumentation,
        base,
        http,
        ..
    } = &bench;
    let service = bench.service_token().await?;
    let (device, token) = bench
        .register(&format!("bench-twin-{}", uuid::Uuid::new_v4().simple()))
        .await?;
    let twin_url = format!("{base}/twins/{device}");
    let reported_url = format!("{base}/devices/{device}/twin/properties/reported");
    let desired_url = format!("{base}/devices/{device}/twin/properties/desired");

    // One operation at a time, so each call count belongs to that operation alone.
    let (mut service_patch, mut device_report, mut read) = (Vec::new(), Vec::new(), Vec::new());
    let (mut service_patch_calls, mut device_report_calls, mut read_calls) =
        (Calls::default(), Calls::default(), Calls::default());
    instrumentation.authorizer_dynamodb.take();
    instrumentation.functions_dynamodb.take();
    for round in 0..rounds {
        let patch = http
            .patch(&twin_url)
            .header("authorization", &service)
            .json(
                &json!({"tags": {"round": round}, "properties": {"desired": {"setPoint": round}}}),
            );
        bench
            .measure(
                patch,
                200,
                "patching the twin",
                &mut service_patch,
                &mut service_patch_calls,
            )
            .await?;
        let report = http
            .patch(&reported_url)
            .header("authorization", &token)
            .json(&json!({"setPoint": round, "firmware": "1.0.0"}));
        bench
            .measure(
                report,
                200,
                "reporting properties",
                &mut device_report,
                &mut device_report_calls,
            )
            .await?;
        let get = http.get(&twin_url).header("authorization", &service);
        bench
            .measure(get, 200, "reading the twin", &mut read, &mut read_calls)
            .await?;
    }

    // The device is already waiting when the service changes a desired property; the change
    // lands at varying points of the wait's re-read backoff (100 ms growing to 1 s).
    let mut notify = Vec::new();
    for round in 0..notifications {
        let current: serde_json::Value = http
            .get(&desired_url)
            .header("authorization", &token)
            .send()
            .await?
            .json()
            .await?;
        let version = current["$version"].as_u64().unwrap_or_default();
        let waiting = tokio::spawn(
            http.get(format!(
                "{desired_url}?sinceVersion={version}&waitSeconds=20"
            ))
            .header("authorization", &token)
            .send(),
        );
        tokio::time::sleep(Duration::from_millis(300 + (round as u64 % 10) * 170)).await;
        let changed_at = Instant::now();
        let response = http
            .patch(&twin_url)
            .header("authorization", &service)
            .json(&json!({"properties": {"desired": {"setPoint": 1000 + round}}}))
            .send()
            .await?;
        if response.status().as_u16() != 200 {
            return Err(fail("patching the twin", response.status()));
        }
        let seen = waiting
            .await
            .map_err(|e| ToolError::Message(e.to_string()))??;
        if seen.status().as_u16() != 200 {
            return Err(fail("waiting for the desired change", seen.status()));
        }
        notify.push(changed_at.elapsed());
    }

    bench.unregister(&device).await;
    bench.gateway.shutdown();
    Ok(TwinsReport {
        rounds,
        notifications,
        service_patch: Latency::of(&mut service_patch),
        device_report: Latency::of(&mut device_report),
        read: Latency::of(&mut read),
        notify: Latency::of(&mut notify),
        service_patch_calls,
        device_report_calls,
        read_calls,
    })
}

impl TwinsReport {
    pub fn print(&self) {
        let n = self.rounds;
        println!("device twins through the local gateway, {n} rounds, LocalStack DynamoDB:");
        for (name, latency) in [
            ("service PATCH /twins/{id}", self.service_patch),
            ("device PATCH …/reported", self.device_report),
            ("service GET /twins/{id}", self.read),
        ] {
            println!(
                "  {name:<28} median {:.1} ms, p95 {:.1} ms",
                latency.median_ms, latency.p95_ms
            );
        }
        println!(
            "  desired change -> waiting device sees it ({} changes): median {:.1} ms, p95 {:.1} ms",
            self.notifications, self.notify.median_ms, self.notify.p95_ms
        );
        println!("  DynamoDB calls per operation (function; authorizer):");
        for (name, calls) in [
            ("service patch", &self.service_patch_calls),
            ("device report", &self.device_report_calls),
            ("read", &self.read_calls),
        ] {
            println!(
                "    {name:<14} {}; {}",
                calls.per(&calls.function, n),
                calls.per(&calls.authorizer, n)
            );
        }
    }
}
