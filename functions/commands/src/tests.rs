//! Unit tests of the delivery rules and the HTTP/SQS shapes, over in-memory ports. The same
//! guarantees are tested against DynamoDB and SQS on LocalStack in `tests/`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use hub_shared::authz::Principal;
use hub_shared::domain::command::{
    AckMode, DeliveryPolicy, FeedbackRecord, LockToken, NewCommand, Outcome,
};
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::policy::{Permission, Rights};
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::fakes::{
    InMemoryCommands, InMemoryDeadLetters, InMemoryFeedback, InMemoryRegistry, RequestBuilder,
    error_code, response_body,
};
use hub_shared::http::AuthContext;
use hub_shared::ports::{QueueKey, SettleOutcome};

use hub_shared::clock::Clock as _;

use super::*;
use crate::queue::EnqueueError;

type TestHandler = CommandsHandler<
    InMemoryCommands,
    InMemoryFeedback,
    InMemoryDeadLetters,
    hub_shared::fakes::InMemoryActivity,
>;

const GENERATION: &str = "638000000000000001";

fn policy() -> DeliveryPolicy {
    DeliveryPolicy {
        max_queue_depth: 5,
        lock_duration: Duration::from_millis(300),
        max_delivery_count: 3,
        ..Default::default()
    }
}

fn handler() -> TestHandler {
    let store = InMemoryCommands::default();
    store.register(&device(), GENERATION);
    handler_on(store, hub_shared::clock::system())
}

/// A handler on a clock that moves only when the test says so.
fn handler_with_clock() -> (TestHandler, std::sync::Arc<hub_shared::clock::ManualClock>) {
    let store = InMemoryCommands::default();
    store.register(&device(), GENERATION);
    let clock = hub_shared::clock::ManualClock::new();
    (handler_on(store, clock.clone()), clock)
}

/// A handler whose time is `clock`'s.
fn handler_on(store: InMemoryCommands, clock: hub_shared::clock::SharedClock) -> TestHandler {
    CommandsHandler {
        commands: Commands {
            store,
            feedback: InMemoryFeedback::default(),
            dead_letters: InMemoryDeadLetters::default(),
            policy: policy(),
            clock: clock.clone(),
        },
        request_dead_letters: InMemoryDeadLetters::default(),
        activity: hub_shared::fakes::activity_in(InMemoryRegistry::default()),
        clock,
    }
}

fn device() -> DeviceId {
    DeviceId::parse("dev-1").unwrap()
}

fn queue() -> QueueKey {
    QueueKey {
        device_id: device(),
        generation_id: GENERATION.into(),
    }
}

fn command(body: &str, ack: AckMode) -> NewCommand {
    NewCommand {
        body: body.as_bytes().to_vec(),
        ack,
        ..Default::default()
    }
}

fn statuses(records: &[FeedbackRecord]) -> Vec<Outcome> {
    records.iter().map(|r| r.status_code).collect()
}

#[tokio::test]
async fn messages_are_received_in_order_locked_and_completed_once() {
    let h = handler();
    for body in ["one", "two", "three"] {
        h.commands
            .enqueue(&device(), command(body, AckMode::Positive), None)
            .await
            .unwrap();
    }
    assert_eq!(h.commands.store.depth(&device()), 3);
    let first = h.commands.receive(&queue()).await.unwrap().unwrap();
    let second = h.commands.receive(&queue()).await.unwrap().unwrap();
    assert_eq!(
        (first.body.as_slice(), second.body.as_slice()),
        (&b"one"[..], &b"two"[..]),
        "FIFO; a locked message is skipped"
    );
    assert_eq!((first.sequence_number, first.delivery_count), (1, 1));

    let token = first.lock.unwrap().token;
    assert_eq!(
        h.commands
            .settle_locked(&queue(), &token, Outcome::Success)
            .await
            .unwrap(),
        SettleOutcome::Settled
    );
    assert_eq!(
        h.commands
            .settle_locked(&queue(), &token, Outcome::Success)
            .await
            .unwrap(),
        SettleOutcome::ConditionFailed
    );
    assert_eq!(
        statuses(&h.commands.feedback.published()),
        [Outcome::Success]
    );
    assert_eq!(h.commands.store.depth(&device()), 2);
    assert_eq!(
        h.commands.store.items().len(),
        2,
        "the completed message and its record are gone"
    );
}

