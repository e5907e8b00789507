use std::sync::atomic::Ordering;
use std::time::Duration;

use hub_shared::authz::Principal;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::envelope::{AuthMethod, TelemetryEnvelope};
use hub_shared::fakes::{
    InMemoryActivity, InMemoryRegistry, InMemoryStream, RequestBuilder, activity_in, error_code,
    response_body,
};
use hub_shared::http::AuthContext;

use super::*;

const ROUTE: &str = "POST /devices/{id}/messages/events";

fn handler() -> IngestHandler<InMemoryStream, InMemoryActivity> {
    let retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    };
    IngestHandler::new(
        InMemoryStream::default(),
        retry,
        activity_in(InMemoryRegistry::default()),
    )
}

fn device(id: &str) -> AuthContext {
    AuthContext::Allow(Principal::Device {
        device_id: DeviceId::parse(id).unwrap(),
        generation_id: "638".into(),
        via_policy: None,
    })
}

fn envelopes(handler: &IngestHandler<InMemoryStream, InMemoryActivity>) -> Vec<TelemetryEnvelope> {
    handler
        .sink
        .records()
        .iter()
        .map(|r| {
            let envelope = TelemetryEnvelope::from_json(&r.data).unwrap();
            assert_eq!(
                r.partition_key,
                envelope.device_id.as_str(),
                "partition key is the device id"
            );
            envelope
        })
        .collect()
}

#[tokio::test]
async fn a_single_message_becomes_one_stamped_record() {
    let handler = handler();
    let request = RequestBuilder::new(ROUTE, "/devices/dev1/messages/events", &device("dev1"))
        .header("iothub-app-unit", "celsius")
        .header("iothub-messageid", "m-1")
        .body(&[0, 255, 1])
        .build();
    let response = handler.handle(&request).await;
    assert_eq!(response.status_code, 204, "{}", response_body(&response));
    let [envelope] = envelopes(&handler).try_into().unwrap();
    assert_eq!(envelope.device_id.as_str(), "dev1");
    assert_eq!(envelope.device_generation_id, "638");
    assert_eq!(envelope.auth_method, AuthMethod::device_key());
    assert_eq!(envelope.body, [0, 255, 1]);
    assert_eq!(envelope.properties["unit"], "celsius");
    assert_eq!(
        envelope.system_properties.message_id.as_deref(),
        Some("m-1")
    );
    assert!(!envelope.hub_message_id.is_empty());
}

