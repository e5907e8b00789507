//! Azure's own IoT SDKs for Node.js, unchanged, against the hub: the service SDK's registry
//! manager (REST) registers a device, the device SDK's HTTP transport sends a message and a batch,
//! and a wrong key is refused as Azure would refuse it. The SDKs build `https://<HostName>/...`
//! themselves, so this test serves HTTPS on 127.0.0.1:443.

use std::sync::Arc;
use std::time::Duration;

use hub_local::{GatewayOptions, Hub};
use hub_tests::{gateway, read_device_records, repo_root, tail, unique};
use tokio::process::Command;

#[tokio::test]
async fn azure_node_sdks_register_and_send_over_https() {
    let shared = gateway();
    let sdk_dir = repo_root().join("tests/azure-sdk");
    assert!(
        sdk_dir.join("node_modules/azure-iot-device-http").exists(),
        "the Azure SDKs are not installed: run `npm ci --prefix tests/azure-sdk` (`make test` does)"
    );

    let hub = Arc::new(Hub::from_settings(hub_tests::settings()).await.unwrap());
    let tls_dir = std::env::temp_dir().join(format!("hub-sdk-tls-{}", uuid::Uuid::new_v4()));
    let options = GatewayOptions {
        http: None,
        https: Some("127.0.0.1:443".parse().unwrap()),
        tls_dir,
        event_sources: None,
    };
    let gateway = hub_local::start(hub, &options).await.unwrap_or_else(|e| {
        panic!("this test needs to listen on 127.0.0.1:443 (root or CAP_NET_BIND_SERVICE): {e}")
    });
    let cert = gateway.tls.clone().unwrap().cert;

    let device_id = unique("node-sdk");
    let owner = shared.owner_connection_string().await;
    let run_phase = |phase: &'static str| {
        let script = Command::new("node")
            .arg(sdk_dir.join("compat.js"))
            .env("OWNER_CONNECTION_STRING", &owner)
            .env("DEVICE_ID", &device_id)
            .env("PHASE", phase)
            .env("NODE_EXTRA_CA_CERTS", &cert)
            .kill_on_drop(true)
            .output();
        async move {
            let output = tokio::time::timeout(Duration::from_secs(120), script)
                .await
                .unwrap_or_else(|_| {
                    panic!("the Azure SDK script ({phase}) did not finish within 120 s")
                })
                .unwrap_or_else(|e| panic!("cannot run node: {e}"));
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success(),
                "the Azure SDK script ({phase}) failed:\n{stdout}\n{stderr}"
            );
            serde_json::from_str::<serde_json::Value>(stdout.trim())
                .unwrap_or_else(|e| panic!("{phase} printed {stdout}: {e}"))
        }
    };

    let mut tail = tail().await;
    let summary = run_phase("register-and-send").await;
    assert_eq!(summary["createdStatus"], 200);
    assert_eq!(summary["generationId"].as_str().map(str::len), Some(18));
    assert_eq!(
        summary["refusedWith"], "UnauthorizedError",
        "the device SDK recognises the hub's 401"
    );

    let records = read_device_records(&mut tail, &device_id, 4).await;
    // The Node SDK's batch format carries application properties only, no message ids.
    let ids: Vec<Option<&str>> = records
        .iter()
        .map(|r| r.envelope.system_properties.message_id.as_deref())
        .collect();
    assert_eq!(ids, [Some("node-single"), None, None, None]);
    let single = &records[0].envelope;
    assert_eq!(single.body, br#"{"temperature":21.5}"#);
    assert_eq!(
        single.system_properties.correlation_id.as_deref(),
        Some("node-correlation")
    );
    assert_eq!(
        single.system_properties.content_type.as_deref(),
        Some("application/json")
    );
    assert_eq!(
        single.system_properties.content_encoding.as_deref(),
        Some("utf-8")
    );
    assert_eq!(
        single.properties.get("unit").map(String::as_str),
        Some("celsius")
    );
    for (i, record) in records[1..].iter().enumerate() {
        assert_eq!(record.envelope.body, format!("reading {i}").into_bytes());
        assert_eq!(
            record.envelope.properties.get("index"),
            Some(&i.to_string())
        );
    }

    // Cloud-to-device: the device SDK's HTTP receiver takes and completes a message.
    let headers = [
        ("iothub-messageid", "node-c2d"),
        ("iothub-correlationid", "job-1"),
        ("iothub-ack", "positive"),
        ("iothub-app-priority", "high"),
    ];
    let sent =
        hub_tests::send_command(&shared.http(), &device_id, "set-interval 30", &headers).await;
    assert_eq!(sent.status().as_u16(), 202);
    let received = run_phase("receive").await;

    // Direct methods: the service SDK invokes, a device of ours answers over HTTPS.
    let owner_token = shared.owner_token().await;
    let description: serde_json::Value = shared
        .http()
        .get_json(&format!("/devices/{device_id}"), &owner_token)
        .await;
    let key = description["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let device = hub_device_sdk::DeviceClient::builder(&format!(
        "HostName={};DeviceId={device_id};SharedAccessKey={key}",
        shared.host_name
    ))
    .unwrap()
    .base_url(&shared.http_url)
    .build()
    .unwrap();
    let responder = tokio::spawn(async move {
        let call = device
            .receive_method(Duration::from_secs(15))
            .await
            .unwrap()
            .expect("the invocation reaches the device");
        device
            .respond_method(
                &call.request_id,
                200,
                &serde_json::json!({ "rebooted": true, "asked": call.payload }),
            )
            .await
            .unwrap();
        call.method_name
    });
    let methods = run_phase("method").await;
    assert_eq!(responder.await.unwrap(), "reboot");
    assert_eq!(
        methods["answered"],
        serde_json::json!({ "status": 200, "payload": { "rebooted": true, "asked": { "delay": 1 } } })
    );
    // Node's SDK turns a 404 other than DeviceNotFound (the hub's DeviceNotOnline, as Azure's)
    // into a plain `Error("Not found")`; it arrives within the SDK's own timeout.
    assert_eq!(
        methods["unanswered"],
        serde_json::json!({ "name": "Error", "message": "Not found" })
    );

    // The service SDK's JobClient: a twin job over two tagged devices, listed and awaited; a
    // scheduled one cancelled.
    let client = shared.http();
    let owner_token = shared.owner_token().await;
    for i in 1..=2 {
        let id = format!("{device_id}-job{i}");
        hub_tests::register_on(&client, &owner_token, &id).await;
        let tagged = client
            .patch(&format!("/twins/{id}"), &owner_token)
            .json(&serde_json::json!({ "tags": { "jobRun": device_id } }))
            .send()
            .await
            .unwrap();
        assert_eq!(tagged.status().as_u16(), 200);
    }
    let jobs = run_phase("jobs").await;
    assert_eq!(jobs["status"], "completed", "{jobs}");
    assert_eq!(jobs["statistics"]["succeededCount"], 2, "{jobs}");
    assert_eq!(jobs["listed"], true);
    assert_eq!(jobs["cancelled"], "cancelled");
    assert_eq!(
        jobs["desired"],
        serde_json::json!([device_id.as_str(), device_id.as_str()])
    );
    assert_eq!(
        jobs["perDevice"],
        serde_json::json!(["completed", "completed"])
    );

    let registry = run_phase("registry").await;
    gateway.shutdown();
    assert_eq!(received["body"], "set-interval 30");
    assert_eq!(received["messageId"], "node-c2d");
    assert_eq!(received["correlationId"], "job-1");
    let feedback = hub_tests::read_feedback(&device_id, 1).await;
    assert_eq!(
        feedback[0].status_code,
        hub_shared::domain::command::Outcome::Success,
        "completed by the Azure SDK"
    );

    // The service SDK's Registry manages devices and twins unchanged.
    assert_eq!(
        registry["updated"],
        serde_json::json!({"status": "disabled", "statusReason": "sdk", "etagChanged": true})
    );
    let first = format!("{device_id}-1");
    assert_eq!(registry["bulkAdd"]["isSuccessful"], false);
    assert_eq!(registry["bulkAdd"]["errors"][0]["deviceId"], first.as_str());
    assert_eq!(
        registry["bulkAdd"]["errors"][0]["errorCode"],
        "DeviceAlreadyExists"
    );
    assert_eq!(
        registry["bulkAdd"]["errors"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        registry["bulkUpdate"]["errors"][0]["errorCode"],
        "PreconditionFailed"
    );
    assert_eq!(registry["bulkForcedUpdate"]["isSuccessful"], true);
    assert_eq!(registry["thirdStatus"], "disabled");
    assert_eq!(
        registry["listed"],
        serde_json::json!({"isArray": true, "allHaveIds": true})
    );
    assert!(registry["statistics"]["totalDeviceCount"].as_u64() >= Some(3));
    assert_eq!(registry["twinBefore"]["version"], 1);
    assert_eq!(registry["twinAfter"]["version"], 2);
    assert_eq!(registry["twinAfter"]["tags"]["site"], "sdk");
    assert_eq!(registry["twinAfter"]["rate"], 3);
    assert_eq!(
        registry["staleTwinUpdate"], "InvalidEtagError",
        "the SDK's name for a 412"
    );
    let mut all = vec![
        first.clone(),
        format!("{device_id}-2"),
        format!("{device_id}-3"),
    ];
    all.sort();
    assert_eq!(registry["query"]["found"], serde_json::json!(all));
    assert_eq!(registry["query"]["pages"], 2);
    assert_eq!(
        registry["queryCount"],
        serde_json::json!([{ "devices": 3 }])
    );
    assert_eq!(registry["badQuery"], "ArgumentError");
    assert_eq!(registry["bulkRemove"]["isSuccessful"], true);
    assert_eq!(registry["afterDelete"], "DeviceNotFoundError");
    assert_eq!(registry["secondAfterRemove"], "DeviceNotFoundError");
}
