//! Router CPU time for a 1,000-record batch with 10 and 100 routes: deciding each message's
//! routes (properties, `$body`, `$twin` conditions), and the whole handler with endpoints that
//! take everything at once (decoding the Kinesis records, twin documents, enrichment, the routed
//! bodies), so no I/O is timed.
//!
//! Run: `cargo bench -p hub-router --bench routing`

use std::hint::black_box;

use aws_lambda_events::kinesis::KinesisEvent;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hub_router::RouterHandler;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::envelope::{
    AuthMethod, DeviceMessage, Properties, Sender, SystemProperties, TelemetryEnvelope,
};
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::domain::twin::Twin;
use hub_shared::fakes::{InMemoryQueue, InMemoryTwins};
use hub_shared::ports::{Delivery, Endpoint, EndpointLimits, RecordFailure, StoreError, TwinStore};
use hub_shared::publish::RetryPolicy;
use hub_shared::routing::{MessageView, RouteTable};
use serde_json::{Value, json};

/// Takes every delivery at once: the handler's own CPU is what is timed.
struct Sink;

impl Endpoint for Sink {
    fn limits(&self) -> EndpointLimits {
        EndpointLimits {
            messages: 500,
            bytes: 5 << 20,
            message_bytes: 1 << 20,
        }
    }

    async fn deliver(&self, batch: &[&Delivery]) -> Result<Vec<RecordFailure>, StoreError> {
        Ok(vec![None; black_box(batch).len()])
    }
}

/// `count` routes over four endpoints: a third on application properties, a third on the body,
/// a third on twin tags; each message matches a few.
fn table(count: usize) -> RouteTable {
    let routes: Vec<Value> = (0..count)
        .map(|i| {
            let condition = match i % 3 {
                0 => format!("level = 'level-{}' AND $connectionDeviceId != 'x'", i % 7),
                1 => format!("$body.temperature > {} AND IS_DEFINED($body.env.pressure)", 20 + i % 10),
                _ => format!("$twin.tags.site = 'site-{}'", i % 5),
            };
            json!({ "name": format!("route-{i}"), "condition": condition, "endpoint": format!("e{}", i % 4) })
        })
        .collect();
    let endpoints: serde_json::Map<String, Value> = (0..4)
        .map(|i| {
            (
                format!("e{i}"),
                json!({ "type": "kinesis", "arn": format!("arn:aws:kinesis:r:1:stream/e{i}") }),
            )
        })
        .collect();
    RouteTable::from_json(
        &json!({
            "hubName": "hub.example",
            "endpoints": endpoints,
            "routes": routes,
            "enrichments": [{ "key": "site", "value": "$twin.tags.site", "endpoints": ["e0", "e1"] }]
        })
        .to_string(),
    )
    .unwrap()
}

fn envelopes() -> Vec<TelemetryEnvelope> {
    (0..1000)
        .map(|i| {
            let sender = Sender {
                device_id: DeviceId::parse(&format!("sensor-{:03}", i % 100)).unwrap(),
                generation_id: "1".into(),
                auth_method: AuthMethod::device_key(),
            };
            let body = format!(
                r#"{{"temperature":{}.5,"humidity":{},"env":{{"pressure":{},"co2":{}}},"status":"ok"}}"#,
                15 + i % 20,
                40 + i % 11,
                1000 + i % 13,
                400 + i % 17
            );
            TelemetryEnvelope::stamp(
                DeviceMessage {
                    body: body.into_bytes(),
                    properties: Properties::from([("level".into(), format!("level-{}", i % 7))]),
                    system: SystemProperties {
                        content_type: Some("application/json".into()),
                        content_encoding: Some("utf-8".into()),
                        ..Default::default()
                    },
                },
                &sender,
                Timestamp::from_unix_millis(1_700_000_000_000 + i as i64 * 100).unwrap(),
            )
        })
        .collect()
}

fn event(envelopes: &[TelemetryEnvelope]) -> KinesisEvent {
    let event =
        hub_shared::fakes::kinesis_event("telemetry", "shardId-000000000000", 1000, envelopes);
    serde_json::from_value(event).unwrap()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let envelopes = envelopes();
    let event = event(&envelopes);
    let mut group = c.benchmark_group("routing_batch_1000");
    group.throughput(Throughput::Elements(envelopes.len() as u64));
    for routes in [10, 100] {
        let table = table(routes);
        let twin = json!({ "tags": { "site": "site-1" }, "properties": { "desired": {}, "reported": {} } });
        group.bench_function(format!("decide_{routes}_routes"), |b| {
            b.iter(|| {
                let mut matched = 0;
                for envelope in &envelopes {
                    let view = MessageView::new(black_box(envelope), Some(&twin), true);
                    matched += table.decide(&view).endpoints.len();
                }
                black_box(matched)
            })
        });
        let twins = InMemoryTwins::default();
        runtime.block_on(async {
            for d in 0..100 {
                let mut twin = Twin::new("1");
                twin.tags
                    .insert("site".into(), json!(format!("site-{}", d % 5)));
                let id = DeviceId::parse(&format!("sensor-{d:03}")).unwrap();
                twins.put_twin(&id, &twin, None, None).await.unwrap();
            }
        });
        let handler = RouterHandler {
            endpoints: (0..4).map(|_| Some(Sink)).collect(),
            twins,
            dead_letters: InMemoryQueue::default(),
            retry: RetryPolicy::default(),
            metrics: false,
            table,
        };
        group.bench_function(format!("handler_{routes}_routes"), |b| {
            b.iter(|| runtime.block_on(handler.handle_kinesis(black_box(&event))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
