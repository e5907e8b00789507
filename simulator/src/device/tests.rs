use std::path::Path;

use super::*;

fn model(name: &str) -> Arc<Model> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(format!("{name}.toml"));
    Arc::new(Model::load(&path).unwrap())
}

fn device(name: &str, faulty: bool) -> SimulatedDevice {
    SimulatedDevice::new(model(name), faulty, 7, 1_700_000_000_000)
}

fn value(fields: &Map<String, Value>, name: &str) -> f64 {
    fields[name].as_f64().unwrap()
}

/// Reads every `step` ms from `from` to `to`, returning the readings taken.
fn readings(
    device: &mut SimulatedDevice,
    from: Millis,
    to: Millis,
    step: Millis,
) -> Vec<Map<String, Value>> {
    (from..to)
        .step_by(step as usize)
        .filter_map(|t| device.read(t))
        .collect()
}

/// How long after a reset the model's drift of `signal` starts again, in ms.
fn drift_delay(device: &SimulatedDevice, signal: &str) -> Millis {
    let faulty = device.model.faulty.as_ref().unwrap();
    let drift = faulty.drift.iter().find(|d| d.signal == signal).unwrap();
    (drift.after_seconds * 1000.0) as Millis
}

fn command(name: &str, payload: Value) -> Vec<u8> {
    json!({"name": name, "payload": payload})
        .to_string()
        .into_bytes()
}

#[test]
fn a_healthy_walk_stays_in_its_range_and_a_faulty_one_leaves_it() {
    let mut healthy = device("chiller", false);
    let (low, high) = healthy.normal_range("pressure").unwrap();
    assert!(
        low >= 125.0 && high <= 175.0 && high - low == 20.0,
        "{low}..{high}"
    );
    for reading in readings(&mut healthy, 0, 24 * 3_600_000, 10_000) {
        let pressure = value(&reading, "pressure");
        assert!((low..=high).contains(&pressure), "{pressure}");
    }
    let mut faulty = device("chiller", true);
    let (_, high) = faulty.normal_range("pressure").unwrap();
    let early = readings(&mut faulty, 0, 360_000, 10_000);
    assert!(
        early.iter().all(|r| value(r, "pressure") <= high),
        "no drift before after_seconds"
    );
    let later = readings(&mut faulty, 360_000, 840_000, 10_000);
    let last = value(later.last().unwrap(), "pressure");
    assert!(last > high + 60.0, "12 psig/min for 8 minutes: {last}");
}

#[test]
fn the_same_seed_gives_the_same_readings() {
    let mut a = device("truck", false);
    let mut b = device("truck", false);
    assert_eq!(
        readings(&mut a, 0, 100_000, 1_000),
        readings(&mut b, 0, 100_000, 1_000)
    );
}

#[test]
fn increase_pressure_ramps_up_and_the_valve_release_brings_it_back() {
    let mut chiller = device("chiller", false);
    let (low, high) = chiller.normal_range("pressure").unwrap();
    let before = value(&chiller.read(0).unwrap(), "pressure");
    let outcome = chiller.command(&command("IncreasePressure", Value::Null), 1_000);
    assert_eq!(outcome, CommandOutcome::complete());
    let halfway = value(&chiller.read(6_000).unwrap(), "pressure");
    let up = value(&chiller.read(12_000).unwrap(), "pressure");
    assert!(
        halfway > before + 10.0 && halfway < before + 35.0,
        "{before} -> {halfway}"
    );
    assert!(up > high + 15.0, "{up}");
    chiller.command(&command("EmergencyValveRelease", Value::Null), 13_000);
    let back = value(&chiller.read(19_000).unwrap(), "pressure");
    assert!((low..=high).contains(&back), "{back}");
}

#[test]
fn the_valve_release_undoes_a_drift_which_then_starts_over() {
    let mut chiller = device("chiller", true);
    let (low, high) = chiller.normal_range("pressure").unwrap();
    readings(&mut chiller, 0, 700_000, 10_000);
    assert!(value(&chiller.read(700_000).unwrap(), "pressure") > high + 10.0);
    chiller.command(&command("EmergencyValveRelease", Value::Null), 700_000);
    let back = value(&chiller.read(706_000).unwrap(), "pressure");
    assert!((low..=high).contains(&back), "{back}");
    let restart = 706_000 + drift_delay(&chiller, "pressure");
    let soon = readings(&mut chiller, 706_000, restart, 10_000);
    assert!(
        soon.iter().all(|r| value(r, "pressure") <= high),
        "the fault needs after_seconds to come back"
    );
    let again = readings(&mut chiller, restart, restart + 500_000, 10_000);
    assert!(
        value(again.last().unwrap(), "pressure") > high + 10.0,
        "and then it does"
    );
}

