//! Device models: data files (TOML, `simulator/models/`) that name a device type's signals
//! (telemetry fields and internal state), how each behaves, the properties it reports, the
//! commands it understands and what they do, and how its faulty variant goes wrong.
//!
//! A model file that does not parse, or names something that does not exist, is refused with a
//! message naming the field.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: {source}")]
    Parse {
        origin: String,
        source: Box<toml::de::Error>,
    },
    #[error("{origin}: {field}: {message}")]
    Invalid {
        origin: String,
        field: String,
        message: String,
    },
}

/// What a device does with a message it cannot act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    Complete,
    Reject,
    Abandon,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// The model's id (`chiller`); its faulty variant is `<name>-faulty`.
    pub name: String,
    /// The device type it reports (`Chiller`).
    #[serde(rename = "type")]
    pub kind: String,
    pub firmware: String,
    /// Seconds between readings until a desired `telemetryInterval` says otherwise.
    #[serde(default = "ten")]
    pub interval_seconds: u64,
    /// What happens to a command the model does not know.
    #[serde(default = "reject")]
    pub unknown_command: Disposition,
    /// What happens to a command that arrives while the device reboots or updates.
    #[serde(default = "abandon")]
    pub busy_command: Disposition,
    /// Static properties reported at start, besides type, model and firmware.
    #[serde(default)]
    pub properties: BTreeMap<String, toml::Value>,
    pub signals: BTreeMap<String, Signal>,
    #[serde(default)]
    pub commands: BTreeMap<String, Command>,
    /// How the faulty variant differs.
    #[serde(default)]
    pub faulty: Option<Faulty>,
}

fn ten() -> u64 {
    10
}

fn reject() -> Disposition {
    Disposition::Reject
}

