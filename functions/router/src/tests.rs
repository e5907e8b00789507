use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::kinesis::KinesisEvent;
use hub_shared::domain::envelope::{AuthMethod, DeviceMessage, Sender, SystemProperties};
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::domain::twin::Twin;
use hub_shared::fakes::{InMemoryQueue, InMemoryTwins};
use hub_shared::ports::{EndpointLimits, FailureKind, RecordFailure, StoreError};

use super::*;

/// An endpoint that keeps what it is given, and fails as told: `failing_calls` calls fail
/// transiently first, `refusing` makes every call fail for good.
#[derive(Default)]
struct FakeEndpoint {
    received: Mutex<Vec<Delivery>>,
    failing_calls: AtomicUsize,
    refusing: bool,
    calls: AtomicUsize,
}

impl Endpoint for FakeEndpoint {
    fn limits(&self) -> EndpointLimits {
        EndpointLimits {
            messages: 2,
            bytes: 64 * 1024,
            message_bytes: 8 * 1024,
        }
    }

    async fn deliver(&self, batch: &[&Delivery]) -> Result<Vec<RecordFailure>, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.refusing {
            return Err(StoreError::new(
                "fake endpoint",
                FailureKind::Rejected,
                std::io::Error::other("the queue does not exist"),
            ));
        }
        if self
            .failing_calls
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Ok(batch.iter().map(|_| Some("throttled".into())).collect());
        }
        self.received
            .lock()
            .unwrap()
            .extend(batch.iter().map(|d| (*d).clone()));
        Ok(vec![None; batch.len()])
    }
}

fn envelope(device: &str, properties: &[(&str, &str)], body: &str) -> TelemetryEnvelope {
    let sender = Sender {
        device_id: DeviceId::parse(device).unwrap(),
        generation_id: "1".into(),
        auth_method: AuthMethod::device_key(),
    };
    let message = DeviceMessage {
        body: body.as_bytes().to_vec(),
        properties: properties
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        system: SystemProperties {
            content_type: Some("application/json".into()),
            content_encoding: Some("utf-8".into()),
            ..Default::default()
        },
    };
    TelemetryEnvelope::stamp(message, &sender, Timestamp::now())
}

fn batch(records: &[Vec<u8>]) -> KinesisEvent {
    let records: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(i, data)| {
            let sequence = (100 + i).to_string();
            hub_shared::fakes::kinesis_record("telemetry", "shardId-0", &sequence, "pk", data, 1.0)
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

type TestRouter = RouterHandler<FakeEndpoint, InMemoryTwins, InMemoryQueue>;

fn router(endpoints: [FakeEndpoint; 2]) -> TestRouter {
    let table = RouteTable::from_json(
        &json!({
            "hubName": "hub-1",
            "endpoints": {
                "critical": { "type": "sqs", "arn": "arn:aws:sqs:r:1:critical", "url": "http://q/critical" },
                "everything": { "type": "kinesis", "arn": "arn:aws:kinesis:r:1:stream/all" }
            },
            "routes": [
                { "name": "critical", "condition": "level = 'critical'", "endpoint": "critical" },
                { "name": "hot", "condition": "$body.temperature > 90", "endpoint": "critical" },
                { "name": "dublin", "condition": "$twin.tags.site = 'dublin'", "endpoint": "everything" }
            ],
            "enrichments": [
                { "key": "site", "value": "$twin.tags.site", "endpoints": ["critical"] },
                { "key": "hub", "value": "$iothubname", "endpoints": ["critical", "everything"] }
            ]
        })
        .to_string(),
    )
    .unwrap();
    RouterHandler {
        table,
        endpoints: endpoints.into_iter().map(Some).collect(),
        twins: InMemoryTwins::default(),
        dead_letters: InMemoryQueue::default(),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        },
        metrics: false,
    }
}

async fn tag(router: &TestRouter, device: &str, site: &str) {
    let mut twin = Twin::new("1");
    twin.tags.insert("site".into(), json!(site));
    router
        .twins
        .put_twin(&DeviceId::parse(device).unwrap(), &twin, None, None)
        .await
        .unwrap();
}

fn bodies(endpoint: &FakeEndpoint) -> Vec<Value> {
    endpoint
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|d| serde_json::from_str(&d.body).unwrap())
        .collect()
}

