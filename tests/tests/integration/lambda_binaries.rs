//! Each real function binary starts, reads its configuration, and answers an invocation through
//! the Lambda Runtime API, with API Gateway's event shapes (fixtures in tests/fixtures).

use hub_shared::authz::Principal;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::policy::{Permission, Rights};
use hub_shared::http::AuthContext;
use hub_tests::runtime_api::{Outcome, invoke};
use hub_tests::{gateway, read_device_records, repo_root, tail, unique};
use serde_json::Value;

fn fixture(name: &str, replacements: &[(&str, &str)]) -> Value {
    let path = repo_root().join("tests/fixtures").join(name);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (placeholder, value) in replacements {
        text = text.replace(placeholder, value);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} after substitution: {e}"))
}

fn response(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Response(value) => value,
        other => panic!("the function did not answer: {other:?}"),
    }
}

fn context_json(context: &AuthContext) -> String {
    serde_json::to_string(&context.to_fields()).unwrap()
}

#[tokio::test]
async fn authorize_binary_answers_an_authorizer_event() {
    let gateway = gateway();
    let device = gateway.register(&unique("bin-auth")).await;
    let token = device.token();
    let event = fixture(
        "authorizer-request.json",
        &[("{{DEVICE_ID}}", &device.id), ("{{AUTHORIZATION}}", &token)],
    );
    let answer = response(invoke("authorize", event.clone(), &[]).await);
    assert_eq!(answer["isAuthorized"], true);
    assert_eq!(answer["context"]["verdict"], "allow", "{answer}");
    assert_eq!(answer["context"]["deviceId"], device.id.as_str());

    let forged = token.replace("sig=", "sig=AAAA");
    let event = fixture(
        "authorizer-request.json",
        &[
            ("{{DEVICE_ID}}", &device.id),
            ("{{AUTHORIZATION}}", &forged),
        ],
    );
    let answer = response(invoke("authorize", event, &[]).await);
    assert_eq!(answer["context"]["verdict"], "deny", "{answer}");
}

#[tokio::test]
async fn registry_binary_answers_an_http_event() {
    let gateway = gateway();
    let device = gateway.register(&unique("bin-reg")).await;
    let owner = AuthContext::Allow(Principal::Service {
        policy: "iothubowner".into(),
        rights: Rights::of(&[Permission::RegistryRead, Permission::RegistryWrite]),
    });
    let path = format!("/devices/{}", device.id);
    let event = fixture(
        "http-request.json",
        &[
            ("{{ROUTE_KEY}}", "GET /devices/{id}"),
            ("{{METHOD}}", "GET"),
            ("{{PATH}}", &path),
            ("{{DEVICE_ID}}", &device.id),
            ("{{MESSAGE_ID}}", "unused"),
            ("{{AUTHORIZER_CONTEXT}}", &context_json(&owner)),
        ],
    );
    let answer = response(invoke("registry", event, &[]).await);
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["deviceId"], device.id.as_str());
}

