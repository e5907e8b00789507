//! Stream analytics: tumbling-window aggregates per device and numeric field, the device state
//! store, and rules that raise alerts and send commands.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::command::AckMode;
use crate::domain::device_id::DeviceId;
use crate::domain::envelope::Properties;
use crate::domain::timestamp::Timestamp;

/// The length of a tumbling window, written `30s`, `1m`, `5m`, `1h`, `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowSize(Duration);

impl WindowSize {
    pub fn new(duration: Duration) -> Option<Self> {
        (duration.as_secs() > 0 && duration.subsec_nanos() == 0).then_some(Self(duration))
    }

    pub fn millis(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }

    /// The window holding `at`: windows start at multiples of the size since the epoch.
    pub fn start_of(self, at: Timestamp) -> i64 {
        at.unix_millis().div_euclid(self.millis()) * self.millis()
    }
}

impl fmt::Display for WindowSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
            if secs.is_multiple_of(size) {
                return write!(f, "{}{unit}", secs / size);
            }
        }
        write!(f, "{secs}s")
    }
}

impl FromStr for WindowSize {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        let split = value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len());
        let (number, unit) = value.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("window {value:?} must look like 30s, 1m, 1h or 1d"))?;
        let unit_seconds: u64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(format!("window {value:?} must end in s, m, h or d")),
        };
        // Found by fuzzing: "888888888888888d" overflowed the multiplication.
        let seconds = number
            .checked_mul(unit_seconds)
            .ok_or_else(|| format!("window {value:?} is too long"))?;
        WindowSize::new(Duration::from_secs(seconds))
            .ok_or_else(|| format!("window {value:?} must be positive"))
    }
}

impl Serialize for WindowSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WindowSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A value of a field at a time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub value: f64,
    pub time: Timestamp,
}

/// Statistics of one field over one window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FieldStats {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first: Reading,
    pub last: Reading,
}

impl FieldStats {
    pub fn new(reading: Reading) -> Self {
        Self {
            count: 1,
            sum: reading.value,
            min: reading.value,
            max: reading.value,
            first: reading,
            last: reading,
        }
    }

    /// Adds a reading; readings may arrive out of order, first and last follow their times.
    pub fn add(&mut self, reading: Reading) {
        self.count += 1;
        self.sum += reading.value;
        self.min = self.min.min(reading.value);
        self.max = self.max.max(reading.value);
        if reading.time < self.first.time {
            self.first = reading;
        }
        if reading.time >= self.last.time {
            self.last = reading;
        }
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }
}

/// One device's aggregates over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowAggregate {
    pub device_id: DeviceId,
    pub window: WindowSize,
    /// Milliseconds since the epoch.
    pub window_start: i64,
    pub message_count: u64,
    pub fields: BTreeMap<String, FieldStats>,
}

/// What the hub knows of a device from its telemetry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceState {
    pub device_id: DeviceId,
    pub message_count: u64,
    pub last_message_time: Timestamp,
    pub last_activity_time: Timestamp,
    pub last_message_id: String,
    pub last_values: BTreeMap<String, Reading>,
    /// The latest readings with numeric fields, oldest first (at most the configured number;
    /// none unless configured): the raw points of a chart's most recent stretch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_readings: Vec<RecentReading>,
}

/// Most recent readings a device state may keep (`HUB_ANALYTICS_RECENT_READINGS`).
pub const MAX_RECENT_READINGS: usize = 100;

/// Most bytes (as stored, roughly) the recent readings of one device state may take.
pub const MAX_RECENT_READINGS_BYTES: usize = 16 * 1024;

/// One message's numeric fields, as it was read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentReading {
    #[serde(rename = "t")]
    pub time: Timestamp,
    /// Field values by dotted path.
    #[serde(rename = "v")]
    pub values: BTreeMap<String, f64>,
}

impl RecentReading {
    /// About what the reading takes in the stored item: its time, and each name with a number.
    fn stored_bytes(&self) -> usize {
        32 + self.values.keys().map(|k| k.len() + 24).sum::<usize>()
    }
}

