use std::time::Duration;

use hub_shared::config::vars;
use hub_shared::domain::device::DeviceDescription;
use hub_shared::domain::sas::SymmetricKey;
use hub_tests::{
    CustomGateway, clone_table, custom_hub, dynamodb, fresh_queue, gateway, receive_until,
    register_on, status_and_code, unique,
};

#[tokio::test]
async fn create_get_delete_over_http_and_https() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    for client in [gateway.http(), gateway.https()] {
        let id = unique("reg");
        let path = format!("/devices/{id}");
        let created = client
            .put(&path, &owner)
            .json(&serde_json::json!({ "deviceId": id }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status().as_u16(), 200);
        let etag_header = created.headers()["etag"].to_str().unwrap().to_owned();
        let created: DeviceDescription = created.json().await.unwrap();
        assert_eq!(
            created.device_id.as_ref().map(|d| d.as_str()),
            Some(id.as_str())
        );
        assert_eq!(
            etag_header,
            format!("\"{}\"", created.etag.clone().unwrap())
        );

        let fetched: DeviceDescription = client
            .get(&path, &owner)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(fetched, created, "GET returns what PUT stored");

        let deleted = client
            .delete(&path, &owner)
            .header("if-match", "*")
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status().as_u16(), 204);
        assert_eq!(
            status_and_code(client.get(&path, &owner).send().await.unwrap()).await,
            (404, Some("DeviceNotFound".into()))
        );
    }
}

#[tokio::test]
async fn duplicate_create_conflicts_and_stale_etag_delete_fails() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    let device = gateway.register(&unique("dup")).await;
    let client = gateway.http();
    let path = format!("/devices/{}", device.id);
    let again = client
        .put(&path, &owner)
        .json(&serde_json::json!({ "deviceId": device.id }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(again).await,
        (409, Some("DeviceAlreadyExists".into()))
    );

    let stale = client
        .delete(&path, &owner)
        .header("if-match", "\"not-the-etag\"")
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(stale).await,
        (412, Some("PreconditionFailed".into()))
    );
    let current = client
        .delete(&path, &owner)
        .header("if-match", format!("\"{}\"", device.etag))
        .send()
        .await
        .unwrap();
    assert_eq!(current.status().as_u16(), 204);
}

