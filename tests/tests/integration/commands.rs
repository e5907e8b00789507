//! Cloud-to-device messages against DynamoDB and SQS on LocalStack, through the local gateway,
//! with the device SDK acting as the device.

use std::collections::BTreeSet;
use std::time::Duration;

use hub_shared::config::vars;
use hub_shared::domain::command::Outcome;
use hub_tests::{
    CustomGateway, gateway, read_feedback, send_command, sqs, status_and_code, unique,
};

fn statuses(records: &[hub_shared::domain::command::FeedbackRecord]) -> Vec<Outcome> {
    records.iter().map(|r| r.status_code).collect()
}

/// Looks for a message in an SQS queue (shared between tests: others' messages are released).
async fn find_in_queue(queue_url: &str, needle: &str) -> (String, Option<String>) {
    let sqs = sqs().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{needle} never reached {queue_url}"
        );
        let output = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for message in output.messages.unwrap_or_default() {
            let body = message.body().unwrap_or_default().to_owned();
            let receipt = message.receipt_handle().unwrap_or_default();
            if body.contains(needle) {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .unwrap();
                let reason = message
                    .message_attributes()
                    .and_then(|a| a.get("reason"))
                    .and_then(|v| v.string_value())
                    .map(str::to_owned);
                return (body, reason);
            }
            sqs.change_message_visibility()
                .queue_url(queue_url)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn service_sends_device_receives_completes_and_service_reads_success() {
    let gateway = gateway();
    let device = gateway.register(&unique("c2d-e2e")).await;
    let response = send_command(
        &gateway.http(),
        &device.id,
        "reboot",
        &[
            ("iothub-messageid", "cmd-e2e"),
            ("iothub-ack", "full"),
            ("iothub-app-reason", "update"),
            ("iothub-correlationid", "job-7"),
        ],
    )
    .await;
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(response.headers()["iothub-messageid"], "cmd-e2e");

    let client = device.https_client();
    let message = client.receive().await.unwrap().expect("a message");
    assert_eq!(message.body, b"reboot");
    assert_eq!(message.message_id.as_deref(), Some("cmd-e2e"));
    assert_eq!(message.correlation_id.as_deref(), Some("job-7"));
    assert_eq!(
        message.properties.get("reason").map(String::as_str),
        Some("update")
    );
    assert_eq!(
        (message.delivery_count, message.ack.as_deref()),
        (Some(1), Some("full"))
    );
    client.complete(&message.lock_token).await.unwrap();
    assert_eq!(
        client.receive().await.unwrap(),
        None,
        "a completed message never returns"
    );
    let error = client.complete(&message.lock_token).await.unwrap_err();
    assert_eq!(
        (error.status(), error.code()),
        (Some(412), Some("PreconditionFailed"))
    );

    let feedback = read_feedback(&device.id, 1).await;
    assert_eq!(statuses(&feedback), [Outcome::Success]);
    assert_eq!(feedback[0].original_message_id, "cmd-e2e");
    assert_eq!(feedback[0].device_generation_id.len(), 18);
}

#[tokio::test]
async fn fifo_per_device_and_never_to_another_device() {
    let gateway = gateway();
    let a = gateway.register(&unique("fifo-a")).await;
    let b = gateway.register(&unique("fifo-b")).await;
    let service = gateway.http();
    for i in 0..8 {
        for device in [&a, &b] {
            let sent = send_command(&service, &device.id, &format!("{}-{i}", device.id), &[]).await;
            assert_eq!(sent.status().as_u16(), 202);
        }
    }
    for device in [&a, &b] {
        let client = device.client(&gateway.http_url);
        let mut bodies = Vec::new();
        while let Some(message) = client.receive().await.unwrap() {
            bodies.push(String::from_utf8(message.body.clone()).unwrap());
            client.complete(&message.lock_token).await.unwrap();
        }
        let expected: Vec<String> = (0..8).map(|i| format!("{}-{i}", device.id)).collect();
        assert_eq!(
            bodies, expected,
            "in order, and only this device's messages"
        );
    }
}

#[tokio::test]
async fn concurrent_receivers_never_hold_the_same_message() {
    let gateway = gateway();
    let device = gateway.register(&unique("race-rx")).await;
    let service = gateway.http();
    for i in 0..20 {
        assert_eq!(
            send_command(&service, &device.id, &format!("m{i}"), &[])
                .await
                .status()
                .as_u16(),
            202
        );
    }
    let receivers = (0..2).map(|_| {
        let client = device.client(&gateway.http_url);
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(message) = client.receive().await.unwrap() {
                got.push(String::from_utf8(message.body.clone()).unwrap());
                client.complete(&message.lock_token).await.unwrap();
            }
            got
        })
    });
    let mut all = Vec::new();
    for receiver in receivers {
        all.extend(receiver.await.unwrap());
    }
    let unique_bodies: BTreeSet<&String> = all.iter().collect();
    assert_eq!(
        all.len(),
        20,
        "every message delivered exactly once: {all:?}"
    );
    assert_eq!(unique_bodies.len(), 20);
}

