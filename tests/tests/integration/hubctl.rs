//! `hubctl` against LocalStack through the local gateway, as an operator runs it: the real
//! binary, its output (`--output json`) and its exit codes, for every command group.

use std::process::Output;
use std::time::Duration;

use hub_tests::runtime_api::binary_path;
use hub_tests::{gateway, tail, unique};
use serde_json::Value;

async fn hubctl(args: &[&str]) -> Output {
    hubctl_at(&gateway().http_url, args).await
}

async fn hubctl_at(url: &str, args: &[&str]) -> Output {
    let gateway = gateway();
    let owner = gateway.owner_connection_string().await;
    tokio::process::Command::new(binary_path("hubctl"))
        .args(args)
        .env("HUBCTL_CONNECTION_STRING", owner)
        .env("HUBCTL_URL", url)
        .env("HUB_TELEMETRY_STREAM", gateway.telemetry_stream())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run hubctl: {e}"))
}

/// Runs `hubctl --output json <args>`, expects success, and parses what it printed.
async fn json(args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let output = hubctl(&all).await;
    assert!(
        output.status.success(),
        "hubctl {args:?} failed ({:?}): {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("hubctl {args:?} printed {text:?}: {e}"))
}

#[tokio::test]
async fn device_commands_create_show_list_update_renew_and_delete() {
    gateway();
    let id = unique("ctl-dev");
    let created = json(&["device", "create", &id]).await;
    assert_eq!(created["deviceId"], id.as_str());
    let key = created["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(json(&["device", "show", &id]).await["status"], "enabled");
    let listed = json(&["device", "list", "--all"]).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["deviceId"] == id.as_str())
    );
    let disabled = json(&["device", "update", &id, "--status", "disabled"]).await;
    assert_eq!(disabled["status"], "disabled");
    let renewed = json(&["device", "renew-key", &id]).await;
    assert_ne!(
        renewed["authentication"]["symmetricKey"]["primaryKey"],
        key.as_str()
    );

    let table = hubctl(&["device", "show", &id]).await;
    assert!(String::from_utf8_lossy(&table.stdout).contains("\"deviceId\""));

    let stale = hubctl(&[
        "device", "update", &id, "--status", "enabled", "--etag", "stale",
    ])
    .await;
    assert_eq!(stale.status.code(), Some(1), "the hub refused it");
    assert!(String::from_utf8_lossy(&stale.stderr).contains("PreconditionFailed"));

    json(&["device", "delete", &id]).await;
    let gone = hubctl(&["device", "show", &id]).await;
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("DeviceNotFound"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
}

#[tokio::test]
async fn import_and_export_move_devices_in_bulk() {
    gateway();
    let dir = std::env::temp_dir().join(unique("ctl-import"));
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = unique("ctl-bulk");
    let jsonl: String = (0..150)
        .map(|i| format!("{{\"id\":\"{prefix}-{i}\",\"status\":\"enabled\"}}\n"))
        .collect();
    std::fs::write(dir.join("devices.jsonl"), jsonl).unwrap();
    let imported = json(&[
        "device",
        "import",
        "--file",
        dir.join("devices.jsonl").to_str().unwrap(),
    ])
    .await;
    assert_eq!(
        (imported["devices"].as_u64(), imported["applied"].as_u64()),
        (Some(150), Some(150))
    );

    let csv = format!("id,status,primaryKey,secondaryKey\n{prefix}-csv,disabled,,\n");
    std::fs::write(dir.join("more.csv"), csv).unwrap();
    json(&[
        "device",
        "import",
        "--file",
        dir.join("more.csv").to_str().unwrap(),
    ])
    .await;
    assert_eq!(
        json(&["device", "show", &format!("{prefix}-csv")]).await["status"],
        "disabled"
    );

    // Importing them again as creates fails for each, and says so.
    let again = hubctl(&[
        "--output",
        "json",
        "device",
        "import",
        "--file",
        dir.join("more.csv").to_str().unwrap(),
    ])
    .await;
    assert_eq!(again.status.code(), Some(1), "the hub refused each");
    assert!(String::from_utf8_lossy(&again.stdout).contains("DeviceAlreadyExists"));

    let exported = hubctl(&["device", "export", "--format", "csv"]).await;
    assert!(exported.status.success());
    let text = String::from_utf8_lossy(&exported.stdout);
    assert!(text.starts_with("id,status,primaryKey,secondaryKey"));
    let mine = text.lines().filter(|l| l.starts_with(&prefix)).count();
    assert_eq!(mine, 151);

    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"id\":\"ok-1\"}\nnot json\n").unwrap();
    let refused = hubctl(&["device", "import", "--file", bad.to_str().unwrap()]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("bad.jsonl:2"),
        "names the line"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn connection_strings_and_tokens_work_for_the_device() {
    let gateway = gateway();
    let id = unique("ctl-cs");
    json(&["device", "create", &id]).await;
    let cs = json(&["connection-string", "show", "--device", &id]).await;
    let cs = cs["connectionString"].as_str().unwrap().to_owned();
    assert!(cs.contains(&format!("DeviceId={id};")));
    let client = hub_device_sdk::DeviceClient::builder(&cs)
        .unwrap()
        .base_url(&gateway.http_url)
        .build()
        .unwrap();
    client
        .send_event(&hub_device_sdk::Message::new(b"hello".to_vec()))
        .await
        .unwrap();

    let token = json(&["sas", "--device", &id, "--ttl", "600"]).await["sas"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = gateway
        .http()
        .post(&format!("/devices/{id}/messages/events"), &token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status().as_u16(), 204);
    let policy = json(&["sas"]).await["sas"].as_str().unwrap().to_owned();
    assert!(policy.contains("skn=iothubowner"));
}

#[tokio::test]
async fn twins_are_shown_patched_and_replaced() {
    gateway();
    let id = unique("ctl-twin");
    json(&["device", "create", &id]).await;
    let patched = json(&[
        "twin",
        "update",
        &id,
        "--json",
        r#"{"tags":{"site":"lab"},"properties":{"desired":{"rate":5,"mode":"eco"}}}"#,
    ])
    .await;
    assert_eq!(patched["tags"]["site"], "lab");
    let removed = json(&[
        "twin",
        "update",
        &id,
        "--json",
        r#"{"properties":{"desired":{"mode":null}}}"#,
    ])
    .await;
    assert!(
        removed["properties"]["desired"].get("mode").is_none(),
        "null removes: {removed}"
    );
    let replaced = json(&[
        "twin",
        "replace",
        &id,
        "--json",
        r#"{"tags":{"building":"B2"},"properties":{"desired":{}}}"#,
    ])
    .await;
    assert!(replaced["tags"].get("site").is_none());
    assert_eq!(json(&["twin", "show", &id]).await["tags"]["building"], "B2");

    // Queries, every page: twins, projections and groups; a bad query fails with its position.
    let run = unique("ctl-run");
    for other in [unique("ctl-q"), unique("ctl-q")] {
        json(&["device", "create", &other]).await;
        json(&[
            "twin",
            "update",
            &other,
            "--json",
            &format!(r#"{{"tags":{{"run":"{run}"}}}}"#),
        ])
        .await;
    }
    let found = json(&[
        "query",
        &format!("SELECT * FROM devices WHERE tags.run = '{run}'"),
        "--page-size",
        "1",
    ])
    .await;
    assert_eq!(found.as_array().map(Vec::len), Some(2), "{found}");
    let counted = json(&[
        "query",
        &format!("SELECT COUNT() AS devices FROM devices WHERE tags.run = '{run}'"),
    ])
    .await;
    assert_eq!(counted, serde_json::json!([{ "devices": 2 }]));
    let table = hubctl(&[
        "query",
        &format!("SELECT deviceId, tags.run FROM devices WHERE tags.run = '{run}'"),
    ])
    .await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("DEVICEID") && text.contains(&run), "{text}");
    let bad = hubctl(&["query", "SELECT * FROM devices WHERE"]).await;
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("line 1, column 28"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(json(&["connected"]).await["connectedDeviceCount"].is_u64());
}

#[tokio::test]
async fn c2d_send_waits_for_feedback_and_purge_empties_the_queue() {
    let gateway = gateway();
    let device = gateway.register(&unique("ctl-c2d")).await;
    let client = device.client(&gateway.http_url);
    let receiver = tokio::spawn(async move {
        let message = client
            .receive_wait(Duration::from_secs(20))
            .await
            .unwrap()
            .expect("the message");
        assert_eq!(
            message.properties.get("mode").map(String::as_str),
            Some("eco")
        );
        client.complete(&message.lock_token).await.unwrap();
    });
    let done = json(&[
        "c2d",
        "send",
        &device.id,
        "--body",
        "set-point 19",
        "--property",
        "mode=eco",
        "--ack",
        "full",
        "--wait",
        "--timeout",
        "60",
    ])
    .await;
    assert_eq!(done["statusCode"], "Success");
    receiver.await.unwrap();

    for n in 0..3 {
        json(&["c2d", "send", &device.id, "--body", &format!("m{n}")]).await;
    }
    let purged = json(&["c2d", "purge", &device.id]).await;
    assert_eq!(purged["totalMessagesPurged"], 3, "{purged}");
}

#[tokio::test]
async fn feedback_monitor_prints_records_as_they_come() {
    // A feedback queue of the test's own, so the records it reads are exactly its own.
    let queue = hub_tests::fresh_queue("feedback").await;
    let custom =
        hub_tests::CustomGateway::start(&[(hub_shared::config::vars::FEEDBACK_QUEUE_URL, &queue)])
            .await;
    let gateway = gateway();
    let device = gateway.register(&unique("ctl-fb")).await;
    for id in ["fb-1", "fb-2"] {
        let sent = hub_tests::send_command(
            &custom.client(),
            &device.id,
            id,
            &[("iothub-ack", "full"), ("iothub-messageid", id)],
        )
        .await;
        assert_eq!(sent.status().as_u16(), 202);
    }
    let client = device.client(&custom.http_url);
    for _ in 0..2 {
        let message = client.receive().await.unwrap().unwrap();
        client.complete(&message.lock_token).await.unwrap();
    }
    let output = hubctl_at(
        &custom.http_url,
        &[
            "--output",
            "json",
            "feedback",
            "monitor",
            "--count",
            "2",
            "--timeout",
            "60",
        ],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut ids: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|r| {
            assert_eq!(r["deviceId"], device.id.as_str());
            assert_eq!(r["statusCode"], "Success");
            r["originalMessageId"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, ["fb-1", "fb-2"]);
}

#[tokio::test]
async fn monitor_events_tails_the_stream_for_matching_devices() {
    let gateway = gateway();
    let prefix = unique("ctl-mon");
    let device = gateway.register(&format!("{prefix}-a")).await;
    let other = gateway.register(&unique("ctl-other")).await;
    let _tail = tail().await;
    let monitor = tokio::spawn(async move {
        let pattern = format!("{prefix}-*");
        hubctl(&[
            "--output",
            "json",
            "monitor",
            "events",
            "--device",
            &pattern,
            "--properties",
            "--count",
            "2",
            "--timeout",
            "60",
        ])
        .await
    });
    // Give the monitor a moment to open its shard iterators at the stream's end.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (d, body) in [
        (&other, r#"{"t":0}"#),
        (&device, r#"{"t":1}"#),
        (&device, r#"{"t":2}"#),
    ] {
        let sent = gateway
            .http()
            .post(&d.events_path(), &d.token())
            .header("iothub-app-unit", "celsius")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status().as_u16(), 204);
    }
    let output = monitor.await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e["deviceId"] == device.id.as_str()));
    assert_eq!(events[0]["body"]["t"], 1);
    assert_eq!(events[0]["properties"]["unit"], "celsius");
}

#[tokio::test]
async fn rules_and_alerts_are_managed() {
    gateway();
    let id = unique("ctl-rule");
    let rule = r#"{"devices":{"all":true},"condition":{"field":"never_sent","learned":{}},"actions":{"alert":{}}}"#;
    let put = json(&["rule", "put", &id, "--json", rule]).await;
    assert_eq!(put["id"], id.as_str());
    let listed = json(&["rule", "list"]).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str())
    );
    assert_eq!(
        json(&["rule", "show", &id]).await["condition"]["learned"]["sensitivity"],
        5.0
    );
    let bad = hubctl(&[
        "rule",
        "put",
        &id,
        "--json",
        r#"{"devices":{"all":true},"condition":{"field":"x"},"actions":{"alert":{}}}"#,
    ])
    .await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("ArgumentInvalid"));
    json(&["rule", "delete", &id]).await;
    assert!(json(&["alert", "list", "--all"]).await.is_array());
    let table = hubctl(&["alert", "list"]).await;
    assert!(table.status.success());

    let usage = hubctl(&["twin", "update", "x"]).await;
    assert_eq!(
        usage.status.code(),
        Some(2),
        "clap refuses a missing --json/--file"
    );
}

#[tokio::test]
async fn route_test_and_check_run_the_routers_code_on_the_terraform_variables() {
    let dir = std::env::temp_dir().join(unique("hubctl-routes"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("routing.tfvars.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "routing_endpoints": { "critical": { "type": "sqs", "arn": "arn:aws:sqs:us-east-1:000000000000:critical", "url": "http://q/critical" } },
            "routes": [
                { "name": "critical", "condition": "level = 'critical' OR $body.temperature > 90", "endpoint": "critical" },
                { "name": "dublin", "condition": "$twin.tags.site = 'dublin'", "endpoint": "critical" },
                { "name": "cold", "endpoint": "archive" },
                { "name": "eco", "source": "TwinChangeEvents", "condition": "$body.properties.desired.mode = 'eco'", "endpoint": "critical" }
            ],
            "routing_enrichments": [{ "key": "site", "value": "$twin.tags.site", "endpoints": ["critical"] }],
            "archive": { "enabled": true }
        })
        .to_string(),
    )
    .unwrap();
    let twin = dir.join("twin.json");
    std::fs::write(&twin, r#"{"tags":{"site":"cork"}}"#).unwrap();
    let config = config.display().to_string();
    let twin = twin.display().to_string();
    let answer = json(&[
        "route",
        "test",
        "--config",
        &config,
        "--body",
        r#"{"temperature": 95}"#,
        "--content-type",
        "application/json",
        "--content-encoding",
        "utf-8",
        "--twin",
        &twin,
    ])
    .await;
    assert_eq!(
        answer["routes"],
        serde_json::json!([
            { "route": "critical", "result": "true" },
            { "route": "dublin", "result": "false" },
            { "route": "cold", "result": "true" },
            { "route": "eco", "result": "false" }
        ])
    );
    // A twin change event takes only its source's routes.
    let event = json(&[
        "route",
        "test",
        "--config",
        &config,
        "--source",
        "TwinChangeEvents",
        "--body",
        r#"{"version": 2, "properties": {"desired": {"mode": "eco"}}}"#,
    ])
    .await;
    let matched: Vec<&Value> = event["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["result"] == "true")
        .collect();
    assert_eq!(
        matched,
        [&serde_json::json!({ "route": "eco", "result": "true" })]
    );
    let critical = answer["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["endpoint"] == "critical")
        .expect("routed to critical");
    assert_eq!(critical["properties"]["site"], "cork");

    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"routes":[{"name":"bad","condition":"level = ","endpoint":"events"}]}"#,
    )
    .unwrap();
    let output = hubctl(&["route", "check", "--config", &bad.display().to_string()]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("route bad") && stderr.contains("line 1, column 9"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