#[tokio::test]
async fn reusing_a_device_id_gives_a_new_generation_and_keys() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    let id = unique("gen");
    let first = gateway.register(&id).await;
    let client = gateway.http();
    let path = format!("/devices/{id}");
    let first_generation: DeviceDescription = client
        .get(&path, &owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        client
            .delete(&path, &owner)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    let second = gateway.register(&id).await;
    let second_generation: DeviceDescription = client
        .get(&path, &owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(
        first_generation.generation_id,
        second_generation.generation_id
    );
    assert_ne!(first.primary_key, second.primary_key);
}

#[tokio::test]
async fn read_only_policy_can_read_but_not_write() {
    let gateway = gateway();
    let reader = gateway.policy_token("registryRead").await;
    let device = gateway.register(&unique("ro")).await;
    let client = gateway.http();
    assert_eq!(
        client
            .get(&format!("/devices/{}", device.id), &reader)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    let new_id = unique("ro-new");
    let put = client
        .put(&format!("/devices/{new_id}"), &reader)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(put).await,
        (401, Some("IotHubUnauthorizedAccess".into()))
    );
    let owner = gateway.owner_token().await;
    let after = client
        .get(&format!("/devices/{new_id}"), &owner)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(after).await,
        (404, Some("DeviceNotFound".into())),
        "nothing was written"
    );

    let delete = client
        .delete(&format!("/devices/{}", device.id), &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(delete).await.0, 401);
    assert_eq!(
        client
            .get(&format!("/devices/{}", device.id), &owner)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test]
async fn device_ids_with_special_characters_round_trip() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    let id = format!("{}:a.b+c%d_e#f*g?h!(i),j=k@l;m$n'o", unique("sp"));
    let encoded: String = hub_shared::domain::sas::url_encode(&id);
    let client = gateway.http();
    let created = client
        .put(&format!("/devices/{encoded}"), &owner)
        .json(&serde_json::json!({ "deviceId": id }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 200);
    let fetched: DeviceDescription = client
        .get_json(&format!("/devices/{encoded}"), &owner)
        .await;
    assert_eq!(fetched.device_id.map(|d| d.to_string()), Some(id));
}

fn json_of(value: &serde_json::Value) -> String {
    value.to_string()
}

#[tokio::test]
async fn updates_honour_if_match_and_every_update_changes_the_etag() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    let device = gateway.register(&unique("upd")).await;
    let client = gateway.http();
    let path = format!("/devices/{}", device.id);
    let update = |if_match: String, body: serde_json::Value| {
        client
            .put(&path, &owner)
            .header("if-match", if_match)
            .json(&body)
            .send()
    };
    let disable = serde_json::json!({"deviceId": device.id, "status": "disabled", "statusReason": "maintenance"});

    let stale = update("\"stale\"".into(), disable.clone()).await.unwrap();
    assert_eq!(
        status_and_code(stale).await,
        (412, Some("PreconditionFailed".into()))
    );
    let updated = update(format!("\"{}\"", device.etag), disable)
        .await
        .unwrap();
    assert_eq!(updated.status().as_u16(), 200);
    let etag_header = updated.headers()["etag"].to_str().unwrap().to_owned();
    let updated: DeviceDescription = updated.json().await.unwrap();
    assert_eq!(
        updated.status,
        Some(hub_shared::domain::device::DeviceStatus::Disabled)
    );
    assert_eq!(updated.status_reason.as_deref(), Some("maintenance"));
    let new_etag = updated.etag.clone().unwrap();
    assert_ne!(new_etag, device.etag);
    assert_eq!(etag_header, format!("\"{new_etag}\""));

    // The superseded etag no longer matches; `*` (quoted, as Azure's SDKs send it) matches any.
    let old = update(format!("\"{}\"", device.etag), serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(status_and_code(old).await.0, 412);
    let any = update("\"*\"".into(), serde_json::json!({"status": "enabled"}))
        .await
        .unwrap();
    assert_eq!(any.status().as_u16(), 200);
    let any: DeviceDescription = any.json().await.unwrap();
    assert_ne!(any.etag.as_deref(), Some(new_etag.as_str()));
    assert_eq!(any.status_reason, None);

    let missing = client
        .put(&format!("/devices/{}", unique("ghost")), &owner)
        .header("if-match", "*")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(missing).await,
        (404, Some("DeviceNotFound".into()))
    );
}

