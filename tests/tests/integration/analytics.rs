//! Stream analytics against Kinesis, DynamoDB and SQS on LocalStack: the local gateway's event
//! source mapping feeds the analytics function; queries go through the HTTP API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::kinesis::KinesisEvent;
use hub_analytics::{AnalyticsConfig, AnalyticsHandler};
use hub_shared::aws::{DynamoDbAnalyticsStore, DynamoDbRuleStore, SqsQueue};
use hub_shared::config::{Env, vars};
use hub_shared::domain::analytics::{Alert, AlertReview, DeviceState, WindowAggregate, WindowSize};
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::ports::{AnalyticsStore, CommitOutcome, StateItem, StateKey, StoreError};
use hub_tests::{
    device_ids_on_each_shard, envelope_at, gateway, put_envelopes, put_raw, read_device_records,
    tail, unique, wait_for_telemetry,
};

const MINUTE: i64 = 60_000;

/// An hour boundary in the past, so crafted windows are whole and far from "now".
fn base() -> i64 {
    (Timestamp::now().unix_millis() / 3_600_000 - 3) * 3_600_000
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms).unwrap()
}

fn range(from: i64, to: i64) -> String {
    format!("from={}&to={}", at(from), at(to))
}

fn points(body: &serde_json::Value) -> Vec<serde_json::Value> {
    body["points"].as_array().cloned().unwrap_or_default()
}