#[tokio::test]
async fn the_queue_depth_is_limited() {
    let h = handler();
    for _ in 0..5 {
        h.commands
            .enqueue(&device(), command("x", AckMode::None), None)
            .await
            .unwrap();
    }
    let error = h
        .commands
        .enqueue(&device(), command("x", AckMode::None), None)
        .await
        .unwrap_err();
    assert!(matches!(error, EnqueueError::QueueFull { limit: 5, .. }));
    let unknown = DeviceId::parse("ghost").unwrap();
    assert!(matches!(
        h.commands
            .enqueue(&unknown, command("x", AckMode::None), None)
            .await,
        Err(EnqueueError::DeviceNotFound(_))
    ));
}

#[tokio::test]
async fn lost_locks_redeliver_with_a_higher_count_then_dead_letter() {
    let (h, clock) = handler_with_clock();
    h.commands
        .enqueue(&device(), command("lost", AckMode::Full), None)
        .await
        .unwrap();
    let mut counts = Vec::new();
    for _ in 0..3 {
        let message = h.commands.receive(&queue()).await.unwrap().unwrap();
        counts.push(message.delivery_count);
        assert!(
            h.commands.receive(&queue()).await.unwrap().is_none(),
            "held by the lock"
        );
        clock.advance(policy().lock_duration + Duration::from_millis(50));
    }
    assert_eq!(counts, [1, 2, 3]);
    assert!(
        h.commands.receive(&queue()).await.unwrap().is_none(),
        "the fourth delivery is refused"
    );
    assert_eq!(
        statuses(&h.commands.feedback.published()),
        [Outcome::DeliveryCountExceeded]
    );
    let [(body, reason)] = h.commands.dead_letters.sent().try_into().unwrap();
    assert_eq!(reason, "DeliveryCountExceeded");
    assert!(body.contains(r#""body":"bG9zdA==""#), "{body}");
    assert_eq!(h.commands.store.depth(&device()), 0);
}

#[tokio::test]
async fn abandoning_at_the_maximum_dead_letters_at_once() {
    let h = handler();
    h.commands
        .enqueue(&device(), command("bad", AckMode::Negative), None)
        .await
        .unwrap();
    for expected in 1..=3 {
        let message = h.commands.receive(&queue()).await.unwrap().unwrap();
        assert_eq!(message.delivery_count, expected);
        assert!(
            h.commands
                .abandon(&queue(), &message.lock.unwrap().token)
                .await
                .unwrap()
        );
    }
    assert_eq!(
        statuses(&h.commands.feedback.published()),
        [Outcome::DeliveryCountExceeded]
    );
    assert_eq!(h.commands.dead_letters.sent().len(), 1);
    assert!(h.commands.receive(&queue()).await.unwrap().is_none());
}

#[tokio::test]
async fn rejected_messages_are_not_redelivered_and_give_negative_feedback() {
    let h = handler();
    h.commands
        .enqueue(&device(), command("no", AckMode::Negative), None)
        .await
        .unwrap();
    let message = h.commands.receive(&queue()).await.unwrap().unwrap();
    let token = message.lock.unwrap().token;
    assert_eq!(
        h.commands
            .settle_locked(&queue(), &token, Outcome::Rejected)
            .await
            .unwrap(),
        SettleOutcome::Settled
    );
    assert!(h.commands.receive(&queue()).await.unwrap().is_none());
    assert_eq!(
        statuses(&h.commands.feedback.published()),
        [Outcome::Rejected]
    );
}

#[tokio::test]
async fn stale_and_forged_tokens_leave_the_message_untouched() {
    let (h, clock) = handler_with_clock();
    h.commands
        .enqueue(&device(), command("m", AckMode::Full), None)
        .await
        .unwrap();
    let message = h.commands.receive(&queue()).await.unwrap().unwrap();
    let token = message.lock.unwrap().token;
    let forged = LockToken::issue(token.sequence_number(), AckMode::None);
    for wrong in [forged.clone(), LockToken::issue(99, AckMode::Full)] {
        assert_eq!(
            h.commands
                .settle_locked(&queue(), &wrong, Outcome::Success)
                .await
                .unwrap(),
            SettleOutcome::ConditionFailed
        );
        assert!(!h.commands.abandon(&queue(), &wrong).await.unwrap());
    }
    clock.advance(policy().lock_duration + Duration::from_millis(50));
    assert_eq!(
        h.commands
            .settle_locked(&queue(), &token, Outcome::Success)
            .await
            .unwrap(),
        SettleOutcome::ConditionFailed,
        "expired lock"
    );
    let again = h.commands.receive(&queue()).await.unwrap().unwrap();
    assert_eq!((again.sequence_number, again.delivery_count), (1, 2));
    assert!(h.commands.feedback.published().is_empty());
}

#[tokio::test]
async fn expired_messages_are_never_delivered_and_give_expired_feedback() {
    let (h, clock) = handler_with_clock();
    let mut short = command("late", AckMode::Full);
    short.expires_at = Timestamp::from_unix_millis(clock.now().unix_millis() + 100);
    h.commands.enqueue(&device(), short, None).await.unwrap();
    h.commands
        .enqueue(&device(), command("fresh", AckMode::None), None)
        .await
        .unwrap();
    clock.advance(Duration::from_millis(150));
    let received = h.commands.receive(&queue()).await.unwrap().unwrap();
    assert_eq!(received.body, b"fresh");
    assert_eq!(
        statuses(&h.commands.feedback.published()),
        [Outcome::Expired]
    );
}

#[tokio::test]
async fn the_sweep_expires_messages_nobody_receives() {
    let (h, clock) = handler_with_clock();
    let mut short = command("late", AckMode::Negative);
    short.expires_at = Timestamp::from_unix_millis(clock.now().unix_millis() + 50);
    h.commands.enqueue(&device(), short, None).await.unwrap();
    clock.advance(Duration::from_millis(100));
    let report = h.commands.sweep(100).await.unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(
        statuses(&h.commands.feedback.published()),
        [Outcome::Expired]
    );
    assert_eq!(h.commands.store.depth(&device()), 0);
}

#[tokio::test]
async fn feedback_lost_in_transit_is_sent_by_the_sweep() {
    let h = handler();
    h.commands
        .enqueue(&device(), command("m", AckMode::Positive), None)
        .await
        .unwrap();
    let message = h.commands.receive(&queue()).await.unwrap().unwrap();
    h.commands
        .feedback
        .unavailable
        .store(true, Ordering::SeqCst);
    let token = message.lock.unwrap().token;
    assert_eq!(
        h.commands
            .settle_locked(&queue(), &token, Outcome::Success)
            .await
            .unwrap(),
        SettleOutcome::Settled
    );
    assert!(h.commands.feedback.published().is_empty());
    assert_eq!(
        h.commands.store.items().len(),
        1,
        "a settled record remains"
    );

    h.commands
        .feedback
        .unavailable
        .store(false, Ordering::SeqCst);
    assert_eq!(h.commands.sweep(100).await.unwrap().finished, 1);
    assert_eq!(
        statuses(&h.commands.feedback.published()),
        [Outcome::Success]
    );
    assert!(h.commands.store.items().is_empty());
}

#[tokio::test]
async fn purge_empties_the_queue_with_purged_feedback() {
    let h = handler();
    h.commands
        .enqueue(&device(), command("a", AckMode::Full), None)
        .await
        .unwrap();
    h.commands
        .enqueue(&device(), command("b", AckMode::None), None)
        .await
        .unwrap();
    h.commands.receive(&queue()).await.unwrap().unwrap();
    assert_eq!(h.commands.purge(&device()).await.unwrap(), Some(2));
    assert_eq!(
        statuses(&h.commands.feedback.published()),
        [Outcome::Purged]
    );
    assert!(h.commands.receive(&queue()).await.unwrap().is_none());
    assert_eq!(h.commands.store.depth(&device()), 0);
    assert_eq!(
        h.commands
            .purge(&DeviceId::parse("ghost").unwrap())
            .await
            .unwrap(),
        None
    );
}

fn service() -> AuthContext {
    AuthContext::Allow(Principal::Service {
        policy: "service".into(),
        rights: Rights::of(&[Permission::ServiceConnect]),
    })
}

fn as_device() -> AuthContext {
    AuthContext::Allow(Principal::Device {
        device_id: device(),
        generation_id: GENERATION.into(),
        via_policy: None,
    })
}

#[tokio::test]
async fn http_send_receive_complete_in_azure_shapes() {
    let h = handler();
    let send = RequestBuilder::new(
        "POST /devices/{id}/messages/deviceBound",
        "/devices/dev-1/messages/deviceBound",
        &service(),
    )
    .header("iothub-messageid", "cmd-1")
    .header("iothub-correlationid", "corr")
    .header("iothub-ack", "full")
    .header("iothub-ttl", "120")
    .header("iothub-app-mode", "eco")
    .body(&[1, 2, 3])
    .build();
    let sent = h.handle_http(&send).await;
    assert_eq!(sent.status_code, 202, "{}", response_body(&sent));
    assert_eq!(sent.headers["iothub-messageid"], "cmd-1");

    let receive = RequestBuilder::new(
        "GET /devices/{id}/messages/devicebound",
        "/devices/dev-1/messages/devicebound",
        &as_device(),
    )
    .build();
    let received = h.handle_http(&receive).await;
    assert_eq!(received.status_code, 200);
    assert!(received.is_base64_encoded);
    let header = |name: &str| received.headers[name].to_str().unwrap().to_owned();
    assert_eq!(header("iothub-messageid"), "cmd-1");
    assert_eq!(header("iothub-correlationid"), "corr");
    assert_eq!(header("iothub-sequencenumber"), "1");
    assert_eq!(header("iothub-deliverycount"), "1");
    assert_eq!(header("iothub-ack"), "full");
    assert_eq!(header("iothub-app-mode"), "eco");
    assert_eq!(header("iothub-to"), "/devices/dev-1/messages/deviceBound");
    assert!(Timestamp::parse(&header("iothub-expiry")).is_ok());
    let etag = header("etag");
    assert!(etag.starts_with('"') && etag.ends_with('"'));

    let token = etag.trim_matches('"');
    let complete = |path_token: &str, if_match: &str| {
        RequestBuilder::new(
            "DELETE /devices/{id}/messages/deviceBound/{lockToken}",
            &format!("/devices/dev-1/messages/deviceBound/{path_token}"),
            &as_device(),
        )
        .header("if-match", if_match)
        .build()
    };
    let mismatch = h
        .handle_http(&complete(token, "\"7-n0123456789abcdef0123456789abcdef\""))
        .await;
    assert_eq!(
        (mismatch.status_code, error_code(&mismatch).as_deref()),
        (412, Some("PreconditionFailed"))
    );
    assert_eq!(
        h.handle_http(&complete(token, &etag)).await.status_code,
        204
    );
    let again = h.handle_http(&complete(token, &etag)).await;
    assert_eq!(
        (again.status_code, error_code(&again).as_deref()),
        (412, Some("PreconditionFailed"))
    );
    assert_eq!(h.handle_http(&receive).await.status_code, 204);

    let feedback = RequestBuilder::new(
        "GET /messages/serviceBound/feedback",
        "/messages/serviceBound/feedback",
        &service(),
    )
    .build();
    let batch = h.handle_http(&feedback).await;
    assert_eq!(batch.status_code, 200);
    let records: Vec<FeedbackRecord> = serde_json::from_str(&response_body(&batch)).unwrap();
    assert_eq!(
        (
            records[0].original_message_id.as_str(),
            records[0].status_code
        ),
        ("cmd-1", Outcome::Success)
    );
    let lock = batch.headers["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let settle = RequestBuilder::new(
        "DELETE /messages/serviceBound/feedback/{lockToken}",
        &format!("/messages/serviceBound/feedback/{lock}"),
        &service(),
    )
    .build();
    assert_eq!(h.handle_http(&settle).await.status_code, 204);
    assert_eq!(h.handle_http(&settle).await.status_code, 412);
    assert_eq!(h.handle_http(&feedback).await.status_code, 204);
}

#[tokio::test]
async fn http_send_validates_headers_and_size() {
    let h = handler();
    let send = |headers: &[(&'static str, &str)], body: &[u8]| {
        let mut builder = RequestBuilder::new(
            "POST /devices/{id}/messages/deviceBound",
            "/devices/dev-1/messages/deviceBound",
            &service(),
        );
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        builder.body(body).build()
    };
    let long_id = "m".repeat(129);
    let past = "2000-01-01T00:00:00Z";
    let far = (Timestamp::now().unix_seconds() + 3 * 24 * 3600).to_string();
    type Case<'a> = (Vec<(&'static str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], vec![0; 64 * 1024 + 1], 413, "MessageTooLarge"),
        (
            vec![("iothub-ack", "sometimes")],
            vec![],
            400,
            "ArgumentInvalid",
        ),
        (
            vec![("iothub-messageid", &long_id)],
            vec![],
            400,
            "ArgumentInvalid",
        ),
        (
            vec![("iothub-expiry", past)],
            vec![],
            400,
            "ArgumentInvalid",
        ),
        (
            vec![("iothub-expiry", "tomorrow")],
            vec![],
            400,
            "ArgumentInvalid",
        ),
        (vec![("iothub-ttl", &far)], vec![], 400, "ArgumentInvalid"),
        (vec![("iothub-ttl", "0")], vec![], 400, "ArgumentInvalid"),
        (
            vec![
                ("iothub-ttl", "10"),
                ("iothub-expiry", "2099-01-01T00:00:00Z"),
            ],
            vec![],
            400,
            "ArgumentInvalid",
        ),
    ];
    for (headers, body, status, code) in cases {
        let response = h.handle_http(&send(&headers, &body)).await;
        assert_eq!(
            (response.status_code, error_code(&response).as_deref()),
            (i64::from(status), Some(code)),
            "{headers:?}"
        );
    }
    assert_eq!(h.commands.store.depth(&device()), 0, "nothing was enqueued");

    for _ in 0..5 {
        assert_eq!(h.handle_http(&send(&[], b"x")).await.status_code, 202);
    }
    let full = h.handle_http(&send(&[], b"x")).await;
    assert_eq!(
        (full.status_code, error_code(&full).as_deref()),
        (403, Some("DeviceMaximumQueueDepthExceeded"))
    );
    let unknown = RequestBuilder::new(
        "POST /devices/{id}/messages/deviceBound",
        "/devices/ghost/messages/deviceBound",
        &service(),
    )
    .build();
    let response = h.handle_http(&unknown).await;
    assert_eq!(
        (response.status_code, error_code(&response).as_deref()),
        (404, Some("DeviceNotFound"))
    );
}

