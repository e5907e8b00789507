//! Fleet management from outside: a twin query paged through the tag index and one by id prefix,
//! service statistics, a direct method invoked by a service and answered by the device over
//! HTTPS, and a twin job run by the job-work queue.

use std::time::Duration;

use hub_tests::{gateway, unique};
use serde_json::{Value, json};

#[tokio::test]
async fn twins_are_queried_a_page_at_a_time() {
    let gateway = gateway();
    let client = gateway.http();
    let owner = gateway.owner_token().await;
    let run = unique("e2e-run");
    let mut expected = Vec::new();
    for _ in 0..2 {
        let device = gateway.register(&unique("e2e-q")).await;
        let tagged = client
            .patch(&format!("/twins/{}", device.id), &owner)
            .json(&json!({ "tags": { "run": run } }))
            .send()
            .await
            .unwrap();
        assert_eq!(tagged.status().as_u16(), 200);
        expected.push(device.id);
    }
    expected.sort();
    let (rows, _) = client
        .query_all(
            &owner,
            &format!("SELECT deviceId FROM devices WHERE tags.run = '{run}'"),
            1,
        )
        .await;
    let mut found: Vec<String> = rows
        .iter()
        .map(|r| r["deviceId"].as_str().unwrap().to_owned())
        .collect();
    found.sort();
    assert_eq!(found, expected);
    // A search by id prefix (the device id index).
    let (rows, _) = client
        .query_all(
            &owner,
            &format!(
                "SELECT deviceId FROM devices WHERE STARTSWITH(deviceId, '{}')",
                expected[0]
            ),
            1,
        )
        .await;
    assert_eq!(rows, vec![json!({ "deviceId": expected[0] })]);
    let statistics: Value = client.get_json("/statistics/service", &owner).await;
    assert!(statistics["connectedDeviceCount"].is_u64(), "{statistics}");
}

#[tokio::test]
async fn a_direct_method_reaches_the_device_and_its_answer_comes_back() {
    let gateway = gateway();
    let client = gateway.http();
    let service = gateway.policy_token("service").await;
    let device = gateway.register(&unique("e2e-method")).await;
    let sdk = device.client(&gateway.http_url);
    let responder = tokio::spawn(async move {
        let call = sdk
            .receive_method(Duration::from_secs(15))
            .await
            .unwrap()
            .expect("the call reaches the device");
        sdk.respond_method(&call.request_id, 200, &json!({ "done": call.method_name }))
            .await
            .unwrap();
    });
    let response = client
        .post(&format!("/twins/{}/methods", device.id), &service)
        .json(&json!({ "methodName": "Reboot", "payload": {}, "responseTimeoutInSeconds": 10, "connectTimeoutInSeconds": 10 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer,
        json!({ "status": 200, "payload": { "done": "Reboot" } })
    );
    responder.await.unwrap();
}

#[tokio::test]
async fn a_twin_job_runs_through_the_job_queue_to_completion() {
    let gateway = gateway();
    let client = gateway.http();
    let owner = gateway.owner_token().await;
    let run = unique("e2e-job");
    let mut devices = Vec::new();
    for _ in 0..3 {
        let device = gateway.register(&unique("e2e-j")).await;
        let tagged = client
            .patch(&format!("/twins/{}", device.id), &owner)
            .json(&json!({ "tags": { "jobRun": run } }))
            .send()
            .await
            .unwrap();
        assert_eq!(tagged.status().as_u16(), 200);
        devices.push(device.id);
    }
    let job_id = unique("e2e-twinjob");
    let created = client
        .put(&format!("/jobs/v2/{job_id}"), &owner)
        .json(&json!({
            "type": "scheduleUpdateTwin",
            "queryCondition": format!("tags.jobRun = '{run}'"),
            "updateTwin": { "etag": "*", "properties": { "desired": { "jobRun": run } } },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 200);
    // The job-work queue's mapping runs it (the deployed function on MiniStack).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let job = loop {
        let job: Value = client.get_json(&format!("/jobs/v2/{job_id}"), &owner).await;
        if job["status"] == "completed" {
            break job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job did not complete: {job}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(job["deviceJobStatistics"]["succeededCount"], 3, "{job}");
    for id in &devices {
        let twin: Value = client.get_json(&format!("/twins/{id}"), &owner).await;
        assert_eq!(twin["properties"]["desired"]["jobRun"], run.as_str());
    }
}
