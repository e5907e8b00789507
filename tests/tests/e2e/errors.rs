//! What callers see when they get it wrong: Azure's error shape through the real authorizer.

use hub_tests::{gateway, status_and_code, unique};

#[tokio::test]
async fn bad_credentials_and_bad_input_get_azure_errors() {
    let gateway = gateway();
    let device = gateway.register(&unique("e2e-err")).await;
    let client = gateway.http();

    let forged = device.token().replace("sig=", "sig=AAAA");
    let response = client
        .post(&device.events_path(), &forged)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(response).await,
        (401, Some("IotHubUnauthorizedAccess".into()))
    );

    // A device token does not open service routes.
    let response = client
        .get(&format!("/devices/{}", device.id), &device.token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    // No Authorization header at all: API Gateway answers before any function runs.
    let response = client
        .request(reqwest::Method::POST, &device.events_path(), None)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    let owner = gateway.owner_token().await;
    let response = client
        .put("/devices/not%20valid%24", &owner)
        .json(&serde_json::json!({"deviceId": "not valid$"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
}