#[tokio::test]
async fn depth_limit_holds_under_racing_senders() {
    let gateway = gateway();
    let device = gateway.register(&unique("depth")).await;
    let token = gateway.policy_token("service").await;
    let senders = (0..10).map(|sender| {
        let client = gateway.http();
        let token = token.clone();
        let path = format!("/devices/{}/messages/deviceBound", device.id);
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..10 {
                let response = client
                    .post(&path, &token)
                    .body(format!("{sender}-{i}"))
                    .send()
                    .await
                    .unwrap();
                statuses.push(hub_tests::status_and_code(response).await);
            }
            statuses
        })
    });
    let mut accepted = 0;
    let mut refused = 0;
    for sender in senders {
        for (status, code) in sender.await.unwrap() {
            match status {
                202 => accepted += 1,
                403 => {
                    assert_eq!(code.as_deref(), Some("DeviceMaximumQueueDepthExceeded"));
                    refused += 1;
                }
                other => panic!("unexpected status {other} ({code:?})"),
            }
        }
    }
    assert_eq!((accepted, refused), (50, 50));
    let owner = gateway.owner_token().await;
    let described: serde_json::Value = gateway
        .http()
        .get_json(&format!("/devices/{}", device.id), &owner)
        .await;
    assert_eq!(
        described["cloudToDeviceMessageCount"], 50,
        "the registry shows the queue depth"
    );

    let client = device.client(&gateway.http_url);
    let mut received = 0;
    while let Some(message) = client.receive().await.unwrap() {
        client.complete(&message.lock_token).await.unwrap();
        received += 1;
    }
    assert_eq!(received, 50, "no 51st message");
}

#[tokio::test]
async fn a_lost_lock_returns_the_message_with_a_higher_delivery_count() {
    let custom = CustomGateway::start(&[(vars::C2D_LOCK_SECONDS, "2")]).await;
    let gateway = gateway();
    let device = gateway.register(&unique("lost-lock")).await;
    assert_eq!(
        send_command(&custom.client(), &device.id, "again", &[])
            .await
            .status()
            .as_u16(),
        202
    );
    let client = device.client(&custom.http_url);
    let first = client.receive().await.unwrap().expect("a message");
    assert_eq!(first.delivery_count, Some(1));
    assert_eq!(client.receive().await.unwrap(), None, "locked");
    // The receiver "crashes"; after the lock time the message is available again.
    let second = client
        .receive_wait(Duration::from_secs(10))
        .await
        .unwrap()
        .expect("redelivered");
    assert_eq!(
        (second.sequence_number, second.delivery_count),
        (first.sequence_number, Some(2))
    );
    let stale = client.complete(&first.lock_token).await.unwrap_err();
    assert_eq!(
        stale.code(),
        Some("PreconditionFailed"),
        "the old lock token is stale"
    );
    client.complete(&second.lock_token).await.unwrap();
}

#[tokio::test]
async fn max_delivery_dead_letters_with_feedback() {
    let custom = CustomGateway::start(&[(vars::C2D_MAX_DELIVERY_COUNT, "3")]).await;
    let gateway = gateway();
    let device = gateway.register(&unique("max-del")).await;
    let message_id = unique("poisoned-cmd");
    let sent = send_command(
        &custom.client(),
        &device.id,
        "crashes the device",
        &[
            ("iothub-ack", "negative"),
            ("iothub-messageid", &message_id),
        ],
    )
    .await;
    assert_eq!(sent.status().as_u16(), 202);
    let client = device.client(&custom.http_url);
    for expected in 1..=3 {
        let message = client.receive().await.unwrap().expect("delivered");
        assert_eq!(message.delivery_count, Some(expected));
        client.abandon(&message.lock_token).await.unwrap();
    }
    assert_eq!(
        client.receive().await.unwrap(),
        None,
        "dead-lettered after 3 deliveries"
    );
    let feedback = read_feedback(&device.id, 1).await;
    assert_eq!(statuses(&feedback), [Outcome::DeliveryCountExceeded]);
    let dead_letter_queue = std::env::var(vars::C2D_DEAD_LETTER_QUEUE_URL).unwrap();
    let (body, reason) = find_in_queue(&dead_letter_queue, &message_id).await;
    assert_eq!(reason.as_deref(), Some("DeliveryCountExceeded"));
    let dead: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(dead["deviceId"], device.id.as_str());
    assert_eq!(dead["deliveryCount"], 3);
}

