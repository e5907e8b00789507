//! The device simulator against LocalStack through the local gateway: a fleet registers in bulk
//! with twin tags, reports its properties, sends telemetry, acts on commands (completing what it
//! knows, rejecting what it does not) and obeys a desired telemetry interval; and the closed loop
//! of a learned rule, arrow by arrow.

use std::sync::Arc;
use std::time::Duration;

use hub_service_sdk::{C2dMessage, ServiceClient};
use hub_shared::domain::command::Outcome;
use hub_simulator::fleet::{self, FleetOptions, FleetSpec, Stats};
use hub_simulator::model::Model;
use hub_tests::{gateway, read_device_records, read_feedback, tail, unique};
use tokio::sync::watch;

async fn service() -> Arc<ServiceClient> {
    let gateway = gateway();
    Arc::new(
        ServiceClient::builder(&gateway.owner_connection_string().await)
            .unwrap()
            .base_url(&gateway.http_url)
            .build()
            .unwrap(),
    )
}

fn shipped_models() -> std::collections::BTreeMap<String, Model> {
    Model::load_dir(&hub_tests::repo_root().join("simulator/models")).unwrap()
}

/// Plays `spec` until the returned sender is dropped or set.
fn start(
    service: Arc<ServiceClient>,
    models: std::collections::BTreeMap<String, Model>,
    spec: &str,
    options: FleetOptions,
) -> (watch::Sender<bool>, Arc<Stats>, tokio::task::JoinHandle<()>) {
    let spec = FleetSpec::parse(spec, &models).unwrap();
    let stats = Arc::new(Stats::default());
    let (stop, shutdown) = watch::channel(false);
    let task = {
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            fleet::run(service, &models, &spec, &options, stats, shutdown)
                .await
                .unwrap_or_else(|e| panic!("fleet: {e}"));
        })
    };
    (stop, stats, task)
}

