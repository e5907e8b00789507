//! Unit tests of the registry, twin and policy handlers over in-memory ports. The same behaviour
//! is tested against DynamoDB and SQS on LocalStack in `tests/`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use hub_shared::authz::Principal;
use hub_shared::domain::device::{DeviceDescription, DeviceStatus};
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::policy::{Permission, Rights};
use hub_shared::domain::registry::{BulkRegistryOperationResult, LifecycleEvent};
use hub_shared::domain::sas::SymmetricKey;
use hub_shared::fakes::{
    InMemoryJobs, InMemoryMethodCalls, InMemoryPolicies, InMemoryQueue, InMemoryRegistry,
    InMemoryTwins, RequestBuilder, built_in_policies, device, error_code, response_body,
};
use hub_shared::http::AuthContext;
use serde_json::{Value, json};

use super::*;

type TestHandler = RegistryHandler<
    InMemoryRegistry,
    InMemoryTwins,
    InMemoryPolicies,
    InMemoryQueue,
    InMemoryMethodCalls,
    InMemoryJobs,
>;

fn handler_with(
    devices: impl IntoIterator<Item = hub_shared::domain::device::Device>,
) -> TestHandler {
    RegistryHandler::new(
        InMemoryRegistry::with(devices),
        InMemoryTwins::default(),
        InMemoryPolicies::with(built_in_policies()),
        InMemoryQueue::default(),
        InMemoryMethodCalls::default(),
        JobPorts {
            store: InMemoryJobs::default(),
            work: InMemoryQueue::default(),
        },
        "hub.example",
    )
}

fn handler() -> TestHandler {
    handler_with([])
}

fn service(policy: &str, permissions: &[Permission]) -> AuthContext {
    AuthContext::Allow(Principal::Service {
        policy: policy.into(),
        rights: Rights::of(permissions),
    })
}

fn owner() -> AuthContext {
    service(
        "iothubowner",
        &[
            Permission::RegistryRead,
            Permission::RegistryWrite,
            Permission::ServiceConnect,
            Permission::DeviceConnect,
        ],
    )
}

fn reader() -> AuthContext {
    service("registryRead", &[Permission::RegistryRead])
}

fn device_token(id: &str, generation: &str) -> AuthContext {
    AuthContext::Allow(Principal::Device {
        device_id: DeviceId::parse(id).unwrap(),
        generation_id: generation.into(),
        via_policy: None,
    })
}

fn put(id: &str, body: &str) -> ApiGatewayV2httpRequest {
    RequestBuilder::new("PUT /devices/{id}", &format!("/devices/{id}"), &owner())
        .text_body(body)
        .build()
}

async fn call(handler: &TestHandler, request: ApiGatewayV2httpRequest) -> (i64, Value) {
    let response = handler.handle_http(&request).await;
    let body = response_body(&response);
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or(Value::String(body))
    };
    (response.status_code, json)
}

fn assert_error(response: &ApiGatewayV2httpResponse, status: i64, code: &str) {
    assert_eq!(
        (response.status_code, error_code(response).as_deref()),
        (status, Some(code)),
        "{}",
        response_body(response)
    );
}

fn published(handler: &TestHandler) -> Vec<LifecycleEvent> {
    handler
        .events
        .sent()
        .iter()
        .map(|body| serde_json::from_str(body).unwrap())
        .collect()
}

// --- devices ---------------------------------------------------------------------------------

