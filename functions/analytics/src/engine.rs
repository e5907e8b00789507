//! The analytics engine, free of I/O: applies telemetry envelopes to device states, window
//! aggregates and rule states, and says which commands and alert events follow.
//!
//! Everything is computed from the records and the stored state, using the messages' enqueued
//! times (never the clock), so processing the same records from the same state twice gives the
//! same result: that is what makes retried batches safe.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hub_shared::domain::analytics::{
    Aggregation, Alert, AlertEvent, AlertEventKind, Baseline, DeviceState, FieldStats, Reading,
    Rule, WindowAggregate, WindowSize, derived_id, numeric_fields,
};
use hub_shared::domain::command::CommandRequest;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::envelope::TelemetryEnvelope;
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::ports::{DeviceTags, StateItem, StateKey};

/// Most windows the hub aggregates, and most rules that may be enabled: together they bound the
/// items one record can touch, which must fit one DynamoDB transaction.
pub const MAX_WINDOWS: usize = 4;
pub const MAX_RULES: usize = 40;

/// The rules a batch applies, with its devices' twin tags for the rules that select by tag.
#[derive(Debug, Clone, Copy)]
pub struct RuleSet<'a> {
    pub rules: &'a [Rule],
    pub tags: &'a DeviceTags,
}

static NO_TAGS: std::sync::LazyLock<DeviceTags> = std::sync::LazyLock::new(DeviceTags::new);

impl<'a> RuleSet<'a> {
    /// Rules for devices without tags (or whose tags no rule asks about).
    pub fn untagged(rules: &'a [Rule]) -> Self {
        Self {
            rules,
            tags: &NO_TAGS,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Engine {
    pub windows: Vec<WindowSize>,
    /// Readings each device state keeps as raw points (0: none).
    pub recent_readings: usize,
}

/// What processing records leads to beyond state.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Command(CommandRequest),
    Alert(AlertEvent),
}

/// The state a batch works on: loaded items, changed in memory, written back when committed.
#[derive(Debug, Default)]
pub struct Working {
    /// `None`: looked for, not stored.
    items: HashMap<StateKey, Option<StateItem>>,
    dirty: BTreeSet<StateKey>,
}

impl Working {
    pub fn contains(&self, key: &StateKey) -> bool {
        self.items.contains_key(key)
    }

    /// Records what loading found for a key (`None`: not stored).
    pub fn insert_loaded(&mut self, key: StateKey, item: Option<StateItem>) {
        self.items.insert(key, item);
    }

    /// The changed items, for the commit; clears the change set.
    pub fn take_dirty(&mut self) -> Vec<StateItem> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .iter()
            .filter_map(|key| self.items.get(key).cloned().flatten())
            .collect()
    }

    pub fn get(&self, key: &StateKey) -> Option<&StateItem> {
        self.items.get(key).and_then(Option::as_ref)
    }

    pub fn dirty_len(&self) -> usize {
        self.dirty.len()
    }
}

impl Engine {
    pub fn new(windows: Vec<WindowSize>) -> Self {
        Self {
            windows,
            recent_readings: 0,
        }
    }

    fn applicable<'a>(
        &self,
        device: &'a DeviceId,
        rules: RuleSet<'a>,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        let tags = rules.tags.get(device);
        rules
            .rules
            .iter()
            .filter(move |rule| rule.enabled && rule.devices.matches(device, tags))
    }

    /// The state items a record touches.
    pub fn keys(&self, envelope: &TelemetryEnvelope, rules: RuleSet<'_>) -> Vec<StateKey> {
        let device = &envelope.device_id;
        let mut keys = vec![StateKey::Device(device.clone())];
        keys.extend(self.windows.iter().map(|window| StateKey::Aggregate {
            device: device.clone(),
            window: *window,
            start: window.start_of(envelope.enqueued_time),
        }));
        keys.extend(self.applicable(device, rules).map(|rule| StateKey::Alert {
            rule_id: rule.id.clone(),
            device: device.clone(),
        }));
        keys
    }

