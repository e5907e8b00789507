//! The auth matrix: every case is a 401 with an Azure error body, and nothing reaches the stream
//! or the registry.

use std::time::{SystemTime, UNIX_EPOCH};

use hub_shared::domain::sas::{SasToken, SymmetricKey};
use hub_tests::{assert_nothing_written, gateway, status_and_code, tail, unique};

#[tokio::test]
async fn device_route_rejections_are_401_and_write_nothing() {
    let gateway = gateway();
    let device = gateway.register(&unique("auth")).await;
    let other = gateway.register(&unique("auth-other")).await;
    let host = &gateway.host_name;
    let resource = format!("{host}/devices/{}", device.id);
    let past = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    let good = device.token();

    let cases: Vec<(&str, Option<String>)> = vec![
        (
            "malformed token",
            Some("SharedAccessSignature sr=only".into()),
        ),
        ("not a SAS token", Some("Bearer abc.def".into())),
        ("wrong signature", Some(good.replace("sig=", "sig=AAAA"))),
        (
            "wrong key",
            Some(gateway.device_token(&device.id, &SymmetricKey::generate())),
        ),
        (
            "expired",
            Some(SasToken::generate(
                &resource,
                &device.primary_key,
                past,
                None,
            )),
        ),
        ("token for another device", Some(other.token())),
        (
            "other device's token, this device's path in sr",
            Some(gateway.device_token(&device.id, &other.primary_key)),
        ),
        (
            "wrong host in sr",
            Some(SasToken::generate(
                &format!("evil.example.com/devices/{}", device.id),
                &device.primary_key,
                hub_tests::in_an_hour(),
                None,
            )),
        ),
        (
            "service policy without DeviceConnect",
            Some(gateway.policy_token("service").await),
        ),
        (
            "registry policy",
            Some(gateway.policy_token("registryReadWrite").await),
        ),
    ];

    let mut tail = tail().await;
    let client = gateway.http();
    for (case, authorization) in &cases {
        let response = client
            .request(
                reqwest::Method::POST,
                &device.events_path(),
                authorization.as_deref(),
            )
            .body(format!("rejected: {case}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            status_and_code(response).await,
            (401, Some("IotHubUnauthorizedAccess".into())),
            "{case}"
        );
    }
    // No Authorization header at all: API Gateway itself answers 401 before the authorizer runs.
    let bare = client
        .request(reqwest::Method::POST, &device.events_path(), None)
        .body("no header")
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status().as_u16(), 401);
    assert_eq!(
        bare.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({ "message": "Unauthorized" })
    );

    assert_nothing_written(&mut tail, &device).await;
}

#[tokio::test]
async fn disabled_and_deleted_devices_are_rejected() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    let client = gateway.http();

    let disabled_id = unique("disabled");
    let created = client
        .put(&format!("/devices/{disabled_id}"), &owner)
        .json(&serde_json::json!({ "deviceId": disabled_id, "status": "disabled" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 200);
    let key: serde_json::Value = created.json().await.unwrap();
    let key = SymmetricKey::from_base64(
        key["authentication"]["symmetricKey"]["primaryKey"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let response = client
        .post(
            &format!("/devices/{disabled_id}/messages/events"),
            &gateway.device_token(&disabled_id, &key),
        )
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(response).await,
        (401, Some("IotHubUnauthorizedAccess".into())),
        "disabled device"
    );

    let deleted = gateway.register(&unique("deleted")).await;
    let token = deleted.token();
    assert_eq!(
        client
            .delete(&format!("/devices/{}", deleted.id), &owner)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    let response = client
        .post(&deleted.events_path(), &token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(response).await,
        (401, Some("IotHubUnauthorizedAccess".into())),
        "deleted device"
    );

    // Re-registering the id makes new keys: the old token stays invalid.
    let reborn = gateway.register(&deleted.id).await;
    let mut tail = tail().await;
    let response = client
        .post(&deleted.events_path(), &token)
        .body("old token")
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(response).await.0,
        401,
        "token of the previous generation"
    );
    assert_nothing_written(&mut tail, &reborn).await;
}

#[tokio::test]
async fn service_route_rejections_are_401_and_write_nothing() {
    let gateway = gateway();
    let device = gateway.register(&unique("svc")).await;
    let client = gateway.http();
    let new_id = unique("svc-new");
    let path = format!("/devices/{new_id}");
    let owner_key_wrong = SasToken::generate(
        &gateway.host_name,
        &SymmetricKey::generate(),
        hub_tests::in_an_hour(),
        Some("iothubowner"),
    );
    let unknown_policy = SasToken::generate(
        &gateway.host_name,
        &device.primary_key,
        hub_tests::in_an_hour(),
        Some("nobody"),
    );

    let cases = [
        ("device token on a service route", device.token()),
        (
            "device token naming the path",
            gateway.device_token(&new_id, &device.primary_key),
        ),
        (
            "policy without RegistryWrite",
            gateway.policy_token("registryRead").await,
        ),
        ("service policy", gateway.policy_token("service").await),
        ("wrong policy key", owner_key_wrong),
        ("unknown policy", unknown_policy),
    ];
    for (case, token) in &cases {
        let response = client
            .put(&path, token)
            .json(&serde_json::json!({ "deviceId": new_id }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            status_and_code(response).await,
            (401, Some("IotHubUnauthorizedAccess".into())),
            "{case}"
        );
    }
    let after = client
        .get(&path, &gateway.owner_token().await)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(after).await,
        (404, Some("DeviceNotFound".into())),
        "nothing was registered"
    );
}