#[tokio::test]
async fn devices_cannot_send_and_services_cannot_receive() {
    let h = handler();
    let send = RequestBuilder::new(
        "POST /devices/{id}/messages/deviceBound",
        "/devices/dev-1/messages/deviceBound",
        &as_device(),
    )
    .build();
    assert_eq!(h.handle_http(&send).await.status_code, 401);
    let receive = RequestBuilder::new(
        "GET /devices/{id}/messages/deviceBound",
        "/devices/dev-1/messages/deviceBound",
        &service(),
    )
    .build();
    assert_eq!(h.handle_http(&receive).await.status_code, 401);
    let too_long = RequestBuilder::new(
        "GET /devices/{id}/messages/deviceBound",
        "/devices/dev-1/messages/deviceBound",
        &as_device(),
    );
    let mut request = too_long.build();
    request.query_string_parameters =
        std::collections::HashMap::from([("waitSeconds".to_owned(), "21".to_owned())]).into();
    assert_eq!(h.handle_http(&request).await.status_code, 400);
}

fn sqs_event(bodies: &[&str]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut message = SqsMessage::default();
            message.message_id = Some(format!("sqs-{i}"));
            message.body = Some((*body).to_owned());
            message
        })
        .collect();
    event
}

#[tokio::test]
async fn command_requests_enqueue_once_and_dead_letter_poison() {
    let h = handler();
    let good = r#"{"requestId":"r-1","deviceId":"dev-1","body":"b24=","ack":"full","properties":{"mode":"on"}}"#;
    let other = r#"{"requestId":"r-2","deviceId":"dev-1","body":"b2Zm"}"#;
    let poison = [
        "not json",
        r#"{"requestId":"r-3","deviceId":"ghost","body":""}"#,
        r#"{"requestId":"r-4","deviceId":"dev-1","body":"***"}"#,
    ];
    let response = h
        .handle_requests(&sqs_event(&[good, poison[0], other, poison[1], poison[2]]))
        .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "poison is dead-lettered, not retried"
    );
    let reasons: Vec<String> = h
        .request_dead_letters
        .sent()
        .into_iter()
        .map(|(_, reason)| reason)
        .collect();
    assert_eq!(reasons.len(), 3);
    assert!(
        reasons[1].contains("ghost is not registered"),
        "{reasons:?}"
    );
    assert_eq!(h.commands.store.depth(&device()), 2);

    let again = h.handle_requests(&sqs_event(&[good])).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(
        h.commands.store.depth(&device()),
        2,
        "a redelivered request is not enqueued twice"
    );

    let first = h.commands.receive(&queue()).await.unwrap().unwrap();
    assert_eq!(
        (
            first.body.as_slice(),
            first.ack,
            first.properties["mode"].as_str()
        ),
        (&b"on"[..], AckMode::Full, "on")
    );
}