async fn statistics(client: &hub_tests::Client, token: &str) -> serde_json::Value {
    let response = client
        .get("/statistics/devices", token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn listing_pages_and_statistics_count_exactly() {
    // A registry table of this test's own, so the counts are exact.
    let table = clone_table(vars::REGISTRY_TABLE, false).await;
    let custom = CustomGateway::start(&[(vars::REGISTRY_TABLE, &table)]).await;
    let client = custom.client();
    let owner = gateway().owner_token().await;
    let reader = gateway().policy_token("registryRead").await;
    let statistics = || statistics(&client, &reader);
    assert_eq!(
        statistics().await,
        serde_json::json!({"totalDeviceCount": 0, "enabledDeviceCount": 0, "disabledDeviceCount": 0})
    );

    let ids: Vec<String> = (0..7).map(|i| format!("list-{i}")).collect();
    let operations: Vec<serde_json::Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let status = if i < 2 { "disabled" } else { "enabled" };
            serde_json::json!({"id": id, "importMode": "create", "status": status})
        })
        .collect();
    let created = client
        .post("/devices", &owner)
        .json(&operations)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 200);
    let created: serde_json::Value = created.json().await.unwrap();
    assert_eq!(created["isSuccessful"], true, "{}", json_of(&created));
    assert_eq!(
        statistics().await,
        serde_json::json!({"totalDeviceCount": 7, "enabledDeviceCount": 5, "disabledDeviceCount": 2})
    );

    let mut listed = Vec::new();
    let mut page_sizes = Vec::new();
    let mut continuation: Option<String> = None;
    loop {
        let mut request = client.get("/devices?top=3", &reader);
        if let Some(token) = &continuation {
            request = request.header("x-ms-continuation", token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        continuation = response
            .headers()
            .get("x-ms-continuation")
            .map(|v| v.to_str().unwrap().to_owned());
        let page: Vec<DeviceDescription> = response.json().await.unwrap();
        page_sizes.push(page.len());
        listed.extend(page.into_iter().map(|d| d.device_id.unwrap().to_string()));
        if continuation.is_none() {
            break;
        }
        assert!(page_sizes.len() < 10, "the continuation never ends");
    }
    listed.sort();
    assert_eq!(listed, ids, "every device once, and nothing else");
    assert_eq!(page_sizes, [3, 3, 1]);

    for top in ["0", "1001", "many"] {
        let response = client
            .get(&format!("/devices?top={top}"), &reader)
            .send()
            .await
            .unwrap();
        assert_eq!(
            status_and_code(response).await,
            (400, Some("ArgumentInvalid".into())),
            "top={top}"
        );
    }

    // A status change and a deletion move the counts.
    let enable = client
        .put("/devices/list-0", &owner)
        .header("if-match", "*")
        .json(&serde_json::json!({"status": "enabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(enable.status().as_u16(), 200);
    let delete = client
        .delete("/devices/list-6", &owner)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status().as_u16(), 204);
    assert_eq!(
        statistics().await,
        serde_json::json!({"totalDeviceCount": 6, "enabledDeviceCount": 5, "disabledDeviceCount": 1})
    );
}

#[tokio::test]
async fn bulk_applies_what_it_can_and_reports_each_failure() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    let client = gateway.http();
    let existing = gateway.register(&unique("bulk-old")).await;
    let guarded = gateway.register(&unique("bulk-guarded")).await;
    let doomed = gateway.register(&unique("bulk-doomed")).await;
    let fresh = unique("bulk-new");
    let ghost = unique("bulk-ghost");
    let body = serde_json::json!([
        {"id": fresh, "importMode": "create"},
        {"id": existing.id, "importMode": "create"},
        {"id": guarded.id, "importMode": "updateIfMatchETag", "eTag": "\"stale\"", "status": "disabled"},
        {"id": existing.id.clone() + "-x", "importMode": "UpdateIfMatchETag", "status": "disabled"},
        {"id": doomed.id, "importMode": "Delete"},
        {"id": ghost, "importMode": "delete"},
        {"id": existing.id.clone() + "-y", "importMode": "update"},
    ]);
    let response = client
        .post("/devices", &owner)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let result: serde_json::Value = response.json().await.unwrap();
    assert_eq!(result["isSuccessful"], false);
    let errors: Vec<(String, String)> = result["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["deviceId"].as_str().unwrap().to_owned(),
                e["errorCode"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (existing.id.clone(), "DeviceAlreadyExists".to_owned()),
            (guarded.id.clone(), "PreconditionFailed".to_owned()),
            (existing.id.clone() + "-x", "ArgumentInvalid".to_owned()),
            (ghost.clone(), "DeviceNotFound".to_owned()),
            (existing.id.clone() + "-y", "DeviceNotFound".to_owned()),
        ],
        "{}",
        json_of(&result)
    );
    assert!(
        result["errors"][0]["errorStatus"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );

    let status_of = |id: String| {
        let request = client.get(&format!("/devices/{id}"), &owner).send();
        async move { request.await.unwrap().status().as_u16() }
    };
    assert_eq!(
        status_of(fresh.clone()).await,
        200,
        "the create went through"
    );
    assert_eq!(
        status_of(doomed.id.clone()).await,
        404,
        "the delete went through"
    );
    let guarded_now: DeviceDescription = client
        .get(&format!("/devices/{}", guarded.id), &owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        guarded_now.status,
        Some(hub_shared::domain::device::DeviceStatus::Enabled),
        "a failed operation changes nothing"
    );

    // With the right etag the guarded update applies.
    let retry = serde_json::json!([
        {"id": guarded.id, "importMode": "updateIfMatchETag", "eTag": guarded.etag, "status": "disabled"},
    ]);
    let response = client
        .post("/devices", &owner)
        .json(&retry)
        .send()
        .await
        .unwrap();
    let result: serde_json::Value = response.json().await.unwrap();
    assert_eq!(result["isSuccessful"], true, "{}", json_of(&result));

    let too_many: Vec<serde_json::Value> = (0..101)
        .map(|i| serde_json::json!({"id": format!("{fresh}-{i}"), "importMode": "create"}))
        .collect();
    for bad in [
        serde_json::json!(too_many),
        serde_json::json!([]),
        serde_json::json!([{"id": "twice", "importMode": "create"}, {"id": "twice", "importMode": "delete"}]),
        serde_json::json!([{"id": "x", "importMode": "upsert"}]),
    ] {
        let response = client
            .post("/devices", &owner)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(
            status_and_code(response).await,
            (400, Some("ArgumentInvalid".into()))
        );
    }
    assert_eq!(
        status_of(format!("{fresh}-0")).await,
        404,
        "nothing of a refused request applies"
    );
}

#[tokio::test]
async fn a_regenerated_device_key_refuses_old_tokens_at_once() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    let device = gateway.register(&unique("rekey")).await;
    let client = gateway.http();
    let send = |token: String| {
        client
            .post(&device.events_path(), &token)
            .body("reading")
            .send()
    };
    let old_primary = device.token();
    let old_secondary = gateway.device_token(&device.id, &device.secondary_key);
    assert_eq!(
        send(old_primary.clone()).await.unwrap().status().as_u16(),
        204
    );

    let new_primary = SymmetricKey::generate();
    let rotate = client
        .put(&format!("/devices/{}", device.id), &owner)
        .header("if-match", format!("\"{}\"", device.etag))
        .json(&serde_json::json!({
            "deviceId": device.id,
            "authentication": {"type": "sas", "symmetricKey": {"primaryKey": new_primary.to_base64()}}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(rotate.status().as_u16(), 200);
    let rotated: DeviceDescription = rotate.json().await.unwrap();

    assert_eq!(
        status_and_code(send(old_primary).await.unwrap()).await,
        (401, Some("IotHubUnauthorizedAccess".into())),
        "the very next request with the old key is refused"
    );
    let new_token = gateway.device_token(&device.id, &new_primary);
    assert_eq!(send(new_token).await.unwrap().status().as_u16(), 204);
    assert_eq!(
        send(old_secondary.clone()).await.unwrap().status().as_u16(),
        204,
        "the other key keeps working during the rotation"
    );

    let new_secondary = SymmetricKey::generate();
    let rotate = client
        .put(&format!("/devices/{}", device.id), &owner)
        .header("if-match", format!("\"{}\"", rotated.etag.unwrap()))
        // `type` left out, as Azure's REST API allows (symmetric keys are the default).
        .json(&serde_json::json!({
            "authentication": {"symmetricKey": {"secondaryKey": new_secondary.to_base64()}}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(rotate.status().as_u16(), 200);
    assert_eq!(
        status_and_code(send(old_secondary).await.unwrap()).await.0,
        401
    );
    let new_token = gateway.device_token(&device.id, &new_secondary);
    assert_eq!(send(new_token).await.unwrap().status().as_u16(), 204);
}

#[tokio::test]
async fn lifecycle_events_reach_the_integration_queue() {
    let queue = fresh_queue("registry-events").await;
    let custom = CustomGateway::start(&[(vars::REGISTRY_EVENTS_QUEUE_URL, &queue)]).await;
    let client = custom.client();
    let owner = gateway().owner_token().await;
    let id = unique("life");
    let created = register_on(&client, &owner, &id).await;
    let deleted = client
        .delete(&format!("/devices/{id}"), &owner)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);

    let events = receive_until(&queue, Duration::from_secs(30), |seen| seen.len() >= 2).await;
    let operations: Vec<&str> = events
        .iter()
        .map(|e| e["opType"].as_str().unwrap())
        .collect();
    assert_eq!(operations, ["createDeviceIdentity", "deleteDeviceIdentity"]);
    for event in &events {
        assert_eq!(event["deviceId"], id.as_str());
        assert_eq!(event["hubName"], gateway().host_name.as_str());
        assert!(event["operationTimestamp"].as_str().is_some());
        assert_eq!(event["generationId"], events[0]["generationId"]);
    }
    assert_ne!(events[0]["eventId"], events[1]["eventId"]);
    assert_eq!(events[0]["etag"], created.etag.as_str());
}

#[tokio::test]
async fn every_twin_write_publishes_its_change_event() {
    let queue = fresh_queue("registry-events").await;
    let custom = CustomGateway::start(&[(vars::REGISTRY_EVENTS_QUEUE_URL, &queue)]).await;
    let client = custom.client();
    let owner = gateway().owner_token().await;
    let id = unique("twin-events");
    let device = register_on(&client, &owner, &id).await;
    let patched = client
        .patch(&format!("/twins/{id}"), &owner)
        .json(&serde_json::json!({ "tags": { "site": "a" }, "properties": { "desired": { "rate": 5 } } }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status().as_u16(), 200);
    let patched: serde_json::Value = patched.json().await.unwrap();
    let replaced = client
        .put(&format!("/twins/{id}"), &owner)
        .json(&serde_json::json!({ "tags": { "site": "b" }, "properties": { "desired": {} } }))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status().as_u16(), 200);
    let replaced: serde_json::Value = replaced.json().await.unwrap();
    let reported = client
        .patch(
            &format!("/devices/{id}/twin/properties/reported"),
            &device.token(),
        )
        .json(&serde_json::json!({ "rate": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(reported.status().as_u16(), 200);

    // The device's write also connects it (a `deviceConnected` event beside the twin's).
    let is_twin =
        |e: &&serde_json::Value| matches!(e["opType"].as_str(), Some("updateTwin" | "replaceTwin"));
    let events = receive_until(&queue, Duration::from_secs(30), |seen| {
        seen.iter().filter(is_twin).count() >= 3
    })
    .await;
    // In the order of the twin versions they wrote (a queue need not keep the order).
    let mut twin_events: Vec<&serde_json::Value> = events.iter().filter(is_twin).collect();
    twin_events.sort_by_key(|e| e["body"]["version"].as_u64());
    let operations: Vec<&str> = twin_events
        .iter()
        .map(|e| e["opType"].as_str().unwrap())
        .collect();
    assert_eq!(operations, ["updateTwin", "replaceTwin", "updateTwin"]);
    assert_eq!(
        twin_events[0]["body"],
        serde_json::json!({ "version": patched["version"], "tags": { "site": "a" }, "properties": { "desired": { "rate": 5 } } })
    );
    assert_eq!(
        twin_events[1]["body"]["tags"],
        serde_json::json!({ "site": "b" })
    );
    assert_eq!(twin_events[1]["body"]["version"], replaced["version"]);
    assert_eq!(
        twin_events[2]["body"]["properties"],
        serde_json::json!({ "reported": { "rate": 5 } })
    );
    assert!(twin_events[2]["body"]["version"].as_u64() > replaced["version"].as_u64());
    for event in &twin_events {
        assert_eq!(event["deviceId"], id.as_str());
        assert_eq!(event["hubName"], gateway().host_name.as_str());
        assert_eq!(event["generationId"], events[0]["generationId"]);
    }
    let mut ids: Vec<&str> = events
        .iter()
        .map(|e| e["eventId"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "each event has its own id");
}

/// Connection-state events come from activity, with a 2-second connected window here: the first
/// request connects the device, the sweep disconnects it once silent for the window, the next
/// request (through another function) connects it again; nothing in between raises events.
#[tokio::test]
async fn devices_connect_with_their_activity_and_disconnect_when_silent() {
    let table = clone_table(vars::REGISTRY_TABLE, false).await;
    let queue = fresh_queue("registry-events").await;
    let custom = CustomGateway::start(&[
        (vars::REGISTRY_TABLE, &table),
        (vars::REGISTRY_EVENTS_QUEUE_URL, &queue),
        (vars::CONNECTED_WINDOW_SECONDS, "2"),
    ])
    .await;
    let client = custom.client();
    let owner = gateway().owner_token().await;
    let id = unique("connection");
    let device = register_on(&client, &owner, &id).await;
    let telemetry = || async {
        client
            .post(&format!("/devices/{id}/messages/events"), &device.token())
            .body("{}")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(telemetry().await, 204);
    assert_eq!(telemetry().await, 204);
    let connection_events = |seen: &[serde_json::Value]| -> Vec<serde_json::Value> {
        seen.iter()
            .filter(|e| e["deviceId"] == id.as_str() && e["opType"] != "createDeviceIdentity")
            .cloned()
            .collect()
    };
    let mut seen = receive_until(&queue, Duration::from_secs(30), |seen| {
        !connection_events(seen).is_empty()
    })
    .await;

    // Sweep (as the schedule does) until the silence is noticed.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let swept = custom
            .hub
            .invoke(
                hub_local::FunctionName::Registry,
                hub_local::Hub::scheduled_event(),
            )
            .await
            .unwrap();
        if swept["disconnected"] == 1 {
            break;
        }
        assert_eq!(swept["disconnected"], 0, "{swept}");
        assert!(std::time::Instant::now() < deadline, "never disconnected");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let described: serde_json::Value = client
        .get(&format!("/devices/{id}"), &owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(described["connectionState"], "Disconnected");
    // Back through the C2D function.
    let received = client
        .get(
            &format!("/devices/{id}/messages/deviceBound"),
            &device.token(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(received.status().as_u16(), 204);
    seen.extend(
        receive_until(&queue, Duration::from_secs(30), |more| {
            connection_events(more).len() >= 2
        })
        .await,
    );

    let mut events = connection_events(&seen);
    events.sort_by(|a, b| {
        a["body"]["sequenceNumber"]
            .as_str()
            .cmp(&b["body"]["sequenceNumber"].as_str())
    });
    let operations: Vec<&str> = events
        .iter()
        .map(|e| e["opType"].as_str().unwrap())
        .collect();
    assert_eq!(
        operations,
        ["deviceConnected", "deviceDisconnected", "deviceConnected"]
    );
    for event in &events {
        assert_eq!(event["hubName"], gateway().host_name.as_str());
        assert_eq!(event["generationId"], events[0]["generationId"]);
        assert_eq!(event["body"]["sequenceNumber"].as_str().unwrap().len(), 64);
    }
    // Dated when the window ran out, after the connection and before the sweep noticed.
    let time = |event: &serde_json::Value| {
        hub_shared::domain::timestamp::Timestamp::parse(
            event["operationTimestamp"].as_str().unwrap(),
        )
        .unwrap()
    };
    assert!(time(&events[0]) < time(&events[1]) && time(&events[1]) < time(&events[2]));
}

#[tokio::test]
async fn events_left_in_the_outbox_are_published_by_the_sweep() {
    let table = clone_table(vars::REGISTRY_TABLE, false).await;
    let queue = fresh_queue("registry-events").await;
    // First SQS is unreachable for the hub: the change commits, its event stays in the outbox.
    let missing_queue = format!("{}-missing", queue);
    let broken = CustomGateway::start(&[
        (vars::REGISTRY_TABLE, &table),
        (vars::REGISTRY_EVENTS_QUEUE_URL, &missing_queue),
    ])
    .await;
    let owner = gateway().owner_token().await;
    let id = unique("outbox");
    register_on(&broken.client(), &owner, &id).await;
    drop(broken);
    let outbox = || async {
        dynamodb()
            .await
            .scan()
            .table_name(&table)
            .filter_expression("begins_with(deviceId, :outbox)")
            .expression_attribute_values(
                ":outbox",
                aws_sdk_dynamodb::types::AttributeValue::S("/outbox/".into()),
            )
            .send()
            .await
            .unwrap()
            .count
    };
    assert_eq!(outbox().await, 1);

    // The scheduled sweep (EventBridge invokes the registry function) publishes it.
    let mut hub = custom_hub(&[
        (vars::REGISTRY_TABLE, &table),
        (vars::REGISTRY_EVENTS_QUEUE_URL, &queue),
    ])
    .await;
    hub.registry.outbox_grace = Duration::ZERO;
    let hub = std::sync::Arc::new(hub);
    let swept = hub
        .invoke(
            hub_local::FunctionName::Registry,
            hub_local::Hub::scheduled_event(),
        )
        .await
        .unwrap();
    assert_eq!(swept["published"], 1);
    let events = receive_until(&queue, Duration::from_secs(30), |seen| !seen.is_empty()).await;
    assert_eq!(events[0]["opType"], "createDeviceIdentity");
    assert_eq!(events[0]["deviceId"], id.as_str());
    assert_eq!(outbox().await, 0);
}

#[tokio::test]
async fn last_activity_and_queued_message_count_are_kept_current() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    let device = gateway.register(&unique("activity")).await;
    let client = gateway.http();
    let describe = || async {
        client
            .get(&format!("/devices/{}", device.id), &owner)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let before = describe().await;
    assert_eq!(before["lastActivityTime"], "0001-01-01T00:00:00Z");
    assert_eq!(before["connectionState"], "Disconnected");
    assert_eq!(before["cloudToDeviceMessageCount"], 0);

    let started = hub_shared::domain::timestamp::Timestamp::now();
    let sent = client
        .post(&device.events_path(), &device.token())
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status().as_u16(), 204);
    let after = describe().await;
    assert_eq!(
        after["connectionState"], "Connected",
        "active within the connected window"
    );
    let last = hub_shared::domain::timestamp::Timestamp::parse(
        after["lastActivityTime"].as_str().unwrap(),
    )
    .unwrap();
    assert!(
        last.unix_millis() >= started.unix_millis() - 1000,
        "telemetry is activity: {last}"
    );

    let service = gateway.http();
    for body in ["one", "two"] {
        let sent = hub_tests::send_command(&service, &device.id, body, &[]).await;
        assert_eq!(sent.status().as_u16(), 202);
    }
    assert_eq!(describe().await["cloudToDeviceMessageCount"], 2);
    let sdk = device.client(&gateway.http_url);
    let message = sdk.receive().await.unwrap().expect("a queued message");
    sdk.complete(&message.lock_token).await.unwrap();
    assert_eq!(describe().await["cloudToDeviceMessageCount"], 1);
}

/// Sends one request per device at once, each on its own task; answers their statuses in order.
async fn race(custom: &CustomGateway, owner: &str, method: &str, ids: &[String]) -> Vec<u16> {
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let (client, owner, id) = (custom.client(), owner.to_owned(), id.clone());
            let create = method == "PUT";
            tokio::spawn(async move {
                let path = format!("/devices/{id}");
                let request = if create {
                    client
                        .put(&path, &owner)
                        .json(&serde_json::json!({"deviceId": id}))
                } else {
                    client.delete(&path, &owner)
                };
                request.send().await.unwrap().status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses
}

#[tokio::test]
async fn concurrent_creates_and_deletes_all_succeed_and_count_exactly() {
    // Provisioning scripts register devices in parallel: every create and delete must succeed
    // (no 503 from writers colliding on the statistics) and the counts must stay exact.
    let table = clone_table(vars::REGISTRY_TABLE, false).await;
    let custom = CustomGateway::start(&[(vars::REGISTRY_TABLE, &table)]).await;
    let client = custom.client();
    let owner = gateway().owner_token().await;
    let ids: Vec<String> = (0..40).map(|i| format!("race-{i}")).collect();

    assert_eq!(
        race(&custom, &owner, "PUT", &ids).await,
        vec![200; ids.len()],
        "every concurrent create succeeds"
    );
    let statistics = || statistics(&client, &owner);
    assert_eq!(
        statistics().await,
        serde_json::json!({"totalDeviceCount": 40, "enabledDeviceCount": 40, "disabledDeviceCount": 0})
    );

    assert_eq!(
        race(&custom, &owner, "DELETE", &ids[..25]).await,
        vec![204; 25],
        "every concurrent delete succeeds"
    );
    assert_eq!(
        statistics().await,
        serde_json::json!({"totalDeviceCount": 15, "enabledDeviceCount": 15, "disabledDeviceCount": 0})
    );
}
