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
    // Live: without a reload, the chart takes in the readings that arrive (one a second).
    let deadline = tokio::time::Instant::now() + A_WHILE;
    while chart_readings(&browser).await <= first {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the chart did not follow new data ({first} readings)"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A week-long range: hourly windows, drawn as fast.
    let started = Instant::now();
    browser
        .client
        .execute(
            "const s = document.querySelector('[data-test=range]'); s.value = '604800'; s.dispatchEvent(new Event('change'));",
            vec![],
        )
        .await
        .unwrap();
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

/// How many readings the device's chart holds (its windows' counts).
async fn chart_readings(browser: &Browser) -> u64 {
    browser
        .attribute("[data-test=chart]", "data-messages")
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
