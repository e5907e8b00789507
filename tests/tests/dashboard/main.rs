//! The web dashboard in a real headless Chromium against the local hub with a simulated fleet:
//! sign-in (and a wrong connection string), the overview's counts against the registry, a
//! device's live chart, a command and a desired property from the device page reaching the
//! simulated device, and a read-only policy offered nothing destructive. Each test leaves a
//! screenshot in target/dashboard-screenshots/ and prints the render times it measured.

mod browser;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use browser::Browser;
use hub_service_sdk::ServiceClient;
use hub_simulator::fleet::{self, FleetOptions, FleetSpec, Stats};
use hub_simulator::model::Model;
use hub_tests::{gateway, unique};

/// One small simulated fleet for the whole binary, on a runtime of its own (each test has its
/// own runtime, and the fleet outlives every one of them).
struct Fleet {
    chiller: String,
    elevator: String,
    stats: Arc<Stats>,
}

fn fleet() -> &'static Fleet {
    static FLEET: OnceLock<Fleet> = OnceLock::new();
    FLEET.get_or_init(|| {
        let prefix = unique("ui");
        let stats = Arc::new(Stats::default());
        let running = Arc::clone(&stats);
        let options = FleetOptions {
            prefix: prefix.clone(),
            interval: Some(Duration::from_secs(1)),
            c2d_poll: Duration::from_millis(500),
            twin_poll: Duration::from_secs(1),
            ..Default::default()
        };
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("fleet runtime: {e}"));
            runtime.block_on(async move {
                let service = Arc::new(service().await);
                let models =
                    Model::load_dir(&hub_tests::repo_root().join("simulator/models")).unwrap();
                let spec = FleetSpec::parse("chiller=1,elevator=1", &models).unwrap();
                let (_keep, shutdown) = tokio::sync::watch::channel(false);
                fleet::run(service, &models, &spec, &options, running, shutdown)
                    .await
                    .unwrap_or_else(|e| panic!("fleet: {e}"));
            });
        });
        Fleet {
            chiller: format!("{prefix}-chiller-1"),
            elevator: format!("{prefix}-elevator-1"),
            stats,
        }
    })
}

async fn service() -> ServiceClient {
    let gateway = gateway();
    ServiceClient::builder(&gateway.owner_connection_string().await)
        .unwrap()
        .base_url(&gateway.http_url)
        .build()
        .unwrap()
}

/// Waits until the fleet's devices have reported what they are.
async fn fleet_reporting() -> &'static Fleet {
    let fleet = fleet();
    let service = service().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for device in [&fleet.chiller, &fleet.elevator] {
        while !service
            .twin(device)
            .await
            .is_ok_and(|t| t["properties"]["reported"]["supportedCommands"].is_array())
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{device} did not report within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    fleet
}

fn ui() -> String {
    format!("{}/ui", gateway().http_url)
}

/// Signs in with `connection_string` and waits for the overview.
async fn sign_in(browser: &Browser, connection_string: &str) {
    browser.goto(&ui()).await;
    browser
        .type_into("[data-test=connection-string]", connection_string)
        .await;
    browser.click("[data-test=sign-in]").await;
    browser.find("[data-test=policy]").await;
}

async fn open_device(browser: &Browser, device: &str) {
    browser.goto(&format!("{}#/devices/{device}", ui())).await;
    browser.find("[data-test=device-status]").await;
}

const A_WHILE: Duration = Duration::from_secs(45);

#[tokio::test]
async fn signing_in_shows_the_fleet_as_the_registry_counts_it() {
    fleet_reporting().await;
    let browser = Browser::open("overview").await;
    sign_in(&browser, &gateway().owner_connection_string().await).await;
    assert_eq!(browser.text("[data-test=policy]").await, "iothubowner");
    let statistics: serde_json::Value = gateway()
        .http()
        .get_json("/statistics/devices", &gateway().owner_token().await)
        .await;
    let total = statistics["totalDeviceCount"].as_u64().unwrap().to_string();
    let enabled = statistics["enabledDeviceCount"]
        .as_u64()
        .unwrap()
        .to_string();
    // The page refreshes every 5 s; other tests of this binary register no devices.
    browser
        .wait_for_text("[data-test=total]", "the registry's total", A_WHILE, |t| {
            t == total
        })
        .await;
    assert_eq!(browser.text("[data-test=enabled]").await, enabled);
    browser.find("[data-test=open-alerts]").await;
    // Time to first render of a signed-in tab (its session kept): reload, and read the mark.
    browser.client.refresh().await.unwrap();
    browser.find("[data-test=total]").await;
    if let Some(ms) = browser
        .number("return performance.getEntriesByName('overview-rendered')[0]?.startTime")
        .await
    {
        println!("overview: first render {ms:.0} ms after navigation (signed-in tab reloaded)");
    }
    browser.close().await;
}