fn count_of(body: &serde_json::Value) -> u64 {
    points(body)
        .iter()
        .map(|p| p["messageCount"].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn a_known_series_over_several_windows_and_two_shards_aggregates_exactly() {
    gateway();
    let devices = device_ids_on_each_shard(&unique("series")).await;
    assert!(devices.len() >= 2, "the stream has two shards: {devices:?}");
    let base = base();
    // Minutes 0..4, two readings each; the two devices get different values.
    let mut envelopes = Vec::new();
    for (d, device) in devices.iter().enumerate() {
        for minute in 0..5 {
            for k in 0..2 {
                let value = (d as i64 + 1) * 100 + minute * 10 + k;
                envelopes.push(envelope_at(
                    device,
                    at(base + minute * MINUTE + k * 20_000),
                    &format!(
                        r#"{{"temperature":{value},"env":{{"humidity":{}}}}}"#,
                        40 + k
                    ),
                ));
            }
        }
    }
    put_envelopes(&envelopes).await;

    for (d, device) in devices.iter().enumerate() {
        let query = format!(
            "window=1m&field=temperature&{}",
            range(base, base + 10 * MINUTE)
        );
        let body = wait_for_telemetry(device, &query, |b| count_of(b) == 10).await;
        let windows = points(&body);
        assert_eq!(windows.len(), 5, "{body}");
        for (minute, point) in windows.iter().enumerate() {
            let low = (d as f64 + 1.0) * 100.0 + minute as f64 * 10.0;
            assert_eq!(
                point["windowStart"],
                serde_json::json!(at(base + minute as i64 * MINUTE))
            );
            assert_eq!(point["count"], 2);
            assert_eq!(point["min"].as_f64(), Some(low));
            assert_eq!(point["max"].as_f64(), Some(low + 1.0));
            assert_eq!(point["sum"].as_f64(), Some(2.0 * low + 1.0));
            assert_eq!(point["mean"].as_f64(), Some(low + 0.5));
            assert_eq!(point["first"]["value"].as_f64(), Some(low));
            assert_eq!(point["last"]["value"].as_f64(), Some(low + 1.0));
        }
        let hour = wait_for_telemetry(
            device,
            &format!("window=1h&{}", range(base, base + MINUTE)),
            |b| count_of(b) == 10,
        )
        .await;
        let fields = &points(&hour)[0]["fields"];
        assert_eq!(fields["temperature"]["count"], 10);
        assert_eq!(
            fields["env.humidity"]["sum"].as_f64(),
            Some(5.0 * (40.0 + 41.0)),
            "nested fields by dotted path"
        );
    }
}

#[tokio::test]
async fn late_and_out_of_order_messages_land_in_their_window() {
    gateway();
    let device = unique("late");
    let base = base();
    let order = [3, 1, 4, 1, 0, 2]; // minutes, in arrival order
    let envelopes: Vec<_> = order
        .iter()
        .enumerate()
        .map(|(i, m)| {
            envelope_at(
                &device,
                at(base + m * MINUTE + i as i64 * 1000),
                &format!(r#"{{"v":{m}}}"#),
            )
        })
        .collect();
    put_envelopes(&envelopes).await;
    let body = wait_for_telemetry(
        &device,
        &format!("window=1m&field=v&{}", range(base, base + 10 * MINUTE)),
        |b| count_of(b) == 6,
    )
    .await;
    let by_window: Vec<(i64, u64, f64)> = points(&body)
        .iter()
        .map(|p| {
            let start = Timestamp::parse(p["windowStart"].as_str().unwrap())
                .unwrap()
                .unix_millis();
            (
                (start - base) / MINUTE,
                p["count"].as_u64().unwrap(),
                p["mean"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_window,
        [
            (0, 1, 0.0),
            (1, 2, 1.0),
            (2, 1, 2.0),
            (3, 1, 3.0),
            (4, 1, 4.0)
        ]
    );
    // The state keeps the latest reading by time, not the last to arrive.
    let state = device_state(&device).await;
    assert_eq!(state.last_values["v"].value, 4.0);
    assert_eq!(state.message_count, 6);
}

async fn device_state(device: &str) -> DeviceState {
    let response = gateway()
        .http()
        .get(
            &format!("/devices/{device}/state"),
            &gateway().policy_token("service").await,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_poison_record_mid_stream_is_dead_lettered_and_the_rest_aggregated() {
    gateway();
    let device = unique("poison");
    let base = base();
    put_envelopes(&[envelope_at(&device, at(base), r#"{"v":1}"#)]).await;
    put_raw(&device, b"\x00\x01 definitely not an envelope").await;
    put_envelopes(&[
        envelope_at(&device, at(base + 1000), r#"{"v":2}"#),
        envelope_at(&device, at(base + 2000), r#"{"v":3}"#),
    ])
    .await;
    let body = wait_for_telemetry(
        &device,
        &format!("window=1m&field=v&{}", range(base, base + MINUTE)),
        |b| count_of(b) == 3,
    )
    .await;
    assert_eq!(points(&body)[0]["sum"].as_f64(), Some(6.0));

    let dead_letters = std::env::var(vars::ANALYTICS_DLQ_URL).unwrap();
    let body = hub_tests::take_matching(&dead_letters, Duration::from_secs(30), |body| {
        body["partitionKey"] == device.as_str()
    })
    .await;
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("not a telemetry envelope"),
        "{body}"
    );
}

/// The real DynamoDB store with a fault: the commits numbered in `fail` fail.
struct Flaky {
    inner: DynamoDbAnalyticsStore,
    commits: AtomicUsize,
    fail: Vec<usize>,
}

impl AnalyticsStore for Flaky {
    async fn checkpoint(&self, shard: &str) -> Result<Option<String>, StoreError> {
        self.inner.checkpoint(shard).await
    }
    async fn load(&self, keys: &[StateKey]) -> Result<hub_shared::ports::LoadedState, StoreError> {
        self.inner.load(keys).await
    }
    async fn commit(
        &self,
        shard: &str,
        expected: Option<&str>,
        checkpoint: &str,
        items: &[StateItem],
    ) -> Result<CommitOutcome, StoreError> {
        let n = self.commits.fetch_add(1, Ordering::SeqCst);
        if self.fail.contains(&n) {
            return Err(StoreError::transient(
                "injected",
                std::io::Error::other("throttled"),
            ));
        }
        self.inner.commit(shard, expected, checkpoint, items).await
    }
    async fn aggregates(
        &self,
        device: &hub_shared::DeviceId,
        window: WindowSize,
        from: i64,
        to: i64,
    ) -> Result<Vec<WindowAggregate>, StoreError> {
        self.inner.aggregates(device, window, from, to).await
    }
    async fn device_state(
        &self,
        device: &hub_shared::DeviceId,
    ) -> Result<Option<DeviceState>, StoreError> {
        self.inner.device_state(device).await
    }
    async fn alerts(&self, active_only: bool, limit: usize) -> Result<Vec<Alert>, StoreError> {
        self.inner.alerts(active_only, limit).await
    }
    async fn reviews(
        &self,
        alert_ids: &[String],
    ) -> Result<std::collections::HashMap<String, AlertReview>, StoreError> {
        self.inner.reviews(alert_ids).await
    }
    async fn put_review(&self, alert_id: &str, review: &AlertReview) -> Result<(), StoreError> {
        self.inner.put_review(alert_id, review).await
    }
}

#[tokio::test]
async fn replayed_and_overlapping_batches_leave_aggregates_unchanged() {
    gateway();
    let environment = hub_tests::settings().functions["analytics"]
        .environment
        .clone();
    let config =
        AnalyticsConfig::from_env(&Env::from_fn(|name| environment.get(name).cloned())).unwrap();
    let sdk = hub_shared::aws::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let real = DynamoDbAnalyticsStore::new(
        dynamodb.clone(),
        hub_shared::aws::AnalyticsTables {
            analytics: config.analytics_table.clone(),
            alerts: config.alerts_table.clone(),
        },
        config.retention,
    );
    let handler = AnalyticsHandler::new(
        config.windows.clone(),
        Flaky {
            inner: real.clone(),
            commits: AtomicUsize::new(0),
            fail: vec![1],
        },
        DynamoDbRuleStore::new(dynamodb, &config.rules_table),
        hub_analytics::AnalyticsQueues {
            command_requests: SqsQueue::new(sqs.clone(), &config.command_requests_queue_url),
            alert_events: SqsQueue::new(sqs.clone(), &config.alerts_queue_url),
            dead_letters: SqsQueue::new(sqs, &config.dead_letter_queue_url),
        },
        config.rules_cache,
    );
    // A shard of its own, so the gateway's mapping never competes with this test.
    let shard = unique("shardId-test");
    let device = unique("replay");
    let base = base();
    let envelopes: Vec<_> = (0..6)
        .map(|i| envelope_at(&device, at(base + i * 10_000), &format!(r#"{{"v":{i}}}"#)))
        .collect();
    let event = |from: usize, to: usize| {
        let records: Vec<serde_json::Value> = (from..to)
            .map(|i| {
                serde_json::json!({
                    "kinesis": {
                        "partitionKey": device, "sequenceNumber": format!("{}", 1000 + i),
                        "data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, envelopes[i].to_json()),
                        "approximateArrivalTimestamp": 1.0,
                    },
                    "eventID": format!("{shard}:{}", 1000 + i),
                    "eventSourceARN": "arn:aws:kinesis:local:000000000000:stream/replay-test",
                })
            })
            .collect();
        serde_json::from_value::<KinesisEvent>(serde_json::json!({ "Records": records })).unwrap()
    };
    let sum = || async {
        let aggregates = real
            .aggregates(
                &hub_shared::DeviceId::parse(&device).unwrap(),
                "1m".parse().unwrap(),
                base,
                base,
            )
            .await
            .unwrap();
        aggregates
            .first()
            .map(|a| (a.message_count, a.fields["v"].sum))
    };

    // Commit 0: records 0..3. Commit 1 (records 0..6, overlapping) fails: retry from 1003.
    assert!(
        handler
            .handle_kinesis(&event(0, 3))
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(sum().await, Some((3, 3.0)));
    let failed = handler.handle_kinesis(&event(0, 6)).await;
    assert_eq!(
        failed.batch_item_failures[0].item_identifier.as_deref(),
        Some("1003")
    );
    assert_eq!(
        sum().await,
        Some((3, 3.0)),
        "nothing of the failed sub-batch was written"
    );
    // The overlapping retry (whole batch again), then the exact same batch once more.
    assert!(
        handler
            .handle_kinesis(&event(0, 6))
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(sum().await, Some((6, 15.0)));
    assert!(
        handler
            .handle_kinesis(&event(0, 6))
            .await
            .batch_item_failures
            .is_empty()
    );
    assert!(
        handler
            .handle_kinesis(&event(2, 5))
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(sum().await, Some((6, 15.0)), "replays change nothing");
}

#[tokio::test]
async fn temperature_above_normal_fires_a_rule_that_commands_the_device_once_per_cooldown() {
    let gateway = gateway();
    let device = gateway.register(&unique("thermo")).await;
    let service = gateway.policy_token("service").await;
    let rule_id = unique("hot");
    let rule = serde_json::json!({
        "description": "temperature above normal",
        "devices": { "ids": [device.id] },
        "condition": { "field": "temperature", "operator": ">", "threshold": 30 },
        "cooldownSeconds": 3600,
        "actions": { "alert": { "severity": "critical" }, "command": { "body": "fan on", "properties": { "reason": "overheat" } } },
    });
    let created = gateway
        .http()
        .put(&format!("/rules/{rule_id}"), &service)
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);

    let client = device.client(&gateway.http_url);
    let send = |t: f64| {
        let message =
            hub_device_sdk::Message::new(format!(r#"{{"temperature":{t}}}"#).into_bytes());
        let client = &client;
        async move { client.send_event(&message).await.unwrap() }
    };
    let alerts = || async {
        let response = gateway
            .http()
            .get(&format!("/alerts?active=true&ruleId={rule_id}"), &service)
            .send()
            .await
            .unwrap();
        response.json::<serde_json::Value>().await.unwrap()["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };

    // Above normal twice: one alert, one command.
    send(35.0).await;
    send(36.5).await;
    let command = client
        .receive_wait(Duration::from_secs(20))
        .await
        .unwrap()
        .expect("the rule's command reaches the device");
    assert_eq!(command.body, b"fan on");
    assert_eq!(
        command.properties.get("reason").map(String::as_str),
        Some("overheat")
    );
    client.complete(&command.lock_token).await.unwrap();
    let active = alerts().await;
    assert_eq!(active.len(), 1);
    assert_eq!(
        (
            active[0]["deviceId"].as_str(),
            active[0]["severity"].as_str()
        ),
        (Some(device.id.as_str()), Some("critical"))
    );

    // Back to normal: the alert clears.
    send(22.0).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !alerts().await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the alert never cleared"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Above normal again within the cooldown: alerted again, but no second command.
    send(40.0).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while alerts().await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the alert was not raised again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        client.receive_wait(Duration::from_secs(3)).await.unwrap(),
        None,
        "exactly one command per cooldown"
    );

    let state = device_state(&device.id).await;
    assert_eq!(
        (state.message_count, state.last_values["temperature"].value),
        (4, 40.0)
    );
    let deleted = gateway
        .http()
        .delete(&format!("/rules/{rule_id}"), &service)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
}

#[tokio::test]
async fn telemetry_through_the_device_api_reaches_the_aggregates() {
    let gateway = gateway();
    let device = gateway.register(&unique("e2e-agg")).await;
    let mut tail = tail().await;
    let client = device.https_client();
    for t in [20.0, 22.0, 24.0] {
        client
            .send_event(&hub_device_sdk::Message::new(
                format!(r#"{{"temperature":{t}}}"#).into_bytes(),
            ))
            .await
            .unwrap();
    }
    let records = read_device_records(&mut tail, &device.id, 3).await;
    let first = records[0].envelope.enqueued_time.unix_millis();
    let last = records[2].envelope.enqueued_time.unix_millis();
    let body = wait_for_telemetry(
        &device.id,
        &format!(
            "window=1h&field=temperature&{}",
            range(first - 3_600_000, last)
        ),
        |b| count_of(b) == 3,
    )
    .await;
    let point = &points(&body)[0];
    assert_eq!(
        (
            point["sum"].as_f64(),
            point["min"].as_f64(),
            point["max"].as_f64()
        ),
        (Some(66.0), Some(20.0), Some(24.0))
    );
}

#[tokio::test]
async fn a_rule_can_select_devices_by_twin_tag() {
    let gateway = gateway();
    let service = gateway.policy_token("service").await;
    let client = gateway.http();
    let site = unique("site");
    let in_site = gateway.register(&unique("tagged")).await;
    let elsewhere = gateway.register(&unique("untagged")).await;
    for (device, tag) in [(&in_site, site.as_str()), (&elsewhere, "elsewhere")] {
        let tagged = client
            .patch(&format!("/twins/{}", device.id), &service)
            .json(&serde_json::json!({"tags": {"site": tag, "floor": 2}}))
            .send()
            .await
            .unwrap();
        assert_eq!(tagged.status().as_u16(), 200);
    }
    let rule_id = unique("site-hot");
    let created = client
        .put(&format!("/rules/{rule_id}"), &service)
        .json(&serde_json::json!({
            "devices": { "tags": { "site": site, "floor": 2 } },
            "condition": { "field": "temperature", "operator": ">", "threshold": 30 },
            "actions": { "alert": {} },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);

    for device in [&elsewhere, &in_site] {
        let message = hub_device_sdk::Message::new(br#"{"temperature":35}"#.to_vec());
        device
            .client(&gateway.http_url)
            .send_event(&message)
            .await
            .unwrap();
    }
    // Both readings analysed (the window counts them), then only the tagged device is alerted.
    for device in [&elsewhere, &in_site] {
        wait_for_telemetry(&device.id, "window=1m&field=temperature", |body| {
            count_of(body) == 1
        })
        .await;
    }
    let alerts: serde_json::Value = client
        .get_json(&format!("/alerts?active=true&ruleId={rule_id}"), &service)
        .await;
    let alerted: Vec<&str> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["deviceId"].as_str())
        .collect();
    assert_eq!(alerted, [in_site.id.as_str()]);

    let deleted = client
        .delete(&format!("/rules/{rule_id}"), &service)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
}
