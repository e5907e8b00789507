//! The ingest hot path without I/O: verifying a device's SAS token with its key at hand, then
//! reading a 1 KB JSON message from the request and building its stream record.
//!
//! Run: `cargo bench -p hub-ingest --bench ingest_hot_path`

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hub_ingest::messages;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::envelope::{AuthMethod, Sender, TelemetryEnvelope};
use hub_shared::domain::sas::{SasToken, SymmetricKey};
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::routes::resource_segments;

const HOST: &str = "hub.example.com";
const PATH: &str = "/devices/sensor-0042/messages/events";

fn json_body_1kb() -> Vec<u8> {
    let mut body = String::from("{\"temperature\":21.5,\"humidity\":40.2,\"readings\":[");
    let mut i = 0;
    while body.len() < 1000 {
        body.push_str(&format!("{{\"t\":{i},\"v\":{}.25}},", i * 3));
        i += 1;
    }
    body.pop();
    body.push_str("]}");
    body.into_bytes()
}

fn bench(c: &mut Criterion) {
    let key = SymmetricKey::generate();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = SasToken::generate(
        &format!("{HOST}/devices/sensor-0042"),
        &key,
        now + 3600,
        None,
    );
    let body = json_body_1kb();
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert("iothub-app-unit", "celsius".parse().unwrap());
    headers.insert("iothub-messageid", "7a1c9e0e-1".parse().unwrap());
    let sender = Sender {
        device_id: DeviceId::parse("sensor-0042").unwrap(),
        generation_id: "638661234567890123".into(),
        auth_method: AuthMethod::device_key(),
    };

    let verify = |header: &str| {
        let token = SasToken::parse(header).unwrap();
        let resource = resource_segments(HOST, PATH);
        let resource: Vec<&str> = resource.iter().map(|s| s.as_ref()).collect();
        assert!(!token.is_expired(now, 60) && token.covers(&resource) && token.verify(&key));
    };
    let build = |body: &[u8]| {
        let message = messages::single(&headers, body.to_vec()).unwrap();
        TelemetryEnvelope::stamp(message, &sender, Timestamp::now()).to_json()
    };

    let mut group = c.benchmark_group("ingest_hot_path");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_device_token", |b| {
        b.iter(|| verify(black_box(&header)))
    });
    group.bench_function("build_envelope_1kb_json", |b| {
        b.iter(|| black_box(build(black_box(&body))))
    });
    group.bench_function("verify_and_build_1kb_json", |b| {
        b.iter(|| {
            verify(black_box(&header));
            black_box(build(black_box(&body)))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
