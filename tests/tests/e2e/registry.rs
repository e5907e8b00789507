//! The identity registry: a device's life, statistics, and its lifecycle events on SQS.

use std::time::Duration;

use hub_shared::config::vars;
use hub_tests::{gateway, receive_until, status_and_code, unique};

#[tokio::test]
async fn a_device_is_created_read_updated_listed_counted_and_deleted() {
    let gateway = gateway();
    let client = gateway.http();
    let owner = gateway.owner_token().await;
    let device = gateway.register(&unique("e2e-reg")).await;
    let path = format!("/devices/{}", device.id);

    let read: serde_json::Value = client.get_json(&path, &owner).await;
    assert_eq!(read["deviceId"], device.id.as_str());
    assert_eq!(read["status"], "enabled");
    assert_eq!(read["etag"], device.etag.as_str());

    let stale = client
        .put(&path, &owner)
        .header("If-Match", "\"not-the-etag\"")
        .json(&serde_json::json!({"deviceId": device.id, "status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(stale).await,
        (412, Some("PreconditionFailed".into()))
    );
    let disabled: serde_json::Value = client
        .put(&path, &owner)
        .header("If-Match", format!("\"{}\"", device.etag))
        .json(&serde_json::json!({"deviceId": device.id, "status": "disabled"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(disabled["status"], "disabled");
    assert_ne!(disabled["etag"], device.etag.as_str());

    // The statistics count it (other tests add devices meanwhile: at least this one).
    let statistics: serde_json::Value = client.get_json("/statistics/devices", &owner).await;
    assert!(statistics["totalDeviceCount"].as_u64().unwrap() >= 1);
    assert!(statistics["disabledDeviceCount"].as_u64().unwrap() >= 1);

    let deleted = client
        .delete(&path, &owner)
        .header("If-Match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    let gone = client.get(&path, &owner).send().await.unwrap();
    assert_eq!(
        status_and_code(gone).await,
        (404, Some("DeviceNotFound".into()))
    );
}

/// Lifecycle and connection-state events: the device's first message connects it (through the
/// ingest function, with its own grants), deleting it removes it.
#[tokio::test]
async fn lifecycle_and_connection_events_reach_their_queue() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    let device = gateway.register(&unique("e2e-events")).await;
    let sent = gateway
        .http()
        .post(&device.events_path(), &device.token())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status().as_u16(), 204);
    let queue = std::env::var(vars::REGISTRY_EVENTS_QUEUE_URL).unwrap();
    let mine = |events: &[serde_json::Value]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["deviceId"] == device.id.as_str())
            .filter_map(|e| e["opType"].as_str().map(str::to_owned))
            .collect()
    };
    let mut seen = receive_until(&queue, Duration::from_secs(90), |seen| {
        mine(seen).contains(&"deviceConnected".to_owned())
    })
    .await;
    let deleted = gateway
        .http()
        .delete(&format!("/devices/{}", device.id), &owner)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    seen.extend(
        receive_until(&queue, Duration::from_secs(90), |more| {
            mine(more).contains(&"deleteDeviceIdentity".to_owned())
        })
        .await,
    );
    let mut operations = mine(&seen);
    operations.sort();
    operations.dedup();
    assert_eq!(
        operations,
        [
            "createDeviceIdentity",
            "deleteDeviceIdentity",
            "deviceConnected"
        ]
    );
    let connected = seen
        .iter()
        .find(|e| e["deviceId"] == device.id.as_str() && e["opType"] == "deviceConnected")
        .unwrap();
    assert_eq!(
        connected["body"]["sequenceNumber"].as_str().unwrap().len(),
        64
    );
}
