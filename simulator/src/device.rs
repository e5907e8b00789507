//! One simulated device, free of I/O and of the clock: it is given the time (milliseconds since
//! it started) and answers what it reads, what a command does to it, and what it reports. A seed
//! fixes its randomness, so a test can replay a device exactly.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Map, Value, json};

use crate::model::{Behavior, Command, Disposition, Model};

/// Milliseconds since the device started.
pub type Millis = u64;

/// What a device did with a cloud-to-device message.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutcome {
    pub disposition: Disposition,
    /// Why, when the device rejects or abandons it.
    pub reason: Option<String>,
}

impl CommandOutcome {
    fn complete() -> Self {
        Self {
            disposition: Disposition::Complete,
            reason: None,
        }
    }

    fn not_done(disposition: Disposition, reason: impl Into<String>) -> Self {
        Self {
            disposition,
            reason: Some(reason.into()),
        }
    }
}

/// A shift of a signal in progress or done: `by`, reached linearly over `over` ms from `start`.
#[derive(Debug, Clone, Copy)]
struct Offset {
    by: f64,
    start: f64,
    over: f64,
}

impl Offset {
    fn at(&self, now: f64) -> f64 {
        if self.over <= 0.0 || now >= self.start + self.over {
            self.by
        } else if now <= self.start {
            0.0
        } else {
            self.by * (now - self.start) / self.over
        }
    }
}

#[derive(Debug, Clone)]
struct SignalState {
    /// The behavior's own value (the walk's position, the ramp's level, the floor).
    base: f64,
    offsets: Vec<Offset>,
    /// When the faulty variant's drift (re)starts counting.
    drift_from: f64,
    /// The sine's phase, so devices of one model do not move in lockstep.
    phase: f64,
    /// The steps behavior's direction.
    direction: f64,
    /// This device's operating point relative to the model's (walks with a spread).
    shift: f64,
    /// The last value read, for signals that gate others.
    output: f64,
}

#[derive(Debug, Clone)]
struct FirmwareJob {
    version: String,
    stages: Vec<String>,
    stage_ms: f64,
    started: f64,
    /// Index of the stage last reported.
    reported: Option<usize>,
}

pub struct SimulatedDevice {
    pub model: Arc<Model>,
    pub faulty: bool,
    /// Unix milliseconds of the device's start, for the times it reports.
    pub started_unix_ms: i64,
    rng: SmallRng,
    signals: BTreeMap<String, SignalState>,
    /// Signals in an order where every gate comes before what it gates.
    order: Vec<String>,
    interval_seconds: u64,
    silent_until: f64,
    reboot_ends: Option<f64>,
    firmware_version: String,
    firmware_job: Option<FirmwareJob>,
    pending: Map<String, Value>,
    last_tick: Option<f64>,
}

impl SimulatedDevice {
    pub fn new(model: Arc<Model>, faulty: bool, seed: u64, started_unix_ms: i64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let signals = model
            .signals
            .iter()
            .map(|(name, signal)| {
                let shift = match &signal.behavior {
                    Behavior::Walk(walk) if walk.spread > 0.0 => {
                        rng.random_range(-walk.spread..=walk.spread)
                    }
                    _ => 0.0,
                };
                let base = match &signal.behavior {
                    Behavior::Walk(walk) => walk.mean + shift,
                    Behavior::Sine(sine) => sine.mean,
                    Behavior::Ramp(ramp) => ramp.start,
                    Behavior::Steps(steps) => steps.start,
                    Behavior::Constant(constant) => constant.value,
                };
                let state = SignalState {
                    base,
                    offsets: Vec::new(),
                    drift_from: 0.0,
                    phase: rng.random_range(0.0..std::f64::consts::TAU),
                    direction: 1.0,
                    shift,
                    output: base,
                };
                (name.clone(), state)
            })
            .collect();
        let order = gate_order(&model);
        Self {
            faulty,
            started_unix_ms,
            rng,
            signals,
            order,
            interval_seconds: model.interval_seconds,
            silent_until: 0.0,
            reboot_ends: None,
            firmware_version: model.firmware.clone(),
            firmware_job: None,
            pending: Map::new(),
            last_tick: None,
            model,
        }
    }

