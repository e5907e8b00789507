//! Handler CPU time for a 1,000-record batch, aggregation only (no I/O): decoding the envelopes
//! from Kinesis data, flattening JSON bodies, and updating device states and two window sizes.
//!
//! Run: `cargo bench -p hub-analytics --bench aggregation`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use hub_analytics::engine::{Engine, RuleSet, Working};
use hub_shared::domain::analytics::Rule;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::envelope::{AuthMethod, DeviceMessage, Sender, TelemetryEnvelope};
use hub_shared::domain::timestamp::Timestamp;

fn records() -> Vec<Vec<u8>> {
    (0..1000)
        .map(|i| {
            let sender = Sender {
                device_id: DeviceId::parse(&format!("sensor-{:03}", i % 10)).unwrap(),
                generation_id: "638661234567890123".into(),
                auth_method: AuthMethod::device_key(),
            };
            let body = format!(r#"{{"temperature":{}.5,"humidity":{},"env":{{"pressure":{},"co2":{}}},"status":"ok"}}"#, 20 + i % 7, 40 + i % 11, 1000 + i % 13, 400 + i % 17);
            let message = DeviceMessage { body: body.into_bytes(), ..Default::default() };
            TelemetryEnvelope::stamp(message, &sender, Timestamp::from_unix_millis(1_700_000_000_000 + i * 100).unwrap()).to_json()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let engine = Engine::new(vec!["1m".parse().unwrap(), "1h".parse().unwrap()]);
    let data = records();
    let rules: Vec<Rule> = vec![serde_json::from_str(
        r#"{"id":"hot","devices":{"all":true},"condition":{"field":"temperature","operator":">","threshold":25},"actions":{"alert":{},"command":{"body":"fan on"}}}"#,
    )
    .unwrap()];
    let mut group = c.benchmark_group("analytics_batch_1000");
    group.throughput(Throughput::Elements(data.len() as u64));
    for (name, rules) in [("aggregation_only", &[][..]), ("with_one_rule", &rules[..])] {
        group.bench_function(name, |b| {
            b.iter_batched(
                Working::default,
                |mut working| {
                    let mut effects = Vec::new();
                    for bytes in &data {
                        let envelope = TelemetryEnvelope::from_json(black_box(bytes)).unwrap();
                        engine.apply(
                            &mut working,
                            &envelope,
                            RuleSet::untagged(rules),
                            &mut effects,
                        );
                    }
                    black_box((working.take_dirty(), effects))
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