#[tokio::test]
async fn each_message_reaches_each_chosen_endpoint_once_enriched_and_the_rest_fall_back() {
    let router = router(Default::default());
    tag(&router, "d-dublin", "dublin").await;
    let both = envelope(
        "d-dublin",
        &[("level", "critical")],
        r#"{"temperature": 95}"#,
    );
    let twin_only = envelope("d-dublin", &[], r#"{"temperature": 20}"#);
    let neither = envelope("d-cork", &[("level", "info")], r#"{"temperature": 20}"#);
    let event = batch(&[both.to_json(), twin_only.to_json(), neither.to_json()]);
    let (response, report) = router.handle_kinesis(&event).await;
    assert!(response.batch_item_failures.is_empty());

    let critical = bodies(router.endpoints[0].as_ref().unwrap());
    assert_eq!(critical.len(), 1, "two routes to one endpoint deliver once");
    assert_eq!(critical[0]["hubMessageId"], json!(both.hub_message_id));
    assert_eq!(critical[0]["properties"]["site"], "dublin");
    assert_eq!(critical[0]["properties"]["hub"], "hub-1");
    assert_eq!(critical[0]["properties"]["level"], "critical");
    assert_eq!(critical[0]["body"], json!("eyJ0ZW1wZXJhdHVyZSI6IDk1fQ=="));
    let delivery = &router.endpoints[0]
        .as_ref()
        .unwrap()
        .received
        .lock()
        .unwrap()[0];
    assert_eq!(delivery.id, both.hub_message_id);
    assert_eq!(delivery.device_id, "d-dublin");
    let routed = TelemetryEnvelope::from_json(delivery.body.as_bytes()).unwrap();
    let mut expected = both.clone();
    expected.properties.insert("site".into(), "dublin".into());
    expected.properties.insert("hub".into(), "hub-1".into());
    assert_eq!(routed, expected, "the envelope, enriched");

    let everything = bodies(router.endpoints[1].as_ref().unwrap());
    let ids: Vec<&Value> = everything.iter().map(|b| &b["hubMessageId"]).collect();
    assert_eq!(
        ids,
        [
            &json!(both.hub_message_id),
            &json!(twin_only.hub_message_id)
        ]
    );
    assert!(everything[0]["properties"].get("site").is_none());

    assert_eq!(report.matched["critical"], 1);
    assert_eq!(report.matched["hot"], 1);
    assert_eq!(report.matched["dublin"], 2);
    assert_eq!(
        report.fallback, 1,
        "the Cork message falls back to the built-in endpoint"
    );
    assert_eq!(report.endpoints["critical"].delivered, 1);
    assert_eq!(report.endpoints["everything"].delivered, 2);
    assert!(router.dead_letters.sent().is_empty());
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_then_dead_lettered_without_holding_back_the_others() {
    let flaky = FakeEndpoint {
        failing_calls: AtomicUsize::new(1),
        ..Default::default()
    };
    let gone = FakeEndpoint {
        refusing: true,
        ..Default::default()
    };
    let router = router([flaky, gone]);
    tag(&router, "d1", "dublin").await;
    let messages: Vec<TelemetryEnvelope> = (0..3)
        .map(|i| envelope("d1", &[("level", "critical")], &format!(r#"{{"n": {i}}}"#)))
        .collect();
    let event = batch(&messages.iter().map(|m| m.to_json()).collect::<Vec<_>>());
    let (response, report) = router.handle_kinesis(&event).await;

    assert!(
        response.batch_item_failures.is_empty(),
        "dead letters took them"
    );
    assert_eq!(
        bodies(router.endpoints[0].as_ref().unwrap()).len(),
        3,
        "retried until delivered"
    );
    assert_eq!(
        router.endpoints[1]
            .as_ref()
            .unwrap()
            .calls
            .load(Ordering::SeqCst),
        2,
        "a refused call is not retried (two calls of at most two messages)"
    );
    let letters: Vec<Value> = router
        .dead_letters
        .sent()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 3);
    for (letter, message) in letters.iter().zip(&messages) {
        assert_eq!(letter["endpoint"], "everything");
        assert_eq!(letter["hubMessageId"], json!(message.hub_message_id));
        assert!(
            letter["reason"]
                .as_str()
                .unwrap()
                .contains("does not exist")
        );
        assert_eq!(letter["envelope"]["deviceId"], "d1");
        assert!(letter["sequenceNumber"].is_string());
    }
    assert_eq!(report.endpoints["everything"].dead_lettered, 3);
    assert_eq!(report.endpoints["critical"].delivered, 3);
}

#[tokio::test]
async fn records_are_retried_only_when_even_the_dead_letter_queue_fails() {
    let gone = FakeEndpoint {
        refusing: true,
        ..Default::default()
    };
    let router = router([FakeEndpoint::default(), gone]);
    tag(&router, "d1", "dublin").await;
    router
        .dead_letters
        .unavailable
        .store(true, Ordering::SeqCst);
    let fine = envelope("d-cork", &[("level", "critical")], "{}");
    let stuck = envelope("d1", &[], "{}");
    let event = batch(&[fine.to_json(), stuck.to_json(), b"not an envelope".to_vec()]);
    let (response, _) = router.handle_kinesis(&event).await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(failed, ["101", "102"]);
    assert_eq!(bodies(router.endpoints[0].as_ref().unwrap()).len(), 1);
}

#[tokio::test]
async fn unreadable_and_oversized_messages_are_dead_lettered_with_the_reason() {
    let router = router(Default::default());
    let big = envelope(
        "d1",
        &[("level", "critical")],
        &format!(r#"{{"pad": "{}"}}"#, "x".repeat(9_000)),
    );
    let event = batch(&[b"{}".to_vec(), big.to_json()]);
    let (response, report) = router.handle_kinesis(&event).await;
    assert!(response.batch_item_failures.is_empty());
    let letters = router.dead_letters.sent();
    assert_eq!(letters.len(), 2);
    assert!(
        letters[0].contains("not a telemetry envelope"),
        "{}",
        letters[0]
    );
    assert!(
        letters[1].contains("this endpoint takes at most"),
        "{}",
        letters[1]
    );
    assert_eq!(report.undecodable, 1);
    assert_eq!(report.endpoints["critical"].dead_lettered, 1);
}

#[test]
fn metrics_are_embedded_metric_format_documents() {
    let mut report = Report::default();
    report.matched.insert("critical".into(), 2);
    report.delivered("q", 2);
    report.fallback = 1;
    let lines = report.emf(time::OffsetDateTime::UNIX_EPOCH);
    let docs: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[0]["Fallback"], 1);
    assert_eq!(
        docs[1]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        metrics::NAMESPACE
    );
    assert_eq!(
        docs[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Route"]])
    );
    assert_eq!(docs[1]["Route"], "critical");
    assert_eq!(docs[1]["Matched"], 2);
    assert_eq!(docs[2]["Endpoint"], "q");
    assert_eq!(docs[2]["Delivered"], 2);
}

#[test]
fn the_configuration_is_read_from_the_environment_and_bad_routes_stop_the_cold_start() {
    let env = |routing: &'static str| {
        Env::from_fn(move |name: &str| match name {
            "HUB_ROUTING" => Some(routing.to_owned()),
            "HUB_TWINS_TABLE" => Some("twins".into()),
            "HUB_ROUTING_DLQ_URL" => Some("http://q/dlq".into()),
            "HUB_ROUTING_METRICS" => Some("emf".into()),
            _ => None,
        })
    };
    let config =
        RouterConfig::from_env(&env(r#"{"routes":[{"name":"r","endpoint":"events"}]}"#)).unwrap();
    assert!(config.metrics);
    assert_eq!(config.max_attempts, 4);
    let error = RouterConfig::from_env(&env(
        r#"{"routes":[{"name":"r","condition":"a = ","endpoint":"events"}]}"#,
    ))
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("route r") && error.contains("column"),
        "{error}"
    );
}

fn registry_event(
    op_type: hub_shared::domain::registry::LifecycleOperation,
    device: &str,
    body: Option<Value>,
) -> LifecycleEvent {
    LifecycleEvent {
        event_id: format!("event-{device}-{}", op_type.as_str()),
        op_type,
        hub_name: "hub-1".into(),
        device_id: DeviceId::parse(device).unwrap(),
        generation_id: "1".into(),
        etag: "AAAAAAAAAAE=".into(),
        status: hub_shared::domain::device::DeviceStatus::Enabled,
        operation_timestamp: Timestamp::now(),
        body,
    }
}

fn sqs_batch(bodies: &[String]) -> SqsEvent {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            json!({
                "messageId": format!("m-{i}"),
                "body": body,
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:r:1:routing-events",
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn events_router(endpoints: [FakeEndpoint; 2]) -> TestRouter {
    let mut router = router(endpoints);
    router.table = RouteTable::from_json(
        &json!({
            "hubName": "hub-1",
            "endpoints": {
                "critical": { "type": "sqs", "arn": "arn:aws:sqs:r:1:critical", "url": "http://q/critical" },
                "everything": { "type": "kinesis", "arn": "arn:aws:kinesis:r:1:stream/all" }
            },
            "routes": [
                { "name": "eco", "source": "TwinChangeEvents",
                  "condition": "opType = 'updateTwin' AND $body.properties.desired.mode = 'eco'", "endpoint": "critical" },
                { "name": "deletions", "source": "DeviceLifecycleEvents",
                  "condition": "opType = 'deleteDeviceIdentity' AND $iothub-message-source = 'deviceLifecycleEvents'", "endpoint": "everything" },
                { "name": "telemetry", "endpoint": "everything" }
            ],
            "enrichments": [{ "key": "site", "value": "$twin.tags.site", "endpoints": ["critical"] }]
        })
        .to_string(),
    )
    .unwrap();
    router
}

#[tokio::test]
async fn registry_events_are_routed_by_their_source_with_azure_properties() {
    use hub_shared::domain::registry::LifecycleOperation as Op;
    let router = events_router(Default::default());
    tag(&router, "d-1", "dublin").await;
    let eco = registry_event(
        Op::UpdateTwin,
        "d-1",
        Some(json!({"version": 3, "properties": {"desired": {"mode": "eco"}}})),
    );
    let other_patch = registry_event(
        Op::ReplaceTwin,
        "d-2",
        Some(json!({"version": 2, "properties": {"desired": {"mode": "eco"}}})),
    );
    let deleted = registry_event(Op::DeleteDeviceIdentity, "d-3", None);
    let connected = registry_event(
        Op::DeviceConnected,
        "d-4",
        Some(json!({"sequenceNumber": "01"})),
    );
    let bodies: Vec<String> = [&eco, &other_patch, &deleted, &connected]
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    let (response, report) = router.handle_events(&sqs_batch(&bodies)).await;
    assert!(response.batch_item_failures.is_empty());
    assert!(router.dead_letters.sent().is_empty());

    // The twin change went to its route's endpoint, enriched, as an envelope saying its source.
    let critical = bodies_of(&router.endpoints[0]);
    assert_eq!(critical.len(), 1, "{critical:?}");
    let routed = &critical[0];
    assert_eq!(routed["hubMessageId"], eco.event_id);
    assert_eq!(routed["messageSource"], "twinChangeEvents");
    assert!(routed.get("authMethod").is_none(), "{routed}");
    assert_eq!(routed["properties"]["opType"], "updateTwin");
    assert_eq!(
        routed["properties"]["iothub-message-schema"],
        "twinChangeNotification"
    );
    assert_eq!(routed["properties"]["hubName"], "hub-1");
    assert_eq!(routed["properties"]["site"], "dublin");
    let body = decoded_body(routed);
    assert_eq!(body["properties"]["desired"]["mode"], "eco");

    // The deletion went to its own; the device-message route took no event, and events do not
    // fall back.
    let everything = bodies_of(&router.endpoints[1]);
    assert_eq!(everything.len(), 1, "{everything:?}");
    assert_eq!(everything[0]["messageSource"], "deviceLifecycleEvents");
    assert_eq!(decoded_body(&everything[0])["deviceId"], "d-3");
    assert_eq!(report.fallback, 0);
    assert_eq!(report.unrouted, 2, "the other patch and the connection");
}

#[tokio::test]
async fn an_event_that_does_not_decode_or_cannot_be_delivered_is_dead_lettered_with_its_queue_position()
 {
    use hub_shared::domain::registry::LifecycleOperation as Op;
    let refusing = FakeEndpoint {
        refusing: true,
        ..Default::default()
    };
    let router = events_router([refusing, FakeEndpoint::default()]);
    let eco = registry_event(
        Op::UpdateTwin,
        "d-1",
        Some(json!({"version": 3, "properties": {"desired": {"mode": "eco"}}})),
    );
    let bodies = vec![
        "not an event".to_owned(),
        serde_json::to_string(&eco).unwrap(),
    ];
    let (response, _) = router.handle_events(&sqs_batch(&bodies)).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "dead-lettered, not retried"
    );
    let letters: Vec<Value> = router
        .dead_letters
        .sent()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[0]["sqsMessageId"], "m-0");
    assert_eq!(letters[0]["body"], "not an event");
    assert_eq!(letters[1]["endpoint"], "critical");
    assert_eq!(letters[1]["hubMessageId"], eco.event_id);
    assert_eq!(letters[1]["messageSource"], "twinChangeEvents");
    assert_eq!(
        letters[1]["eventSourceArn"],
        "arn:aws:sqs:r:1:routing-events"
    );

    // When even the dead-letter queue fails, SQS delivers the messages again.
    let router = events_router([
        FakeEndpoint {
            refusing: true,
            ..Default::default()
        },
        FakeEndpoint::default(),
    ]);
    router
        .dead_letters
        .unavailable
        .store(true, Ordering::SeqCst);
    let (response, _) = router.handle_events(&sqs_batch(&bodies)).await;
    let retried: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(retried, ["m-0", "m-1"]);
}

#[tokio::test]
async fn the_function_takes_either_mapping_s_events() {
    use hub_shared::domain::registry::LifecycleOperation as Op;
    let router = events_router(Default::default());
    let deleted = registry_event(Op::DeleteDeviceIdentity, "d-3", None);
    let event =
        serde_json::to_value(sqs_batch(&[serde_json::to_string(&deleted).unwrap()])).unwrap();
    let response = router.invoke(event).await.unwrap();
    assert_eq!(response["batchItemFailures"], json!([]));
    assert_eq!(bodies_of(&router.endpoints[1]).len(), 1);
    let telemetry = envelope("d-1", &[], "{}");
    let event = serde_json::to_value(batch(&[telemetry.to_json()])).unwrap();
    router.invoke(event).await.unwrap();
    assert_eq!(bodies_of(&router.endpoints[1]).len(), 2);
}

fn bodies_of(endpoint: &Option<FakeEndpoint>) -> Vec<Value> {
    bodies(endpoint.as_ref().unwrap())
}

fn decoded_body(routed: &Value) -> Value {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(routed["body"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
