use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hub_shared::domain::envelope::{AuthMethod, AuthScope};
use hub_tests::{gateway, read_device_records, tail, unique};

#[tokio::test]
async fn single_messages_land_in_kinesis_over_http_and_https() {
    let gateway = gateway();
    let device = gateway.register(&unique("tel")).await;
    let mut tail = tail().await;
    for (index, client) in [gateway.http(), gateway.https()].into_iter().enumerate() {
        let response = client
            .post(&device.events_path(), &device.token())
            .header("content-type", "application/json")
            .header("iothub-messageid", format!("m-{index}"))
            .header("iothub-correlationid", "corr-1")
            .header("iothub-contenttype", "application/json")
            .header("iothub-contentencoding", "utf-8")
            .header("iothub-app-unit", "celsius")
            .header("iothub-app-building", "b42")
            .body(format!(r#"{{"temperature":{index}}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 204);
    }
    let records = read_device_records(&mut tail, &device.id, 2).await;
    assert_eq!(records.len(), 2);
    for (index, record) in records.iter().enumerate() {
        let envelope = &record.envelope;
        assert_eq!(record.partition_key, device.id, "partitioned by device id");
        assert_eq!(envelope.v, 1);
        assert_eq!(envelope.device_id.as_str(), device.id);
        assert_eq!(
            envelope.body,
            format!(r#"{{"temperature":{index}}}"#).into_bytes()
        );
        assert_eq!(
            envelope.system_properties.message_id,
            Some(format!("m-{index}"))
        );
        assert_eq!(
            envelope.system_properties.correlation_id.as_deref(),
            Some("corr-1")
        );
        assert_eq!(
            envelope.system_properties.content_type.as_deref(),
            Some("application/json")
        );
        assert_eq!(
            envelope.system_properties.content_encoding.as_deref(),
            Some("utf-8")
        );
        assert_eq!(
            envelope.properties.get("unit").map(String::as_str),
            Some("celsius")
        );
        assert_eq!(
            envelope.properties.get("building").map(String::as_str),
            Some("b42")
        );
        assert_eq!(envelope.auth_method, AuthMethod::device_key());
        assert_eq!(envelope.device_generation_id.len(), 18);
    }
    assert_ne!(
        records[0].envelope.hub_message_id,
        records[1].envelope.hub_message_id
    );
}

#[tokio::test]
async fn binary_bodies_are_stored_byte_for_byte() {
    let gateway = gateway();
    let device = gateway.register(&unique("bin")).await;
    let mut tail = tail().await;
    let body: Vec<u8> = (0..=255u8).collect();
    let response = gateway
        .https()
        .post(&device.events_path(), &device.token())
        .header("content-type", "application/octet-stream")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let records = read_device_records(&mut tail, &device.id, 1).await;
    assert_eq!(records[0].envelope.body, body);
}

#[tokio::test]
async fn batches_become_one_record_per_message_in_order() {
    let gateway = gateway();
    let device = gateway.register(&unique("batch")).await;
    let mut tail = tail().await;
    let batch: Vec<serde_json::Value> = (0..5)
        .map(|i| {
            serde_json::json!({
                "body": BASE64.encode(format!("reading {i}")),
                "base64Encoded": true,
                "properties": { "iothub-app-index": i.to_string(), "iothub-messageid": format!("b-{i}") },
            })
        })
        .collect();
    let response = gateway
        .https()
        .post(&device.events_path(), &device.token())
        .header("content-type", "application/vnd.microsoft.iothub.json")
        .body(serde_json::to_vec(&batch).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let records = read_device_records(&mut tail, &device.id, 5).await;
    let bodies: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.envelope.body.clone()).unwrap())
        .collect();
    assert_eq!(
        bodies,
        (0..5).map(|i| format!("reading {i}")).collect::<Vec<_>>()
    );
    for (i, record) in records.iter().enumerate() {
        assert_eq!(
            record.envelope.properties.get("index"),
            Some(&i.to_string())
        );
        assert_eq!(
            record.envelope.system_properties.message_id,
            Some(format!("b-{i}"))
        );
    }
}

#[tokio::test]
async fn an_owner_policy_may_send_on_behalf_of_a_device() {
    let gateway = gateway();
    let device = gateway.register(&unique("via-owner")).await;
    let mut tail = tail().await;
    let response = gateway
        .http()
        .post(&device.events_path(), &gateway.owner_token().await)
        .body("from the back end")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let records = read_device_records(&mut tail, &device.id, 1).await;
    assert_eq!(records[0].envelope.auth_method.scope, AuthScope::Hub);
    assert_eq!(
        records[0].envelope.auth_method.policy.as_deref(),
        Some("iothubowner")
    );
}

#[tokio::test]
async fn secondary_keys_work_too() {
    let gateway = gateway();
    let device = gateway.register(&unique("second")).await;
    let mut tail = tail().await;
    let token = gateway.device_token(&device.id, &device.secondary_key);
    let response = gateway
        .http()
        .post(&device.events_path(), &token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(read_device_records(&mut tail, &device.id, 1).await.len(), 1);
}