    /// Applies one record. Its keys must have been loaded (or noted absent) first.
    pub fn apply(
        &self,
        working: &mut Working,
        envelope: &TelemetryEnvelope,
        rules: RuleSet<'_>,
        effects: &mut Vec<Effect>,
    ) {
        let device = &envelope.device_id;
        let at = envelope.enqueued_time;
        let fields = numeric_fields(&envelope.body);

        let key = StateKey::Device(device.clone());
        let slot = working.items.entry(key.clone()).or_insert(None);
        let state = slot.get_or_insert_with(|| {
            StateItem::Device(DeviceState {
                device_id: device.clone(),
                message_count: 0,
                last_message_time: Timestamp::NEVER,
                last_activity_time: Timestamp::NEVER,
                last_message_id: String::new(),
                last_values: BTreeMap::new(),
                recent_readings: Vec::new(),
            })
        });
        if let StateItem::Device(state) = state {
            state.message_count += 1;
            if at >= state.last_message_time {
                state.last_message_time = at;
                state.last_message_id.clone_from(&envelope.hub_message_id);
            }
            state.last_activity_time = state.last_activity_time.max(at);
            for (field, value) in &fields {
                let reading = Reading {
                    value: *value,
                    time: at,
                };
                match state.last_values.get(field) {
                    Some(known) if known.time > at => {}
                    _ => {
                        state.last_values.insert(field.clone(), reading);
                    }
                }
            }
            state.remember(at, &fields, self.recent_readings);
        }
        working.dirty.insert(key);

        for window in &self.windows {
            let start = window.start_of(at);
            let key = StateKey::Aggregate {
                device: device.clone(),
                window: *window,
                start,
            };
            let slot = working.items.entry(key.clone()).or_insert(None);
            let item = slot.get_or_insert_with(|| {
                StateItem::Aggregate(WindowAggregate {
                    device_id: device.clone(),
                    window: *window,
                    window_start: start,
                    message_count: 0,
                    fields: BTreeMap::new(),
                })
            });
            if let StateItem::Aggregate(aggregate) = item {
                aggregate.message_count += 1;
                for (field, value) in &fields {
                    let reading = Reading {
                        value: *value,
                        time: at,
                    };
                    aggregate
                        .fields
                        .entry(field.clone())
                        .and_modify(|stats| stats.add(reading))
                        .or_insert_with(|| FieldStats::new(reading));
                }
            }
            working.dirty.insert(key);
        }

        for rule in self.applicable(device, rules) {
            self.evaluate(working, envelope, &fields, rule, effects);
        }
    }