async fn wait_until<F: Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_fleet_registers_reports_sends_obeys_and_acts_on_commands() {
    let service = service().await;
    let prefix = unique("simfleet");
    let options = FleetOptions {
        prefix: prefix.clone(),
        interval: Some(Duration::from_secs(1)),
        c2d_poll: Duration::from_millis(500),
        twin_poll: Duration::from_secs(1),
        ..Default::default()
    };
    let mut tail = tail().await;
    let (stop, stats, task) = start(
        Arc::clone(&service),
        shipped_models(),
        "elevator=1,chiller=1",
        options,
    );
    let elevator = format!("{prefix}-elevator-1");
    let chiller = format!("{prefix}-chiller-1");

    // Registered, tagged, reporting what it is.
    wait_until("the initial report", Duration::from_secs(30), || {
        let service = Arc::clone(&service);
        let elevator = elevator.clone();
        async move {
            service
                .twin(&elevator)
                .await
                .is_ok_and(|t| t["properties"]["reported"]["type"] == "Elevator")
        }
    })
    .await;
    let twin = service.twin(&elevator).await.unwrap();
    assert_eq!(twin["tags"]["model"], "elevator");
    assert!(twin["tags"]["site"].is_string());
    assert_eq!(
        twin["properties"]["reported"]["firmware"]["version"],
        "2.3.1"
    );
    assert!(
        twin["properties"]["reported"]["supportedCommands"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("StopElevator"))
    );

    // Telemetry from both, with their model as a property.
    let records = read_device_records(&mut tail, &elevator, 2).await;
    assert_eq!(
        records[0]
            .envelope
            .properties
            .get("model")
            .map(String::as_str),
        Some("elevator")
    );
    let body: serde_json::Value = serde_json::from_slice(&records[0].envelope.body).unwrap();
    assert!(
        body["vibration"].as_f64().unwrap() > 0.0,
        "it moves: {body}"
    );
    read_device_records(&mut tail, &chiller, 1).await;

    // A command it knows is completed and acted on; one it does not know is rejected.
    for (name, id) in [("StopElevator", "stop-1"), ("Levitate", "levitate-1")] {
        let mut message = C2dMessage::new(format!(r#"{{"name":"{name}","payload":{{}}}}"#));
        message.ack = Some("full".into());
        message.message_id = Some(id.into());
        service.send_c2d(&elevator, &message).await.unwrap();
    }
    let feedback = read_feedback(&elevator, 2).await;
    let mut outcomes: Vec<(String, Outcome)> = feedback
        .iter()
        .map(|f| (f.original_message_id.clone(), f.status_code))
        .collect();
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        outcomes,
        [
            ("levitate-1".to_owned(), Outcome::Rejected),
            ("stop-1".to_owned(), Outcome::Success)
        ]
    );
    wait_until("a still elevator", Duration::from_secs(30), || {
        let service = Arc::clone(&service);
        let elevator = elevator.clone();
        async move {
            service
                .device_state(&elevator)
                .await
                .is_ok_and(|s| s["lastValues"]["vibration"]["value"] == 0.0)
        }
    })
    .await;

    // A desired telemetry interval is applied and reported back.
    service
        .patch_twin(
            &chiller,
            &serde_json::json!({"properties": {"desired": {"telemetryInterval": 3}}}),
            None,
        )
        .await
        .unwrap();
    wait_until(
        "the applied interval reported",
        Duration::from_secs(30),
        || {
            let service = Arc::clone(&service);
            let chiller = chiller.clone();
            async move {
                service
                    .twin(&chiller)
                    .await
                    .is_ok_and(|t| t["properties"]["reported"]["telemetryInterval"] == 3)
            }
        },
    )
    .await;
    let _ = stop.send(true);
    task.await.unwrap();
    let stats = stats.snapshot(std::time::Instant::now());
    assert_eq!(stats.registered, 2);
    assert!(
        stats.messages_sent >= 3 && stats.send_failures == 0,
        "{stats:?}"
    );
    assert_eq!((stats.commands_completed, stats.commands_rejected), (1, 1));
}

/// A chiller whose fault comes quickly (the test cannot wait minutes), and a learned rule that
/// warms up on ten readings.
const FAST_FAULT: &str = r#"
name = "chiller"
type = "Chiller"
firmware = "1.0.0"
interval_seconds = 1
[signals.pressure]
unit = "psig"
behavior = { walk = { mean = 150.0, step = 1.0, min = 140.0, max = 160.0 } }
[commands.EmergencyValveRelease]
restore = { signal = "pressure", over_seconds = 2 }
[faulty]
drift = [{ signal = "pressure", per_minute = 180.0, after_seconds = 15 }]
"#;

#[tokio::test]
async fn the_learned_loop_closes_arrow_by_arrow() {
    let service = service().await;
    let prefix = unique("loop");
    let device = format!("{prefix}-chiller-faulty-1");
    let rule_id = unique("loop-rule");
    let rule = serde_json::json!({
        "devices": {"ids": [device]},
        "condition": {"field": "pressure", "learned": {"sensitivity": 5, "warmup": 10, "alpha": 0.05}},
        "cooldownSeconds": 10,
        "actions": {
            "alert": {"severity": "critical"},
            "command": {"body": "{\"name\":\"EmergencyValveRelease\",\"payload\":{}}"},
        },
    });
    service.put_rule(&rule_id, &rule).await.unwrap();
    let models = std::collections::BTreeMap::from([(
        "chiller".to_owned(),
        Model::parse(FAST_FAULT, "fast-fault.toml").unwrap(),
    )]);
    let options = FleetOptions {
        prefix: prefix.clone(),
        c2d_poll: Duration::from_millis(500),
        twin_poll: Duration::from_secs(60),
        tags: false,
        ..Default::default()
    };
    let (stop, stats, task) = start(Arc::clone(&service), models, "chiller-faulty=1", options);
    let pressure = || {
        let service = Arc::clone(&service);
        let device = device.clone();
        async move {
            service
                .device_state(&device)
                .await
                .ok()
                .and_then(|s| s["lastValues"]["pressure"]["value"].as_f64())
        }
    };
    let my_alert = |active_only: bool| {
        let service = Arc::clone(&service);
        let (device, rule_id) = (device.clone(), rule_id.clone());
        async move {
            let alerts = service.alerts(active_only).await.ok()?;
            alerts["alerts"]
                .as_array()
                .or_else(|| alerts.as_array())?
                .iter()
                .find(|a| a["deviceId"] == device.as_str() && a["ruleId"] == rule_id.as_str())
                .cloned()
        }
    };

    // 1. The faulty chiller's pressure climbs (its walk stays within 150 ± 10; the rule may
    // act before the range's top is reached, so the climb is watched from 156).
    wait_until("pressure climbing", Duration::from_secs(90), || async {
        pressure().await.is_some_and(|p| p > 156.0)
    })
    .await;
    // 2. The learned rule raises an alert, and says why.
    wait_until("the alert", Duration::from_secs(60), || async {
        my_alert(true).await.is_some()
    })
    .await;
    let alert = my_alert(true).await.unwrap();
    assert_eq!(alert["severity"], "critical");
    let (value, high) = (
        alert["lastValue"].as_f64().unwrap(),
        alert["expectedHigh"].as_f64().unwrap(),
    );
    assert!(
        value > high && high < 165.0,
        "observed {value} above the band's top {high}: {alert}"
    );
    assert!(alert["score"].as_f64().unwrap() > 5.0, "{alert}");
    // 3. and sends EmergencyValveRelease, 4. which the simulated chiller obeys,
    wait_until(
        "the command completed by the device",
        Duration::from_secs(60),
        || async {
            stats
                .commands_completed
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 1
        },
    )
    .await;
    // 5. so the pressure returns to normal,
    wait_until(
        "pressure back to normal",
        Duration::from_secs(60),
        || async { pressure().await.is_some_and(|p| p < 161.0) },
    )
    .await;
    // 6. and the alert clears.
    wait_until("the alert cleared", Duration::from_secs(60), || async {
        my_alert(true).await.is_none()
    })
    .await;
    let cleared = my_alert(false).await.expect("the alert, cleared");
    assert_eq!(cleared["active"], false);
    assert!(cleared["clearedAt"].is_string());
    let _ = stop.send(true);
    task.await.unwrap();
    service.delete_rule(&rule_id).await.unwrap();
}
