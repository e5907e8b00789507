//! Direct methods against DynamoDB on LocalStack: a service invokes (Azure's
//! `POST /twins/{id}/methods`), a device long-polls and answers over the hub's HTTPS extension;
//! calls nobody takes, calls taken and not answered, a device re-created mid-call, bad input.

use std::time::{Duration, Instant};

use hub_tests::{Client, RegisteredDevice, gateway, status_and_code, unique};
use serde_json::{Value, json};

async fn invoke(client: &Client, service: &str, device: &str, body: Value) -> reqwest::Response {
    client
        .post(&format!("/twins/{device}/methods"), service)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn device_client(device: &RegisteredDevice) -> hub_device_sdk::DeviceClient {
    device.client(&gateway().http_url)
}

#[tokio::test]
async fn a_polling_device_answers_with_its_status_and_payload() {
    let gateway = gateway();
    let client = gateway.http();
    let service = gateway.policy_token("service").await;
    let device = gateway.register(&unique("method")).await;
    let sdk = device_client(&device);
    let responder = tokio::spawn(async move {
        let call = sdk
            .receive_method(Duration::from_secs(15))
            .await
            .unwrap()
            .expect("a call within 15 s");
        sdk.respond_method(&call.request_id, 201, &json!({ "echo": call.payload }))
            .await
            .unwrap();
        // Answered once: the same call cannot be answered again.
        let again = sdk
            .respond_method(&call.request_id, 200, &Value::Null)
            .await;
        (call.method_name, again.is_err())
    });
    let response = invoke(
        &client,
        &service,
        &device.id,
        json!({ "methodName": "setInterval", "payload": { "seconds": 7 }, "connectTimeoutInSeconds": 10 }),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer,
        json!({ "status": 201, "payload": { "echo": { "seconds": 7 } } })
    );
    assert_eq!(
        responder.await.unwrap(),
        ("setInterval".to_owned(), true),
        "an answered call is gone"
    );
    // Nothing is left waiting for the device.
    let nothing = device_client(&device)
        .receive_method(Duration::ZERO)
        .await
        .unwrap();
    assert!(nothing.is_none());
}

#[tokio::test]
async fn calls_nobody_takes_or_answers_fail_as_azure_says() {
    let gateway = gateway();
    let client = gateway.http();
    let service = gateway.policy_token("service").await;
    let device = gateway.register(&unique("method-quiet")).await;

    // Nobody polls: DeviceNotOnline once the connect grace (2 s) is over, and the call is
    // withdrawn (a device polling later does not get it).
    let started = Instant::now();
    let response = invoke(
        &client,
        &service,
        &device.id,
        json!({ "methodName": "reboot", "responseTimeoutInSeconds": 5 }),
    )
    .await;
    assert_eq!(
        status_and_code(response).await,
        (404, Some("DeviceNotOnline".into()))
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(
        device_client(&device)
            .receive_method(Duration::ZERO)
            .await
            .unwrap()
            .is_none()
    );

    // Taken but never answered: GatewayTimeout after the response timeout; a late answer is
    // refused.
    let sdk = device_client(&device);
    let taker = tokio::spawn(async move {
        sdk.receive_method(Duration::from_secs(10))
            .await
            .unwrap()
            .expect("a call")
    });
    let response = invoke(
        &client,
        &service,
        &device.id,
        json!({ "methodName": "slow", "responseTimeoutInSeconds": 5, "connectTimeoutInSeconds": 10 }),
    )
    .await;
    assert_eq!(
        status_and_code(response).await,
        (504, Some("GatewayTimeout".into()))
    );
    let call = taker.await.unwrap();
    let late = client
        .post(
            &format!(
                "/devices/{}/methods/{}/response",
                device.id, call.request_id
            ),
            &device.token(),
        )
        .json(&json!({ "status": 200 }))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(late).await, (404, Some("NotFound".into())));
}

#[tokio::test]
async fn a_device_recreated_mid_call_never_sees_the_old_call() {
    let gateway = gateway();
    let client = gateway.http();
    let owner = gateway.owner_token().await;
    let id = unique("method-again");
    gateway.register(&id).await;
    let call = {
        let client = client.clone();
        let owner = owner.clone();
        let id = id.clone();
        tokio::spawn(async move {
            invoke(
                &client,
                &owner,
                &id,
                json!({ "methodName": "reboot", "connectTimeoutInSeconds": 8 }),
            )
            .await
        })
    };
    // The call is recorded before the device goes away.
    let table = std::env::var(hub_shared::config::vars::METHOD_CALLS_TABLE).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let calls = hub_tests::dynamodb()
            .await
            .query()
            .table_name(&table)
            .key_condition_expression("deviceId = :d")
            .expression_attribute_values(
                ":d",
                aws_sdk_dynamodb::types::AttributeValue::S(id.clone()),
            )
            .send()
            .await
            .unwrap();
        if calls.count > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the invocation recorded no call");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deleted = client
        .delete(&format!("/devices/{id}"), &owner)
        .header("if-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    let again = gateway.register(&id).await;
    let seen = device_client(&again)
        .receive_method(Duration::from_secs(3))
        .await
        .unwrap();
    assert!(seen.is_none(), "the new device got {seen:?}");
    let response = call.await.unwrap();
    assert_eq!(
        status_and_code(response).await,
        (404, Some("DeviceNotOnline".into()))
    );
}

#[tokio::test]
async fn bad_invocations_are_refused() {
    let gateway = gateway();
    let client = gateway.http();
    let service = gateway.policy_token("service").await;
    let device = gateway.register(&unique("method-bad")).await;
    for body in [
        json!({ "payload": 1 }),
        json!({ "methodName": "" }),
        json!({ "methodName": "m", "responseTimeoutInSeconds": 1 }),
        json!({ "methodName": "m", "connectTimeoutInSeconds": 301 }),
        json!({ "methodName": "m", "payload": "x".repeat(130 * 1024) }),
    ] {
        let response = invoke(&client, &service, &device.id, body.clone()).await;
        assert_eq!(
            status_and_code(response).await,
            (400, Some("ArgumentInvalid".into())),
            "{}",
            body.to_string().chars().take(80).collect::<String>()
        );
    }
    let response = invoke(
        &client,
        &service,
        &unique("nobody"),
        json!({ "methodName": "m" }),
    )
    .await;
    assert_eq!(
        status_and_code(response).await,
        (404, Some("DeviceNotFound".into()))
    );
    // A disabled device cannot poll: refused at once.
    let owner = gateway.owner_token().await;
    let disabled = client
        .put(&format!("/devices/{}", device.id), &owner)
        .header("if-match", "*")
        .json(&json!({ "deviceId": device.id, "status": "disabled" }))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status().as_u16(), 200);
    let response = invoke(&client, &service, &device.id, json!({ "methodName": "m" })).await;
    assert_eq!(
        status_and_code(response).await,
        (404, Some("DeviceNotOnline".into()))
    );

    let other = gateway.register(&unique("method-poll")).await;
    let response = client
        .get(
            &format!("/devices/{}/methods?waitSeconds=21", other.id),
            &other.token(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(response).await.0, 400);
    let response = client
        .post(
            &format!("/devices/{}/methods/not-a-call/response", other.id),
            &other.token(),
        )
        .json(&json!({ "status": 200 }))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(response).await.0, 404);
    let response = client
        .post(
            &format!("/devices/{}/methods/x/response", other.id),
            &other.token(),
        )
        .json(&json!({ "payload": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(response).await.0, 400);
    // Invoking needs ServiceConnect: a device cannot invoke methods on another device.
    let response = invoke(
        &client,
        &other.token(),
        &device.id,
        json!({ "methodName": "m" }),
    )
    .await;
    assert_eq!(status_and_code(response).await.0, 401);
}