#[tokio::test]
async fn a_batch_becomes_one_record_per_message_in_order() {
    let handler = handler();
    let request = RequestBuilder::new(ROUTE, "/devices/dev1/messages/events", &device("dev1"))
        .header("content-type", "application/vnd.microsoft.iothub.json")
        .text_body(r#"[{"body":"MQ=="},{"body":"Mg=="},{"body":"Mw=="}]"#)
        .build();
    assert_eq!(handler.handle(&request).await.status_code, 204);
    let bodies: Vec<Vec<u8>> = envelopes(&handler).into_iter().map(|e| e.body).collect();
    assert_eq!(bodies, [b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
}

#[tokio::test]
async fn transient_stream_failures_are_retried() {
    let handler = handler();
    handler.sink.fail_next.store(2, Ordering::SeqCst);
    let request = RequestBuilder::new(ROUTE, "/devices/dev1/messages/events", &device("dev1"))
        .text_body("x")
        .build();
    assert_eq!(handler.handle(&request).await.status_code, 204);
    assert_eq!(envelopes(&handler).len(), 1);
}

#[tokio::test]
async fn persistent_stream_failures_answer_503_so_the_device_retries() {
    let handler = handler();
    handler.sink.fail_next.store(3, Ordering::SeqCst);
    let request = RequestBuilder::new(ROUTE, "/devices/dev1/messages/events", &device("dev1"))
        .text_body("x")
        .build();
    let response = handler.handle(&request).await;
    assert_eq!(
        (response.status_code, error_code(&response).as_deref()),
        (503, Some("ServiceUnavailable"))
    );
    assert!(envelopes(&handler).is_empty());
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_written() {
    let handler = handler();
    let path = "/devices/dev1/messages/events";
    let cases = [
        (
            RequestBuilder::new(ROUTE, path, &device("dev1"))
                .body(&vec![0; 256 * 1024 + 1])
                .build(),
            413,
        ),
        (
            RequestBuilder::new(ROUTE, path, &device("dev1"))
                .header("content-type", "application/vnd.microsoft.iothub.json")
                .text_body("[{\"body\":")
                .build(),
            400,
        ),
        (
            RequestBuilder::new(ROUTE, path, &device("dev2"))
                .text_body("x")
                .build(),
            401,
        ),
        (
            RequestBuilder::new(
                ROUTE,
                path,
                &AuthContext::Deny {
                    reason: "expired".into(),
                },
            )
            .text_body("x")
            .build(),
            401,
        ),
    ];
    for (request, status) in cases {
        let response = handler.handle(&request).await;
        assert_eq!(response.status_code, status, "{}", response_body(&response));
        assert!(
            error_code(&response).is_some(),
            "error body expected: {}",
            response_body(&response)
        );
    }
    assert!(handler.sink.records().is_empty());
}

#[tokio::test]
async fn policy_senders_are_recorded_as_such() {
    let handler = handler();
    let context = AuthContext::Allow(Principal::Device {
        device_id: DeviceId::parse("dev1").unwrap(),
        generation_id: "638".into(),
        via_policy: Some("iothubowner".into()),
    });
    let request = RequestBuilder::new(ROUTE, "/devices/dev1/messages/events", &context)
        .text_body("x")
        .build();
    assert_eq!(handler.handle(&request).await.status_code, 204);
    assert_eq!(
        envelopes(&handler)[0].auth_method,
        AuthMethod::policy("iothubowner")
    );
}

#[tokio::test]
async fn accepted_telemetry_records_device_activity_at_most_once_a_minute() {
    use hub_shared::domain::timestamp::Timestamp;
    let mut registered = hub_shared::fakes::device("dev1");
    registered.generation_id = "638".into();
    let mut handler = handler();
    handler.activity = activity_in(InMemoryRegistry::with([registered]));
    let request = |last_activity: Option<i64>| {
        let mut request =
            RequestBuilder::new(ROUTE, "/devices/dev1/messages/events", &device("dev1"))
                .text_body("x")
                .build();
        if let (Some(at), Some(authorizer)) =
            (last_activity, request.request_context.authorizer.as_mut())
        {
            authorizer.fields.insert(
                hub_shared::http::LAST_ACTIVITY_FIELD.into(),
                at.to_string().into(),
            );
        }
        request
    };
    let last_activity = |handler: &IngestHandler<InMemoryStream, InMemoryActivity>| {
        handler.activity.store().snapshot()[0].last_activity_time
    };

    // The authorizer saw activity 10 s ago: no write.
    let recent = Timestamp::now().unix_millis() - 10_000;
    assert_eq!(
        handler.handle(&request(Some(recent))).await.status_code,
        204
    );
    assert_eq!(last_activity(&handler), Timestamp::NEVER);

    // Two minutes ago: the time is brought up to date.
    let before = Timestamp::now();
    let stale = before.unix_millis() - 120_000;
    assert_eq!(handler.handle(&request(Some(stale))).await.status_code, 204);
    assert!(last_activity(&handler) >= before);

    // Rejected telemetry is not activity.
    let mut reset = handler.activity.store().snapshot()[0].clone();
    reset.last_activity_time = Timestamp::NEVER;
    handler.activity = activity_in(InMemoryRegistry::with([reset]));
    let empty = RequestBuilder::new(ROUTE, "/devices/dev1/messages/events", &device("dev1"))
        .header("content-type", "application/vnd.microsoft.iothub.json")
        .text_body("[]")
        .build();
    assert_eq!(handler.handle(&empty).await.status_code, 400);
    assert_eq!(last_activity(&handler), Timestamp::NEVER);
}