#[tokio::test]
async fn expired_messages_give_feedback_without_being_received() {
    let gateway = gateway();
    let device = gateway.register(&unique("expiry")).await;
    let sent = send_command(
        &gateway.http(),
        &device.id,
        "too late",
        &[("iothub-ttl", "1"), ("iothub-ack", "full")],
    )
    .await;
    assert_eq!(sent.status().as_u16(), 202);
    // Nobody receives: the sweep expires it. The schedule runs once a minute; this test runs its
    // targets itself every half second so it need not wait for the next tick.
    let sweeper = tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            hub_tests::gateway().sweep().await;
        }
    });
    let feedback = read_feedback(&device.id, 1).await;
    sweeper.abort();
    assert_eq!(statuses(&feedback), [Outcome::Expired]);
    assert_eq!(
        device.client(&gateway.http_url).receive().await.unwrap(),
        None
    );
}

/// Reads a feedback batch (waiting for one until `deadline`); returns its lock and records.
async fn take_feedback(
    service: &hub_tests::Client,
    token: &str,
    deadline: tokio::time::Instant,
) -> (String, Vec<hub_shared::domain::command::FeedbackRecord>) {
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "our feedback never came"
        );
        let response = service
            .get("/messages/serviceBound/feedback", token)
            .send()
            .await
            .unwrap();
        if response.status().as_u16() == 204 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let lock = response.headers()["etag"]
            .to_str()
            .unwrap()
            .trim_matches('"')
            .to_owned();
        return (lock, response.json().await.unwrap());
    }
}

#[tokio::test]
async fn abandoned_feedback_is_delivered_again() {
    // A feedback queue of the test's own: on the shared one, another test's reader may take
    // (and complete) this test's record between its abandon and its second read.
    let queue = hub_tests::fresh_queue("fb-abandon").await;
    let custom =
        hub_tests::CustomGateway::start(&[(hub_shared::config::vars::FEEDBACK_QUEUE_URL, &queue)])
            .await;
    let gateway = gateway();
    let device = gateway.register(&unique("fb-abandon")).await;
    let service = custom.client();
    let token = gateway.policy_token("service").await;
    let sent = send_command(&service, &device.id, "ack me", &[("iothub-ack", "full")]).await;
    assert_eq!(sent.status().as_u16(), 202);
    let client = device.client(&custom.http_url);
    let message = client.receive().await.unwrap().expect("the command");
    client.complete(&message.lock_token).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (lock, records) = take_feedback(&service, &token, deadline).await;
    assert!(records.iter().any(|r| r.device_id == device.id));
    let abandoned = service
        .post(
            &format!("/messages/serviceBound/feedback/{lock}/abandon"),
            &token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(abandoned.status().as_u16(), 204);
    // Abandoned, it is there to be read (and completed) again.
    let (lock, again) = take_feedback(&service, &token, deadline).await;
    assert_eq!(statuses(&again), [Outcome::Success]);
    assert_eq!(again[0].device_id, device.id);
    let completed = service
        .delete(&format!("/messages/serviceBound/feedback/{lock}"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(completed.status().as_u16(), 204);
}

#[tokio::test]
async fn reject_and_purge_give_their_feedback() {
    let gateway = gateway();
    let device = gateway.register(&unique("rej-purge")).await;
    let service = gateway.http();
    for body in ["rejected", "purged-1", "purged-2"] {
        assert_eq!(
            send_command(&service, &device.id, body, &[("iothub-ack", "negative")])
                .await
                .status()
                .as_u16(),
            202
        );
    }
    let client = device.client(&gateway.http_url);
    let first = client.receive().await.unwrap().unwrap();
    assert_eq!(first.body, b"rejected");
    client.reject(&first.lock_token).await.unwrap();
    let held = client.receive().await.unwrap().unwrap();

    let purge = service
        .delete(
            &format!("/devices/{}/commands", device.id),
            &gateway.policy_token("service").await,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status().as_u16(), 200);
    let result: serde_json::Value = purge.json().await.unwrap();
    assert_eq!(result["totalMessagesPurged"], 2);
    assert_eq!(client.receive().await.unwrap(), None);
    assert_eq!(
        client.complete(&held.lock_token).await.unwrap_err().code(),
        Some("PreconditionFailed"),
        "purged while held"
    );

    let mut outcomes = statuses(&read_feedback(&device.id, 3).await);
    outcomes.sort_by_key(|o| o.as_str());
    assert_eq!(
        outcomes,
        [Outcome::Purged, Outcome::Purged, Outcome::Rejected]
    );
}

#[tokio::test]
async fn service_errors_are_azure_shaped() {
    let gateway = gateway();
    let device = gateway.register(&unique("c2d-err")).await;
    let service = gateway.http();
    let unknown = send_command(&service, &unique("ghost"), "x", &[]).await;
    assert_eq!(
        status_and_code(unknown).await,
        (404, Some("DeviceNotFound".into()))
    );
    let big = "x".repeat(64 * 1024 + 1);
    assert_eq!(
        status_and_code(send_command(&service, &device.id, &big, &[]).await).await,
        (413, Some("MessageTooLarge".into()))
    );
    let bad_ack = send_command(&service, &device.id, "x", &[("iothub-ack", "maybe")]).await;
    assert_eq!(
        status_and_code(bad_ack).await,
        (400, Some("ArgumentInvalid".into()))
    );
    // A device may not send commands, and a registry-only policy may not either.
    let as_device = service
        .post(
            &format!("/devices/{}/messages/deviceBound", device.id),
            &device.token(),
        )
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(as_device).await.0, 401);
    let reader = service
        .post(
            &format!("/devices/{}/messages/deviceBound", device.id),
            &gateway.policy_token("registryReadWrite").await,
        )
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(reader).await.0, 401);
    // Another device's token cannot receive this device's messages.
    let other = gateway.register(&unique("c2d-other")).await;
    let stolen = service
        .request(
            reqwest::Method::GET,
            &format!("/devices/{}/messages/devicebound", device.id),
            Some(&other.token()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(stolen).await.0, 401);
    let malformed_token = device
        .client(&gateway.http_url)
        .complete("not-a-token")
        .await
        .unwrap_err();
    assert_eq!(malformed_token.code(), Some("PreconditionFailed"));
}

#[tokio::test]
async fn long_poll_returns_as_soon_as_a_message_arrives() {
    let gateway = gateway();
    let device = gateway.register(&unique("long-poll")).await;
    let client = device.client(&gateway.http_url);
    let device_id = device.id.clone();
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        send_command(&gateway.http(), &device_id, "wake up", &[])
            .await
            .status()
            .as_u16()
    });
    let started = tokio::time::Instant::now();
    let message = client
        .receive_wait(Duration::from_secs(15))
        .await
        .unwrap()
        .expect("delivered during the wait");
    assert_eq!(message.body, b"wake up");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "returned before the wait ran out"
    );
    assert_eq!(sender.await.unwrap(), 202);
    client.complete(&message.lock_token).await.unwrap();
    assert_eq!(
        client.receive_wait(Duration::from_secs(1)).await.unwrap(),
        None,
        "an empty wait ends with 204"
    );
}