#[tokio::test]
async fn ingest_binary_puts_the_message_on_the_stream() {
    let gateway = gateway();
    let device = gateway.register(&unique("bin-ing")).await;
    let context = AuthContext::Allow(Principal::Device {
        device_id: DeviceId::parse(&device.id).unwrap(),
        generation_id: "638000000000000000".into(),
        via_policy: None,
    });
    let path = format!("/devices/{}/messages/events", device.id);
    let message_id = unique("m");
    let event = fixture(
        "http-request.json",
        &[
            ("{{ROUTE_KEY}}", "POST /devices/{id}/messages/events"),
            ("{{METHOD}}", "POST"),
            ("{{PATH}}", &path),
            ("{{DEVICE_ID}}", &device.id),
            ("{{MESSAGE_ID}}", &message_id),
            ("{{AUTHORIZER_CONTEXT}}", &context_json(&context)),
        ],
    );
    let mut tail = tail().await;
    let answer = response(invoke("ingest", event, &[]).await);
    assert_eq!(answer["statusCode"], 204, "{answer}");
    let records = read_device_records(&mut tail, &device.id, 1).await;
    assert_eq!(
        records[0].envelope.system_properties.message_id.as_deref(),
        Some(message_id.as_str())
    );
    assert_eq!(records[0].envelope.body, br#"{"temperature":22.5}"#);
    assert_eq!(
        records[0]
            .envelope
            .properties
            .get("unit")
            .map(String::as_str),
        Some("celsius")
    );
}

#[tokio::test]
async fn a_function_without_its_configuration_fails_at_cold_start() {
    gateway();
    let outcome = invoke(
        "ingest",
        serde_json::json!({}),
        &[("HUB_TELEMETRY_STREAM", String::new())],
    )
    .await;
    match outcome {
        Outcome::Exited { code, stderr } => {
            assert_ne!(code, Some(0));
            assert!(
                stderr.contains("HUB_TELEMETRY_STREAM"),
                "the error names the missing variable: {stderr}"
            );
        }
        other => panic!("expected the process to fail at cold start, got {other:?}"),
    }
}

#[tokio::test]
async fn commands_binary_answers_http_sqs_and_schedule_events() {
    let gateway = gateway();
    let device = gateway.register(&unique("bin-cmd")).await;
    let context = AuthContext::Allow(Principal::Device {
        device_id: DeviceId::parse(&device.id).unwrap(),
        generation_id: "638000000000000000".into(),
        via_policy: None,
    });
    let path = format!("/devices/{}/messages/devicebound", device.id);
    let receive = fixture(
        "http-request.json",
        &[
            ("{{ROUTE_KEY}}", "GET /devices/{id}/messages/devicebound"),
            ("{{METHOD}}", "GET"),
            ("{{PATH}}", &path),
            ("{{DEVICE_ID}}", &device.id),
            ("{{MESSAGE_ID}}", "unused"),
            ("{{AUTHORIZER_CONTEXT}}", &context_json(&context)),
        ],
    );
    let answer = response(invoke("commands", receive, &[]).await);
    assert_eq!(answer["statusCode"], 204, "an empty queue: {answer}");

    let schedule = fixture("scheduled-event.json", &[]);
    let answer = response(invoke("commands", schedule, &[]).await);
    assert!(answer.get("expired").is_some(), "a sweep report: {answer}");

    let poison = serde_json::json!({ "requestId": unique("bin-poison"), "deviceId": device.id, "body": "%" }).to_string();
    let batch = fixture(
        "sqs-event.json",
        &[("{{BODY}}", &poison.replace('"', "\\\""))],
    );
    let answer = response(invoke("commands", batch, &[]).await);
    assert_eq!(
        answer["batchItemFailures"],
        serde_json::json!([]),
        "poison is dead-lettered, not retried: {answer}"
    );
}

#[tokio::test]
async fn analytics_binary_answers_kinesis_and_http_events() {
    gateway();
    let device = unique("bin-an");
    let envelope = hub_tests::envelope_at(
        &device,
        hub_shared::domain::timestamp::Timestamp::now(),
        r#"{"t":1}"#,
    );
    let data = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        envelope.to_json(),
    );
    let shard = unique("shardId-bin");
    let event = fixture(
        "kinesis-event.json",
        &[
            ("{{DEVICE_ID}}", &device),
            ("{{DATA}}", &data),
            ("{{SHARD}}", &shard),
        ],
    );
    let answer = response(invoke("analytics", event, &[]).await);
    assert_eq!(
        answer["batchItemFailures"],
        serde_json::json!([]),
        "{answer}"
    );

    let service = AuthContext::Allow(Principal::Service {
        policy: "service".into(),
        rights: Rights::of(&[Permission::ServiceConnect]),
    });
    let path = format!("/devices/{device}/state");
    let query = fixture(
        "http-request.json",
        &[
            ("{{ROUTE_KEY}}", "GET /devices/{id}/state"),
            ("{{METHOD}}", "GET"),
            ("{{PATH}}", &path),
            ("{{DEVICE_ID}}", &device),
            ("{{MESSAGE_ID}}", "unused"),
            ("{{AUTHORIZER_CONTEXT}}", &context_json(&service)),
        ],
    );
    let answer = response(invoke("analytics", query, &[]).await);
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let state: serde_json::Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(state["messageCount"], 1);
}
