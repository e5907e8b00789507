use hub_shared::authz::Principal;
use hub_shared::domain::device::DeviceDescription;
use hub_shared::domain::policy::{Permission, Rights};
use hub_shared::domain::sas::SymmetricKey;
use hub_shared::fakes::{InMemoryRegistry, RequestBuilder, device, error_code, response_body};
use hub_shared::http::AuthContext;

use super::*;

fn owner() -> AuthContext {
    AuthContext::Allow(Principal::Service {
        policy: "iothubowner".into(),
        rights: Rights::of(&[Permission::RegistryRead, Permission::RegistryWrite]),
    })
}

fn reader() -> AuthContext {
    AuthContext::Allow(Principal::Service {
        policy: "registryRead".into(),
        rights: Rights::of(&[Permission::RegistryRead]),
    })
}

fn put(id: &str, body: &str) -> ApiGatewayV2httpRequest {
    RequestBuilder::new("PUT /devices/{id}", &format!("/devices/{id}"), &owner())
        .text_body(body)
        .build()
}

fn description(response: &ApiGatewayV2httpResponse) -> DeviceDescription {
    serde_json::from_str(&response_body(response)).unwrap()
}

#[tokio::test]
async fn creates_a_device_with_generated_keys_in_azure_shape() {
    let handler = RegistryHandler::new(InMemoryRegistry::default());
    let response = handler.handle(&put("dev1", r#"{"deviceId":"dev1"}"#)).await;
    assert_eq!(response.status_code, 200, "{}", response_body(&response));
    let json: serde_json::Value = serde_json::from_str(&response_body(&response)).unwrap();
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
        44,
        "32 random bytes"
    );
    assert_ne!(primary, secondary);
    assert_eq!(json["generationId"].as_str().unwrap().len(), 18);
    assert_eq!(
        response.headers["etag"],
        format!("\"{}\"", json["etag"].as_str().unwrap())
    );
    assert_eq!(handler.registry.snapshot().len(), 1);
}

#[tokio::test]
async fn keeps_given_keys_and_status() {
    let handler = RegistryHandler::new(InMemoryRegistry::default());
    let key = SymmetricKey::generate().to_base64();
    let body = format!(
        r#"{{"deviceId":"dev1","status":"disabled","authentication":{{"type":"sas","symmetricKey":{{"primaryKey":"{key}","secondaryKey":"{key}"}}}}}}"#
    );
    let created = description(&handler.handle(&put("dev1", &body)).await);
    assert_eq!(created.status, Some(DeviceStatus::Disabled));
    assert_eq!(
        created
            .authentication
            .unwrap()
            .symmetric_key
            .unwrap()
            .primary_key
            .as_deref(),
        Some(key.as_str())
    );
}

#[tokio::test]
async fn rejects_bad_descriptions_and_duplicates() {
    let handler = RegistryHandler::new(InMemoryRegistry::with([device("dev1")]));
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
        let response = handler.handle(&request).await;
        assert_eq!(
            (response.status_code, error_code(&response).as_deref()),
            (status, Some(code)),
            "{}",
            response_body(&response)
        );
    }
    assert_eq!(handler.registry.snapshot().len(), 1, "nothing written");
}

#[tokio::test]
async fn gets_and_deletes_with_if_match() {
    let dev = device("dev1");
    let handler = RegistryHandler::new(InMemoryRegistry::with([dev.clone()]));
    let get = RequestBuilder::new("GET /devices/{id}", "/devices/dev1", &reader()).build();
    let got = description(&handler.handle(&get).await);
    assert_eq!(got.etag.as_deref(), Some(dev.etag.as_str()));

    let delete = |if_match: &str| {
        RequestBuilder::new("DELETE /devices/{id}", "/devices/dev1", &owner())
            .header("if-match", if_match)
            .build()
    };
    let stale = handler.handle(&delete("\"stale\"")).await;
    assert_eq!(
        (stale.status_code, error_code(&stale).as_deref()),
        (412, Some("PreconditionFailed"))
    );
    assert_eq!(
        handler
            .handle(&delete(&format!("\"{}\"", dev.etag)))
            .await
            .status_code,
        204
    );
    let gone = handler.handle(&get).await;
    assert_eq!(
        (gone.status_code, error_code(&gone).as_deref()),
        (404, Some("DeviceNotFound"))
    );
    assert_eq!(handler.handle(&delete("*")).await.status_code, 404);
}

#[tokio::test]
async fn refuses_callers_without_the_permission() {
    let handler = RegistryHandler::new(InMemoryRegistry::default());
    let request = RequestBuilder::new("PUT /devices/{id}", "/devices/dev1", &reader())
        .text_body("{}")
        .build();
    let response = handler.handle(&request).await;
    assert_eq!(
        (response.status_code, error_code(&response).as_deref()),
        (401, Some("IotHubUnauthorizedAccess"))
    );
    assert!(handler.registry.snapshot().is_empty());
}

#[tokio::test]
async fn store_failures_are_503_not_500() {
    let handler = RegistryHandler::new(InMemoryRegistry::default());
    handler
        .registry
        .unavailable
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let response = handler
        .handle(&RequestBuilder::new("GET /devices/{id}", "/devices/dev1", &reader()).build())
        .await;
    assert_eq!(
        (response.status_code, error_code(&response).as_deref()),
        (503, Some("ServiceUnavailable"))
    );
}