    fn evaluate(
        &self,
        working: &mut Working,
        envelope: &TelemetryEnvelope,
        fields: &[(String, f64)],
        rule: &Rule,
        effects: &mut Vec<Effect>,
    ) {
        let condition = &rule.condition;
        let Some(reading) = fields
            .iter()
            .find(|(name, _)| *name == condition.field)
            .map(|(_, v)| *v)
        else {
            return;
        };
        let device = &envelope.device_id;
        let at = envelope.enqueued_time;
        let value = match (condition.aggregation, condition.window) {
            (Aggregation::WindowMean, Some(window)) => {
                let key = StateKey::Aggregate {
                    device: device.clone(),
                    window,
                    start: window.start_of(at),
                };
                match working.get(&key) {
                    Some(StateItem::Aggregate(aggregate)) => aggregate
                        .fields
                        .get(&condition.field)
                        .map_or(reading, FieldStats::mean),
                    _ => reading,
                }
            }
            _ => reading,
        };
        let key = StateKey::Alert {
            rule_id: rule.id.clone(),
            device: device.clone(),
        };
        let slot = working.items.entry(key.clone()).or_insert(None);
        let item = slot.get_or_insert_with(|| {
            StateItem::Alert(Alert::new(&rule.id, device, &condition.field))
        });
        let StateItem::Alert(alert) = item else {
            return;
        };
        working.dirty.insert(key);

        let holds = match (&condition.learned, condition.operator, condition.threshold) {
            (Some(learned), _, _) => {
                let active = alert.active;
                let baseline = alert.baseline.get_or_insert(Baseline {
                    mean: value,
                    variance: 0.0,
                    samples: 0,
                });
                let judgement = learned.judge(baseline, value, !active);
                alert.expected_low = judgement.band.map(|b| b.0);
                alert.expected_high = judgement.band.map(|b| b.1);
                alert.score = judgement.score.filter(|s| s.is_finite());
                judgement.abnormal
            }
            (None, Some(operator), Some(threshold)) => operator.holds(value, threshold),
            _ => false,
        };
        alert.consecutive = if holds {
            alert.consecutive.saturating_add(1)
        } else {
            0
        };
        alert.last_value = Some(value);
        alert.last_evaluated_at = Some(at);
        alert.field.clone_from(&condition.field);
        let event = |kind: AlertEventKind, alert: &Alert| AlertEvent {
            event_id: derived_id(&[
                &rule.id,
                device.as_str(),
                &envelope.hub_message_id,
                if kind == AlertEventKind::Raised {
                    "raised"
                } else {
                    "cleared"
                },
            ]),
            kind,
            rule_id: rule.id.clone(),
            device_id: device.to_string(),
            field: condition.field.clone(),
            value,
            severity: alert.severity.clone(),
            at,
            hub_message_id: envelope.hub_message_id.clone(),
            expected_low: alert.expected_low,
            expected_high: alert.expected_high,
            score: alert.score,
        };

        if holds && alert.consecutive >= condition.consecutive && !alert.active {
            alert.raise(at, value);
            alert.severity = rule.actions.alert.as_ref().map(|a| a.severity.clone());
            if rule.actions.alert.is_some() {
                effects.push(Effect::Alert(event(AlertEventKind::Raised, alert)));
            }
        }
        // The command goes out when the alert is raised, and again while the condition still
        // holds each time the cooldown has passed: a command the cooldown held back, or one the
        // device did not heed, is not the end of the loop.
        if holds && alert.active {
            let cooldown = Duration::from_secs(rule.cooldown_seconds);
            let cooled = alert.last_command_at.is_none_or(|last| {
                at.unix_millis().saturating_sub(last.unix_millis())
                    >= i64::try_from(cooldown.as_millis()).unwrap_or(i64::MAX)
            });
            if let (Some(command), true) = (&rule.actions.command, cooled) {
                alert.last_command_at = Some(at);
                effects.push(Effect::Command(CommandRequest {
                    request_id: derived_id(&[&rule.id, device.as_str(), &envelope.hub_message_id]),
                    device_id: device.clone(),
                    body: BASE64.encode(command.body.as_bytes()),
                    message_id: Some(format!("rule-{}-{}", rule.id, &envelope.hub_message_id)),
                    correlation_id: Some(envelope.hub_message_id.clone()),
                    properties: command.properties.clone(),
                    ack: command.ack,
                    ttl_seconds: command.ttl_seconds,
                }));
            }
        } else if !holds && alert.active {
            alert.clear(at);
            if rule.actions.alert.is_some() {
                effects.push(Effect::Alert(event(AlertEventKind::Cleared, alert)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use hub_shared::domain::analytics::RECENT_RAISES;
    use hub_shared::domain::envelope::{AuthMethod, DeviceMessage, Sender};

    use super::*;

    pub(crate) fn envelope(device: &str, at_ms: i64, body: &str) -> TelemetryEnvelope {
        let sender = Sender {
            device_id: DeviceId::parse(device).unwrap(),
            generation_id: "1".into(),
            auth_method: AuthMethod::device_key(),
        };
        let message = DeviceMessage {
            body: body.as_bytes().to_vec(),
            ..Default::default()
        };
        TelemetryEnvelope::stamp(
            message,
            &sender,
            Timestamp::from_unix_millis(at_ms).unwrap(),
        )
    }

    fn engine() -> Engine {
        Engine::new(vec!["1m".parse().unwrap(), "1h".parse().unwrap()])
    }

    fn rule(json: &str) -> Rule {
        serde_json::from_str(json).unwrap()
    }

    fn run(
        engine: &Engine,
        working: &mut Working,
        records: &[TelemetryEnvelope],
        rules: &[Rule],
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        for record in records {
            engine.apply(working, record, RuleSet::untagged(rules), &mut effects);
        }
        effects
    }

    fn aggregate(working: &Working, device: &str, window: &str, start: i64) -> WindowAggregate {
        let key = StateKey::Aggregate {
            device: DeviceId::parse(device).unwrap(),
            window: window.parse().unwrap(),
            start,
        };
        match working.get(&key) {
            Some(StateItem::Aggregate(a)) => a.clone(),
            other => panic!("no aggregate {key:?}: {other:?}"),
        }
    }

    #[test]
    fn aggregates_per_window_and_field_with_late_messages_in_their_window() {
        let engine = engine();
        let mut working = Working::default();
        let records = [
            envelope("d1", 10_000, r#"{"t":10,"env":{"h":50}}"#),
            envelope("d1", 70_000, r#"{"t":30}"#),
            envelope("d1", 20_000, r#"{"t":20}"#), // late: belongs to the first minute
            envelope("d1", 80_000, "not json"),
        ];
        run(&engine, &mut working, &records, &[]);
        let first = aggregate(&working, "d1", "1m", 0);
        assert_eq!(first.message_count, 2);
        let t = first.fields["t"];
        assert_eq!(
            (t.count, t.sum, t.min, t.max, t.mean()),
            (2, 30.0, 10.0, 20.0, 15.0)
        );
        assert_eq!((t.first.value, t.last.value), (10.0, 20.0));
        assert_eq!(first.fields["env.h"].count, 1);
        let second = aggregate(&working, "d1", "1m", 60_000);
        assert_eq!(
            (second.message_count, second.fields["t"].count),
            (2, 1),
            "the non-JSON message counts, without fields"
        );
        let hour = aggregate(&working, "d1", "1h", 0);
        assert_eq!((hour.message_count, hour.fields["t"].sum), (4, 60.0));

        let Some(StateItem::Device(state)) =
            working.get(&StateKey::Device(DeviceId::parse("d1").unwrap()))
        else {
            panic!()
        };
        assert_eq!(state.message_count, 4);
        assert_eq!(
            state.last_values["t"].value, 30.0,
            "the latest reading by time, not by arrival"
        );
        assert_eq!(
            state.last_message_time,
            Timestamp::from_unix_millis(80_000).unwrap()
        );
        assert_eq!(working.dirty_len(), 1 + 2 + 1);
    }

    #[test]
    fn a_device_state_keeps_its_latest_readings_in_time_order_when_asked() {
        let mut engine = engine();
        let device = || StateKey::Device(DeviceId::parse("d1").unwrap());
        let records = [
            envelope("d1", 1_000, r#"{"t":1}"#),
            envelope("d1", 3_000, r#"{"t":3,"h":30}"#),
            envelope("d1", 2_000, r#"{"t":2}"#), // late: in its place
            envelope("d1", 4_000, "not json"),   // no fields: not a reading
            envelope("d1", 5_000, r#"{"t":5}"#),
            envelope("d1", 500, r#"{"t":0}"#), // older than every kept one: dropped
        ];
        let mut working = Working::default();
        run(&engine, &mut working, &records, &[]);
        let Some(StateItem::Device(state)) = working.get(&device()) else {
            panic!()
        };
        assert!(state.recent_readings.is_empty(), "off unless configured");

        engine.recent_readings = 3;
        let mut working = Working::default();
        run(&engine, &mut working, &records, &[]);
        let Some(StateItem::Device(state)) = working.get(&device()) else {
            panic!()
        };
        let kept: Vec<(i64, f64)> = state
            .recent_readings
            .iter()
            .map(|r| (r.time.unix_millis(), r.values["t"]))
            .collect();
        assert_eq!(kept, [(2_000, 2.0), (3_000, 3.0), (5_000, 5.0)]);
        assert_eq!(state.recent_readings[1].values["h"], 30.0);
    }

    #[test]
    fn a_rule_fires_once_per_cooldown_and_clears() {
        let engine = engine();
        let hot = rule(
            r#"{"id":"hot","devices":{"all":true},"condition":{"field":"t","operator":">","threshold":30},
                "cooldownSeconds":600,"actions":{"alert":{"severity":"critical"},"command":{"body":"fan on"}}}"#,
        );
        let mut working = Working::default();
        let minute = 60_000;
        let readings = [
            (0, 25),
            (1, 35),
            (2, 36),
            (3, 20),
            (4, 40),
            (15, 20),
            (16, 41),
        ];
        let records: Vec<_> = readings
            .iter()
            .map(|(m, t)| envelope("d1", m * minute, &format!(r#"{{"t":{t}}}"#)))
            .collect();
        let effects = run(&engine, &mut working, &records, std::slice::from_ref(&hot));
        let summary: Vec<String> = effects
            .iter()
            .map(|e| match e {
                Effect::Command(c) => {
                    format!("command@{}", c.correlation_id.clone().unwrap_or_default())
                }
                Effect::Alert(a) => format!("{:?}@{}", a.kind, a.at.unix_millis() / minute),
            })
            .collect();
        let id = |i: usize| records[i].hub_message_id.clone();
        assert_eq!(
            summary,
            [
                "Raised@1".to_owned(),
                format!("command@{}", id(1)),
                "Cleared@3".to_owned(),
                "Raised@4".to_owned(), // within the cooldown: alert again, no command
                "Cleared@15".to_owned(),
                "Raised@16".to_owned(),
                format!("command@{}", id(6)),
            ]
        );
        let alert = alert_of(&working, "hot", "d1");
        let raises: Vec<(i64, f64, Option<i64>)> = alert
            .recent_raises
            .iter()
            .map(|r| {
                (
                    r.raised_at.unix_millis() / minute,
                    r.value,
                    r.cleared_at.map(|c| c.unix_millis() / minute),
                )
            })
            .collect();
        assert_eq!(
            raises,
            [(1, 35.0, Some(3)), (4, 40.0, Some(15)), (16, 41.0, None)],
            "each raise is remembered with its value and when it cleared"
        );
        assert_eq!(alert.raise_count, 3);
    }

    #[test]
    fn an_alert_remembers_only_its_last_raises() {
        let engine = engine();
        let hot = rule(
            r#"{"id":"hot","devices":{"all":true},"condition":{"field":"t","operator":">","threshold":30},
                "actions":{"alert":{"severity":"warning"}}}"#,
        );
        let mut working = Working::default();
        let records: Vec<_> = (0..30)
            .map(|i| envelope("d1", i * 1000, &format!(r#"{{"t":{}}}"#, 20 + (i % 2) * 20)))
            .collect();
        run(&engine, &mut working, &records, std::slice::from_ref(&hot));
        let alert = alert_of(&working, "hot", "d1");
        assert_eq!(alert.raise_count, 15);
        assert_eq!(alert.recent_raises.len(), RECENT_RAISES);
        assert_eq!(
            alert.recent_raises[0].raised_at.unix_millis(),
            (2 * (15 - RECENT_RAISES as i64) + 1) * 1000,
            "the oldest raises make room for new ones"
        );
    }

    #[test]
    fn consecutive_and_window_mean_conditions() {
        let engine = engine();
        let twice = rule(
            r#"{"id":"twice","devices":{"ids":["d1"]},"condition":{"field":"t","operator":">=","threshold":10,"consecutive":2},"actions":{"alert":{}}}"#,
        );
        let mean = rule(
            r#"{"id":"mean","devices":{"all":true},"condition":{"field":"t","operator":">","threshold":15,"aggregation":"windowMean","window":"1m"},"actions":{"alert":{}}}"#,
        );
        let mut working = Working::default();
        let records = [
            envelope("d1", 1_000, r#"{"t":10}"#),
            envelope("d1", 2_000, r#"{"t":12}"#),
            envelope("d1", 3_000, r#"{"t":30}"#),
        ];
        let effects = run(&engine, &mut working, &records, &[twice, mean]);
        let raised: Vec<(String, i64)> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Alert(a) => Some((a.rule_id.clone(), a.at.unix_millis())),
                _ => None,
            })
            .collect();
        // `twice` fires on the second reading; the window mean passes 15 on the third (52/3).
        assert_eq!(
            raised,
            [("twice".to_owned(), 2_000), ("mean".to_owned(), 3_000)]
        );
    }

    #[test]
    fn a_condition_that_persists_past_the_cooldown_commands_again() {
        let engine = engine();
        let hot = rule(
            r#"{"id":"hot","devices":{"all":true},"condition":{"field":"t","operator":">","threshold":30},
                "cooldownSeconds":60,"actions":{"command":{"body":"fan on"}}}"#,
        );
        let records: Vec<_> = (0..7)
            .map(|i| envelope("d1", i * 30_000, r#"{"t":40}"#))
            .collect();
        let effects = run(&engine, &mut Working::default(), &records, &[hot]);
        let sent: Vec<i64> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Command(c) => records
                    .iter()
                    .position(|r| Some(&r.hub_message_id) == c.correlation_id.as_ref())
                    .map(|i| i as i64 * 30),
                _ => None,
            })
            .collect();
        assert_eq!(sent, [0, 60, 120, 180], "once a minute while it stays hot");
    }

    fn learned_rule() -> Rule {
        rule(
            r#"{"id":"above-normal","devices":{"all":true},
                "condition":{"field":"p","learned":{"sensitivity":4,"warmup":10,"alpha":0.05}},
                "actions":{"alert":{"severity":"critical"},"command":{"body":"relax"}},"cooldownSeconds":0}"#,
        )
    }

    fn alert_of(working: &Working, rule: &str, device: &str) -> Alert {
        match working.get(&StateKey::Alert {
            rule_id: rule.into(),
            device: DeviceId::parse(device).unwrap(),
        }) {
            Some(StateItem::Alert(alert)) => alert.clone(),
            other => panic!("no alert state: {other:?}"),
        }
    }

    #[test]
    fn a_learned_rule_learns_each_device_then_fires_above_its_band_and_says_why() {
        let engine = engine();
        let rules = [learned_rule()];
        let mut working = Working::default();
        // d1 lives around 100, d2 around 500: one rule, two normals.
        let mut records = Vec::new();
        for i in 0..20 {
            let wiggle = if i % 2 == 0 { 1.0 } else { -1.0 };
            records.push(envelope(
                "d1",
                i * 1_000,
                &format!(r#"{{"p":{}}}"#, 100.0 + wiggle),
            ));
            records.push(envelope(
                "d2",
                i * 1_000,
                &format!(r#"{{"p":{}}}"#, 500.0 + wiggle),
            ));
        }
        assert!(
            run(&engine, &mut working, &records, &rules).is_empty(),
            "nothing abnormal yet"
        );
        let d1 = alert_of(&working, "above-normal", "d1");
        let baseline = d1.baseline.unwrap();
        assert!((baseline.mean - 100.0).abs() < 0.5, "{baseline:?}");
        assert_eq!(baseline.samples, 20);
        let (low, high) = (d1.expected_low.unwrap(), d1.expected_high.unwrap());
        assert!(low < 99.0 && high > 101.0 && high < 110.0, "{low}..{high}");

        // 500 is normal for d2 and far above normal for d1.
        let effects = run(
            &engine,
            &mut working,
            &[
                envelope("d2", 30_000, r#"{"p":501}"#),
                envelope("d1", 30_000, r#"{"p":500}"#),
            ],
            &rules,
        );
        let [Effect::Alert(raised), Effect::Command(command)] = effects.as_slice() else {
            panic!("{effects:?}")
        };
        assert_eq!(
            (raised.device_id.as_str(), raised.kind),
            ("d1", AlertEventKind::Raised)
        );
        assert!(raised.score.unwrap() > 100.0, "{raised:?}");
        let judged_against = baseline.mean + 4.0 * baseline.variance.sqrt();
        assert_eq!(
            raised.expected_high,
            Some(judged_against),
            "the band the learned baseline gave"
        );
        assert_eq!(command.device_id.as_str(), "d1");

        // While the alert is active the fault is not learned; back in the band, it clears.
        run(
            &engine,
            &mut working,
            &[envelope("d1", 31_000, r#"{"p":520}"#)],
            &rules,
        );
        let active = alert_of(&working, "above-normal", "d1");
        assert_eq!(active.baseline.unwrap(), baseline, "frozen while abnormal");
        let effects = run(
            &engine,
            &mut working,
            &[envelope("d1", 32_000, r#"{"p":100}"#)],
            &rules,
        );
        assert!(
            matches!(effects.as_slice(), [Effect::Alert(e)] if e.kind == AlertEventKind::Cleared),
            "{effects:?}"
        );
    }

    #[test]
    fn learned_state_is_part_of_the_replayed_state() {
        // The baseline lives in the alert item, committed with the shard checkpoint: processing
        // the same records from the same stored state gives the same baseline and effects.
        let engine = engine();
        let rules = [learned_rule()];
        let records: Vec<_> = (0..15)
            .map(|i| envelope("d1", i * 1_000, &format!(r#"{{"p":{}}}"#, 100 + i % 3)))
            .chain(std::iter::once(envelope("d1", 20_000, r#"{"p":200}"#)))
            .collect();
        let mut first = Working::default();
        let mut second = Working::default();
        let a = run(&engine, &mut first, &records, &rules);
        let b = run(&engine, &mut second, &records, &rules);
        assert_eq!(a, b);
        assert_eq!(
            alert_of(&first, "above-normal", "d1"),
            alert_of(&second, "above-normal", "d1")
        );
        assert_eq!(a.len(), 2, "raised and commanded once: {a:?}");
    }

    #[test]
    fn replaying_from_the_same_state_gives_the_same_effects_and_ids() {
        let engine = engine();
        let hot = rule(
            r#"{"id":"hot","devices":{"all":true},"condition":{"field":"t","operator":">","threshold":30},"actions":{"command":{"body":"x"}}}"#,
        );
        let records = [envelope("d1", 0, r#"{"t":31}"#)];
        let first = run(
            &engine,
            &mut Working::default(),
            &records,
            std::slice::from_ref(&hot),
        );
        let again = run(
            &engine,
            &mut Working::default(),
            &records,
            std::slice::from_ref(&hot),
        );
        assert_eq!(first, again);
        assert!(matches!(&first[0], Effect::Command(c) if c.request_id.len() == 64));
    }

    #[test]
    fn rules_only_see_their_devices_and_fields() {
        let engine = engine();
        let only_d2 = rule(
            r#"{"id":"d2","devices":{"ids":["d2"]},"condition":{"field":"t","operator":">","threshold":0},"actions":{"alert":{}}}"#,
        );
        let records = [
            envelope("d1", 0, r#"{"t":5}"#),
            envelope("d2", 0, r#"{"other":5}"#),
        ];
        let mut working = Working::default();
        assert!(
            run(
                &engine,
                &mut working,
                &records,
                std::slice::from_ref(&only_d2)
            )
            .is_empty()
        );
        assert_eq!(
            engine
                .keys(&records[1], RuleSet::untagged(&[only_d2]))
                .len(),
            1 + 2 + 1
        );
    }
}