#[tokio::test]
async fn a_wrong_connection_string_gets_a_clear_message() {
    let browser = Browser::open("wrong-connection-string").await;
    browser.goto(&ui()).await;
    browser
        .type_into("[data-test=connection-string]", "HostName=nowhere")
        .await;
    browser.click("[data-test=sign-in]").await;
    let malformed = browser
        .wait_for_text("[data-test=sign-in-error]", "a message", A_WHILE, |t| {
            !t.is_empty()
        })
        .await;
    assert!(malformed.contains("SharedAccessKeyName"), "{malformed}");

    // Well formed, but not this hub's key.
    let owner = gateway().owner_connection_string().await;
    let forged = format!(
        "{}SharedAccessKey=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        &owner[..owner.find("SharedAccessKey=").unwrap()]
    );
    browser
        .type_into("[data-test=connection-string]", &forged)
        .await;
    browser.click("[data-test=sign-in]").await;
    browser
        .wait_for_text(
            "[data-test=sign-in-error]",
            "the hub's refusal",
            A_WHILE,
            |t| t.contains("refused"),
        )
        .await;
    assert!(!browser.exists("[data-test=policy]").await);
    browser.close().await;
}

#[tokio::test]
async fn a_simulated_devices_chart_has_points_and_follows_new_data() {
    let fleet = fleet_reporting().await;
    let browser = Browser::open("device-chart").await;
    sign_in(&browser, &gateway().owner_connection_string().await).await;
    open_device(&browser, &fleet.chiller).await;
    let deadline = tokio::time::Instant::now() + A_WHILE;
    let first = loop {
        let seen = chart_readings(&browser).await;
        if seen > 0 {
            break seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the chart stayed empty"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let points = browser.attribute("[data-test=chart]", "data-points").await;
    assert!(points.is_some_and(|p| p.parse::<u64>().unwrap_or(0) >= 1));
    // The latest stretch is raw readings (the local hub keeps 20 a device).
    browser
        .wait_for_attribute(
            "[data-test=chart]",
            "data-raw",
            "raw recent readings",
            |n| n >= 2,
        )
        .await;
    // Live: without a reload, the chart takes in the readings that arrive (one a second).
    let deadline = tokio::time::Instant::now() + A_WHILE;
    while chart_readings(&browser).await <= first {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the chart did not follow new data (its latest reading stayed at {first})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Its recent messages grow as the device sends (one a second), with the fields they carried.
    let deadline = tokio::time::Instant::now() + A_WHILE;
    while browser
        .number("return document.querySelectorAll('[data-test=recent-messages] tr[data-message]').length")
        .await
        .unwrap_or(0.0)
        < 2.0
    {
        if tokio::time::Instant::now() > deadline {
            browser
                .fail("the recent messages did not follow the device".into())
                .await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let messages = browser.text("[data-test=recent-messages] table").await;
    assert!(messages.contains("temperature"), "{messages}");

    // A week-long range: hourly windows, drawn as fast.
    let started = Instant::now();
    browser.choose("[data-test=range]", "604800").await;
    browser
        .wait_for_text("[data-test=chart] + p", "the week's chart", A_WHILE, |t| {
            t.contains("1h windows")
        })
        .await;
    println!(
        "7-day chart: drawn {} ms after the range changed (WebDriver round trips included)",
        started.elapsed().as_millis()
    );
    browser.close().await;
}

/// When the latest reading the device's chart draws was taken (ms; 0 before any).
async fn chart_readings(browser: &Browser) -> u64 {
    browser
        .attribute("[data-test=chart]", "data-latest")
        .await
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_command_from_the_device_page_reaches_the_device_and_is_completed() {
    let fleet = fleet_reporting().await;
    let browser = Browser::open("device-command").await;
    sign_in(&browser, &gateway().owner_connection_string().await).await;
    open_device(&browser, &fleet.chiller).await;
    let completed = fleet
        .stats
        .commands_completed
        .load(std::sync::atomic::Ordering::SeqCst);
    // The actions come after the chart: wait for them before choosing.
    browser
        .find("[data-test=command] option[value=FirmwareUpdate]")
        .await;
    browser
        .client
        .execute(
            "document.querySelector('[data-test=command]').value = 'FirmwareUpdate';",
            vec![],
        )
        .await
        .unwrap();
    browser
        .type_into("[data-test=command-payload]", r#"{"version": "9.9.9"}"#)
        .await;
    browser.click("[data-test=send-command]").await;
    browser
        .wait_for_text("[data-test=status]", "the hub's acceptance", A_WHILE, |t| {
            t.contains("Command sent: done")
        })
        .await;
    // The device completes it, walks its firmware through the stages, and reports the version.
    browser
        .wait_for_text(
            "[data-test=firmware]",
            "the new firmware",
            Duration::from_secs(60),
            |t| t == "9.9.9",
        )
        .await;
    assert!(
        fleet
            .stats
            .commands_completed
            .load(std::sync::atomic::Ordering::SeqCst)
            > completed,
        "the simulated device completed the command"
    );
    browser.close().await;
}

#[tokio::test]
async fn a_desired_property_set_in_the_page_is_reported_back() {
    let fleet = fleet_reporting().await;
    let browser = Browser::open("device-desired").await;
    sign_in(&browser, &gateway().owner_connection_string().await).await;
    open_device(&browser, &fleet.elevator).await;
    browser
        .type_into("[data-test=desired-name]", "telemetryInterval")
        .await;
    browser.type_into("[data-test=desired-value]", "4").await;
    browser.click("[data-test=set-desired]").await;
    browser
        .wait_for_text("[data-test=desired]", "the desired value", A_WHILE, |t| {
            t.contains("\"telemetryInterval\": 4")
        })
        .await;
    browser
        .wait_for_text(
            "[data-test=reported]",
            "the device's report",
            A_WHILE,
            |t| t.contains("\"telemetryInterval\": 4"),
        )
        .await;
    browser
        .wait_for_text("[data-test=pending]", "nothing pending", A_WHILE, |t| {
            t.contains("reports every desired property")
        })
        .await;
    browser.close().await;
}

#[tokio::test]
async fn a_read_only_policy_is_offered_nothing_destructive() {
    let fleet = fleet_reporting().await;
    let browser = Browser::open("read-only").await;
    sign_in(
        &browser,
        &gateway().policy_connection_string("registryRead").await,
    )
    .await;
    assert_eq!(browser.text("[data-test=policy]").await, "registryRead");
    browser.find("[data-test=total]").await;
    open_device(&browser, &fleet.chiller).await;
    browser.find("[data-test=actions]").await;
    for action in [
        "delete-device",
        "toggle-status",
        "regenerate-key",
        "set-desired",
        "send-command",
    ] {
        assert!(
            !browser.exists(&format!("[data-test={action}]")).await,
            "{action} offered to registryRead"
        );
    }
    browser.goto(&format!("{}#/devices", ui())).await;
    // Some page of the fleet (the registry may hold more than a page of devices).
    browser.find("[data-device]").await;
    assert!(!browser.exists("[data-test=new-device-id]").await);
    browser.close().await;
}

#[tokio::test]
async fn a_devices_alert_appears_and_is_acknowledged_then_closed() {
    let fleet = fleet_reporting().await;
    let service = service().await;
    // A rule only this test's chiller breaks, at once: its temperature is always above zero.
    let rule_id = unique("ui-hot");
    service
        .put_rule(
            &rule_id,
            &serde_json::json!({
                "description": "dashboard test: any temperature",
                "devices": { "ids": [fleet.chiller] },
                "condition": { "field": "temperature", "operator": ">", "threshold": 0 },
                "actions": { "alert": { "severity": "critical" } }
            }),
        )
        .await
        .unwrap();
    let browser = Browser::open("alerts").await;
    sign_in(&browser, &gateway().owner_connection_string().await).await;
    browser
        .goto(&format!("{}#/alerts?ruleId={rule_id}", ui()))
        .await;
    let row = format!("[data-alert='{rule_id}/{}']", fleet.chiller);
    // The alert list refreshes every 5 s; the rule is read within its cache time.
    browser
        .wait_for_text(
            &format!("{row} [data-test=review-state]"),
            "the alert",
            Duration::from_secs(90),
            |t| t == "open",
        )
        .await;
    browser
        .click(&format!("{row} [data-test=acknowledge]"))
        .await;
    browser
        .wait_for_text(
            &format!("{row} [data-test=review-state]"),
            "the acknowledgement",
            A_WHILE,
            |t| t == "acknowledged",
        )
        .await;
    browser.click(&format!("{row} [data-test=close]")).await;
    browser
        .wait_for_text(
            &format!("{row} [data-test=review-state]"),
            "the closing",
            A_WHILE,
            |t| t == "closed",
        )
        .await;
    let listed: serde_json::Value = gateway()
        .http()
        .get_json(
            &format!("/alerts?ruleId={rule_id}&state=closed"),
            &gateway().owner_token().await,
        )
        .await;
    assert_eq!(listed["alerts"][0]["review"]["by"], "iothubowner");
    service.delete_rule(&rule_id).await.ok();
    browser.close().await;
}

#[tokio::test]
async fn a_rule_made_in_the_page_alerts_and_is_edited_disabled_and_deleted() {
    let fleet = fleet_reporting().await;
    let service = service().await;
    let rule_id = unique("ui-rule");
    let browser = Browser::open("rules").await;
    sign_in(&browser, &gateway().owner_connection_string().await).await;
    browser.goto(&format!("{}#/rules/new", ui())).await;
    browser.type_into("[data-test=rule-id]", &rule_id).await;
    browser
        .type_into(
            "[data-test=rule-description]",
            "dashboard test: warm chiller",
        )
        .await;
    browser.choose("[data-test=rule-devices]", "ids").await;
    browser
        .type_into("[data-test=rule-selection]", &fleet.chiller)
        .await;
    browser
        .type_into("[data-test=rule-field]", "temperature")
        .await;
    // The simulated chiller is always above zero: the rule fires at its next reading.
    browser.type_into("[data-test=rule-threshold]", "0").await;
    browser
        .choose("[data-test=rule-severity]", "critical")
        .await;
    browser.click("[data-test=save-rule]").await;
    browser
        .wait_for_text("[data-test=status]", "the rule's creation", A_WHILE, |t| {
            t == format!("Saved {rule_id}")
        })
        .await;
    let stored = service.rule(&rule_id).await.unwrap();
    assert_eq!(stored["devices"]["ids"][0], fleet.chiller.as_str());
    assert_eq!(stored["condition"]["threshold"], 0.0);
    assert_eq!(stored["actions"]["alert"]["severity"], "critical");

    // Its page lists the alert it raises and charts the telemetry around it.
    let row = format!("[data-alert='{rule_id}/{}']", fleet.chiller);
    browser
        .wait_for_text(&row, "the rule's alert", Duration::from_secs(90), |t| {
            t.contains("active")
        })
        .await;
    browser
        .wait_for_attribute(
            "[data-test=around-chart]",
            "data-points",
            "the chart around the alert",
            |n| n > 0,
        )
        .await;
    browser.screenshot().await;

    // The overview counts the raise among the alerts raised over time.
    browser.goto(&format!("{}#/overview", ui())).await;
    browser
        .wait_for_text(
            "[data-test=alert-history] p",
            "the raise in the overview's history",
            A_WHILE,
            |t| {
                t.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n >= 1)
            },
        )
        .await;

    // Edited: a threshold the chiller never reaches.
    browser.goto(&format!("{}#/rules/{rule_id}", ui())).await;
    browser
        .type_into("[data-test=rule-threshold]", "1000")
        .await;
    browser.click("[data-test=save-rule]").await;
    browser
        .wait_for_text("[data-test=status]", "the edit", A_WHILE, |t| {
            t == format!("Saved {rule_id}")
        })
        .await;
    assert_eq!(
        service.rule(&rule_id).await.unwrap()["condition"]["threshold"],
        1000.0
    );

    // Disabled from the list, then deleted from its page.
    browser.goto(&format!("{}#/rules", ui())).await;
    browser
        .click(&format!("[data-rule='{rule_id}'] [data-test=rule-enabled]"))
        .await;
    browser
        .wait_for_text("[data-test=status]", "the disabling", A_WHILE, |t| {
            t.contains("disabled")
        })
        .await;
    assert_eq!(service.rule(&rule_id).await.unwrap()["enabled"], false);
    browser.goto(&format!("{}#/rules/{rule_id}", ui())).await;
    browser.find("[data-test=delete-rule]").await;
    browser.run("window.confirm = () => true;").await;
    browser.click("[data-test=delete-rule]").await;
    browser.find("[data-test=rule-list]").await;
    let deadline = tokio::time::Instant::now() + A_WHILE;
    while service.rule(&rule_id).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rule was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    browser.close().await;
}

#[tokio::test]
async fn a_groups_chart_merges_its_devices_telemetry() {
    let fleet = fleet_reporting().await;
    let service = service().await;
    let group = unique("uifleet").replace('-', "");
    for device in [&fleet.chiller, &fleet.elevator] {
        service
            .patch_twin(
                device,
                &serde_json::json!({ "tags": { "uiFleet": group } }),
                None,
            )
            .await
            .unwrap();
    }
    let browser = Browser::open("group-chart").await;
    sign_in(&browser, &gateway().owner_connection_string().await).await;
    browser
        .submit_into("[data-test=group]", &format!("uiFleet={group}"))
        .await;
    browser
        .goto(&format!("{}#/telemetry?field=temperature", ui()))
        .await;
    browser
        .wait_for_text(
            "[data-test=group-note]",
            "the group's chart",
            A_WHILE,
            |t| t.starts_with("2 devices") && !t.contains("; 0 points"),
        )
        .await;
    let points = browser
        .attribute("[data-test=group-chart]", "data-points")
        .await
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(points > 0, "the group chart has points");
    browser.close().await;
}

#[tokio::test]
async fn a_device_group_narrows_every_panel_and_search_spans_the_fleet() {
    let service = service().await;
    let run = unique("ui-group").replace('-', "");
    let mut members = Vec::new();
    for i in 0..3 {
        let id = format!("{run}-{i}");
        service.create_device(&id).await.unwrap();
        if i < 2 {
            service
                .patch_twin(
                    &id,
                    &serde_json::json!({ "tags": { "uiGroup": run } }),
                    None,
                )
                .await
                .unwrap();
            members.push(id);
        }
    }
    let browser = Browser::open("group").await;
    sign_in(&browser, &gateway().owner_connection_string().await).await;
    browser
        .submit_into("[data-test=group]", &format!("uiGroup={run}"))
        .await;
    // The overview counts the group's devices only (one GROUP BY query).
    browser
        .wait_for_text("[data-test=total]", "the group's total", A_WHILE, |t| {
            t == "2"
        })
        .await;
    assert_eq!(browser.text("[data-test=enabled]").await, "2");
    browser.find("[data-test=connected]").await;
    // The device list shows the group (the tag index), and a search spans the whole fleet.
    browser.goto(&format!("{}#/devices", ui())).await;
    let listed = browser
        .wait_for_text(
            "[data-test=device-table]",
            "the group's devices",
            A_WHILE,
            |t| members.iter().all(|m| t.contains(m.as_str())),
        )
        .await;
    assert!(!listed.contains(&format!("{run}-2")), "{listed}");
    browser.submit_into("[data-test=group]", "").await;
    browser
        .submit_into("[data-test=device-search]", &format!("{run}-2"))
        .await;
    browser
        .wait_for_text(
            "[data-test=device-table]",
            "the searched device",
            A_WHILE,
            |t| t.contains(&format!("{run}-2")) && !t.contains(&format!("{run}-0")),
        )
        .await;
    // A group that is not tag=value is refused in place.
    browser.submit_into("[data-test=group]", "nonsense").await;
    browser
        .wait_for_text(
            "[data-test=group-error]",
            "the group's error",
            A_WHILE,
            |t| t.contains("tag=value"),
        )
        .await;
    browser.screenshot().await;
    browser.close().await;
}

/// Devices the large-fleet measurement registers (once: they stay for later runs).
const LARGE_FLEET: usize = 10_000;

/// Makes `big-00000`… up to `LARGE_FLEET` devices, 100 per bulk request, 4 requests at a time.
async fn large_fleet(service: &ServiceClient) {
    use hub_shared::domain::registry::{ExportImportDevice, ImportMode};
    // Made in id order: the last one exists only once they all do.
    if service
        .get_device(&format!("big-{:05}", LARGE_FLEET - 1))
        .await
        .is_ok()
    {
        return;
    }
    let started = Instant::now();
    let batches: Vec<Vec<ExportImportDevice>> = (0..LARGE_FLEET)
        .collect::<Vec<_>>()
        .chunks(100)
        .map(|chunk| {
            chunk
                .iter()
                .map(|i| ExportImportDevice {
                    id: hub_shared::DeviceId::parse(&format!("big-{i:05}")).unwrap(),
                    import_mode: ImportMode::Create,
                    etag: None,
                    status: None,
                    status_reason: None,
                    authentication: None,
                    capabilities: None,
                })
                .collect()
        })
        .collect();
    for group in batches.chunks(4) {
        let answers =
            futures::future::join_all(group.iter().map(|batch| service.bulk(batch))).await;
        for answer in answers {
            let answer = answer.unwrap_or_else(|e| panic!("bulk import: {e}"));
            // An earlier, interrupted run left some.
            assert!(
                answer
                    .errors
                    .iter()
                    .all(|e| e.error_code == "DeviceAlreadyExists"),
                "{:?}",
                answer.errors
            );
        }
    }
    println!(
        "large fleet: {LARGE_FLEET} devices registered in {} s",
        started.elapsed().as_secs()
    );
}

/// Milliseconds from `action` (a script) to the device list's next drawing, in the page's clock.
async fn time_to_list(browser: &Browser, action: &str) -> f64 {
    browser
        .run(&format!(
            "performance.clearMarks('devices-drawn'); window.hubStarted = performance.now(); {action}"
        ))
        .await;
    let deadline = tokio::time::Instant::now() + A_WHILE;
    loop {
        if let Some(ms) = browser
            .number(
                "const m = performance.getEntriesByName('devices-drawn'); \
                 return m.length ? m[0].startTime - window.hubStarted : null;",
            )
            .await
        {
            return ms;
        }
        if tokio::time::Instant::now() > deadline {
            browser
                .fail(format!("the device list was not drawn after {action}"))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The device list with 10,000 registered devices, measured in the browser: first page, next
/// page, and a search by id prefix over the whole fleet (medians of 7). Run with
/// `cargo test -p hub-tests --test dashboard -- --ignored --nocapture ten_thousand`.
#[tokio::test]
#[ignore = "a measurement: registers 10,000 devices (kept for later runs)"]
async fn the_device_list_with_ten_thousand_devices() {
    let service = service().await;
    large_fleet(&service).await;
    let browser = Browser::open("large-fleet").await;
    sign_in(&browser, &gateway().owner_connection_string().await).await;
    let (mut first, mut next, mut search) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..7 {
        browser.goto(&format!("{}#/overview", ui())).await;
        browser.find("[data-test=total]").await;
        first.push(time_to_list(&browser, "location.hash = '#/devices';").await);
        browser.find("[data-test=next-page]").await;
        next.push(
            time_to_list(
                &browser,
                "document.querySelector('[data-test=next-page]').click();",
            )
            .await,
        );
        let prefix = format!("big-0{round}2");
        search.push(
            time_to_list(
                &browser,
                &format!(
                    "const s = document.querySelector('[data-test=device-search]'); \
                     s.value = '{prefix}'; s.form.requestSubmit();"
                ),
            )
            .await,
        );
        let shown = browser.text("[data-test=device-table]").await;
        assert!(
            shown.contains(&format!("{prefix}00")) && !shown.contains("big-00000 "),
            "the search shows its devices: {shown}"
        );
    }
    let total = service.statistics().await.unwrap().total_device_count;
    println!(
        "device list, {total} devices registered: first page {:.0} ms, next page {:.0} ms, \
         search by id prefix {:.0} ms (medians of 7, in the browser)",
        median(first),
        median(next),
        median(search)
    );
    browser.close().await;
}