fn abandon() -> Disposition {
    Disposition::Abandon
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    #[serde(default)]
    pub unit: Option<String>,
    /// Sent as a telemetry field (`false`: internal state, such as "moving").
    #[serde(default = "yes")]
    pub telemetry: bool,
    pub behavior: Behavior,
    /// Another signal that must be non-zero for this one to evolve; otherwise it reads
    /// `otherwise` (an elevator vibrates only while it moves).
    #[serde(default)]
    pub active_when: Option<String>,
    #[serde(default)]
    pub otherwise: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Behavior {
    /// A bounded random walk that reverts towards its mean.
    Walk(Walk),
    /// A sine cycle around a mean (a day: `period_seconds = 86400`), with some noise.
    Sine(Sine),
    /// A steady rise or fall, bounded.
    Ramp(Ramp),
    /// One step up or down per reading, bouncing between bounds (an elevator's floor).
    Steps(Steps),
    /// A value that only commands change.
    Constant(Constant),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Walk {
    pub mean: f64,
    pub step: f64,
    pub min: f64,
    pub max: f64,
    /// Each device's own operating point: mean, min and max moved by up to this much, at random
    /// (two chillers of one model run at different pressures).
    #[serde(default)]
    pub spread: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sine {
    pub mean: f64,
    pub amplitude: f64,
    pub period_seconds: f64,
    #[serde(default)]
    pub noise: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    pub start: f64,
    pub per_minute: f64,
    pub min: f64,
    pub max: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Steps {
    pub min: f64,
    pub max: f64,
    #[serde(default)]
    pub start: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constant {
    pub value: f64,
}

/// What a command does; exactly one effect. The payload's `version` names the firmware a
/// `firmware` command installs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Command {
    /// Sets a signal at once (StartElevator, FillTank).
    Set { signal: String, value: f64 },
    /// Moves a signal by `by` over `over_seconds`, and keeps it there (IncreasePressure).
    Shift {
        signal: String,
        by: f64,
        over_seconds: f64,
    },
    /// Brings a signal back to normal over `over_seconds`: undoes shifts and drift
    /// (EmergencyValveRelease).
    Restore { signal: String, over_seconds: f64 },
    /// Goes silent for `seconds`, then reports when it rebooted.
    Reboot { seconds: f64 },
    /// Walks `firmware.status` through the stages, then reports the new `firmware.version`.
    Firmware {
        stages: Vec<String>,
        stage_seconds: f64,
    },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faulty {
    #[serde(default)]
    pub drift: Vec<Drift>,
}

/// A signal leaving its normal range: `per_minute` added, every minute, from `after_seconds`
/// after the device starts (or after it was last restored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drift {
    pub signal: String,
    pub per_minute: f64,
    #[serde(default)]
    pub after_seconds: f64,
}

impl Model {
    /// Parses and checks a model; `origin` (a file name) prefixes every message.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ModelError> {
        let model: Model = toml::from_str(text).map_err(|source| ModelError::Parse {
            origin: origin.to_owned(),
            source: Box::new(source),
        })?;
        model.validate(origin)?;
        Ok(model)
    }

    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Every `*.toml` model in a folder, by name.
    pub fn load_dir(dir: &Path) -> Result<BTreeMap<String, Model>, ModelError> {
        let read = |source| ModelError::Read {
            path: dir.display().to_string(),
            source,
        };
        let mut models = BTreeMap::new();
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(read)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let model = Self::load(&path)?;
            models.insert(model.name.clone(), model);
        }
        Ok(models)
    }

    /// The names of the signals sent as telemetry.
    pub fn telemetry_fields(&self) -> impl Iterator<Item = &str> {
        self.signals
            .iter()
            .filter(|(_, s)| s.telemetry)
            .map(|(name, _)| name.as_str())
    }

    fn validate(&self, origin: &str) -> Result<(), ModelError> {
        let invalid = |field: String, message: &str| ModelError::Invalid {
            origin: origin.to_owned(),
            field,
            message: message.to_owned(),
        };
        let name_ok = |name: &str| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !name_ok(&self.name) {
            return Err(invalid(
                "name".into(),
                "must be letters, digits, '-' or '_'",
            ));
        }
        if !(1..=3600).contains(&self.interval_seconds) {
            return Err(invalid("interval_seconds".into(), "must be from 1 to 3600"));
        }
        if self.signals.is_empty() {
            return Err(invalid(
                "signals".into(),
                "a model needs at least one signal",
            ));
        }
        if !self.signals.values().any(|s| s.telemetry) {
            return Err(invalid(
                "signals".into(),
                "at least one signal must be telemetry",
            ));
        }
        let known = |signal: &str| self.signals.contains_key(signal);
        for (name, signal) in &self.signals {
            let at = |rest: &str| format!("signals.{name}.{rest}");
            if !name_ok(name) {
                return Err(invalid(
                    format!("signals.{name}"),
                    "signal names are letters, digits, '-' or '_'",
                ));
            }
            let finite = |value: f64, field: &str| {
                if value.is_finite() {
                    Ok(())
                } else {
                    Err(invalid(at(field), "must be a finite number"))
                }
            };
            match &signal.behavior {
                Behavior::Walk(walk) => {
                    for (value, field) in [
                        (walk.mean, "behavior.walk.mean"),
                        (walk.step, "behavior.walk.step"),
                        (walk.min, "behavior.walk.min"),
                        (walk.max, "behavior.walk.max"),
                    ] {
                        finite(value, field)?;
                    }
                    if walk.min > walk.max {
                        return Err(invalid(at("behavior.walk.min"), "must not exceed max"));
                    }
                    if walk.mean < walk.min || walk.mean > walk.max {
                        return Err(invalid(
                            at("behavior.walk.mean"),
                            "must lie within min..max",
                        ));
                    }
                    if walk.step < 0.0 {
                        return Err(invalid(at("behavior.walk.step"), "must not be negative"));
                    }
                    if !(walk.spread.is_finite() && walk.spread >= 0.0) {
                        return Err(invalid(at("behavior.walk.spread"), "must not be negative"));
                    }
                }
                Behavior::Sine(sine) => {
                    if !(sine.period_seconds.is_finite() && sine.period_seconds > 0.0) {
                        return Err(invalid(
                            at("behavior.sine.period_seconds"),
                            "must be positive",
                        ));
                    }
                    finite(sine.mean, "behavior.sine.mean")?;
                    finite(sine.amplitude, "behavior.sine.amplitude")?;
                    if !(sine.noise.is_finite() && sine.noise >= 0.0) {
                        return Err(invalid(at("behavior.sine.noise"), "must not be negative"));
                    }
                }
                Behavior::Ramp(ramp) => {
                    finite(ramp.per_minute, "behavior.ramp.per_minute")?;
                    if ramp.min > ramp.max {
                        return Err(invalid(at("behavior.ramp.min"), "must not exceed max"));
                    }
                    if ramp.start < ramp.min || ramp.start > ramp.max {
                        return Err(invalid(
                            at("behavior.ramp.start"),
                            "must lie within min..max",
                        ));
                    }
                }
                Behavior::Steps(steps) => {
                    if steps.min > steps.max {
                        return Err(invalid(at("behavior.steps.min"), "must not exceed max"));
                    }
                    if steps.start < steps.min || steps.start > steps.max {
                        return Err(invalid(
                            at("behavior.steps.start"),
                            "must lie within min..max",
                        ));
                    }
                }
                Behavior::Constant(constant) => finite(constant.value, "behavior.constant.value")?,
            }
            if let Some(gate) = &signal.active_when {
                if !known(gate) {
                    return Err(invalid(
                        at("active_when"),
                        &format!("names no signal ({gate})"),
                    ));
                }
                if gate == name {
                    return Err(invalid(at("active_when"), "a signal cannot gate itself"));
                }
            }
        }
        for (name, command) in &self.commands {
            let at = |rest: &str| format!("commands.{name}.{rest}");
            if !name_ok(name) {
                return Err(invalid(
                    format!("commands.{name}"),
                    "command names are letters, digits, '-' or '_'",
                ));
            }
            let signal = match command {
                Command::Set { signal, .. }
                | Command::Shift { signal, .. }
                | Command::Restore { signal, .. } => Some(signal),
                Command::Reboot { seconds } => {
                    if !(seconds.is_finite() && *seconds >= 0.0 && *seconds <= 3600.0) {
                        return Err(invalid(at("reboot.seconds"), "must be from 0 to 3600"));
                    }
                    None
                }
                Command::Firmware {
                    stages,
                    stage_seconds,
                } => {
                    if stages.is_empty() {
                        return Err(invalid(at("firmware.stages"), "needs at least one stage"));
                    }
                    if !(stage_seconds.is_finite() && *stage_seconds >= 0.0) {
                        return Err(invalid(
                            at("firmware.stage_seconds"),
                            "must not be negative",
                        ));
                    }
                    None
                }
            };
            if let Some(signal) = signal
                && !known(signal)
            {
                return Err(invalid(
                    at("signal"),
                    &format!("names no signal ({signal})"),
                ));
            }
        }
        if let Some(faulty) = &self.faulty {
            for (i, drift) in faulty.drift.iter().enumerate() {
                if !known(&drift.signal) {
                    return Err(invalid(
                        format!("faulty.drift[{i}].signal"),
                        &format!("names no signal ({})", drift.signal),
                    ));
                }
                if !drift.per_minute.is_finite() || !drift.after_seconds.is_finite() {
                    return Err(invalid(
                        format!("faulty.drift[{i}]"),
                        "per_minute and after_seconds must be finite numbers",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
    }

    #[test]
    fn the_shipped_models_load() {
        let models = Model::load_dir(&models_dir()).unwrap();
        let names: Vec<&str> = models.keys().map(String::as_str).collect();
        assert_eq!(names, ["chiller", "elevator", "engine", "truck"]);
        for model in models.values() {
            assert!(
                model.faulty.is_some(),
                "{} has a faulty variant",
                model.name
            );
        }
        let chiller = &models["chiller"];
        let fields: Vec<&str> = chiller.telemetry_fields().collect();
        assert_eq!(fields, ["humidity", "pressure", "temperature"]);
        for command in [
            "Reboot",
            "FirmwareUpdate",
            "EmergencyValveRelease",
            "IncreasePressure",
        ] {
            assert!(chiller.commands.contains_key(command), "{command}");
        }
    }

    fn error(text: &str) -> String {
        Model::parse(text, "test.toml").unwrap_err().to_string()
    }

    const MINIMAL: &str = r#"
name = "m"
type = "M"
firmware = "1"
[signals.t]
behavior = { walk = { mean = 1.0, step = 0.1, min = 0.0, max = 2.0 } }
"#;

    #[test]
    fn bad_models_are_refused_with_the_field_named() {
        assert!(Model::parse(MINIMAL, "m.toml").is_ok());
        let typo = MINIMAL.replace("mean = 1.0", "meen = 1.0");
        assert!(error(&typo).contains("meen"), "{}", error(&typo));
        let bounds = MINIMAL.replace("min = 0.0, max = 2.0", "min = 3.0, max = 2.0");
        assert_eq!(
            error(&bounds),
            "test.toml: signals.t.behavior.walk.min: must not exceed max"
        );
        let gate = format!("{MINIMAL}active_when = \"nothing\"\n");
        assert_eq!(
            error(&gate),
            "test.toml: signals.t.active_when: names no signal (nothing)"
        );
        let command = format!("{MINIMAL}[commands.Go]\nset = {{ signal = \"x\", value = 1.0 }}\n");
        assert_eq!(
            error(&command),
            "test.toml: commands.Go.signal: names no signal (x)"
        );
        let drift =
            format!("{MINIMAL}[faulty]\ndrift = [{{ signal = \"y\", per_minute = 1.0 }}]\n");
        assert_eq!(
            error(&drift),
            "test.toml: faulty.drift[0].signal: names no signal (y)"
        );
        let behavior = MINIMAL.replace("walk = {", "wobble = {");
        assert!(error(&behavior).contains("wobble"), "{}", error(&behavior));
        let interval =
            MINIMAL.replace("firmware = \"1\"", "firmware = \"1\"\ninterval_seconds = 0");
        assert_eq!(
            error(&interval),
            "test.toml: interval_seconds: must be from 1 to 3600"
        );
    }
}