impl DeviceState {
    /// Keeps the reading among the latest `keep`, in time order (a late reading older than all
    /// of a full set is not kept).
    pub fn remember(&mut self, time: Timestamp, fields: &[(String, f64)], keep: usize) {
        if keep == 0 || fields.is_empty() {
            return;
        }
        let at = self.recent_readings.partition_point(|r| r.time <= time);
        self.recent_readings.insert(
            at,
            RecentReading {
                time,
                values: fields.iter().cloned().collect(),
            },
        );
        let mut excess = self.recent_readings.len().saturating_sub(keep);
        // A device with many fields would otherwise grow its state item towards DynamoDB's
        // 400 KB limit (and every write's cost with it): the oldest readings give way first.
        let mut bytes: usize = self.recent_readings[excess..]
            .iter()
            .map(RecentReading::stored_bytes)
            .sum();
        while bytes > MAX_RECENT_READINGS_BYTES && excess < self.recent_readings.len() {
            bytes -= self.recent_readings[excess].stored_bytes();
            excess += 1;
        }
        self.recent_readings.drain(..excess);
    }
}

/// The numeric leaves of a JSON object, by dotted path (`{"a":{"b":1}}` gives `a.b`). Arrays,
/// strings, booleans and nulls carry no numeric field; a body that is not a JSON object has none.
pub fn numeric_fields(body: &[u8]) -> Vec<(String, f64)> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, f64)>) {
        match value {
            serde_json::Value::Number(n) => {
                if let Some(v) = n.as_f64().filter(|v| v.is_finite()) {
                    out.push((prefix.to_owned(), v));
                }
            }
            serde_json::Value::Object(map) => {
                for (key, child) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, child, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(value @ serde_json::Value::Object(_)) =
        serde_json::from_slice::<serde_json::Value>(body)
    {
        walk("", &value, &mut out);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    #[serde(rename = ">")]
    Greater,
    #[serde(rename = ">=")]
    GreaterOrEqual,
    #[serde(rename = "<")]
    Less,
    #[serde(rename = "<=")]
    LessOrEqual,
    #[serde(rename = "==")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
}

impl Operator {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Operator::Greater => value > threshold,
            Operator::GreaterOrEqual => value >= threshold,
            Operator::Less => value < threshold,
            Operator::LessOrEqual => value <= threshold,
            Operator::Equal => value == threshold,
            Operator::NotEqual => value != threshold,
        }
    }
}

/// What a rule's condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Aggregation {
    /// Each reading as it arrives.
    #[default]
    Reading,
    /// The mean of the field over the reading's window (of `window`).
    WindowMean,
}

/// A rule's condition: a fixed threshold (`operator` and `threshold`), or a band learned for each
/// device from its own readings (`learned`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<Operator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned: Option<Learned>,
    #[serde(default)]
    pub aggregation: Aggregation,
    /// The window of `windowMean`; one of the hub's configured windows.
    #[serde(default)]
    pub window: Option<WindowSize>,
    /// How many consecutive readings must meet the condition before the rule fires.
    #[serde(default = "one")]
    pub consecutive: u32,
}

fn one() -> u32 {
    1
}

/// Which side of the learned band is abnormal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    #[default]
    Above,
    Below,
    Either,
}

/// "Above (or below) what is normal for this device": an exponentially weighted mean and
/// variance of the field, learned per device after a warm-up, and a band of `sensitivity`
/// standard deviations around the mean. Only readings well inside the band are learned, so a
/// fault, slow or sudden, does not become the new normal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Learned {
    /// Standard deviations from the learned mean that count as abnormal.
    #[serde(default = "default_sensitivity")]
    pub sensitivity: f64,
    /// Readings learned before the rule judges any.
    #[serde(default = "default_warmup")]
    pub warmup: u32,
    /// Weight of each new reading in the baseline (0 < alpha < 1): smaller learns slower and
    /// follows slow drifts less.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    #[serde(default)]
    pub direction: Direction,
    /// The smallest band half-width, in the field's units (a signal that barely moves would
    /// otherwise call every small wiggle abnormal).
    #[serde(default)]
    pub min_deviation: f64,
}