    /// `<model>` or `<model>-faulty`.
    pub fn model_name(&self) -> String {
        if self.faulty {
            format!("{}-faulty", self.model.name)
        } else {
            self.model.name.clone()
        }
    }

    pub fn interval_seconds(&self) -> u64 {
        self.interval_seconds
    }

    pub fn firmware_version(&self) -> &str {
        &self.firmware_version
    }

    /// The normal range of a signal for this device (walks: the model's range moved to this
    /// device's operating point).
    pub fn normal_range(&self, signal: &str) -> Option<(f64, f64)> {
        let shift = self.signals.get(signal)?.shift;
        match &self.model.signals.get(signal)?.behavior {
            Behavior::Walk(walk) => Some((walk.min + shift, walk.max + shift)),
            Behavior::Ramp(ramp) => Some((ramp.min, ramp.max)),
            Behavior::Steps(steps) => Some((steps.min, steps.max)),
            Behavior::Sine(sine) => Some((sine.mean - sine.amplitude, sine.mean + sine.amplitude)),
            Behavior::Constant(c) => Some((c.value, c.value)),
        }
    }

    /// Whether the device is silent now (rebooting).
    pub fn silent(&self, now: Millis) -> bool {
        (now as f64) < self.silent_until
    }

    fn busy(&self, now: f64) -> bool {
        now < self.silent_until || self.firmware_job.is_some()
    }

    fn iso(&self, now: f64) -> String {
        hub_shared::domain::timestamp::Timestamp::from_unix_millis(
            self.started_unix_ms + now as i64,
        )
        .map(|t| t.to_string())
        .unwrap_or_default()
    }

    /// The reported properties a device sends when it starts.
    pub fn initial_reported(&self) -> Value {
        let mut reported = Map::new();
        for (name, value) in &self.model.properties {
            reported.insert(name.clone(), toml_to_json(value));
        }
        let telemetry: Map<String, Value> = self
            .model
            .signals
            .iter()
            .filter(|(_, s)| s.telemetry)
            .map(|(name, s)| (name.clone(), json!({ "unit": s.unit })))
            .collect();
        reported.insert("type".into(), json!(self.model.kind));
        reported.insert("model".into(), json!(self.model_name()));
        reported.insert(
            "firmware".into(),
            json!({ "version": self.firmware_version, "status": "current" }),
        );
        reported.insert("telemetryInterval".into(), json!(self.interval_seconds));
        reported.insert(
            "supportedCommands".into(),
            json!(self.model.commands.keys().collect::<Vec<_>>()),
        );
        reported.insert("telemetry".into(), Value::Object(telemetry));
        reported.insert("startedAt".into(), json!(self.iso(0.0)));
        Value::Object(reported)
    }

