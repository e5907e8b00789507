//! Jobs (Azure's `/jobs/v2`) against DynamoDB and SQS on LocalStack: twin-update and method jobs
//! run by the queue mapping, scheduled jobs started by the sweep, a worker killed mid-chunk and
//! work items delivered twice (no device done twice, counts exact), a job cancelled mid-way,
//! per-device results through `FROM devices.jobs`, bad requests.

use std::time::Duration;

use hub_shared::lambda::Function;
use hub_tests::{
    Client, CustomGateway, RegisteredDevice, fresh_queue, gateway, register_on, status_and_code,
    unique,
};
use serde_json::{Value, json};

/// Registers `count` devices tagged `tags.jobgroup = <group>`; returns their ids.
async fn tagged_fleet(client: &Client, owner: &str, group: &str, count: usize) -> Vec<String> {
    tagged_devices(client, owner, group, count)
        .await
        .into_iter()
        .map(|d| d.id)
        .collect()
}

async fn tagged_devices(
    client: &Client,
    owner: &str,
    group: &str,
    count: usize,
) -> Vec<RegisteredDevice> {
    let mut devices = Vec::new();
    for i in 0..count {
        let id = format!("{group}-{i:02}");
        devices.push(register_on(client, owner, &id).await);
        let response = client
            .patch(&format!("/twins/{id}"), owner)
            .json(&json!({ "tags": { "jobgroup": group } }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
    devices
}

async fn twin(client: &Client, owner: &str, id: &str) -> Value {
    client.get_json(&format!("/twins/{id}"), owner).await
}

async fn job(client: &Client, owner: &str, job_id: &str) -> Value {
    client.get_json(&format!("/jobs/v2/{job_id}"), owner).await
}

/// Waits for the job to reach `status` (polling its state, at most `within`).
async fn wait_for_job(
    client: &Client,
    owner: &str,
    job_id: &str,
    status: &str,
    within: Duration,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let current = job(client, owner, job_id).await;
        if current["status"] == status {
            return current;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {job_id} not {status} within {within:?}: {current}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn twin_job(job_id: &str, group: &str, desired: Value) -> Value {
    json!({
        "jobId": job_id,
        "type": "scheduleUpdateTwin",
        "queryCondition": format!("tags.jobgroup = '{group}'"),
        "updateTwin": { "deviceId": "*", "etag": "*", "properties": { "desired": desired } },
        "maxExecutionTimeInSeconds": 600,
    })
}

async fn create(client: &Client, owner: &str, body: &Value) -> reqwest::Response {
    let id = body["jobId"].as_str().unwrap();
    client
        .put(&format!("/jobs/v2/{id}"), owner)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_twin_job_updates_every_selected_device_once() {
    let gateway = gateway();
    let client = gateway.http();
    let owner = gateway.owner_token().await;
    let group = unique("jobs");
    let ids = tagged_fleet(&client, &owner, &group, 23).await;
    let outsider = unique("jobs-outside");
    register_on(&client, &owner, &outsider).await;
    let before = twin(&client, &owner, &ids[0]).await["version"].clone();

    let job_id = unique("twinjob");
    let response = create(
        &client,
        &owner,
        &twin_job(&job_id, &group, json!({ "fw": "2.0" })),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["type"], "scheduleUpdateTwin");
    assert!(["queued", "running", "completed"].contains(&created["status"].as_str().unwrap()));

    let done = wait_for_job(
        &client,
        &owner,
        &job_id,
        "completed",
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(
        done["deviceJobStatistics"],
        json!({ "deviceCount": 23, "failedCount": 0, "succeededCount": 23, "runningCount": 0, "pendingCount": 0 }),
        "{done}"
    );
    assert!(done["endTime"].is_string());
    for id in &ids {
        let twin = twin(&client, &owner, id).await;
        assert_eq!(twin["properties"]["desired"]["fw"], "2.0", "{id}");
    }
    assert_eq!(
        twin(&client, &owner, &ids[0]).await["version"].as_u64(),
        before.as_u64().map(|v| v + 1),
        "written once"
    );
    assert!(
        twin(&client, &owner, &outsider).await["properties"]["desired"]
            .get("fw")
            .is_none(),
        "devices the condition does not select are untouched"
    );

    // Each device's result, as Azure's query language shows device jobs.
    let results = client
        .query_all(&owner, &format!("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{job_id}' AND devices.jobs.status = 'completed'"), 10)
        .await
        .0;
    assert_eq!(results.len(), 23);
    assert_eq!(results[0]["jobType"], "scheduleUpdateTwin");
    assert!(results[0]["endTimeUtc"].is_string());

    // Listed by type and status, newest first.
    let listed: Vec<Value> = client
        .get_json(
            "/jobs/v2/query?jobType=scheduleUpdateTwin&jobStatus=completed",
            &owner,
        )
        .await;
    assert!(listed.iter().any(|j| j["jobId"] == job_id.as_str()));
    assert!(listed.iter().all(|j| j["status"] == "completed"));
}

#[tokio::test]
async fn a_scheduled_job_waits_for_its_start_time_and_the_sweep_starts_it() {
    let gateway = gateway();
    let client = gateway.http();
    let owner = gateway.owner_token().await;
    let group = unique("jobs-later");
    let ids = tagged_fleet(&client, &owner, &group, 3).await;
    let job_id = unique("laterjob");
    let start = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let mut body = twin_job(&job_id, &group, json!({ "mode": "eco" }));
    body["startTime"] = json!(
        start
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    let created: Value = create(&client, &owner, &body).await.json().await.unwrap();
    assert_eq!(created["status"], "scheduled");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(job(&client, &owner, &job_id).await["status"], "scheduled");
    gateway.sweep().await;
    let done = wait_for_job(
        &client,
        &owner,
        &job_id,
        "completed",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done["deviceJobStatistics"]["succeededCount"], 3);
    assert_eq!(
        twin(&client, &owner, &ids[2]).await["properties"]["desired"]["mode"],
        "eco"
    );
}

/// A gateway whose job work goes to a queue nobody polls, so the test plays the mapping: it
/// takes each work item and invokes the registry function with it, killing some invocations
/// part-way (a dropped invocation stops at its next await, as a killed process would).
struct ManualJobs {
    gateway: CustomGateway,
    queue: String,
}

impl ManualJobs {
    async fn start() -> Self {
        let queue = fresh_queue("job-work").await;
        // Jobs of its own too: the shared gateway's sweep must not start them on its queue.
        let jobs = hub_tests::clone_table("HUB_JOBS_TABLE", false).await;
        let gateway = CustomGateway::start(&[
            ("HUB_JOB_WORK_QUEUE_URL", queue.as_str()),
            ("HUB_JOBS_TABLE", jobs.as_str()),
        ])
        .await;
        Self { gateway, queue }
    }

    /// The work items waiting, taken off the queue.
    async fn take(&self) -> Vec<Value> {
        let sqs = hub_tests::sqs().await;
        let mut taken = Vec::new();
        loop {
            let output = sqs
                .receive_message()
                .queue_url(&self.queue)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let messages = output.messages.unwrap_or_default();
            if messages.is_empty() {
                return taken;
            }
            for message in messages {
                taken.push(serde_json::from_str(message.body().unwrap()).unwrap());
                sqs.delete_message()
                    .queue_url(&self.queue)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// Delivers one work item; with `kill_after`, the invocation is dropped after that long.
    async fn deliver(&self, item: &Value, kill_after: Option<Duration>) -> bool {
        let event = json!({ "Records": [{
            "messageId": unique("m"),
            "receiptHandle": "r",
            "body": item.to_string(),
            "attributes": {},
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:local:000000000000:job-work",
            "awsRegion": "local",
        }]});
        let invocation = self.gateway.hub.registry.invoke(event);
        match kill_after {
            Some(after) => tokio::time::timeout(after, invocation).await.is_ok(),
            None => {
                let response = invocation.await.unwrap();
                assert_eq!(response["batchItemFailures"], json!([]), "{item}");
                true
            }
        }
    }
}

#[tokio::test]
async fn a_worker_killed_mid_chunk_resumes_without_doing_a_device_twice() {
    let manual = ManualJobs::start().await;
    let client = manual.gateway.client();
    let owner = gateway().owner_token().await;
    let group = unique("jobs-kill");
    let ids = tagged_fleet(&client, &owner, &group, 25).await;
    let mut versions = Vec::new();
    for id in &ids {
        versions.push(twin(&client, &owner, id).await["version"].as_u64().unwrap());
    }
    let job_id = unique("killjob");
    assert_eq!(
        create(
            &client,
            &owner,
            &twin_job(&job_id, &group, json!({ "fw": "3.1" }))
        )
        .await
        .status()
        .as_u16(),
        200
    );
    let mut pending = manual.take().await;
    let mut chunks = 0;
    while let Some(item) = pending.pop() {
        if item["kind"] == "chunk" {
            chunks += 1;
            // Killed part-way at a different point each time, then delivered again, twice.
            let kill = Duration::from_millis(40 * chunks);
            manual.deliver(&item, Some(kill)).await;
            manual.deliver(&item, None).await;
            manual.deliver(&item, None).await;
        } else {
            manual.deliver(&item, None).await;
            // An expansion step delivered twice finds its step taken.
            manual.deliver(&item, None).await;
        }
        pending.extend(manual.take().await);
    }
    assert_eq!(chunks, 3, "25 devices in chunks of 10");
    let done = job(&client, &owner, &job_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["deviceJobStatistics"],
        json!({ "deviceCount": 25, "failedCount": 0, "succeededCount": 25, "runningCount": 0, "pendingCount": 0 })
    );
    for (id, before) in ids.iter().zip(versions) {
        let twin = twin(&client, &owner, id).await;
        assert_eq!(twin["properties"]["desired"]["fw"], "3.1", "{id}");
        assert_eq!(
            twin["version"].as_u64(),
            Some(before + 1),
            "{id} written once"
        );
    }
}

#[tokio::test]
async fn a_cancelled_job_does_no_more_devices() {
    let manual = ManualJobs::start().await;
    let client = manual.gateway.client();
    let owner = gateway().owner_token().await;
    let group = unique("jobs-cancel");
    let ids = tagged_fleet(&client, &owner, &group, 25).await;
    let job_id = unique("canceljob");
    create(
        &client,
        &owner,
        &twin_job(&job_id, &group, json!({ "fw": "9" })),
    )
    .await;
    for item in manual.take().await {
        manual.deliver(&item, None).await;
    }
    let mut chunks: Vec<Value> = manual.take().await;
    assert_eq!(chunks.len(), 3);
    chunks.sort_by_key(|c| c["chunk"].as_u64());
    manual.deliver(&chunks[0], None).await;
    let cancelled: Value = client
        .post(&format!("/jobs/v2/{job_id}/cancel"), &owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    for chunk in &chunks[1..] {
        manual.deliver(chunk, None).await;
    }
    let stats = job(&client, &owner, &job_id).await["deviceJobStatistics"].clone();
    assert_eq!(
        stats,
        json!({ "deviceCount": 25, "failedCount": 0, "succeededCount": 10, "runningCount": 0, "pendingCount": 15 })
    );
    let touched = futures::future::join_all(ids.iter().map(|id| twin(&client, &owner, id)))
        .await
        .iter()
        .filter(|t| t["properties"]["desired"]["fw"] == "9")
        .count();
    assert_eq!(touched, 10, "only the chunk done before the cancel");
    let cancelled_devices = client
        .query_all(&owner, &format!("SELECT deviceId FROM devices.jobs WHERE devices.jobs.jobId = '{job_id}' AND status = 'cancelled'"), 100)
        .await
        .0;
    assert_eq!(cancelled_devices.len(), 15);
    // Cancelling a finished job answers it as it is.
    let again = client
        .post(&format!("/jobs/v2/{job_id}/cancel"), &owner)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 200);
}

#[tokio::test]
async fn a_method_job_records_each_answer_and_each_silence() {
    let gateway = gateway();
    let client = gateway.http();
    let owner = gateway.owner_token().await;
    let group = unique("jobs-method");
    let devices = tagged_devices(&client, &owner, &group, 3).await;
    let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
    let mut responders = Vec::new();
    for device in &devices[..2] {
        let sdk = device.client(&gateway.http_url);
        responders.push(tokio::spawn(async move {
            let call = sdk
                .receive_method(Duration::from_secs(20))
                .await
                .unwrap()
                .expect("a call within 20 s");
            sdk.respond_method(
                &call.request_id,
                200,
                &json!({ "rebooted": call.payload["delay"] }),
            )
            .await
            .unwrap();
        }));
    }
    let job_id = unique("methodjob");
    let body = json!({
        "jobId": job_id,
        "type": "scheduleDeviceMethod",
        "queryCondition": format!("tags.jobgroup = '{group}'"),
        "cloudToDeviceMethod": { "methodName": "reboot", "payload": { "delay": 5 }, "responseTimeoutInSeconds": 10, "connectTimeoutInSeconds": 0 },
    });
    assert_eq!(create(&client, &owner, &body).await.status().as_u16(), 200);
    for responder in responders {
        responder.await.unwrap();
    }
    let done = wait_for_job(
        &client,
        &owner,
        &job_id,
        "completed",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done["deviceJobStatistics"]["succeededCount"], 2, "{done}");
    assert_eq!(done["deviceJobStatistics"]["failedCount"], 1, "{done}");
    let results = client
        .query_all(
            &owner,
            &format!("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{job_id}'"),
            100,
        )
        .await
        .0;
    let by_device = |id: &str| {
        results
            .iter()
            .find(|r| r["deviceId"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by_device(&ids[0])["outcome"]["deviceMethodResponse"],
        json!({ "status": 200, "payload": { "rebooted": 5 } })
    );
    assert_eq!(by_device(&ids[2])["status"], "failed");
    assert_eq!(by_device(&ids[2])["error"]["code"], "DeviceNotOnline");
}

#[tokio::test]
async fn bad_jobs_are_refused_as_azure_does() {
    let gateway = gateway();
    let client = gateway.http();
    let owner = gateway.owner_token().await;
    let job_id = unique("badjob");
    let bad_condition = json!({
        "jobId": job_id, "type": "scheduleUpdateTwin", "queryCondition": "tags.a = = 1",
        "updateTwin": { "tags": { "a": 2 } },
    });
    let response = create(&client, &owner, &bad_condition).await;
    let (status, code) = status_and_code(response).await;
    assert_eq!((status, code.as_deref()), (400, Some("ArgumentInvalid")));

    let no_update =
        json!({ "jobId": job_id, "type": "scheduleUpdateTwin", "queryCondition": "tags.a = 1" });
    let (status, _) = status_and_code(create(&client, &owner, &no_update).await).await;
    assert_eq!(status, 400);

    let good = json!({
        "jobId": job_id, "type": "scheduleUpdateTwin", "queryCondition": "tags.nobody = 'here'",
        "updateTwin": { "tags": { "a": 2 } },
    });
    assert_eq!(create(&client, &owner, &good).await.status().as_u16(), 200);
    let (status, code) = status_and_code(create(&client, &owner, &good).await).await;
    assert_eq!(
        (status, code.as_deref()),
        (409, Some("Conflict")),
        "ids are unique"
    );
    // No device matches: the job completes with nothing to do.
    let done = wait_for_job(
        &client,
        &owner,
        &job_id,
        "completed",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(done["deviceJobStatistics"]["deviceCount"], 0);

    let (status, code) = status_and_code(
        client
            .get(&format!("/jobs/v2/{}", unique("nojob")), &owner)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_deref()), (404, Some("NotFound")));

    // A read-only policy can read jobs but not create them.
    let reader = gateway.policy_token("registryRead").await;
    let mut other = good.clone();
    other["jobId"] = json!(unique("badjob"));
    let (status, _) = status_and_code(create(&client, &reader, &other).await).await;
    assert!(status == 401 || status == 403, "{status}");
    assert_eq!(
        client
            .get(&format!("/jobs/v2/{job_id}"), &reader)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let (status, _) = status_and_code(
        client
            .get("/jobs/v2/query?jobType=exportDevices", &owner)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
}