#[test]
fn an_elevator_vibrates_and_changes_floor_only_while_it_moves() {
    let mut elevator = device("elevator", false);
    let moving = readings(&mut elevator, 0, 100_000, 10_000);
    assert!(moving.iter().all(|r| value(r, "vibration") > 0.0));
    let floors: std::collections::BTreeSet<i64> =
        moving.iter().map(|r| value(r, "floor") as i64).collect();
    assert!(floors.len() > 3, "{floors:?}");
    elevator.command(&command("StopElevator", Value::Null), 100_000);
    let stopped = readings(&mut elevator, 100_000, 200_000, 10_000);
    assert!(stopped.iter().all(|r| value(r, "vibration") == 0.0));
    let floors: std::collections::BTreeSet<i64> =
        stopped.iter().map(|r| value(r, "floor") as i64).collect();
    assert_eq!(floors.len(), 1, "it stays where it stopped");
    assert!(!stopped[0].contains_key("moving"), "state is not telemetry");
    elevator.command(&command("StartElevator", Value::Null), 200_000);
    assert!(value(&elevator.read(210_000).unwrap(), "vibration") > 0.0);
}

#[test]
fn an_engine_without_fuel_does_not_vibrate() {
    let mut engine = device("engine", false);
    let first = engine.read(0).unwrap();
    assert!(value(&first, "vibration") > 0.0);
    let fuel = value(&engine.read(600_000).unwrap(), "fuel_level");
    assert!(
        (74.0..=76.0).contains(&fuel),
        "0.5 %/min for 10 minutes from 80: {fuel}"
    );
    engine.command(&command("EmptyTank", Value::Null), 600_000);
    let empty = engine.read(610_000).unwrap();
    assert_eq!(
        (value(&empty, "fuel_level"), value(&empty, "vibration")),
        (0.0, 0.0)
    );
    engine.command(&command("FillTank", Value::Null), 620_000);
    let full = engine.read(630_000).unwrap();
    assert!(value(&full, "fuel_level") > 99.0 && value(&full, "vibration") > 0.0);
}

#[test]
fn a_reboot_goes_silent_abandons_commands_meanwhile_and_reports_it() {
    let mut chiller = device("chiller", false);
    chiller.take_reported(0);
    assert_eq!(
        chiller.command(&command("Reboot", Value::Null), 10_000),
        CommandOutcome::complete()
    );
    assert_eq!(
        chiller.take_reported(10_000).unwrap()["reboot"]["status"],
        "rebooting"
    );
    assert!(chiller.read(15_000).is_none() && chiller.silent(29_000));
    let busy = chiller.command(&command("IncreasePressure", Value::Null), 20_000);
    assert_eq!(busy.disposition, Disposition::Abandon);
    assert!(chiller.read(31_000).is_some());
    let reported = chiller.take_reported(31_000).unwrap();
    assert_eq!(reported["reboot"]["status"], "completed");
    assert!(
        reported["reboot"]["lastRebootTime"]
            .as_str()
            .unwrap()
            .starts_with("2023-11-14T22:13:")
    );
}

#[test]
fn a_firmware_update_walks_its_stages_then_changes_the_version() {
    let mut chiller = device("chiller", false);
    let missing = chiller.command(&command("FirmwareUpdate", json!({})), 0);
    assert_eq!(missing.disposition, Disposition::Reject);
    chiller.command(&command("FirmwareUpdate", json!({"version": "2.0.0"})), 0);
    let mut statuses = Vec::new();
    for t in (0..=15_000).step_by(1_000) {
        if let Some(reported) = chiller.take_reported(t) {
            statuses.push(reported["firmware"]["status"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        statuses,
        [
            "downloading",
            "verifying",
            "applying",
            "rebooting",
            "current"
        ]
    );
    assert_eq!(chiller.firmware_version(), "2.0.0");
}

#[test]
fn unknown_and_malformed_commands_are_rejected() {
    let mut truck = device("truck", false);
    let unknown = truck.command(&command("Fly", Value::Null), 0);
    assert_eq!(unknown.disposition, Disposition::Reject);
    assert!(unknown.reason.unwrap().contains("Fly"));
    assert_eq!(
        truck.command(b"warm up please", 0).disposition,
        Disposition::Reject
    );
    assert_eq!(
        truck.command(br#"{"payload":{}}"#, 0).disposition,
        Disposition::Reject
    );
}

#[test]
fn desired_telemetry_interval_is_applied_and_reported() {
    let mut engine = device("engine", false);
    assert_eq!(engine.initial_reported()["telemetryInterval"], 10);
    engine.desired(&json!({"telemetryInterval": 2, "$version": 3}));
    assert_eq!(engine.interval_seconds(), 2);
    assert_eq!(engine.take_reported(0).unwrap()["telemetryInterval"], 2);
    engine.desired(&json!({"telemetryInterval": 99999}));
    assert_eq!(engine.interval_seconds(), 3600, "clamped");
    let initial = engine.initial_reported();
    assert_eq!(initial["type"], "Engine");
    assert_eq!(initial["firmware"]["version"], "4.0.2");
    assert!(
        initial["supportedCommands"]
            .as_array()
            .unwrap()
            .contains(&json!("FillTank"))
    );
    assert_eq!(initial["telemetry"]["coolant"]["unit"], "°C");
}
