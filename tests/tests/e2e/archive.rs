//! The cold path from outside: what devices send and the hub acknowledges is in the S3 archive,
//! each message once (on MiniStack the archiver runs as a Lambda behind its own Kinesis mapping).

use std::collections::BTreeMap;
use std::time::Duration;

use hub_tests::archive::{message_counts, wait_for_archive};
use hub_tests::{gateway, unique};

#[tokio::test]
async fn acknowledged_messages_reach_the_archive_once_each() {
    let gateway = gateway();
    let since = std::time::SystemTime::now();
    let device = gateway.register(&unique("e2e-archive")).await;
    for i in 0..5 {
        let sent = gateway
            .http()
            .post(&device.events_path(), &device.token())
            .header("iothub-messageid", format!("a-{i}"))
            .header("iothub-contenttype", "application/json")
            .header("iothub-contentencoding", "utf-8")
            .body(format!(r#"{{"n":{i}}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status().as_u16(), 204);
    }
    let lines = wait_for_archive(&device.id, since, 5, Duration::from_secs(90)).await;
    let expected: BTreeMap<String, usize> = (0..5).map(|i| (format!("a-{i}"), 1)).collect();
    assert_eq!(message_counts(&lines), expected);
    assert!(lines.iter().all(|(_, line)| line["Body"]["n"].is_number()));
}
