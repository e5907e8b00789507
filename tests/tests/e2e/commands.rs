//! Cloud-to-device messages: the round trip with feedback, the asynchronous command-requests
//! queue and its event source mapping, and expiry by the scheduled sweep.

use std::time::Duration;

use hub_shared::config::vars;
use hub_shared::domain::command::Outcome;
use hub_tests::{gateway, read_feedback, send_command, sqs, unique};

#[tokio::test]
async fn a_command_is_received_completed_and_acknowledged() {
    let gateway = gateway();
    let device = gateway.register(&unique("e2e-c2d")).await;
    let sent = send_command(
        &gateway.http(),
        &device.id,
        "set-point 19",
        &[("iothub-ack", "full"), ("iothub-messageid", "m-1")],
    )
    .await;
    assert_eq!(sent.status().as_u16(), 202);
    let client = device.client(&gateway.http_url);
    let message = client
        .receive_wait(Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the command");
    assert_eq!(message.body, b"set-point 19");
    assert_eq!(message.message_id.as_deref(), Some("m-1"));
    client.complete(&message.lock_token).await.unwrap();
    let feedback = read_feedback(&device.id, 1).await;
    assert_eq!(feedback[0].status_code, Outcome::Success);
    assert_eq!(feedback[0].original_message_id, "m-1");
}

#[tokio::test]
async fn command_requests_put_on_the_queue_reach_the_device() {
    let gateway = gateway();
    let device = gateway.register(&unique("e2e-async")).await;
    let request = serde_json::json!({
        "requestId": unique("req"),
        "deviceId": device.id,
        "body": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "from a rule engine"),
    });
    sqs()
        .await
        .send_message()
        .queue_url(std::env::var(vars::COMMAND_REQUESTS_QUEUE_URL).unwrap())
        .message_body(request.to_string())
        .send()
        .await
        .unwrap();
    let client = device.client(&gateway.http_url);
    // A delivery that fails (a function timing out on a loaded emulator) comes back only after
    // the queue's visibility timeout (six times the commands function's 25 s): allow one retry.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(200);
    let message = loop {
        if let Some(message) = client.receive_wait(Duration::from_secs(10)).await.unwrap() {
            break message;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request was never enqueued"
        );
    };
    assert_eq!(message.body, b"from a rule engine");
    client.complete(&message.lock_token).await.unwrap();
}

/// The schedule runs once a minute, locally as in AWS: this test waits for it.
#[tokio::test]
async fn the_scheduled_sweep_expires_what_nobody_receives() {
    let gateway = gateway();
    let device = gateway.register(&unique("e2e-expiry")).await;
    let sent = send_command(
        &gateway.http(),
        &device.id,
        "too late",
        &[("iothub-ttl", "1"), ("iothub-ack", "negative")],
    )
    .await;
    assert_eq!(sent.status().as_u16(), 202);
    let feedback = tokio::time::timeout(Duration::from_secs(150), read_feedback(&device.id, 1))
        .await
        .expect("no sweep expired the message within two and a half minutes");
    assert_eq!(feedback[0].status_code, Outcome::Expired);
}