fn default_sensitivity() -> f64 {
    5.0
}

fn default_warmup() -> u32 {
    120
}

fn default_alpha() -> f64 {
    0.01
}

/// What a learned condition knows of one device's field.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Baseline {
    pub mean: f64,
    pub variance: f64,
    pub samples: u64,
}

/// A learned condition's verdict on one reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    pub abnormal: bool,
    /// The band of normal values, once warmed up.
    pub band: Option<(f64, f64)>,
    /// Standard deviations from the mean (signed), once warmed up.
    pub score: Option<f64>,
}

impl Learned {
    /// Judges `value` against `baseline`, and learns it unless it is abnormal (or `learn` is
    /// false, as while an alert is active: a fault must not become the new normal).
    pub fn judge(&self, baseline: &mut Baseline, value: f64, learn: bool) -> Judgement {
        let warmed = baseline.samples >= u64::from(self.warmup);
        let judgement = if warmed {
            let deviation = baseline.variance.max(0.0).sqrt().max(self.min_deviation);
            let (low, high) = (
                baseline.mean - self.sensitivity * deviation,
                baseline.mean + self.sensitivity * deviation,
            );
            let score = if deviation > 0.0 {
                (value - baseline.mean) / deviation
            } else if value == baseline.mean {
                0.0
            } else {
                f64::INFINITY.copysign(value - baseline.mean)
            };
            let abnormal = match self.direction {
                Direction::Above => value > high,
                Direction::Below => value < low,
                Direction::Either => value > high || value < low,
            };
            Judgement {
                abnormal,
                band: Some((low, high)),
                score: Some(score),
            }
        } else {
            Judgement {
                abnormal: false,
                band: None,
                score: None,
            }
        };
        // Only readings well inside the band teach it (within 60 % of its half-width, 3
        // deviations at the default sensitivity of 5): a slow drift must not widen the band it
        // is about to leave.
        let teaches = judgement
            .score
            .is_none_or(|score| score.abs() <= 0.6 * self.sensitivity);
        if learn && !judgement.abnormal && teaches {
            // A plain average over the warm-up, exponentially weighted after it.
            let weight = if baseline.samples < u64::from(self.warmup) {
                1.0 / (baseline.samples as f64 + 1.0)
            } else {
                self.alpha
            };
            let diff = value - baseline.mean;
            let step = weight * diff;
            baseline.mean += step;
            baseline.variance = (1.0 - weight) * (baseline.variance + diff * step);
            baseline.samples += 1;
        }
        judgement
    }
}

/// Which devices a rule watches: all of them, those listed by id, and those whose twin tags hold
/// every `tags` entry (a tag name, or a dotted path into nested tags, and the value it must equal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceSelector {
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub ids: Vec<DeviceId>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, serde_json::Value>,
}

impl DeviceSelector {
    /// `tags`: the device's twin tags, when known.
    pub fn matches(
        &self,
        device: &DeviceId,
        tags: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> bool {
        self.all
            || self.ids.contains(device)
            || (self.uses_tags()
                && tags.is_some_and(|tags| {
                    self.tags
                        .iter()
                        .all(|(path, wanted)| tag_at(tags, path) == Some(wanted))
                }))
    }

    pub fn uses_tags(&self) -> bool {
        !self.tags.is_empty()
    }
}

/// The value at a dotted path of twin tags (`location.region`).
fn tag_at<'a>(
    tags: &'a serde_json::Map<String, serde_json::Value>,
    path: &str,
) -> Option<&'a serde_json::Value> {
    let mut parts = path.split('.');
    let first = tags.get(parts.next()?)?;
    parts.try_fold(first, |value, part| value.get(part))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertAction {
    #[serde(default = "warning")]
    pub severity: String,
}

fn warning() -> String {
    "warning".into()
}