    /// Takes one reading at `now`: the telemetry fields, or `None` while the device is silent.
    pub fn read(&mut self, now: Millis) -> Option<Map<String, Value>> {
        let now = now as f64;
        let dt = self.last_tick.map_or(0.0, |last| (now - last).max(0.0));
        self.last_tick = Some(now);
        self.advance_jobs(now);
        if now < self.silent_until {
            return None;
        }
        let model = Arc::clone(&self.model);
        let drift: BTreeMap<&str, (f64, f64)> = match (&model.faulty, self.faulty) {
            (Some(faulty), true) => faulty
                .drift
                .iter()
                .map(|d| (d.signal.as_str(), (d.per_minute, d.after_seconds * 1000.0)))
                .collect(),
            _ => BTreeMap::new(),
        };
        let mut fields = Map::new();
        for name in self.order.clone() {
            let signal = &model.signals[&name];
            let gated_off = signal
                .active_when
                .as_ref()
                .is_some_and(|gate| self.signals.get(gate).is_none_or(|g| g.output <= 0.0));
            let noise: f64 = self.rng.random_range(-1.0..=1.0);
            let Some(state) = self.signals.get_mut(&name) else {
                continue;
            };
            let value = if gated_off {
                signal.otherwise.unwrap_or(0.0)
            } else {
                match &signal.behavior {
                    Behavior::Walk(walk) => {
                        let (mean, min, max) = (
                            walk.mean + state.shift,
                            walk.min + state.shift,
                            walk.max + state.shift,
                        );
                        state.base += noise * walk.step + 0.05 * (mean - state.base);
                        state.base = state.base.clamp(min, max);
                    }
                    Behavior::Sine(sine) => {
                        let angle = std::f64::consts::TAU * (now / 1000.0) / sine.period_seconds
                            + state.phase;
                        state.base = sine.mean + sine.amplitude * angle.sin() + sine.noise * noise;
                    }
                    Behavior::Ramp(ramp) => {
                        state.base = (state.base + ramp.per_minute * dt / 60_000.0)
                            .clamp(ramp.min, ramp.max);
                    }
                    Behavior::Steps(steps) => {
                        if state.base + state.direction > steps.max
                            || state.base + state.direction < steps.min
                        {
                            state.direction = -state.direction;
                        }
                        state.base = (state.base + state.direction).clamp(steps.min, steps.max);
                    }
                    Behavior::Constant(_) => {}
                }
                let shifted: f64 = state.offsets.iter().map(|o| o.at(now)).sum();
                let drifted = drift.get(name.as_str()).map_or(0.0, |(per_minute, after)| {
                    let since = now - state.drift_from - after;
                    if since > 0.0 {
                        per_minute * since / 60_000.0
                    } else {
                        0.0
                    }
                });
                state.base + shifted + drifted
            };
            state.output = value;
            if signal.telemetry {
                fields.insert(name.clone(), json!((value * 100.0).round() / 100.0));
            }
        }
        Some(fields)
    }

    /// Acts on a command message's body (`{"name": ..., "payload": ...}`) at `now`.
    pub fn command(&mut self, body: &[u8], now: Millis) -> CommandOutcome {
        let now = now as f64;
        self.advance_jobs(now);
        let Ok(message) = serde_json::from_slice::<Value>(body) else {
            return CommandOutcome::not_done(
                Disposition::Reject,
                "not a JSON command ({\"name\": ..., \"payload\": ...})",
            );
        };
        let Some(name) = message.get("name").and_then(Value::as_str) else {
            return CommandOutcome::not_done(Disposition::Reject, "the command has no name");
        };
        let payload = message.get("payload").cloned().unwrap_or(Value::Null);
        let Some(command) = self.model.commands.get(name).cloned() else {
            return CommandOutcome::not_done(
                self.model.unknown_command,
                format!("{} does not know the command {name}", self.model.kind),
            );
        };
        if self.busy(now) {
            return CommandOutcome::not_done(
                self.model.busy_command,
                "busy rebooting or updating; try again later",
            );
        }
        match command {
            Command::Set { signal, value } => {
                if let Some(state) = self.signals.get_mut(&signal) {
                    state.base = value;
                    state.output = value;
                }
            }
            Command::Shift {
                signal,
                by,
                over_seconds,
            } => {
                if let Some(state) = self.signals.get_mut(&signal) {
                    state.offsets.push(Offset {
                        by,
                        start: now,
                        over: over_seconds * 1000.0,
                    });
                }
            }
            Command::Restore {
                signal,
                over_seconds,
            } => {
                let extra = self.extra_at(&signal, now);
                if let Some(state) = self.signals.get_mut(&signal) {
                    // Everything added (shifts, drift) is taken away again, gradually.
                    state.offsets = vec![
                        Offset {
                            by: extra,
                            start: now,
                            over: 0.0,
                        },
                        Offset {
                            by: -extra,
                            start: now,
                            over: over_seconds * 1000.0,
                        },
                    ];
                    state.drift_from = now;
                }
            }
            Command::Reboot { seconds } => {
                self.silent_until = now + seconds * 1000.0;
                self.reboot_ends = Some(self.silent_until);
                self.pending.insert(
                    "reboot".into(),
                    json!({ "status": "rebooting", "requestedAt": self.iso(now) }),
                );
            }
            Command::Firmware {
                stages,
                stage_seconds,
            } => {
                let Some(version) = payload.get("version").and_then(Value::as_str) else {
                    return CommandOutcome::not_done(
                        Disposition::Reject,
                        "FirmwareUpdate needs payload.version",
                    );
                };
                self.firmware_job = Some(FirmwareJob {
                    version: version.to_owned(),
                    stages,
                    stage_ms: stage_seconds * 1000.0,
                    started: now,
                    reported: None,
                });
                self.advance_jobs(now);
            }
        }
        CommandOutcome::complete()
    }

