//! Batch semantics and the HTTP API over in-memory ports; the same properties are tested against
//! DynamoDB, Kinesis and SQS on LocalStack in `tests/`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_lambda_events::kinesis::{KinesisEvent, KinesisEventRecord};
use hub_shared::authz::Principal;
use hub_shared::domain::analytics::{Alert, Rule, WindowSize};
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::envelope::{AuthMethod, DeviceMessage, Sender, TelemetryEnvelope};
use hub_shared::domain::policy::{Permission, Rights};
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::fakes::{
    InMemoryAnalytics, InMemoryQueue, InMemoryRules, RequestBuilder, error_code, response_body,
};
use hub_shared::http::AuthContext;
use hub_shared::ports::{AnalyticsStore, StateItem, StateKey};

use super::*;

type TestHandler = AnalyticsHandler<InMemoryAnalytics, InMemoryRules, InMemoryQueue>;

fn handler(rules: Vec<Rule>) -> TestHandler {
    AnalyticsHandler::new(
        vec!["1m".parse().unwrap(), "1h".parse().unwrap()],
        InMemoryAnalytics::default(),
        InMemoryRules::with(rules),
        AnalyticsQueues {
            command_requests: InMemoryQueue::default(),
            alert_events: InMemoryQueue::default(),
            dead_letters: InMemoryQueue::default(),
        },
        Duration::ZERO,
    )
}

fn envelope(device: &str, at_ms: i64, body: &str) -> TelemetryEnvelope {
    let sender = Sender {
        device_id: DeviceId::parse(device).unwrap(),
        generation_id: "1".into(),
        auth_method: AuthMethod::device_key(),
    };
    let message = DeviceMessage {
        body: body.as_bytes().to_vec(),
        ..Default::default()
    };
    TelemetryEnvelope::stamp(
        message,
        &sender,
        Timestamp::from_unix_millis(at_ms).unwrap(),
    )
}

fn record(shard: &str, sequence: u64, partition_key: &str, data: Vec<u8>) -> KinesisEventRecord {
    let json = serde_json::json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence.to_string(),
            "data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data),
            "approximateArrivalTimestamp": 1.0,
        },
        "eventSource": "aws:kinesis",
        "eventID": format!("{shard}:{sequence}"),
        "eventSourceARN": "arn:aws:kinesis:us-east-1:000000000000:stream/telemetry",
    });
    serde_json::from_value(json).unwrap()
}

fn batch(shard: &str, first_sequence: u64, envelopes: &[TelemetryEnvelope]) -> KinesisEvent {
    let mut event = KinesisEvent::default();
    event.records = envelopes
        .iter()
        .enumerate()
        .map(|(i, e)| {
            record(
                shard,
                first_sequence + i as u64,
                e.device_id.as_str(),
                e.to_json(),
            )
        })
        .collect();
    event
}

fn aggregate(
    h: &TestHandler,
    device: &str,
    window: &str,
    start: i64,
) -> hub_shared::domain::analytics::WindowAggregate {
    let key = StateKey::Aggregate {
        device: DeviceId::parse(device).unwrap(),
        window: window.parse::<WindowSize>().unwrap(),
        start,
    };
    match h.store.item(&key) {
        Some(StateItem::Aggregate(a)) => a,
        other => panic!("no aggregate {key:?}: {other:?}"),
    }
}