/// The command a rule sends to the device, through the `command-requests` queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandAction {
    /// The message body, as text.
    pub body: String,
    #[serde(default)]
    pub properties: Properties,
    #[serde(default)]
    pub ack: AckMode,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleActions {
    #[serde(default)]
    pub alert: Option<AlertAction>,
    #[serde(default)]
    pub command: Option<CommandAction>,
}

/// A rule, as the rules API takes and gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub devices: DeviceSelector,
    pub condition: Condition,
    /// Minimum time between two commands of this rule to one device.
    #[serde(default = "default_cooldown")]
    pub cooldown_seconds: u64,
    pub actions: RuleActions,
    /// Changes on every update (for If-Match).
    #[serde(default)]
    pub etag: String,
}

fn yes() -> bool {
    true
}

fn default_cooldown() -> u64 {
    300
}

pub const MAX_RULE_ID_LEN: usize = 64;

impl Rule {
    /// Checks a rule against the hub's configured windows; the message says what is wrong.
    pub fn validate(&self, windows: &[WindowSize]) -> Result<(), String> {
        if self.id.is_empty()
            || self.id.len() > MAX_RULE_ID_LEN
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(format!(
                "rule id must be 1 to {MAX_RULE_ID_LEN} characters of letters, digits, '-', '_' and '.'"
            ));
        }
        if !self.devices.all && self.devices.ids.is_empty() && !self.devices.uses_tags() {
            return Err(
                "devices must be {\"all\": true}, list ids, or name twin tags to match".into(),
            );
        }
        if let Some(path) = self
            .devices
            .tags
            .keys()
            .find(|path| path.split('.').any(str::is_empty))
        {
            return Err(format!(
                "devices.tags key {path:?} must be a tag name or a dotted path of tag names"
            ));
        }
        let condition = &self.condition;
        if condition.field.is_empty() {
            return Err(
                "condition.field must name a numeric field (dotted path for nested fields)".into(),
            );
        }
        match (condition.operator, condition.threshold, &condition.learned) {
            (Some(_), Some(threshold), None) => {
                if !threshold.is_finite() {
                    return Err("condition.threshold must be a finite number".into());
                }
            }
            (None, None, Some(learned)) => {
                if !(learned.sensitivity.is_finite() && learned.sensitivity > 0.0) {
                    return Err("condition.learned.sensitivity must be positive".into());
                }
                if !(learned.alpha > 0.0 && learned.alpha < 1.0) {
                    return Err("condition.learned.alpha must lie between 0 and 1".into());
                }
                if learned.warmup < 2 || learned.warmup > 10_000 {
                    return Err("condition.learned.warmup must be from 2 to 10000 readings".into());
                }
                if !(learned.min_deviation.is_finite() && learned.min_deviation >= 0.0) {
                    return Err("condition.learned.minDeviation must not be negative".into());
                }
            }
            (_, _, Some(_)) => {
                return Err(
                    "a condition is either learned or an operator and a threshold, not both".into(),
                );
            }
            _ => {
                return Err(
                    "condition needs an operator and a threshold, or learned settings".into(),
                );
            }
        }
        if condition.consecutive == 0 || condition.consecutive > 1000 {
            return Err("condition.consecutive must be from 1 to 1000".into());
        }
        match (condition.aggregation, condition.window) {
            (Aggregation::WindowMean, None) => {
                return Err("a windowMean condition needs a window".into());
            }
            (Aggregation::WindowMean, Some(window)) if !windows.contains(&window) => {
                let known: Vec<String> = windows.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "window {window} is not aggregated by this hub (it aggregates {})",
                    known.join(", ")
                ));
            }
            _ => {}
        }
        if self.actions.alert.is_none() && self.actions.command.is_none() {
            return Err("actions must raise an alert, send a command, or both".into());
        }
        if let Some(command) = &self.actions.command
            && command.body.len() > crate::domain::command::MAX_COMMAND_BYTES
        {
            return Err("the command body is larger than 64 KB".into());
        }
        Ok(())
    }
}