#[tokio::test]
async fn creates_a_device_with_generated_keys_in_azure_shape_and_announces_it() {
    let handler = handler();
    let response = handler
        .handle_http(&put("dev1", r#"{"deviceId":"dev1"}"#))
        .await;
    assert_eq!(response.status_code, 200, "{}", response_body(&response));
    let json: Value = serde_json::from_str(&response_body(&response)).unwrap();
    assert_eq!(json["deviceId"], "dev1");
    assert_eq!(json["status"], "enabled");
    assert_eq!(json["connectionState"], "Disconnected");
    assert_eq!(json["authentication"]["type"], "sas");
    let primary = json["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    let secondary = json["authentication"]["symmetricKey"]["secondaryKey"]
        .as_str()
        .unwrap();
    assert_eq!(
        SymmetricKey::from_base64(primary)
            .unwrap()
            .to_base64()
            .len(),
        44
    );
    assert_ne!(primary, secondary);
    assert_eq!(json["generationId"].as_str().unwrap().len(), 18);
    assert_eq!(
        response.headers["etag"],
        format!("\"{}\"", json["etag"].as_str().unwrap())
    );

    let [event] = published(&handler).try_into().unwrap();
    assert_eq!(
        serde_json::to_value(event.op_type).unwrap(),
        "createDeviceIdentity"
    );
    assert_eq!(event.device_id.as_str(), "dev1");
    assert_eq!(event.hub_name, "hub.example");
    assert_eq!(event.generation_id, json["generationId"].as_str().unwrap());
    assert!(
        handler.registry.outbox().is_empty(),
        "published events leave the outbox"
    );
}

#[tokio::test]
async fn keeps_given_keys_and_status() {
    let handler = handler();
    let key = SymmetricKey::generate().to_base64();
    let body = format!(
        r#"{{"deviceId":"dev1","status":"disabled","statusReason":"maintenance","authentication":{{"type":"sas","symmetricKey":{{"primaryKey":"{key}","secondaryKey":"{key}"}}}}}}"#
    );
    let (status, created) = call(&handler, put("dev1", &body)).await;
    assert_eq!(status, 200);
    let created: DeviceDescription = serde_json::from_value(created).unwrap();
    assert_eq!(created.status, Some(DeviceStatus::Disabled));
    assert_eq!(created.status_reason.as_deref(), Some("maintenance"));
    let keys = created.authentication.unwrap().symmetric_key.unwrap();
    assert_eq!(keys.primary_key.as_deref(), Some(key.as_str()));
}

#[tokio::test]
async fn a_refused_duplicate_leaves_the_id_index_with_the_existing_generation() {
    let existing = device("dev1");
    let generation = existing.generation_id.clone();
    let handler = handler_with([existing]);
    let (status, _) = call(&handler, put("dev1", r#"{"deviceId":"dev1"}"#)).await;
    assert_eq!(status, 409);
    let indexed = handler.twins.indexed.lock().unwrap().clone();
    assert_eq!(
        indexed.get(&DeviceId::parse("dev1").unwrap()),
        Some(&generation)
    );
}

#[tokio::test]
async fn rejects_bad_descriptions_and_duplicates() {
    let handler = handler_with([device("dev1")]);
    let cases = [
        (
            put("dev1", r#"{"deviceId":"dev1"}"#),
            409,
            "DeviceAlreadyExists",
        ),
        (
            put("dev2", r#"{"deviceId":"other"}"#),
            400,
            "ArgumentInvalid",
        ),
        (put("dev2", "not json"), 400, "ArgumentInvalid"),
        (put("dev2", ""), 400, "ArgumentNull"),
        (
            put("dev2", r#"{"deviceId":"bad id"}"#),
            400,
            "ArgumentInvalid",
        ),
        (
            put("dev2", r#"{"status":"sleeping"}"#),
            400,
            "ArgumentInvalid",
        ),
        (
            put("dev2", r#"{"authentication":{"type":"selfSigned"}}"#),
            400,
            "ArgumentInvalid",
        ),
        (
            put(
                "dev2",
                r#"{"authentication":{"type":"sas","symmetricKey":{"primaryKey":"c2hvcnQ="}}}"#,
            ),
            400,
            "ArgumentInvalid",
        ),
        (put("bad%20id", "{}"), 400, "ArgumentInvalid"),
    ];
    for (request, status, code) in cases {
        assert_error(&handler.handle_http(&request).await, status, code);
    }
    assert_eq!(handler.registry.snapshot().len(), 1, "nothing written");
    assert!(handler.events.sent().is_empty());
}

#[tokio::test]
async fn updates_honour_if_match_and_change_the_etag() {
    let dev = device("dev1");
    let handler = handler_with([dev.clone()]);
    let update = |if_match: &str, body: &str| {
        RequestBuilder::new("PUT /devices/{id}", "/devices/dev1", &owner())
            .header("if-match", if_match)
            .text_body(body)
            .build()
    };
    let disable = r#"{"deviceId":"dev1","status":"disabled","statusReason":"stolen"}"#;
    assert_error(
        &handler.handle_http(&update("\"stale\"", disable)).await,
        412,
        "PreconditionFailed",
    );
    let (status, updated) = call(&handler, update(&format!("\"{}\"", dev.etag), disable)).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["status"], "disabled");
    assert_eq!(updated["statusReason"], "stolen");
    assert_ne!(
        updated["etag"],
        dev.etag.as_str(),
        "every update changes the etag"
    );
    assert_eq!(updated["generationId"], dev.generation_id.as_str());
    assert_ne!(
        updated["statusUpdatedTime"],
        serde_json::to_value(dev.status_updated_time).unwrap()
    );
    // The old etag no longer matches; `*` matches any.
    assert_error(
        &handler
            .handle_http(&update(&format!("\"{}\"", dev.etag), "{}"))
            .await,
        412,
        "PreconditionFailed",
    );
    let (status, enabled) = call(&handler, update("*", r#"{"status":"enabled"}"#)).await;
    assert_eq!((status, &enabled["status"]), (200, &json!("enabled")));
    // Updating a device that does not exist is a 404, not a create.
    let missing = RequestBuilder::new("PUT /devices/{id}", "/devices/ghost", &owner())
        .header("if-match", "*")
        .text_body("{}")
        .build();
    assert_error(&handler.handle_http(&missing).await, 404, "DeviceNotFound");
}

#[tokio::test]
async fn regenerating_a_device_key_replaces_only_that_key() {
    let dev = device("dev1");
    let handler = handler_with([dev.clone()]);
    let new_key = SymmetricKey::generate().to_base64();
    let body = format!(
        r#"{{"authentication":{{"type":"sas","symmetricKey":{{"primaryKey":"{new_key}"}}}}}}"#
    );
    let request = RequestBuilder::new("PUT /devices/{id}", "/devices/dev1", &owner())
        .header("if-match", "*")
        .text_body(&body)
        .build();
    let (status, updated) = call(&handler, request).await;
    assert_eq!(status, 200, "{updated}");
    let [stored] = handler.registry.snapshot().try_into().unwrap();
    assert_eq!(stored.primary_key.to_base64(), new_key);
    assert_eq!(
        stored.secondary_key, dev.secondary_key,
        "the other key still works"
    );
}

#[tokio::test]
async fn gets_and_deletes_with_if_match_and_announces_deletion() {
    let dev = device("dev1");
    let handler = handler_with([dev.clone()]);
    let get = || RequestBuilder::new("GET /devices/{id}", "/devices/dev1", &reader()).build();
    let (status, got) = call(&handler, get()).await;
    assert_eq!((status, &got["etag"]), (200, &json!(dev.etag)));

    let delete = |if_match: &str| {
        RequestBuilder::new("DELETE /devices/{id}", "/devices/dev1", &owner())
            .header("if-match", if_match)
            .build()
    };
    assert_error(
        &handler.handle_http(&delete("\"stale\"")).await,
        412,
        "PreconditionFailed",
    );
    assert_eq!(
        handler
            .handle_http(&delete(&format!("\"{}\"", dev.etag)))
            .await
            .status_code,
        204
    );
    assert_error(&handler.handle_http(&get()).await, 404, "DeviceNotFound");
    assert_error(
        &handler.handle_http(&delete("*")).await,
        404,
        "DeviceNotFound",
    );
    let [event] = published(&handler).try_into().unwrap();
    assert_eq!(
        serde_json::to_value(event.op_type).unwrap(),
        "deleteDeviceIdentity"
    );
    assert_eq!(event.generation_id, dev.generation_id);
}

#[tokio::test]
async fn a_reused_id_gets_a_new_generation_and_a_fresh_twin() {
    let handler = handler();
    let (_, first) = call(&handler, put("dev1", "{}")).await;
    let patch = RequestBuilder::new("PATCH /twins/{id}", "/twins/dev1", &owner())
        .text_body(r#"{"tags":{"site":"a"}}"#)
        .build();
    assert_eq!(call(&handler, patch).await.0, 200);
    let delete = RequestBuilder::new("DELETE /devices/{id}", "/devices/dev1", &owner()).build();
    assert_eq!(call(&handler, delete).await.0, 204);
    let (_, second) = call(&handler, put("dev1", "{}")).await;
    assert_ne!(first["generationId"], second["generationId"]);
    let get = RequestBuilder::new("GET /twins/{id}", "/twins/dev1", &owner()).build();
    let (status, twin) = call(&handler, get).await;
    assert_eq!(status, 200);
    assert_eq!(twin["tags"], json!({}), "the old generation's twin is gone");
}

#[tokio::test]
async fn lists_devices_in_pages_with_continuation() {
    let ids = ["a1", "a2", "b1", "b2", "c1"];
    let handler = handler_with(ids.map(device));
    let mut seen = Vec::new();
    let mut continuation: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut builder =
            RequestBuilder::new("GET /devices", "/devices", &reader()).query(&[("top", "2")]);
        if let Some(token) = &continuation {
            builder = builder.header("x-ms-continuation", token);
        }
        let response = handler.handle_http(&builder.build()).await;
        assert_eq!(response.status_code, 200, "{}", response_body(&response));
        let page: Vec<DeviceDescription> = serde_json::from_str(&response_body(&response)).unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.into_iter().map(|d| d.device_id.unwrap().to_string()));
        pages += 1;
        continuation = response
            .headers
            .get("x-ms-continuation")
            .map(|v| v.to_str().unwrap().to_owned());
        if continuation.is_none() {
            break;
        }
        assert!(pages < 10, "the continuation must end");
    }
    seen.sort();
    assert_eq!(seen, ids);
    assert_eq!(pages, 3);

    for top in ["0", "1001", "ten"] {
        let request = RequestBuilder::new("GET /devices", "/devices", &reader())
            .query(&[("top", top)])
            .build();
        assert_error(&handler.handle_http(&request).await, 400, "ArgumentInvalid");
    }
    let bad_token = RequestBuilder::new("GET /devices", "/devices", &reader())
        .header("x-ms-continuation", "***")
        .build();
    assert_error(
        &handler.handle_http(&bad_token).await,
        400,
        "ArgumentInvalid",
    );
}

#[tokio::test]
async fn counts_devices_by_status() {
    let handler = handler();
    for id in ["d1", "d2", "d3"] {
        assert_eq!(call(&handler, put(id, "{}")).await.0, 200);
    }
    let disable = RequestBuilder::new("PUT /devices/{id}", "/devices/d2", &owner())
        .header("if-match", "*")
        .text_body(r#"{"status":"disabled"}"#)
        .build();
    assert_eq!(call(&handler, disable).await.0, 200);
    let delete = RequestBuilder::new("DELETE /devices/{id}", "/devices/d3", &owner()).build();
    assert_eq!(call(&handler, delete).await.0, 204);
    let stats =
        RequestBuilder::new("GET /statistics/devices", "/statistics/devices", &reader()).build();
    let (status, stats) = call(&handler, stats).await;
    assert_eq!(status, 200);
    assert_eq!(
        stats,
        json!({"totalDeviceCount": 2, "enabledDeviceCount": 1, "disabledDeviceCount": 1})
    );
}

// --- bulk ------------------------------------------------------------------------------------

fn bulk(body: &Value) -> ApiGatewayV2httpRequest {
    RequestBuilder::new("POST /devices", "/devices", &owner())
        .text_body(&body.to_string())
        .build()
}

#[tokio::test]
async fn bulk_reports_each_failure_and_applies_the_rest() {
    let existing = device("old");
    let doomed = device("doomed");
    let handler = handler_with([existing.clone(), doomed.clone()]);
    let request = bulk(&json!([
        {"id": "new1", "importMode": "create"},
        {"id": "old", "importMode": "create"},
        {"id": "ghost", "importMode": "update", "status": "disabled"},
        {"id": "doomed", "importMode": "deleteIfMatchETag", "eTag": "\"stale\""},
        {"id": "new2", "importMode": "create", "status": "disabled"},
    ]));
    let (status, result) = call(&handler, request).await;
    assert_eq!(status, 200, "{result}");
    let result: BulkRegistryOperationResult = serde_json::from_value(result).unwrap();
    assert!(!result.is_successful);
    let errors: Vec<(&str, &str)> = result
        .errors
        .iter()
        .map(|e| (e.device_id.as_str(), e.error_code.as_str()))
        .collect();
    assert_eq!(
        errors,
        [
            ("old", "DeviceAlreadyExists"),
            ("ghost", "DeviceNotFound"),
            ("doomed", "PreconditionFailed")
        ]
    );
    let mut ids: Vec<String> = handler
        .registry
        .snapshot()
        .iter()
        .map(|d| d.device_id.to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["doomed", "new1", "new2", "old"]);

    let request = bulk(&json!([
        {"id": "doomed", "importMode": "deleteIfMatchETag", "eTag": format!("\"{}\"", doomed.etag)},
        {"id": "old", "importMode": "updateIfMatchETag", "eTag": existing.etag, "status": "disabled"},
        {"id": "new1", "importMode": "delete"},
    ]));
    let (status, result) = call(&handler, request).await;
    assert_eq!(
        (status, &result["isSuccessful"]),
        (200, &json!(true)),
        "{result}"
    );
    assert_eq!(result["errors"], json!([]));
    let [old] = handler
        .registry
        .snapshot()
        .into_iter()
        .filter(|d| d.device_id.as_str() == "old")
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    assert_eq!(old.status, DeviceStatus::Disabled);
    assert_eq!(handler.registry.snapshot().len(), 2);
}

#[tokio::test]
async fn a_bulk_request_cut_short_by_the_store_says_exactly_what_was_applied() {
    let handler = handler();
    *handler.registry.writes_before_outage.lock().unwrap() = Some(2);
    let request = bulk(&json!([
        {"id": "a", "importMode": "create"},
        {"id": "b", "importMode": "create"},
        {"id": "c", "importMode": "create"},
        {"id": "d", "importMode": "create"},
    ]));
    let (status, result) = call(&handler, request).await;
    assert_eq!(status, 200, "{result}");
    let result: BulkRegistryOperationResult = serde_json::from_value(result).unwrap();
    assert!(!result.is_successful);
    let not_applied: Vec<(&str, &str)> = result
        .errors
        .iter()
        .map(|e| (e.device_id.as_str(), e.error_code.as_str()))
        .collect();
    assert_eq!(
        not_applied,
        [("c", "ServiceUnavailable"), ("d", "ServiceUnavailable")]
    );
    assert!(result.errors[0].error_status.starts_with("not applied"));
    let mut stored: Vec<String> = handler
        .registry
        .snapshot()
        .iter()
        .map(|d| d.device_id.to_string())
        .collect();
    stored.sort();
    assert_eq!(stored, ["a", "b"], "exactly what the answer did not list");

    // Nothing applied at all: the whole request fails, to be retried whole.
    let (status, _) = call(
        &handler,
        bulk(&json!([{"id": "e", "importMode": "create"}])),
    )
    .await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn a_corrupt_device_item_is_a_500_not_a_503_forever() {
    let handler = handler_with([device("dev1")]);
    handler
        .registry
        .corrupt
        .lock()
        .unwrap()
        .insert(DeviceId::parse("dev1").unwrap());
    let response = handler
        .handle_http(&RequestBuilder::new("GET /devices/{id}", "/devices/dev1", &reader()).build())
        .await;
    assert_error(&response, 500, "ServerError");
    let body = response_body(&response);
    assert!(body.contains("retrying will not help"), "{body}");
}

#[tokio::test]
async fn bulk_rejects_malformed_requests_whole() {
    let handler = handler();
    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"id": format!("d{i}"), "importMode": "create"}))
        .collect();
    let cases = [
        json!([]),
        json!(too_many),
        json!([{"id": "d1", "importMode": "create"}, {"id": "d1", "importMode": "delete"}]),
        json!([{"id": "d1", "importMode": "explode"}]),
        json!([{"id": "bad id", "importMode": "create"}]),
        json!({"id": "d1"}),
    ];
    for body in cases {
        assert_error(
            &handler.handle_http(&bulk(&body)).await,
            400,
            "ArgumentInvalid",
        );
    }
    assert!(handler.registry.snapshot().is_empty());
    let missing_etag = bulk(&json!([{"id": "d1", "importMode": "updateIfMatchETag"}]));
    let (status, result) = call(&handler, missing_etag).await;
    assert_eq!(
        (status, &result["errors"][0]["errorCode"]),
        (200, &json!("ArgumentInvalid"))
    );
}

// --- twins -----------------------------------------------------------------------------------

fn patch_twin(id: &str, body: &Value) -> ApiGatewayV2httpRequest {
    RequestBuilder::new("PATCH /twins/{id}", &format!("/twins/{id}"), &owner())
        .text_body(&body.to_string())
        .build()
}

#[tokio::test]
async fn a_new_twin_has_azure_shape() {
    let dev = device("dev1");
    let handler = handler_with([dev.clone()]);
    let get = RequestBuilder::new("GET /twins/{id}", "/twins/dev1", &owner()).build();
    let response = handler.handle_http(&get).await;
    assert_eq!(response.status_code, 200);
    let twin: Value = serde_json::from_str(&response_body(&response)).unwrap();
    assert_eq!(twin["deviceId"], "dev1");
    assert_eq!(twin["version"], 1);
    assert_eq!(twin["tags"], json!({}));
    assert_eq!(twin["properties"]["desired"]["$version"], 1);
    assert_eq!(twin["properties"]["reported"]["$version"], 1);
    assert!(twin["properties"]["desired"]["$metadata"].is_object());
    assert_eq!(twin["status"], "enabled");
    assert_eq!(twin["deviceEtag"], dev.etag.as_str());
    assert_eq!(
        response.headers["etag"],
        format!("\"{}\"", twin["etag"].as_str().unwrap())
    );
    let ghost = RequestBuilder::new("GET /twins/{id}", "/twins/ghost", &owner()).build();
    assert_error(&handler.handle_http(&ghost).await, 404, "DeviceNotFound");
}

#[tokio::test]
async fn patch_merges_deletes_with_null_and_honours_if_match() {
    let handler = handler_with([device("dev1")]);
    let (status, twin) = call(
        &handler,
        patch_twin(
            "dev1",
            &json!({"tags": {"site": "north", "floor": 2}, "properties": {"desired": {"rate": 5, "mode": {"eco": true}}}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{twin}");
    assert_eq!(twin["tags"], json!({"site": "north", "floor": 2}));
    assert_eq!(twin["properties"]["desired"]["rate"], 5);
    assert_eq!(twin["properties"]["desired"]["$version"], 2);
    assert!(twin["properties"]["desired"]["$metadata"]["rate"]["$lastUpdated"].is_string());
    assert_eq!(
        twin["properties"]["desired"]["$metadata"]["rate"]["$lastUpdatedVersion"],
        2
    );
    let etag = twin["etag"].as_str().unwrap().to_owned();

    let (status, twin) = call(
        &handler,
        patch_twin("dev1", &json!({"tags": {"floor": null}, "properties": {"desired": {"mode": {"eco": null, "night": 1}}}})),
    )
    .await;
    assert_eq!(status, 200, "{twin}");
    assert_eq!(twin["tags"], json!({"site": "north"}));
    assert_eq!(twin["properties"]["desired"]["mode"], json!({"night": 1}));
    assert_eq!(
        twin["properties"]["desired"]["rate"], 5,
        "untouched keys stay"
    );
    assert_ne!(twin["etag"], etag.as_str());

    let stale = RequestBuilder::new("PATCH /twins/{id}", "/twins/dev1", &owner())
        .header("if-match", &format!("\"{etag}\""))
        .text_body(r#"{"tags":{"x":1}}"#)
        .build();
    assert_error(
        &handler.handle_http(&stale).await,
        412,
        "PreconditionFailed",
    );
    let current = twin["etag"].as_str().unwrap();
    let fresh = RequestBuilder::new("PATCH /twins/{id}", "/twins/dev1", &owner())
        .header("if-match", &format!("\"{current}\""))
        .text_body(r#"{"tags":{"x":1}}"#)
        .build();
    assert_eq!(call(&handler, fresh).await.0, 200);
}

#[tokio::test]
async fn put_replaces_tags_and_desired_but_not_reported() {
    let dev = device("dev1");
    let handler = handler_with([dev.clone()]);
    let reported = RequestBuilder::new(
        "PATCH /devices/{id}/twin/properties/reported",
        "/devices/dev1/twin/properties/reported",
        &device_token("dev1", &dev.generation_id),
    )
    .text_body(r#"{"battery": 80}"#)
    .build();
    assert_eq!(call(&handler, reported).await.0, 200);
    call(
        &handler,
        patch_twin(
            "dev1",
            &json!({"tags": {"a": 1, "b": 2}, "properties": {"desired": {"x": 1}}}),
        ),
    )
    .await;
    let replace = RequestBuilder::new("PUT /twins/{id}", "/twins/dev1", &owner())
        .text_body(r#"{"tags":{"c":3},"properties":{"desired":{"y":2}}}"#)
        .build();
    let (status, twin) = call(&handler, replace).await;
    assert_eq!(status, 200, "{twin}");
    assert_eq!(twin["tags"], json!({"c": 3}));
    assert_eq!(twin["properties"]["desired"]["y"], 2);
    assert!(twin["properties"]["desired"].get("x").is_none());
    assert_eq!(twin["properties"]["reported"]["battery"], 80);
}

#[tokio::test]
async fn twin_limits_are_clear_400s_and_change_nothing() {
    let handler = handler_with([device("dev1")]);
    let deep = (0..11).fold(json!(1), |inner, _| json!({"n": inner}));
    let cases = [
        json!({"tags": {"big": "x".repeat(4000), "big2": "x".repeat(4000), "big3": "x".repeat(300)}}),
        json!({"properties": {"desired": {"long": "x".repeat(4097)}}}),
        json!({"properties": {"desired": (0..9).map(|i| (format!("k{i}"), json!("x".repeat(4000)))).collect::<serde_json::Map<_, _>>()}}),
        json!({"tags": {"a.b": 1}}),
        json!({"tags": {"$a": 1}}),
        json!({"tags": {"a b": 1}}),
        json!({"tags": {"k".repeat(1025): 1}}),
        json!({"properties": {"desired": deep}}),
        json!({"properties": {"reported": {"a": 1}}}),
        json!({"tags": "not an object"}),
        json!({"status": "disabled"}),
    ];
    for body in cases {
        let response = handler.handle_http(&patch_twin("dev1", &body)).await;
        assert_error(&response, 400, "ArgumentInvalid");
    }
    let invalid_json = RequestBuilder::new("PATCH /twins/{id}", "/twins/dev1", &owner())
        .text_body("{")
        .build();
    assert_error(
        &handler.handle_http(&invalid_json).await,
        400,
        "ArgumentInvalid",
    );
    assert_eq!(handler.twins.writes.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_patches_lose_nothing_and_versions_only_grow() {
    let handler = Arc::new(handler_with([device("dev1")]));
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let (status, twin) = call(
                    &handler,
                    patch_twin(
                        "dev1",
                        &json!({"properties": {"desired": {format!("w{i}"): i}}}),
                    ),
                )
                .await;
                assert_eq!(status, 200, "{twin}");
                twin["properties"]["desired"]["$version"].as_u64().unwrap()
            })
        })
        .collect();
    let mut versions = Vec::new();
    for writer in writers {
        versions.push(writer.await.unwrap());
    }
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 16, "every write got its own version");
    let get = RequestBuilder::new("GET /twins/{id}", "/twins/dev1", &owner()).build();
    let (_, twin) = call(&handler, get).await;
    for i in 0..16 {
        assert_eq!(
            twin["properties"]["desired"][format!("w{i}")],
            i,
            "no lost update"
        );
    }
    assert_eq!(twin["properties"]["desired"]["$version"], 17);
}

#[tokio::test]
async fn devices_read_their_twin_report_and_wait_for_desired_changes() {
    let dev = device("dev1");
    let handler = Arc::new(handler_with([dev.clone()]));
    let as_device = device_token("dev1", &dev.generation_id);

    let report = RequestBuilder::new(
        "PATCH /devices/{id}/twin/properties/reported",
        "/devices/dev1/twin/properties/reported",
        &as_device,
    )
    .text_body(r#"{"firmware":{"version":"1.2"}}"#)
    .build();
    let (status, body) = call(&handler, report).await;
    assert_eq!((status, &body["$version"]), (200, &json!(2)));
    assert_ne!(
        handler.registry.snapshot()[0].last_activity_time,
        hub_shared::domain::timestamp::Timestamp::NEVER,
        "twin access counts as device activity"
    );

    let get =
        RequestBuilder::new("GET /devices/{id}/twin", "/devices/dev1/twin", &as_device).build();
    let (status, twin) = call(&handler, get).await;
    assert_eq!(status, 200);
    assert_eq!(twin["reported"]["firmware"]["version"], "1.2");
    assert_eq!(twin["desired"]["$version"], 1);

    let desired = |since: &str, wait: &str| {
        RequestBuilder::new(
            "GET /devices/{id}/twin/properties/desired",
            "/devices/dev1/twin/properties/desired",
            &as_device,
        )
        .query(&[("sinceVersion", since), ("waitSeconds", wait)])
        .build()
    };
    assert_eq!(
        call(&handler, desired("1", "0")).await.0,
        204,
        "no change yet"
    );
    assert_eq!(call(&handler, desired("0", "0")).await.0, 200);

    let waiter = {
        let handler = Arc::clone(&handler);
        let request = desired("1", "10");
        tokio::spawn(async move { call(&handler, request).await })
    };
    let (status, _) = call(
        &handler,
        patch_twin("dev1", &json!({"properties": {"desired": {"rate": 9}}})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, desired_now) = waiter.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(desired_now["rate"], 9);
    assert_eq!(desired_now["$version"], 2);

    for (since, wait) in [("x", "0"), ("1", "21"), ("1", "-1")] {
        let response = handler.handle_http(&desired(since, wait)).await;
        assert_error(&response, 400, "ArgumentInvalid");
    }
}

fn wait_for_desired(since: u64, generation: &str) -> ApiGatewayV2httpRequest {
    RequestBuilder::new(
        "GET /devices/{id}/twin/properties/desired",
        "/devices/dev1/twin/properties/desired",
        &device_token("dev1", generation),
    )
    .query(&[("sinceVersion", &since.to_string()), ("waitSeconds", "20")])
    .build()
}

// Paused time: the waiter's re-reads happen at exact virtual instants, so "it was waiting when the
// change came" and "it woke on the change, not at its deadline" are facts, not races.
#[tokio::test(start_paused = true)]
async fn a_waiting_device_wakes_on_the_first_change_of_a_never_written_twin() {
    let handler = Arc::new(handler());
    let (_, created) = call(&handler, put("dev1", "{}")).await;
    let generation = created["generationId"].as_str().unwrap().to_owned();
    let started = tokio::time::Instant::now();
    let waiter = {
        let handler = Arc::clone(&handler);
        let request = wait_for_desired(1, &generation);
        tokio::spawn(async move { call(&handler, request).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!waiter.is_finished(), "nothing changed yet: still waiting");
    let (status, _) = call(
        &handler,
        patch_twin("dev1", &json!({"properties": {"desired": {"rate": 1}}})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, desired) = waiter.await.unwrap();
    assert_eq!((status, &desired["rate"]), (200, &json!(1)));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woke within a re-read of the change, not at the deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_ends_when_the_device_is_recreated() {
    let handler = Arc::new(handler());
    let (_, created) = call(&handler, put("dev1", "{}")).await;
    let generation = created["generationId"].as_str().unwrap().to_owned();
    let waiter = {
        let handler = Arc::clone(&handler);
        let request = wait_for_desired(1, &generation);
        tokio::spawn(async move { call(&handler, request).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let delete = RequestBuilder::new("DELETE /devices/{id}", "/devices/dev1", &owner()).build();
    assert_eq!(call(&handler, delete).await.0, 204);
    assert_eq!(call(&handler, put("dev1", "{}")).await.0, 200);
    let (status, _) = call(
        &handler,
        patch_twin("dev1", &json!({"properties": {"desired": {"rate": 2}}})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = waiter.await.unwrap();
    assert_eq!(
        status, 404,
        "the new device's twin is not the waiter's: {body}"
    );
}

#[tokio::test]
async fn reported_properties_follow_the_same_limits() {
    let dev = device("dev1");
    let handler = handler_with([dev.clone()]);
    let report = RequestBuilder::new(
        "PATCH /devices/{id}/twin/properties/reported",
        "/devices/dev1/twin/properties/reported",
        &device_token("dev1", &dev.generation_id),
    )
    .text_body(r#"{"bad.key": 1}"#)
    .build();
    assert_error(&handler.handle_http(&report).await, 400, "ArgumentInvalid");
}

// --- permissions -----------------------------------------------------------------------------

#[tokio::test]
async fn every_route_refuses_callers_without_its_permission() {
    let dev = device("dev1");
    let handler = handler_with([dev.clone()]);
    let service_only = service("service", &[Permission::ServiceConnect]);
    let other_device = device_token("dev2", "1");
    let cases: Vec<(&str, &str, AuthContext, i64)> = vec![
        ("PUT /devices/{id}", "/devices/dev9", reader(), 401),
        (
            "GET /devices/{id}",
            "/devices/dev1",
            service_only.clone(),
            401,
        ),
        ("DELETE /devices/{id}", "/devices/dev1", reader(), 401),
        ("GET /devices", "/devices", service_only.clone(), 401),
        ("POST /devices", "/devices", reader(), 401),
        (
            "GET /statistics/devices",
            "/statistics/devices",
            service_only.clone(),
            401,
        ),
        ("GET /twins/{id}", "/twins/dev1", reader(), 401),
        ("PATCH /twins/{id}", "/twins/dev1", reader(), 401),
        ("PUT /twins/{id}", "/twins/dev1", reader(), 401),
        (
            "GET /devices/{id}/twin",
            "/devices/dev1/twin",
            other_device.clone(),
            401,
        ),
        ("GET /devices/{id}/twin", "/devices/dev1/twin", owner(), 401),
        (
            "PATCH /devices/{id}/twin/properties/reported",
            "/devices/dev1/twin/properties/reported",
            other_device.clone(),
            401,
        ),
        (
            "GET /devices/{id}/twin/properties/desired",
            "/devices/dev1/twin/properties/desired",
            other_device,
            401,
        ),
        ("GET /policies", "/policies", service_only.clone(), 401),
        (
            "POST /policies/{name}/keys/{slot}/regenerate",
            "/policies/service/keys/primary/regenerate",
            service(
                "registryReadWrite",
                &[Permission::RegistryRead, Permission::RegistryWrite],
            ),
            401,
        ),
        (
            "GET /devices/{id}",
            "/devices/dev1",
            AuthContext::Deny {
                reason: "no token".into(),
            },
            401,
        ),
    ];
    for (route, path, context, status) in cases {
        let request = RequestBuilder::new(route, path, &context)
            .text_body(r#"{"tags":{}}"#)
            .build();
        let response = handler.handle_http(&request).await;
        assert_eq!(
            response.status_code,
            status,
            "{route} as {context:?}: {}",
            response_body(&response)
        );
        assert_eq!(
            error_code(&response).as_deref(),
            Some("IotHubUnauthorizedAccess")
        );
    }
    assert_eq!(handler.registry.snapshot().len(), 1, "nothing changed");
    assert_eq!(handler.twins.writes.load(Ordering::SeqCst), 0);
}

// --- policies --------------------------------------------------------------------------------

#[tokio::test]
async fn the_owner_lists_policies_and_rotates_one_key_at_a_time() {
    let handler = handler();
    let list = || RequestBuilder::new("GET /policies", "/policies", &owner()).build();
    let (status, before) = call(&handler, list()).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = before["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["keyName"].as_str().unwrap())
        .collect();
    for name in [
        "iothubowner",
        "service",
        "device",
        "registryRead",
        "registryReadWrite",
    ] {
        assert!(names.contains(&name), "{names:?}");
    }
    let service_before = before["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["keyName"] == "service")
        .unwrap()
        .clone();
    assert_eq!(service_before["rights"], "ServiceConnect");

    let regenerate = |slot: &str, name: &str| {
        RequestBuilder::new(
            "POST /policies/{name}/keys/{slot}/regenerate",
            &format!("/policies/{name}/keys/{slot}/regenerate"),
            &owner(),
        )
        .build()
    };
    let (status, rotated) = call(&handler, regenerate("primary", "service")).await;
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["primaryKey"], service_before["primaryKey"]);
    assert_eq!(rotated["secondaryKey"], service_before["secondaryKey"]);
    let (_, rotated_again) = call(&handler, regenerate("secondary", "service")).await;
    assert_eq!(rotated_again["primaryKey"], rotated["primaryKey"]);
    assert_ne!(rotated_again["secondaryKey"], rotated["secondaryKey"]);

    assert_error(
        &handler
            .handle_http(&regenerate("tertiary", "service"))
            .await,
        400,
        "ArgumentInvalid",
    );
    let missing = handler.handle_http(&regenerate("primary", "nobody")).await;
    assert_eq!(missing.status_code, 404, "{}", response_body(&missing));
}

// --- the rest --------------------------------------------------------------------------------

#[tokio::test]
async fn serves_the_openapi_document_without_a_token() {
    let handler = handler();
    let request = RequestBuilder::new(
        "GET /openapi.json",
        "/openapi.json",
        &AuthContext::Deny {
            reason: "no token".into(),
        },
    )
    .build();
    let (status, document) = call(&handler, request).await;
    assert_eq!(status, 200);
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    assert!(document["paths"]["/devices/{id}"]["put"].is_object());
}

#[tokio::test]
async fn events_that_could_not_be_published_wait_for_the_sweep() {
    let mut handler = handler();
    handler.outbox_grace = std::time::Duration::ZERO;
    handler.events.unavailable.store(true, Ordering::SeqCst);
    assert_eq!(
        call(&handler, put("dev1", "{}")).await.0,
        200,
        "the change itself succeeds"
    );
    assert_eq!(handler.registry.outbox().len(), 1);

    let sweep = json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
    let failed = handler.invoke(sweep.clone()).await;
    assert!(
        matches!(failed, Err(InvocationError::Failed(_))),
        "a sweep that could not publish fails its invocation: {failed:?}"
    );
    assert_eq!(handler.registry.outbox().len(), 1, "kept while SQS is down");

    handler.events.unavailable.store(false, Ordering::SeqCst);
    assert_eq!(handler.invoke(sweep).await.unwrap()["published"], 1);
    assert!(handler.registry.outbox().is_empty());
    let [event] = published(&handler).try_into().unwrap();
    assert_eq!(event.device_id.as_str(), "dev1");
}

#[tokio::test]
async fn a_sweep_that_cannot_read_the_outbox_fails_its_invocation() {
    let handler = handler();
    handler.registry.unavailable.store(true, Ordering::SeqCst);
    let sweep = json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
    assert!(matches!(
        handler.invoke(sweep).await,
        Err(InvocationError::Failed(_))
    ));
}

#[tokio::test]
async fn store_failures_are_503_not_500() {
    let handler = handler_with([device("dev1")]);
    handler.registry.unavailable.store(true, Ordering::SeqCst);
    for (route, path) in [
        ("GET /devices/{id}", "/devices/dev1"),
        ("GET /devices", "/devices"),
        ("GET /statistics/devices", "/statistics/devices"),
    ] {
        let response = handler
            .handle_http(&RequestBuilder::new(route, path, &reader()).build())
            .await;
        assert_error(&response, 503, "ServiceUnavailable");
    }
}

mod jobs {
    use super::*;
    use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
    use hub_shared::ports::{JobStore, TwinStore};

    fn batch(body: &str) -> SqsEvent {
        let mut message = SqsMessage::default();
        message.message_id = Some("m1".into());
        message.body = Some(body.into());
        let mut event = SqsEvent::default();
        event.records = vec![message];
        event
    }

    #[tokio::test]
    async fn a_chunk_retried_after_a_crash_does_no_device_twice() {
        let handler = handler_with((0..10).map(|i| device(&format!("d{i}"))));
        let create = RequestBuilder::new("PUT /jobs/v2/{jobId}", "/jobs/v2/j1", &owner())
            .body(
                json!({
                    "type": "scheduleUpdateTwin",
                    "queryCondition": "STARTSWITH(deviceId, 'd')",
                    "updateTwin": { "properties": { "desired": { "fw": "2" } } },
                })
                .to_string()
                .as_bytes(),
            )
            .build();
        let (status, body) = call(&handler, create).await;
        assert_eq!(status, 200, "{body}");
        let expand = handler.job_work.sent();
        assert_eq!(expand.len(), 1);
        let response = handler.work_jobs(batch(&expand[0])).await;
        assert!(response.batch_item_failures.is_empty());
        let chunk = handler.job_work.sent()[1].clone();
        assert!(chunk.contains("\"chunk\""), "{chunk}");

        // Every twin is written, then the worker dies after recording four results.
        *handler.jobs.results_before_outage.lock().unwrap() = Some(4);
        let response = handler.work_jobs(batch(&chunk)).await;
        assert_eq!(response.batch_item_failures.len(), 1, "retried");
        *handler.jobs.results_before_outage.lock().unwrap() = None;
        let response = handler.work_jobs(batch(&chunk)).await;
        assert!(response.batch_item_failures.is_empty());
        handler.work_jobs(batch(&chunk)).await;

        for i in 0..10 {
            let twin = handler
                .twins
                .get_twin(&DeviceId::parse(&format!("d{i}")).unwrap())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(twin.desired.to_json()["fw"], "2");
            assert_eq!(twin.version, 2, "d{i} written once");
        }
        let events = handler.twins.events.lock().unwrap().clone();
        assert_eq!(events.len(), 10, "one updateTwin event per device");
        assert!(
            events
                .iter()
                .all(|e| e.op_type == hub_shared::domain::registry::LifecycleOperation::UpdateTwin)
        );
        let job = handler.jobs.get_job("j1").await.unwrap().unwrap();
        assert_eq!(job.status, hub_shared::domain::job::JobStatus::Completed);
        assert_eq!(
            (
                job.device_count,
                job.succeeded_count,
                job.failed_count,
                job.running_count
            ),
            (10, 10, 0, 0)
        );
    }
}

#[tokio::test]
async fn searches_by_id_prefix_read_the_id_index_only_once_it_holds_every_device() {
    // Registered before the index existed: in the registry, not in the index.
    let old = || handler_with([device("pump-1"), device("pump-2"), device("fan-1")]);
    let search = || {
        RequestBuilder::new("POST /devices/query", "/devices/query", &owner())
            .text_body(r#"{"query": "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'pu')"}"#)
            .build()
    };
    let ids = |body: &Value| -> Vec<String> {
        let mut ids: Vec<String> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["deviceId"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let (status, found) = call(&old(), search()).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(ids(&found), ["pump-1", "pump-2"], "the registry is read");

    let trusting = old().with_id_index(true);
    let (_, found) = call(&trusting, search()).await;
    assert!(
        ids(&found).is_empty(),
        "the (empty) index alone is read when told it is complete"
    );
}