#[tokio::test]
async fn command_requests_enqueue_the_good_and_dead_letter_the_poison() {
    let gateway = gateway();
    let device = gateway.register(&unique("async")).await;
    let sqs = sqs().await;
    let requests_queue = std::env::var(vars::COMMAND_REQUESTS_QUEUE_URL).unwrap();
    let poison_marker = unique("poison");
    let request = |id: &str, body: &str| {
        serde_json::json!({ "requestId": id, "deviceId": device.id, "body": body, "ack": "none" })
            .to_string()
    };
    let good_ids: Vec<String> = (0..4).map(|i| format!("{}-{i}", unique("req"))).collect();
    let mut bodies: Vec<String> = good_ids
        .iter()
        .enumerate()
        .map(|(i, id)| request(id, &base64_of(&format!("async-{i}"))))
        .collect();
    bodies.insert(
        2,
        format!(
            "{{\"requestId\":\"{poison_marker}\",\"deviceId\":\"{}\",\"body\":\"%%%\"}}",
            device.id
        ),
    );
    // The same request twice: enqueued once.
    bodies.push(request(&good_ids[0], &base64_of("async-0")));
    let entries: Vec<aws_sdk_sqs::types::SendMessageBatchRequestEntry> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body)
                .build()
                .unwrap()
        })
        .collect();
    let sent = sqs
        .send_message_batch()
        .queue_url(&requests_queue)
        .set_entries(Some(entries))
        .send()
        .await
        .unwrap();
    assert!(sent.failed().is_empty());

    let client = device.client(&gateway.http_url);
    let mut received = Vec::new();
    while received.len() < 4 {
        let message = client
            .receive_wait(Duration::from_secs(20))
            .await
            .unwrap()
            .expect("the good requests are delivered");
        received.push(String::from_utf8(message.body.clone()).unwrap());
        client.complete(&message.lock_token).await.unwrap();
    }
    received.sort();
    assert_eq!(received, ["async-0", "async-1", "async-2", "async-3"]);

    let dlq = std::env::var(vars::COMMAND_REQUESTS_DLQ_URL).unwrap();
    let (_, reason) = find_in_queue(&dlq, &poison_marker).await;
    assert!(reason.unwrap_or_default().contains("body is not base64"));
    // Nothing was processed twice: after the poison was dead-lettered, the queue is empty.
    assert_eq!(
        client.receive_wait(Duration::from_secs(3)).await.unwrap(),
        None
    );
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