/// A rule's state for one device: the alert it raised, and what cooldown and consecutive counts
/// need to remember.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub rule_id: String,
    pub device_id: DeviceId,
    pub active: bool,
    pub severity: Option<String>,
    pub field: String,
    pub raised_at: Option<Timestamp>,
    pub cleared_at: Option<Timestamp>,
    pub last_value: Option<f64>,
    pub last_evaluated_at: Option<Timestamp>,
    pub consecutive: u32,
    pub last_command_at: Option<Timestamp>,
    pub raise_count: u64,
    /// A learned condition's baseline of the field for this device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    /// The band of normal values at the last evaluation (learned conditions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_high: Option<f64>,
    /// Standard deviations from the learned mean at the last evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The last raises, oldest first (at most `RECENT_RAISES`): what "alerts over time" counts.
    /// Kept in the alert item, which every evaluation rewrites anyway, so the history costs no
    /// write and no transaction item of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_raises: Vec<Raise>,
}

/// Raises an alert item remembers. Bounded so the item stays near one write unit (about 80
/// bytes a raise); an alert that flaps more often than this within a chart's range is counted
/// as this many raises there (`raiseCount` still says how many there were in all).
pub const RECENT_RAISES: usize = 10;

/// One raise of an alert: when, at what value, and when it cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Raise {
    pub raised_at: Timestamp,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_at: Option<Timestamp>,
}

impl Alert {
    pub fn new(rule_id: &str, device_id: &DeviceId, field: &str) -> Self {
        Self {
            rule_id: rule_id.to_owned(),
            device_id: device_id.clone(),
            active: false,
            severity: None,
            field: field.to_owned(),
            raised_at: None,
            cleared_at: None,
            last_value: None,
            last_evaluated_at: None,
            consecutive: 0,
            last_command_at: None,
            raise_count: 0,
            baseline: None,
            expected_low: None,
            expected_high: None,
            score: None,
            recent_raises: Vec::new(),
        }
    }

    /// Raises the alert at `at` (remembering the raise among the recent ones).
    pub fn raise(&mut self, at: Timestamp, value: f64) {
        self.active = true;
        self.raised_at = Some(at);
        self.raise_count += 1;
        self.recent_raises.push(Raise {
            raised_at: at,
            value,
            cleared_at: None,
        });
        let excess = self.recent_raises.len().saturating_sub(RECENT_RAISES);
        self.recent_raises.drain(..excess);
    }

    /// Clears the alert at `at`.
    pub fn clear(&mut self, at: Timestamp) {
        self.active = false;
        self.cleared_at = Some(at);
        if let Some(last) = self.recent_raises.last_mut() {
            last.cleared_at.get_or_insert(at);
        }
    }

    /// `<rule id>/<device id>` (rule ids cannot contain `/`).
    pub fn id(&self) -> String {
        alert_id(&self.rule_id, &self.device_id)
    }
}

/// What an operator did about an alert: acknowledged it (seen, being handled) or closed it
/// (dealt with). It applies to the raise it was made on (`raised_at`); when the rule raises the
/// alert again, the alert is open again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertReview {
    pub state: ReviewState,
    pub raised_at: Option<Timestamp>,
    /// The policy that signed the request.
    pub by: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReviewState {
    Acknowledged,
    Closed,
}

impl ReviewState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Acknowledged => "acknowledged",
            ReviewState::Closed => "closed",
        }
    }
}

/// An alert's workflow state: `open` until an operator acknowledges or closes its current raise.
pub fn alert_state(alert: &Alert, review: Option<&AlertReview>) -> &'static str {
    match review {
        Some(review) if review.raised_at == alert.raised_at => review.state.as_str(),
        _ => "open",
    }
}

pub fn alert_id(rule_id: &str, device_id: &DeviceId) -> String {
    format!("{rule_id}/{device_id}")
}