fn series() -> Vec<TelemetryEnvelope> {
    (0..6)
        .map(|i| envelope("d1", i * 30_000, &format!(r#"{{"t":{}}}"#, i * 10)))
        .collect()
}

#[tokio::test]
async fn a_batch_aggregates_exactly_and_replaying_it_changes_nothing() {
    let h = handler(vec![]);
    let event = batch("shardId-0", 100, &series());
    assert!(
        h.handle_kinesis(&event)
            .await
            .batch_item_failures
            .is_empty()
    );
    let before = h.store.all();
    let minutes: Vec<(u64, f64)> = (0..3)
        .map(|m| aggregate(&h, "d1", "1m", m * 60_000))
        .map(|a| (a.message_count, a.fields["t"].sum))
        .collect();
    assert_eq!(minutes, [(2, 10.0), (2, 50.0), (2, 90.0)]);
    assert_eq!(aggregate(&h, "d1", "1h", 0).fields["t"].count, 6);

    assert!(
        h.handle_kinesis(&event)
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(
        h.store.all(),
        before,
        "the same batch applied twice leaves everything unchanged"
    );
    assert_eq!(
        h.store.commits.load(Ordering::SeqCst),
        1,
        "the replay committed nothing"
    );
}

#[tokio::test]
async fn an_overlapping_retry_after_a_failure_applies_each_record_once() {
    let h = handler(vec![]);
    let records = series();
    // The first three records commit; then commits fail and the batch reports a failure.
    assert!(
        h.handle_kinesis(&batch("shardId-0", 100, &records[..3]))
            .await
            .batch_item_failures
            .is_empty()
    );
    h.store.fail_commits.store(1, Ordering::SeqCst);
    let failed = h.handle_kinesis(&batch("shardId-0", 100, &records)).await;
    let failures: Vec<Option<String>> = failed
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(
        failures,
        [Some("103".to_owned())],
        "retry from the first record not applied"
    );
    // Lambda retries from 103, but a retry of the whole batch must be just as harmless.
    assert!(
        h.handle_kinesis(&batch("shardId-0", 100, &records))
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(aggregate(&h, "d1", "1h", 0).fields["t"].count, 6);
    assert_eq!(aggregate(&h, "d1", "1h", 0).fields["t"].sum, 150.0);
}

#[tokio::test]
async fn records_whose_stored_state_is_damaged_are_dead_lettered_and_the_rest_applied() {
    let h = handler(vec![]);
    // d1's device state cannot be read back; d2's is fine.
    h.store
        .corrupt
        .lock()
        .unwrap()
        .insert(StateKey::Device(DeviceId::parse("d1").unwrap()));
    let envelopes = vec![
        envelope("d1", 0, r#"{"t":1}"#),
        envelope("d2", 1_000, r#"{"t":2}"#),
        envelope("d1", 2_000, r#"{"t":3}"#),
    ];
    let response = h.handle_kinesis(&batch("shardId-0", 1, &envelopes)).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "a damaged item is not retried forever: {response:?}"
    );
    let dead = h.dead_letters.sent();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead.iter()
            .all(|d| d.contains("cannot be read") && d.contains(r#""partitionKey":"d1""#)),
        "{dead:?}"
    );
    assert_eq!(aggregate(&h, "d2", "1h", 0).message_count, 1);
    assert!(
        h.store
            .item(&StateKey::Device(DeviceId::parse("d1").unwrap()))
            .is_none(),
        "the damaged item is left for repair, not overwritten"
    );
}

#[tokio::test]
async fn poison_records_are_dead_lettered_without_blocking_the_shard() {
    let h = handler(vec![]);
    let good = series();
    let mut event = batch("shardId-0", 1, &good[..2]);
    event
        .records
        .push(record("shardId-0", 3, "d1", b"{not an envelope".to_vec()));
    let mut wrong_key = record("shardId-0", 4, "d2", good[2].to_json());
    wrong_key.kinesis.partition_key = "d2".into();
    event.records.push(wrong_key);
    event
        .records
        .extend(batch("shardId-0", 5, &good[3..]).records);
    assert!(
        h.handle_kinesis(&event)
            .await
            .batch_item_failures
            .is_empty()
    );
    let dead = h.dead_letters.sent();
    assert_eq!(dead.len(), 2);
    assert!(
        dead[0].contains("not a telemetry envelope") && dead[0].contains(r#""sequenceNumber":"3""#),
        "{}",
        dead[0]
    );
    assert!(dead[1].contains("partition key"));
    assert_eq!(
        aggregate(&h, "d1", "1h", 0).message_count,
        5,
        "every other record is aggregated"
    );
}

#[tokio::test]
async fn large_batches_are_split_into_transactions_of_at_most_99_items() {
    let h = handler(vec![]);
    // 150 devices x (1 state + 2 windows) = 450 items.
    let records: Vec<TelemetryEnvelope> = (0..150)
        .map(|d| envelope(&format!("dev-{d}"), 1_000, r#"{"t":1}"#))
        .collect();
    assert!(
        h.handle_kinesis(&batch("shardId-0", 1, &records))
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(
        h.store.commits.load(Ordering::SeqCst),
        5,
        "ceil(450 / 99) transactions"
    );
    assert_eq!(h.store.all().len(), 450);
}

#[tokio::test]
async fn dynamo_calls_grow_with_devices_and_windows_not_records() {
    let h = handler(vec![]);
    let records: Vec<TelemetryEnvelope> = (0..1000)
        .map(|i| {
            envelope(
                &format!("dev-{}", i % 10),
                (i % 50) * 1_000,
                r#"{"t":1,"h":2}"#,
            )
        })
        .collect();
    assert!(
        h.handle_kinesis(&batch("shardId-0", 1, &records))
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(h.store.loads.load(Ordering::SeqCst), 1);
    assert_eq!(
        h.store.commits.load(Ordering::SeqCst),
        1,
        "10 devices x 3 items fit one transaction"
    );
}

#[tokio::test]
async fn commands_are_sent_with_stable_ids_even_when_the_commit_fails() {
    let hot: Rule = serde_json::from_str(
        r#"{"id":"hot","devices":{"all":true},"condition":{"field":"t","operator":">","threshold":30},"actions":{"command":{"body":"fan on"},"alert":{}}}"#,
    )
    .unwrap();
    let h = handler(vec![hot]);
    let event = batch("shardId-0", 1, &[envelope("d1", 0, r#"{"t":35}"#)]);
    h.store.fail_commits.store(1, Ordering::SeqCst);
    assert_eq!(h.handle_kinesis(&event).await.batch_item_failures.len(), 1);
    assert!(
        h.handle_kinesis(&event)
            .await
            .batch_item_failures
            .is_empty()
    );
    let commands = h.command_requests.sent();
    assert_eq!(commands.len(), 2, "sent before each commit attempt");
    assert_eq!(
        commands[0], commands[1],
        "the same request id both times, so it is enqueued once"
    );
    assert_eq!(h.alert_events.sent().len(), 2);
    let Some(StateItem::Alert(alert)) = h.store.item(&StateKey::Alert {
        rule_id: "hot".into(),
        device: DeviceId::parse("d1").unwrap(),
    }) else {
        panic!("alert state")
    };
    assert!(alert.active);
    // Once committed, a redelivery sends nothing more.
    assert!(
        h.handle_kinesis(&event)
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(h.command_requests.sent().len(), 2);
}

#[tokio::test]
async fn shards_are_checkpointed_separately() {
    let h = handler(vec![]);
    let mut event = batch("shardId-0", 10, &[envelope("a", 0, r#"{"t":1}"#)]);
    event
        .records
        .extend(batch("shardId-1", 5, &[envelope("b", 0, r#"{"t":1}"#)]).records);
    assert!(
        h.handle_kinesis(&event)
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(aggregate(&h, "a", "1m", 0).message_count, 1);
    assert_eq!(
        aggregate(&h, "b", "1m", 0).message_count,
        1,
        "sequence 5 of another shard is not 'before' 10"
    );
}

fn service() -> AuthContext {
    AuthContext::Allow(Principal::Service {
        policy: "service".into(),
        rights: Rights::of(&[Permission::ServiceConnect]),
    })
}

#[tokio::test]
async fn the_query_api_serves_aggregates_state_and_alerts() {
    let h = handler(vec![]);
    assert!(
        h.handle_kinesis(&batch("shardId-0", 1, &series()))
            .await
            .batch_item_failures
            .is_empty()
    );
    let mut request = RequestBuilder::new(
        "GET /devices/{id}/telemetry",
        "/devices/d1/telemetry",
        &service(),
    )
    .build();
    request.query_string_parameters = std::collections::HashMap::from([
        ("field".to_owned(), "t".to_owned()),
        ("window".to_owned(), "1m".to_owned()),
        ("from".to_owned(), "1970-01-01T00:00:00Z".to_owned()),
        ("to".to_owned(), "1970-01-01T00:10:00Z".to_owned()),
    ])
    .into();
    let response = h.handle_http(&request).await;
    assert_eq!(response.status_code, 200, "{}", response_body(&response));
    let json: serde_json::Value = serde_json::from_str(&response_body(&response)).unwrap();
    let points = json["points"].as_array().unwrap();
    assert_eq!(points.len(), 3);
    assert_eq!(points[1]["windowStart"], "1970-01-01T00:01:00Z");
    assert_eq!(
        (points[1]["count"].as_u64(), points[1]["mean"].as_f64()),
        (Some(2), Some(25.0))
    );
    assert_eq!(points[1]["first"]["value"], 20.0);

    let state = h
        .handle_http(
            &RequestBuilder::new("GET /devices/{id}/state", "/devices/d1/state", &service())
                .build(),
        )
        .await;
    let state: serde_json::Value = serde_json::from_str(&response_body(&state)).unwrap();
    assert_eq!(
        (
            state["messageCount"].as_u64(),
            state["lastValues"]["t"]["value"].as_f64()
        ),
        (Some(6), Some(50.0))
    );
    let unknown = h
        .handle_http(
            &RequestBuilder::new(
                "GET /devices/{id}/state",
                "/devices/ghost/state",
                &service(),
            )
            .build(),
        )
        .await;
    assert_eq!(unknown.status_code, 404);

    request.query_string_parameters =
        std::collections::HashMap::from([("window".to_owned(), "5m".to_owned())]).into();
    let response = h.handle_http(&request).await;
    assert_eq!(
        (response.status_code, error_code(&response).as_deref()),
        (400, Some("ArgumentInvalid"))
    );
}

#[tokio::test]
async fn the_fleet_telemetry_api_merges_a_groups_windows() {
    let h = handler(vec![]);
    let mut records = series();
    records.extend((0..6).map(|i| {
        envelope(
            "d2",
            i * 30_000,
            &format!(r#"{{"t":{},"u":1}}"#, 100 + i * 10),
        )
    }));
    records.push(envelope("d3", 60_000, r#"{"u":5}"#));
    assert!(
        h.handle_kinesis(&batch("shardId-0", 1, &records))
            .await
            .batch_item_failures
            .is_empty()
    );
    let query = |body: &str| {
        RequestBuilder::new("POST /fleet/telemetry", "/fleet/telemetry", &service())
            .body(body.as_bytes())
            .build()
    };
    let response = h
        .handle_http(&query(
            r#"{"deviceIds":["d1","d2","d3","ghost","d1"],"field":"t","window":"1m",
                "from":"1970-01-01T00:00:00Z","to":"1970-01-01T00:10:00Z"}"#,
        ))
        .await;
    assert_eq!(response.status_code, 200, "{}", response_body(&response));
    let json: serde_json::Value = serde_json::from_str(&response_body(&response)).unwrap();
    assert_eq!(json["deviceCount"], 4, "duplicates count once");
    let points = json["points"].as_array().unwrap();
    assert_eq!(points.len(), 3);
    let minute = &points[1];
    assert_eq!(minute["windowStart"], "1970-01-01T00:01:00Z");
    assert_eq!(
        (
            minute["devices"].as_u64(),
            minute["count"].as_u64(),
            minute["min"].as_f64(),
            minute["max"].as_f64(),
            minute["mean"].as_f64()
        ),
        (Some(2), Some(4), Some(20.0), Some(130.0), Some(75.0)),
        "d3 has no t in that window and does not count"
    );

    for (body, why) in [
        (r#"{"deviceIds":[],"field":"t"}"#, "no devices"),
        (r#"{"deviceIds":["d1"],"field":""}"#, "no field"),
        (r#"{"deviceIds":["d 1"],"field":"t"}"#, "a bad device id"),
        (
            r#"{"deviceIds":["d1"],"field":"t","window":"5m"}"#,
            "a window not aggregated",
        ),
        (
            r#"{"deviceIds":["d1"],"field":"t","extra":1}"#,
            "an unknown member",
        ),
        (
            r#"{"deviceIds":["d1"],"field":"t","from":"yesterday"}"#,
            "a bad time",
        ),
    ] {
        let response = h.handle_http(&query(body)).await;
        assert_eq!(
            (response.status_code, error_code(&response).as_deref()),
            (400, Some("ArgumentInvalid")),
            "{why}"
        );
    }
    let many: Vec<String> = (0..101).map(|i| format!("\"d{i}\"")).collect();
    let response = h
        .handle_http(&query(&format!(
            r#"{{"deviceIds":[{}],"field":"t"}}"#,
            many.join(",")
        )))
        .await;
    assert_eq!(response.status_code, 400, "more than 100 devices");
}

#[tokio::test]
async fn the_rules_api_validates_and_honours_etags() {
    let h = handler(vec![]);
    let rule = r#"{"devices":{"all":true},"condition":{"field":"t","operator":">","threshold":30},"actions":{"alert":{}}}"#;
    let put = |body: &str, if_match: Option<&str>| {
        let mut builder =
            RequestBuilder::new("PUT /rules/{ruleId}", "/rules/hot", &service()).text_body(body);
        if let Some(etag) = if_match {
            builder = builder.header("if-match", etag);
        }
        builder.build()
    };
    let created = h.handle_http(&put(rule, None)).await;
    assert_eq!(created.status_code, 201, "{}", response_body(&created));
    let etag = created.headers["etag"].to_str().unwrap().to_owned();
    let stale = h.handle_http(&put(rule, Some("\"stale\""))).await;
    assert_eq!(
        (stale.status_code, error_code(&stale).as_deref()),
        (412, Some("PreconditionFailed"))
    );
    assert_eq!(
        h.handle_http(&put(rule, Some(&etag))).await.status_code,
        200
    );

    let invalid = h.handle_http(&put(r#"{"devices":{"all":true},"condition":{"field":"t","operator":">","threshold":1},"actions":{}}"#, None)).await;
    assert_eq!(
        (invalid.status_code, error_code(&invalid).as_deref()),
        (400, Some("ArgumentInvalid"))
    );

    let listed = h
        .handle_http(&RequestBuilder::new("GET /rules", "/rules", &service()).build())
        .await;
    let listed: serde_json::Value = serde_json::from_str(&response_body(&listed)).unwrap();
    assert_eq!(listed["rules"][0]["id"], "hot");

    let post = RequestBuilder::new("POST /rules", "/rules", &service())
        .text_body(&rule.replacen('{', r#"{"id":"hot","#, 1))
        .build();
    let conflict = h.handle_http(&post).await;
    assert_eq!(
        (conflict.status_code, error_code(&conflict).as_deref()),
        (409, Some("Conflict"))
    );

    let delete = RequestBuilder::new("DELETE /rules/{ruleId}", "/rules/hot", &service()).build();
    assert_eq!(h.handle_http(&delete).await.status_code, 204);
    assert_eq!(h.handle_http(&delete).await.status_code, 404);
}

#[tokio::test]
async fn rules_select_devices_by_twin_tags_of_their_generation() {
    use hub_shared::domain::twin::Twin;
    use hub_shared::ports::TwinStore;

    let twins = hub_shared::fakes::InMemoryTwins::default();
    for (device, generation, site) in [("d1", "1", "lab"), ("d2", "1", "plant"), ("d3", "0", "lab")]
    {
        let mut twin = Twin::new(generation);
        twin.tags = serde_json::json!({"site": site})
            .as_object()
            .cloned()
            .unwrap();
        let id = DeviceId::parse(device).unwrap();
        twins.put_twin(&id, &twin, None, None).await.unwrap();
    }
    let in_lab: Rule = serde_json::from_str(
        r#"{"id":"lab-hot","devices":{"tags":{"site":"lab"}},"condition":{"field":"t","operator":">","threshold":30},"actions":{"alert":{}}}"#,
    )
    .unwrap();
    let h = handler(vec![in_lab]).with_tags(twins);
    // d3's twin belongs to an earlier generation of the id (envelopes carry generation "1").
    let readings: Vec<_> = ["d1", "d2", "d3", "d4"]
        .iter()
        .map(|d| envelope(d, 0, r#"{"t":35}"#))
        .collect();
    let event = batch("shardId-0", 1, &readings);
    assert!(
        h.handle_kinesis(&event)
            .await
            .batch_item_failures
            .is_empty()
    );
    let alerted: Vec<String> = h
        .alert_events
        .sent()
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(e).unwrap()["deviceId"].to_string())
        .collect();
    assert_eq!(alerted, ["\"d1\""], "only the device tagged site=lab now");
}

/// Puts an alert of `rule` for `device` in the store, raised at `raised_ms`.
async fn raised(h: &TestHandler, rule: &str, device: &str, raised_ms: i64) {
    let mut alert = Alert::new(rule, &DeviceId::parse(device).unwrap(), "t");
    alert.active = true;
    alert.raised_at = Timestamp::from_unix_millis(raised_ms);
    let shard = format!("review-{rule}-{device}-{raised_ms}");
    h.store
        .commit(&shard, None, "1", &[StateItem::Alert(alert)])
        .await
        .unwrap();
}

async fn post(h: &TestHandler, rule: &str, device: &str, action: &str) -> (i64, serde_json::Value) {
    let response = h
        .handle_http(
            &RequestBuilder::new(
                &format!("POST /alerts/{{ruleId}}/{{deviceId}}/{action}"),
                &format!("/alerts/{rule}/{device}/{action}"),
                &service(),
            )
            .build(),
        )
        .await;
    let body = serde_json::from_str(&response_body(&response)).unwrap_or_default();
    (response.status_code, body)
}

async fn listed(h: &TestHandler, query: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let response = h
        .handle_http(
            &RequestBuilder::new("GET /alerts", "/alerts", &service())
                .query(query)
                .build(),
        )
        .await;
    assert_eq!(response.status_code, 200, "{}", response_body(&response));
    let body: serde_json::Value = serde_json::from_str(&response_body(&response)).unwrap();
    body["alerts"].as_array().unwrap().clone()
}

#[tokio::test]
async fn operators_acknowledge_and_close_the_current_raise_of_an_alert() {
    let h = handler(vec![]);
    raised(&h, "hot", "d1", 60_000).await;
    raised(&h, "hot", "d2", 60_000).await;
    let open = listed(&h, &[]).await;
    assert!(open.iter().all(|a| a["state"] == "open"), "{open:?}");
    assert_eq!(
        open[0]["alertId"].as_str().unwrap().split('/').next(),
        Some("hot")
    );

    let (status, acknowledged) = post(&h, "hot", "d1", "acknowledge").await;
    assert_eq!(status, 200, "{acknowledged}");
    assert_eq!(acknowledged["state"], "acknowledged");
    assert_eq!(acknowledged["review"]["by"], "service");
    let (_, closed) = post(&h, "hot", "d2", "close").await;
    assert_eq!(closed["state"], "closed");

    let state_of = |alerts: &[serde_json::Value], device: &str| {
        alerts
            .iter()
            .find(|a| a["deviceId"] == device)
            .map(|a| a["state"].clone())
    };
    let all = listed(&h, &[]).await;
    assert_eq!(state_of(&all, "d1"), Some("acknowledged".into()));
    assert_eq!(state_of(&all, "d2"), Some("closed".into()));
    let only_closed = listed(&h, &[("state", "closed")]).await;
    assert_eq!(only_closed.len(), 1);

    // Raised again: the review was of the earlier raise, so the alert is open again.
    raised(&h, "hot", "d2", 120_000).await;
    assert_eq!(state_of(&listed(&h, &[]).await, "d2"), Some("open".into()));
}

#[tokio::test]
async fn reviewing_an_alert_that_was_never_raised_or_a_bad_state_filter_is_refused() {
    let h = handler(vec![]);
    let (status, body) = post(&h, "hot", "ghost", "close").await;
    assert_eq!(status, 404, "{body}");
    let response = h
        .handle_http(
            &RequestBuilder::new("GET /alerts", "/alerts", &service())
                .query(&[("state", "sleeping")])
                .build(),
        )
        .await;
    assert_eq!(response.status_code, 400);
    assert_eq!(error_code(&response).as_deref(), Some("ArgumentInvalid"));
}
