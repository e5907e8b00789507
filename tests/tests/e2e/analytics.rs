//! Stream analytics through the event source mapping (the local emulation or Lambda's), and
//! rules whose commands travel the command-requests queue and its mapping to the device.

use std::time::Duration;

use hub_tests::{gateway, unique, wait_for_telemetry};

fn count(body: &serde_json::Value) -> u64 {
    body["points"]
        .as_array()
        .map(|p| {
            p.iter()
                .map(|x| x["messageCount"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// Sends one message per value, `{"temperature": value}`, each accepted.
async fn send_temperatures(device: &hub_tests::RegisteredDevice, values: &[i32]) {
    for value in values {
        let sent = gateway()
            .http()
            .post(&device.events_path(), &device.token())
            .body(format!(r#"{{"temperature":{value}}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status().as_u16(), 204);
    }
}

/// The lowest minimum and highest maximum over an answer's windows.
fn extremes(body: &serde_json::Value) -> (f64, f64) {
    let points = body["points"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let min = points
        .iter()
        .filter_map(|p| p["min"].as_f64())
        .fold(f64::MAX, f64::min);
    let max = points
        .iter()
        .filter_map(|p| p["max"].as_f64())
        .fold(f64::MIN, f64::max);
    (min, max)
}

#[tokio::test]
async fn telemetry_becomes_aggregates_and_device_state() {
    let gateway = gateway();
    let device = gateway.register(&unique("e2e-agg")).await;
    send_temperatures(&device, &[10, 20, 30]).await;
    let body =
        wait_for_telemetry(&device.id, "window=1m&field=temperature", |b| count(b) == 3).await;
    // The readings may straddle a minute boundary: combine the windows.
    assert_eq!(extremes(&body), (10.0, 30.0), "{body}");

    let service = gateway.policy_token("service").await;
    let state: serde_json::Value = gateway
        .http()
        .get_json(&format!("/devices/{}/state", device.id), &service)
        .await;
    assert_eq!(state["messageCount"], 3, "{state}");
    assert_eq!(state["lastValues"]["temperature"]["value"], 30.0);
}

#[tokio::test]
async fn a_groups_telemetry_is_one_request_merged_from_its_devices() {
    let gateway = gateway();
    let client = gateway.http();
    let mut ids = Vec::new();
    for values in [[10, 20], [30, 40]] {
        let device = gateway.register(&unique("e2e-group")).await;
        send_temperatures(&device, &values).await;
        wait_for_telemetry(&device.id, "window=1m&field=temperature", |b| count(b) == 2).await;
        ids.push(device.id.clone());
    }
    let service = gateway.policy_token("service").await;
    let answer = client
        .post("/fleet/telemetry", &service)
        .json(&serde_json::json!({"deviceIds": ids, "field": "temperature", "window": "1m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    let points = body["points"].as_array().unwrap();
    let sum = |name: &str| points.iter().filter_map(|p| p[name].as_f64()).sum::<f64>();
    assert_eq!((sum("count"), sum("sum")), (4.0, 100.0), "{body}");
    assert_eq!(extremes(&body), (10.0, 40.0), "{body}");
}

#[tokio::test]
async fn a_rule_raises_an_alert_and_its_command_reaches_the_device() {
    let gateway = gateway();
    let device = gateway.register(&unique("e2e-rule")).await;
    let service = gateway.policy_token("service").await;
    let client = gateway.http();
    // A field only this test sends, so no other device or test trips the rule.
    let field = format!("pressure_{}", &unique("f")[2..10]);
    let rule_id = unique("e2e-rule");
    let rule = serde_json::json!({
        "devices": {"ids": [device.id]},
        "condition": {"field": field, "operator": ">", "threshold": 100},
        "actions": {"alert": {"severity": "critical"}, "command": {"body": "EmergencyValveRelease"}},
    });
    let put = client
        .put(&format!("/rules/{rule_id}"), &service)
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());
    // The analytics function caches rules for a few seconds: wait until a reading applies it.
    let device_client = device.client(&gateway.http_url);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let command = loop {
        let sent = client
            .post(&device.events_path(), &device.token())
            .body(format!(r#"{{"{field}":150}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status().as_u16(), 204);
        if let Some(message) = device_client
            .receive_wait(Duration::from_secs(10))
            .await
            .unwrap()
        {
            break message;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rule's command never reached the device"
        );
    };
    assert_eq!(command.body, b"EmergencyValveRelease");
    device_client.complete(&command.lock_token).await.unwrap();

    let alerts: serde_json::Value = client.get_json("/alerts?active=true", &service).await;
    let mine: Vec<_> = alerts
        .as_array()
        .or_else(|| alerts["alerts"].as_array())
        .map(|a| {
            a.iter()
                .filter(|x| x["deviceId"] == device.id.as_str() && x["ruleId"] == rule_id.as_str())
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(mine.len(), 1, "one active alert for the device: {alerts}");
    assert_eq!(mine[0]["severity"], "critical");
    assert_eq!(
        mine[0]["recentRaises"][0]["value"], 150.0,
        "the raise is remembered for the alerts-over-time chart: {}",
        mine[0]
    );
    let every: serde_json::Value = client.get_json("/alerts", &service).await;
    assert!(
        every
            .as_array()
            .or_else(|| every["alerts"].as_array())
            .is_some_and(|a| a.iter().any(|x| x["deviceId"] == device.id.as_str())),
        "the alert is listed among all alerts too: {every}"
    );
    let deleted = client
        .delete(&format!("/rules/{rule_id}"), &service)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
}