    /// What shifts and drift add to a signal at `now`.
    fn extra_at(&self, signal: &str, now: f64) -> f64 {
        let Some(state) = self.signals.get(signal) else {
            return 0.0;
        };
        let shifted: f64 = state.offsets.iter().map(|o| o.at(now)).sum();
        let drift = match (&self.model.faulty, self.faulty) {
            (Some(faulty), true) => faulty
                .drift
                .iter()
                .filter(|d| d.signal == signal)
                .map(|d| {
                    let since = now - state.drift_from - d.after_seconds * 1000.0;
                    if since > 0.0 {
                        d.per_minute * since / 60_000.0
                    } else {
                        0.0
                    }
                })
                .sum(),
            _ => 0.0,
        };
        shifted + drift
    }

    /// Moves reboots and firmware updates along, noting what to report.
    fn advance_jobs(&mut self, now: f64) {
        if let Some(ends) = self.reboot_ends
            && now >= ends
        {
            self.reboot_ends = None;
            let at = self.iso(ends);
            self.pending.insert(
                "reboot".into(),
                json!({ "status": "completed", "lastRebootTime": at }),
            );
        }
        let Some(job) = &mut self.firmware_job else {
            return;
        };
        let elapsed = now - job.started;
        let stage = if job.stage_ms <= 0.0 {
            job.stages.len()
        } else {
            ((elapsed / job.stage_ms).floor() as usize).min(job.stages.len())
        };
        if stage < job.stages.len() {
            if job.reported != Some(stage) {
                job.reported = Some(stage);
                let status = job.stages[stage].clone();
                if status == "rebooting" {
                    self.silent_until = job.started + (stage as f64 + 1.0) * job.stage_ms;
                }
                self.pending.insert(
                    "firmware".into(),
                    json!({ "version": self.firmware_version, "status": status, "target": job.version }),
                );
            }
        } else {
            self.firmware_version = job.version.clone();
            self.firmware_job = None;
            let at = self.iso(now);
            self.pending.insert(
                "firmware".into(),
                json!({ "version": self.firmware_version, "status": "current", "updatedAt": at }),
            );
        }
    }

    /// Applies desired properties (`telemetryInterval`, seconds) and notes what it applied to
    /// report back.
    pub fn desired(&mut self, desired: &Value) {
        if let Some(interval) = desired.get("telemetryInterval").and_then(Value::as_f64) {
            let applied = (interval.round() as i64).clamp(1, 3600) as u64;
            self.interval_seconds = applied;
            self.pending
                .insert("telemetryInterval".into(), json!(applied));
        }
    }

    /// Reported properties changed since the last call, as a patch.
    pub fn take_reported(&mut self, now: Millis) -> Option<Value> {
        self.advance_jobs(now as f64);
        if self.pending.is_empty() {
            None
        } else {
            Some(Value::Object(std::mem::take(&mut self.pending)))
        }
    }
}

/// Signals ordered so each comes after the signal that gates it.
fn gate_order(model: &Model) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut left: Vec<&String> = model.signals.keys().collect();
    while !left.is_empty() {
        let before = left.len();
        left.retain(|name| {
            let ready = model.signals[*name]
                .active_when
                .as_ref()
                .is_none_or(|gate| order.contains(gate));
            if ready {
                order.push((*name).clone());
            }
            !ready
        });
        if left.len() == before {
            // A cycle of gates: evaluate the rest in name order.
            order.extend(left.drain(..).cloned());
        }
    }
    order
}

fn toml_to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => json!(s),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Float(f) => json!(f),
        toml::Value::Boolean(b) => json!(b),
        toml::Value::Datetime(d) => json!(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests;