/// A stable id derived from its parts (hex SHA-256): the same inputs always give the same id, so
/// effects recomputed when a batch is processed again carry the ids they had the first time.
pub fn derived_id(parts: &[&str]) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the alerts queue receives when an alert is raised or cleared. `eventId` is derived from
/// the rule, the device and the message that caused it, so a reprocessed batch produces the same
/// id: integrations deduplicate on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertEvent {
    pub event_id: String,
    pub kind: AlertEventKind,
    pub rule_id: String,
    pub device_id: String,
    pub field: String,
    pub value: f64,
    pub severity: Option<String>,
    pub at: Timestamp,
    pub hub_message_id: String,
    /// Why, for learned conditions: the band of normal values and the reading's score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_high: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertEventKind {
    Raised,
    Cleared,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_parse_and_print() {
        for (text, secs) in [
            ("30s", 30),
            ("1m", 60),
            ("5m", 300),
            ("1h", 3600),
            ("1d", 86_400),
            ("90s", 90),
        ] {
            let size: WindowSize = text.parse().unwrap();
            assert_eq!(size.millis(), secs * 1000);
            assert_eq!(size.to_string(), if text == "90s" { "90s" } else { text });
        }
        assert_eq!("120s".parse::<WindowSize>().unwrap().to_string(), "2m");
        for bad in ["", "m", "0m", "1w", "-1m", "1.5m", "888888888888888d"] {
            assert!(bad.parse::<WindowSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let minute: WindowSize = "1m".parse().unwrap();
        let at = Timestamp::from_unix_millis(125_500).unwrap();
        assert_eq!(minute.start_of(at), 120_000);
        assert_eq!(
            minute.start_of(Timestamp::from_unix_millis(120_000).unwrap()),
            120_000
        );
    }

    #[test]
    fn stats_follow_reading_times_not_arrival_order() {
        let t = |ms| Timestamp::from_unix_millis(ms).unwrap();
        let mut stats = FieldStats::new(Reading {
            value: 5.0,
            time: t(2000),
        });
        stats.add(Reading {
            value: 1.0,
            time: t(1000),
        });
        stats.add(Reading {
            value: 9.0,
            time: t(3000),
        });
        assert_eq!(
            (stats.count, stats.sum, stats.min, stats.max),
            (3, 15.0, 1.0, 9.0)
        );
        assert_eq!((stats.first.value, stats.last.value), (1.0, 9.0));
        assert_eq!(stats.mean(), 5.0);
    }

    #[test]
    fn recent_readings_keep_the_latest_within_their_byte_budget() {
        let mut state = DeviceState {
            device_id: DeviceId::parse("d").unwrap(),
            message_count: 0,
            last_message_time: Timestamp::from_unix_millis(0).unwrap(),
            last_activity_time: Timestamp::from_unix_millis(0).unwrap(),
            last_message_id: String::new(),
            last_values: BTreeMap::new(),
            recent_readings: Vec::new(),
        };
        let at = |s: i64| Timestamp::from_unix_millis(s * 1000).unwrap();
        for s in [3, 1, 2] {
            state.remember(at(s), &[("t".into(), s as f64)], 2);
        }
        let times: Vec<_> = state.recent_readings.iter().map(|r| r.time).collect();
        assert_eq!(times, [at(2), at(3)], "the latest two, oldest first");

        let wide: Vec<(String, f64)> = (0..400).map(|i| (format!("field-{i:04}"), 1.0)).collect();
        for s in 10..20 {
            state.remember(at(s), &wide, 100);
        }
        let kept = state.recent_readings.len();
        assert!((1..10).contains(&kept), "kept {kept} wide readings");
        assert_eq!(state.recent_readings.last().map(|r| r.time), Some(at(19)));
        let bytes: usize = state
            .recent_readings
            .iter()
            .map(RecentReading::stored_bytes)
            .sum();
        assert!(bytes <= MAX_RECENT_READINGS_BYTES);
    }

    #[test]
    fn numeric_fields_flatten_nested_objects() {
        let fields = numeric_fields(br#"{"temperature":21.5,"env":{"humidity":40,"ok":true,"tag":"x"},"list":[1,2],"n":null}"#);
        assert_eq!(
            fields,
            vec![
                ("env.humidity".to_owned(), 40.0),
                ("temperature".to_owned(), 21.5)
            ]
        );
        assert!(numeric_fields(b"not json").is_empty());
        assert!(numeric_fields(b"[1,2]").is_empty());
        assert!(numeric_fields(b"42").is_empty());
    }

    fn rule(json: &str) -> Rule {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn rules_are_validated() {
        let windows: Vec<WindowSize> = vec!["1m".parse().unwrap()];
        let ok = rule(
            r#"{"id":"hot","devices":{"all":true},"condition":{"field":"temperature","operator":">","threshold":30},
                "actions":{"command":{"body":"fan on"}}}"#,
        );
        assert_eq!(ok.validate(&windows), Ok(()));
        assert_eq!(
            (ok.cooldown_seconds, ok.condition.consecutive, ok.enabled),
            (300, 1, true)
        );
        let bad = [
            r#"{"id":"a/b","devices":{"all":true},"condition":{"field":"t","operator":">","threshold":1},"actions":{"alert":{}}}"#,
            r#"{"id":"r","devices":{},"condition":{"field":"t","operator":">","threshold":1},"actions":{"alert":{}}}"#,
            r#"{"id":"r","devices":{"all":true},"condition":{"field":"t","operator":">","threshold":1},"actions":{}}"#,
            r#"{"id":"r","devices":{"all":true},"condition":{"field":"t","operator":">","threshold":1,"aggregation":"windowMean"},"actions":{"alert":{}}}"#,
            r#"{"id":"r","devices":{"all":true},"condition":{"field":"t","operator":">","threshold":1,"aggregation":"windowMean","window":"1h"},"actions":{"alert":{}}}"#,
            r#"{"id":"r","devices":{"all":true},"condition":{"field":"t","operator":">","threshold":1,"consecutive":0},"actions":{"alert":{}}}"#,
            r#"{"id":"r","devices":{"tags":{"site.":"x"}},"condition":{"field":"t","operator":">","threshold":1},"actions":{"alert":{}}}"#,
        ];
        for json in bad {
            assert!(rule(json).validate(&windows).is_err(), "{json}");
        }
        assert!(serde_json::from_str::<Rule>(r#"{"id":"r","devices":{"all":true},"condition":{"field":"t","operator":"~","threshold":1},"actions":{}}"#).is_err());
    }

    #[test]
    fn devices_are_selected_by_id_or_by_every_tag() {
        let selector = rule(
            r#"{"id":"r","devices":{"ids":["d9"],"tags":{"site":"lab","location.floor":2}},
                "condition":{"field":"t","operator":">","threshold":1},"actions":{"alert":{}}}"#,
        );
        assert_eq!(selector.validate(&["1m".parse().unwrap()]), Ok(()));
        let devices = &selector.devices;
        let tags = |json: serde_json::Value| json.as_object().cloned().unwrap();
        let d1 = DeviceId::parse("d1").unwrap();
        let both = tags(serde_json::json!({"site": "lab", "location": {"floor": 2}}));
        assert!(devices.matches(&d1, Some(&both)));
        let one = tags(serde_json::json!({"site": "lab", "location": {"floor": 3}}));
        assert!(!devices.matches(&d1, Some(&one)), "every tag must hold");
        assert!(!devices.matches(&d1, None), "no twin, no tags");
        assert!(
            devices.matches(&DeviceId::parse("d9").unwrap(), None),
            "listed"
        );
        let untagged = DeviceSelector {
            all: false,
            ids: vec![],
            tags: BTreeMap::new(),
        };
        assert!(!untagged.matches(&d1, Some(&both)), "no tags selects none");
    }

    #[test]
    fn operators_compare() {
        assert!(Operator::Greater.holds(2.0, 1.0) && !Operator::Greater.holds(1.0, 1.0));
        assert!(Operator::GreaterOrEqual.holds(1.0, 1.0));
        assert!(Operator::Less.holds(0.0, 1.0) && Operator::LessOrEqual.holds(1.0, 1.0));
        assert!(Operator::Equal.holds(1.0, 1.0) && Operator::NotEqual.holds(1.0, 2.0));
    }
}
