//! Device-to-cloud telemetry: single messages and batches land on the stream, in the envelope,
//! partitioned by device.

use base64::Engine as _;
use hub_tests::{gateway, read_device_records, tail, unique};

#[tokio::test]
async fn single_messages_and_batches_land_on_the_stream() {
    let gateway = gateway();
    let device = gateway.register(&unique("e2e-d2c")).await;
    let mut tail = tail().await;
    let single = gateway
        .http()
        .post(&device.events_path(), &device.token())
        .header("iothub-messageid", "single-1")
        .header("iothub-app-unit", "celsius")
        .body(r#"{"temperature":21.5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(single.status().as_u16(), 204);

    let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let batch = serde_json::json!([
        {"body": encode(r#"{"temperature":22}"#), "base64Encoded": true, "properties": {"iothub-messageid": "batch-1"}},
        {"body": encode(r#"{"temperature":23}"#), "base64Encoded": true, "properties": {"iothub-messageid": "batch-2", "zone": "north"}},
    ]);
    let sent = gateway
        .http()
        .post(&device.events_path(), &device.token())
        .header("content-type", "application/vnd.microsoft.iothub.json")
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status().as_u16(), 204);

    let records = read_device_records(&mut tail, &device.id, 3).await;
    let ids: Vec<_> = records
        .iter()
        .map(|r| r.envelope.system_properties.message_id.clone())
        .collect();
    assert_eq!(
        ids,
        [
            Some("single-1".to_owned()),
            Some("batch-1".to_owned()),
            Some("batch-2".to_owned())
        ]
    );
    assert!(records.iter().all(|r| r.partition_key == device.id));
    assert_eq!(
        records[0]
            .envelope
            .properties
            .get("unit")
            .map(String::as_str),
        Some("celsius")
    );
    assert_eq!(
        records[2]
            .envelope
            .properties
            .get("zone")
            .map(String::as_str),
        Some("north")
    );
    assert_eq!(records[1].envelope.body, br#"{"temperature":22}"#);
}
