//! Device twins against DynamoDB on LocalStack: the service API (Azure's `/twins/{id}`), the
//! device extension (`/devices/{id}/twin...`), limits, and concurrent writers.

use hub_tests::{Client, RegisteredDevice, gateway, status_and_code, unique};
use serde_json::{Value, json};

async fn twin(client: &Client, owner: &str, id: &str) -> (u16, Value, Option<String>) {
    let response = client
        .get(&format!("/twins/{id}"), owner)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap(), etag)
}

async fn patch(client: &Client, owner: &str, id: &str, body: &Value) -> reqwest::Response {
    client
        .patch(&format!("/twins/{id}"), owner)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn report(client: &Client, device: &RegisteredDevice, body: &Value) -> reqwest::Response {
    client
        .patch(
            &format!("/devices/{}/twin/properties/reported", device.id),
            &device.token(),
        )
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn services_read_merge_and_replace_twins_with_etags() {
    let gateway = gateway();
    let service = gateway.policy_token("service").await;
    let device = gateway.register(&unique("twin")).await;
    let client = gateway.http();

    let (status, fresh, etag) = twin(&client, &service, &device.id).await;
    assert_eq!(status, 200);
    assert_eq!(fresh["deviceId"], device.id.as_str());
    assert_eq!(fresh["version"], 1);
    assert_eq!(fresh["tags"], json!({}));
    assert_eq!(fresh["properties"]["desired"]["$version"], 1);
    assert_eq!(fresh["properties"]["reported"]["$version"], 1);
    assert_eq!(fresh["status"], "enabled");
    assert_eq!(
        etag,
        Some(format!("\"{}\"", fresh["etag"].as_str().unwrap()))
    );

    let merged = patch(
        &client,
        &service,
        &device.id,
        &json!({"tags": {"site": "north", "floor": 3}, "properties": {"desired": {"rate": 5, "mode": {"eco": true, "night": false}}}}),
    )
    .await;
    assert_eq!(merged.status().as_u16(), 200);
    let merged: Value = merged.json().await.unwrap();
    assert_eq!(merged["tags"], json!({"site": "north", "floor": 3}));
    assert_eq!(merged["properties"]["desired"]["$version"], 2);
    assert_eq!(
        merged["properties"]["desired"]["$metadata"]["mode"]["eco"]["$lastUpdatedVersion"],
        2
    );
    assert!(merged["properties"]["desired"]["$metadata"]["$lastUpdated"].is_string());

    let pruned = patch(
        &client,
        &service,
        &device.id,
        &json!({"tags": {"floor": null}, "properties": {"desired": {"mode": {"eco": null}}}}),
    )
    .await;
    assert_eq!(pruned.status().as_u16(), 200);
    let pruned: Value = pruned.json().await.unwrap();
    assert_eq!(pruned["tags"], json!({"site": "north"}), "null deletes");
    assert_eq!(
        pruned["properties"]["desired"]["mode"],
        json!({"night": false})
    );
    assert_eq!(pruned["properties"]["desired"]["rate"], 5);
    assert!(
        pruned["properties"]["desired"]["$metadata"]["mode"]
            .get("eco")
            .is_none()
    );

    // If-Match: the etag read before the last change no longer matches.
    let stale = client
        .patch(&format!("/twins/{}", device.id), &service)
        .header(
            "if-match",
            format!("\"{}\"", merged["etag"].as_str().unwrap()),
        )
        .json(&json!({"tags": {"late": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(stale).await,
        (412, Some("PreconditionFailed".into()))
    );
    let current = client
        .patch(&format!("/twins/{}", device.id), &service)
        .header(
            "if-match",
            format!("\"{}\"", pruned["etag"].as_str().unwrap()),
        )
        .json(&json!({"tags": {"late": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(current.status().as_u16(), 200);

    // The device's reported properties survive a replace of tags and desired.
    assert_eq!(
        report(&client, &device, &json!({"battery": 77}))
            .await
            .status()
            .as_u16(),
        200
    );
    let replaced = client
        .put(&format!("/twins/{}", device.id), &service)
        .json(&json!({"tags": {"zone": "b"}, "properties": {"desired": {"interval": 30}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status().as_u16(), 200);
    let replaced: Value = replaced.json().await.unwrap();
    assert_eq!(replaced["tags"], json!({"zone": "b"}));
    assert_eq!(
        replaced["properties"]["desired"]["interval"], 30,
        "{replaced}"
    );
    assert!(replaced["properties"]["desired"].get("rate").is_none());
    assert_eq!(replaced["properties"]["reported"]["battery"], 77);

    let (_, stored, _) = twin(&client, &service, &device.id).await;
    assert_eq!(
        stored["tags"], replaced["tags"],
        "what the response said was stored"
    );
    assert_eq!(stored["version"], replaced["version"]);

    let ghost = unique("ghost");
    for response in [
        client
            .get(&format!("/twins/{ghost}"), &service)
            .send()
            .await
            .unwrap(),
        patch(&client, &service, &ghost, &json!({"tags": {"a": 1}})).await,
        client
            .put(&format!("/twins/{ghost}"), &service)
            .json(&json!({"tags": {}}))
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(
            status_and_code(response).await,
            (404, Some("DeviceNotFound".into()))
        );
    }
}

#[tokio::test]
async fn every_twin_limit_is_a_clear_400_that_changes_nothing() {
    let gateway = gateway();
    let service = gateway.policy_token("service").await;
    let device = gateway.register(&unique("limits")).await;
    let client = gateway.http();
    let deep = (0..11).fold(json!(1), |inner, _| json!({"n": inner}));
    let big_section: serde_json::Map<String, Value> = (0..9)
        .map(|i| (format!("k{i}"), json!("x".repeat(4000))))
        .collect();
    let cases = [
        (
            "tags over 8 KB",
            json!({"tags": {"a": "x".repeat(4000), "b": "x".repeat(4000), "c": "x".repeat(300)}}),
        ),
        (
            "desired over 32 KB",
            json!({"properties": {"desired": big_section}}),
        ),
        (
            "string over 4 KB",
            json!({"properties": {"desired": {"s": "x".repeat(4097)}}}),
        ),
        ("key over 1 KB", json!({"tags": {"k".repeat(1025): 1}})),
        ("key with .", json!({"tags": {"a.b": 1}})),
        ("key with $", json!({"properties": {"desired": {"$x": 1}}})),
        ("key with space", json!({"tags": {"a b": 1}})),
        ("depth over 10", json!({"properties": {"desired": deep}})),
        (
            "reported by a service",
            json!({"properties": {"reported": {"a": 1}}}),
        ),
        ("not an object", json!({"tags": [1, 2]})),
    ];
    for (what, body) in &cases {
        let response = patch(&client, &service, &device.id, body).await;
        assert_eq!(
            status_and_code(response).await,
            (400, Some("ArgumentInvalid".into())),
            "{what}"
        );
    }
    let bad_report = report(&client, &device, &json!({"a.b": 1})).await;
    assert_eq!(status_and_code(bad_report).await.0, 400);
    let too_big_report: serde_json::Map<String, Value> = (0..9)
        .map(|i| (format!("r{i}"), json!("x".repeat(4000))))
        .collect();
    let response = report(&client, &device, &Value::Object(too_big_report)).await;
    assert_eq!(status_and_code(response).await.0, 400);

    let (_, after, _) = twin(&client, &service, &device.id).await;
    assert_eq!(after["version"], 1, "nothing was written: {after}");

    // Just under the limits is accepted.
    let fits = patch(
        &client,
        &service,
        &device.id,
        &json!({"tags": {"a": "x".repeat(4096), "k".repeat(1024): 1}}),
    )
    .await;
    assert_eq!(fits.status().as_u16(), 200);
}

#[tokio::test]
async fn racing_writers_lose_nothing_and_versions_only_grow() {
    let gateway = gateway();
    let service = gateway.policy_token("service").await;
    let device = gateway.register(&unique("race")).await;
    const SERVICES: usize = 10;
    const DEVICES: usize = 5;
    let desired = (0..SERVICES).map(|i| {
        let client = gateway.http();
        let service = service.clone();
        let id = device.id.clone();
        tokio::spawn(async move {
            let response = patch(
                &client,
                &service,
                &id,
                &json!({"properties": {"desired": {format!("s{i}"): i}}}),
            )
            .await;
            assert_eq!(response.status().as_u16(), 200);
            let twin: Value = response.json().await.unwrap();
            twin["properties"]["desired"]["$version"].as_u64().unwrap()
        })
    });
    let desired: Vec<_> = desired.collect();
    let reported: Vec<_> = (0..DEVICES)
        .map(|i| {
            let client = gateway.http();
            let path = format!("/devices/{}/twin/properties/reported", device.id);
            let token = device.token();
            tokio::spawn(async move {
                let response = client
                    .patch(&path, &token)
                    .json(&json!({format!("d{i}"): i}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status().as_u16(), 200);
                let body: Value = response.json().await.unwrap();
                body["$version"].as_u64().unwrap()
            })
        })
        .collect();
    let mut desired_versions = Vec::new();
    for task in desired {
        desired_versions.push(task.await.unwrap());
    }
    let mut reported_versions = Vec::new();
    for task in reported {
        reported_versions.push(task.await.unwrap());
    }
    desired_versions.sort_unstable();
    reported_versions.sort_unstable();
    assert_eq!(
        desired_versions,
        (2..2 + SERVICES as u64).collect::<Vec<_>>(),
        "each write got its own, higher version"
    );
    assert_eq!(
        reported_versions,
        (2..2 + DEVICES as u64).collect::<Vec<_>>()
    );

    let (_, twin, _) = twin(&gateway.http(), &service, &device.id).await;
    for i in 0..SERVICES {
        assert_eq!(
            twin["properties"]["desired"][format!("s{i}")],
            i,
            "lost s{i}"
        );
    }
    for i in 0..DEVICES {
        assert_eq!(
            twin["properties"]["reported"][format!("d{i}")],
            i,
            "lost d{i}"
        );
    }
    assert_eq!(twin["version"], 1 + (SERVICES + DEVICES) as u64);
}

#[tokio::test]
async fn devices_read_their_twin_report_and_wait_for_desired_changes() {
    let gateway = gateway();
    let service = gateway.policy_token("service").await;
    let device = gateway.register(&unique("dtwin")).await;
    let client = gateway.http();

    let reported = report(&client, &device, &json!({"firmware": {"version": "2.1"}})).await;
    assert_eq!(reported.status().as_u16(), 200);
    let reported: Value = reported.json().await.unwrap();
    assert_eq!(reported["$version"], 2);
    let (_, seen_by_service, _) = twin(&client, &service, &device.id).await;
    assert_eq!(
        seen_by_service["properties"]["reported"]["firmware"]["version"],
        "2.1"
    );

    let own = client
        .get(&format!("/devices/{}/twin", device.id), &device.token())
        .send()
        .await
        .unwrap();
    assert_eq!(own.status().as_u16(), 200);
    let own: Value = own.json().await.unwrap();
    assert_eq!(own["reported"]["firmware"]["version"], "2.1");
    assert_eq!(own["desired"]["$version"], 1);

    let desired_path = |since: u64, wait: u64| {
        format!(
            "/devices/{}/twin/properties/desired?sinceVersion={since}&waitSeconds={wait}",
            device.id
        )
    };
    let unchanged = client
        .get(&desired_path(1, 1), &device.token())
        .send()
        .await
        .unwrap();
    assert_eq!(
        unchanged.status().as_u16(),
        204,
        "no change within the wait"
    );

    let waiting = {
        let client = gateway.http();
        let url = desired_path(1, 15);
        let token = device.token();
        tokio::spawn(async move { client.get(&url, &token).send().await.unwrap() })
    };
    // Whether the change lands before the device's request or while it waits, the answer is the
    // new desired properties (the 204 above shows an unchanged twin is waited on).
    let changed = patch(
        &client,
        &service,
        &device.id,
        &json!({"properties": {"desired": {"interval": 10}}}),
    )
    .await;
    assert_eq!(changed.status().as_u16(), 200);
    let woken = waiting.await.unwrap();
    assert_eq!(woken.status().as_u16(), 200);
    let desired: Value = woken.json().await.unwrap();
    assert_eq!(desired["interval"], 10);
    assert_eq!(desired["$version"], 2);

    for bad in [
        format!(
            "/devices/{}/twin/properties/desired?sinceVersion=x",
            device.id
        ),
        desired_path(1, 21),
    ] {
        let response = client.get(&bad, &device.token()).send().await.unwrap();
        assert_eq!(
            status_and_code(response).await,
            (400, Some("ArgumentInvalid".into()))
        );
    }
}

#[tokio::test]
async fn a_twin_goes_with_its_device() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    let id = unique("twin-gone");
    gateway.register(&id).await;
    let client = gateway.http();
    let tagged = patch(&client, &owner, &id, &json!({"tags": {"owner": "first"}})).await;
    assert_eq!(tagged.status().as_u16(), 200);
    let deleted = client
        .delete(&format!("/devices/{id}"), &owner)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    let (status, _, _) = twin(&client, &owner, &id).await;
    assert_eq!(status, 404);
    gateway.register(&id).await;
    let (status, reborn, _) = twin(&client, &owner, &id).await;
    assert_eq!(status, 200);
    assert_eq!(reborn["tags"], json!({}), "the new generation starts clean");
    assert_eq!(reborn["version"], 1);
}