#[tokio::test]
async fn command_requests_for_a_damaged_queue_are_dead_lettered_refused_calls_retried() {
    let h = handler();
    h.commands.store.damaged.lock().unwrap().insert(device());
    let request = r#"{"requestId":"r-7","deviceId":"dev-1","body":""}"#;
    let response = h.handle_requests(&sqs_event(&[request])).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "retrying would read the same damaged item"
    );
    let [(_, reason)] = h.request_dead_letters.sent().try_into().unwrap();
    assert!(reason.contains("cannot be read"), "{reason}");

    h.commands.store.damaged.lock().unwrap().clear();
    h.commands
        .store
        .refused
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let response = h.handle_requests(&sqs_event(&[request])).await;
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "a refused call is retried: nothing is lost while the deployment is fixed"
    );
    assert_eq!(h.request_dead_letters.sent().len(), 1);
}

#[tokio::test]
async fn command_requests_that_may_succeed_later_are_retried() {
    let h = handler();
    for _ in 0..5 {
        h.commands
            .enqueue(&device(), command("x", AckMode::None), None)
            .await
            .unwrap();
    }
    let response = h
        .handle_requests(&sqs_event(&[
            r#"{"requestId":"r-9","deviceId":"dev-1","body":""}"#,
        ]))
        .await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        ["sqs-0"],
        "a full queue is retried, then redriven by SQS"
    );
    assert!(h.request_dead_letters.sent().is_empty());
}

#[tokio::test]
async fn events_are_dispatched_by_shape() {
    let h = handler();
    let sweep = h
        .invoke(serde_json::json!({ "detail-type": "Scheduled Event", "source": "aws.events" }))
        .await
        .unwrap();
    assert_eq!(sweep["expired"], 0);
    let batch = h
        .invoke(serde_json::to_value(sqs_event(&["bad"])).unwrap())
        .await
        .unwrap();
    assert_eq!(batch["batchItemFailures"], serde_json::json!([]));
    assert!(
        h.invoke(serde_json::json!({ "unexpected": true }))
            .await
            .is_err()
    );
}
