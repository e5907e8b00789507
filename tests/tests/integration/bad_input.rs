//! Bad input gets a 4xx with an error body, never a 5xx, and nothing is written.

use hub_tests::{assert_nothing_written, gateway, status_and_code, tail, unique};

#[tokio::test]
async fn bad_telemetry_is_refused_and_nothing_is_written() {
    let gateway = gateway();
    let device = gateway.register(&unique("bad")).await;
    let mut tail = tail().await;
    let client = gateway.https();
    let send = |content_type: &'static str, body: Vec<u8>| {
        client
            .post(&device.events_path(), &device.token())
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let oversize = send("application/octet-stream", vec![7; 256 * 1024 + 1])
        .await
        .unwrap();
    assert_eq!(
        status_and_code(oversize).await,
        (413, Some("MessageTooLarge".into()))
    );

    let item = format!(r#"{{"body":"{}"}}"#, "QUFB".repeat(700));
    let big_batch = format!("[{}]", vec![item; 100].join(","));
    let oversize_batch = send(
        "application/vnd.microsoft.iothub.json",
        big_batch.into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(
        status_and_code(oversize_batch).await,
        (413, Some("MessageTooLarge".into()))
    );

    for malformed in [
        "[{\"body\":",
        "{\"body\":\"YQ==\"}",
        "[]",
        "[{\"body\":\"not base64!\"}]",
    ] {
        let response = send(
            "application/vnd.microsoft.iothub.json",
            malformed.as_bytes().to_vec(),
        )
        .await
        .unwrap();
        assert_eq!(
            status_and_code(response).await,
            (400, Some("ArgumentInvalid".into())),
            "{malformed}"
        );
    }

    let long_id = client
        .post(&device.events_path(), &device.token())
        .header("iothub-messageid", "m".repeat(129))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(long_id).await,
        (400, Some("ArgumentInvalid".into()))
    );

    assert_nothing_written(&mut tail, &device).await;
}

#[tokio::test]
async fn invalid_device_ids_are_400() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    let client = gateway.http();
    let too_long = "a".repeat(129);
    for id in ["bad%20id", "caf%C3%A9", too_long.as_str(), "a%2Fb"] {
        let response = client
            .put(&format!("/devices/{id}"), &owner)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            status_and_code(response).await,
            (400, Some("ArgumentInvalid".into())),
            "{id}"
        );
        let response = client
            .get(&format!("/devices/{id}"), &owner)
            .send()
            .await
            .unwrap();
        assert_eq!(
            status_and_code(response).await,
            (400, Some("ArgumentInvalid".into())),
            "{id}"
        );
    }
}

#[tokio::test]
async fn unknown_routes_are_404_with_a_body() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    let client = gateway.http();
    for (method, path) in [
        (reqwest::Method::GET, "/nothing/here"),
        (reqwest::Method::PATCH, "/devices/x"),
        (reqwest::Method::POST, "/devices/x/messages"),
        (reqwest::Method::GET, "/devices/x/messages/events"),
    ] {
        let response = client
            .request(method.clone(), path, Some(&owner))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404, "{method} {path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["message"], "Not Found", "{method} {path}");
    }
}

#[tokio::test]
async fn malformed_device_descriptions_are_400_and_write_nothing() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    let client = gateway.http();
    let id = unique("desc");
    let path = format!("/devices/{id}");
    for body in [
        "not json".to_owned(),
        format!(r#"{{"deviceId":"{id}-other"}}"#),
        r#"{"authentication":{"type":"certificateAuthority"}}"#.to_owned(),
        r#"{"authentication":{"type":"sas","symmetricKey":{"primaryKey":"dG9vIHNob3J0"}}}"#
            .to_owned(),
        r#"{"status":"sleeping"}"#.to_owned(),
    ] {
        let response = client
            .put(&path, &owner)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            status_and_code(response).await,
            (400, Some("ArgumentInvalid".into())),
            "{body}"
        );
    }
    let after = client.get(&path, &owner).send().await.unwrap();
    assert_eq!(
        status_and_code(after).await,
        (404, Some("DeviceNotFound".into()))
    );
}
