//! Fuzz targets for the parsers that read what callers send: each takes raw bytes, must not
//! panic whatever they are, and checks what must hold of what it accepts (a token it parses
//! round-trips through signing, a merge patch applied twice changes nothing more, a rule or a
//! connection string survives its own serialization). libFuzzer drives them through
//! `fuzz_targets/` (`scripts/fuzz.sh`); `tests/corpora.rs` replays the committed corpora on the
//! stable toolchain in every test run.

use std::time::Duration;

use hub_shared::domain::analytics::{Rule, WindowSize};
use hub_shared::domain::connection_string::ConnectionString;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::envelope::{
    AuthMethod, DeviceMessage, Properties, Sender, SystemProperties, TelemetryEnvelope,
};
use hub_shared::domain::job::JobSpec;
use hub_shared::domain::method::{MethodRequest, MethodResponse};
use hub_shared::domain::registry::{LifecycleEvent, LifecycleOperation};
use hub_shared::domain::sas::{SasToken, SymmetricKey};
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::domain::twin::{SectionKind, Twin};
use hub_shared::query::{holds, parse_condition, parse_query};
use hub_shared::routing::{MessageView, RouteTable, event_message};
use serde_json::{Value, json};

/// A fuzz target: raw bytes in, a panic when something that must hold does not.
pub type Target = fn(&[u8]);

/// Every target, by name, for the corpus replay.
pub const TARGETS: [(&str, Target); 8] = [
    ("sas_token", sas_token),
    ("connection_string", connection_string),
    ("twin_patch", twin_patch),
    ("rule", rule),
    ("query", query),
    ("routing", routing),
    ("job", job),
    ("method", method),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

fn now() -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000).unwrap_or(Timestamp::NEVER)
}

/// An `Authorization` header. A token that parses is signed again from its own fields and must
/// parse to the same resource, expiry and policy, and verify with the key that signed it.
pub fn sas_token(data: &[u8]) {
    let Some(header) = text(data) else { return };
    let Ok(token) = SasToken::parse(header) else {
        return;
    };
    let _ = token.is_expired(u64::MAX, u64::MAX);
    let segments: Vec<&str> = token.resource().split('/').collect();
    let _ = token.covers(&segments);
    let _ = token.covers(&[]);
    let key = SymmetricKey::generate();
    assert!(
        !token.verify(&key),
        "a fresh key cannot have signed {header:?}"
    );
    let signed = SasToken::generate(token.resource(), &key, token.expiry(), token.key_name());
    let again = SasToken::parse(&signed)
        .unwrap_or_else(|e| panic!("{signed:?}, signed from {header:?}, does not parse: {e}"));
    assert_eq!(again.resource(), token.resource());
    assert_eq!(again.expiry(), token.expiry());
    assert_eq!(again.key_name(), token.key_name());
    assert!(again.verify(&key), "{signed:?} does not verify");
}

/// A device or service connection string (and a device id): one that parses prints as one that
/// parses to itself.
pub fn connection_string(data: &[u8]) {
    let Some(value) = text(data) else { return };
    let _ = DeviceId::parse(value);
    let Ok(parsed) = ConnectionString::parse(value) else {
        return;
    };
    let printed = parsed.to_string();
    let again = ConnectionString::parse(&printed)
        .unwrap_or_else(|e| panic!("{printed:?} (from {value:?}) does not parse: {e}"));
    assert_eq!(again, parsed);
}

/// A twin patch (JSON), to each section. A refused patch changes nothing; an accepted one,
/// applied again, leaves the same properties (a merge patch is idempotent).
pub fn twin_patch(data: &[u8]) {
    let Ok(patch) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for kind in [
        SectionKind::Tags,
        SectionKind::Desired,
        SectionKind::Reported,
    ] {
        let mut twin = Twin::new("638000000000000000");
        let before = twin.clone();
        if twin.patch(kind, &patch, now()).is_err() {
            assert_eq!(twin, before, "a refused patch changed the twin");
            continue;
        }
        let once = twin.clone();
        if twin.patch(kind, &patch, now()).is_ok() {
            assert_eq!(twin.tags, once.tags);
            assert_eq!(twin.desired.properties, once.desired.properties);
            assert_eq!(twin.reported.properties, once.reported.properties);
        }
    }
}

/// A rule definition (JSON) as the rules API takes it; one that parses survives its own
/// serialization, and validating it does not panic.
pub fn rule(data: &[u8]) {
    let Ok(rule) = serde_json::from_slice::<Rule>(data) else {
        return;
    };
    let windows: Vec<WindowSize> = [60, 3600]
        .into_iter()
        .filter_map(|s| WindowSize::new(Duration::from_secs(s)))
        .collect();
    let _ = rule.validate(&windows);
    let value = serde_json::to_value(&rule).unwrap_or_else(|e| panic!("{rule:?}: {e}"));
    let again: Rule = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{value} does not parse back: {e}"));
    assert_eq!(again, rule);
}

/// A twin query and a routing condition; what parses is evaluated against a device document.
pub fn query(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = parse_query(text);
    if let Ok(condition) = parse_condition(text) {
        let document = json!({
            "deviceId": "pump-1",
            "tags": { "site": "dublin", "floor": 3, "list": [1, "a", null, { "x": true }] },
            "properties": { "desired": { "mode": "eco" }, "reported": { "temperature": 21.5 } },
        });
        let _ = holds(&condition, &document);
    }
}

/// A routing configuration (the router's `HUB_ROUTING`); one that compiles routes a device
/// message and a registry event.
pub fn routing(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(table) = RouteTable::from_json(text) else {
        return;
    };
    let Ok(device) = DeviceId::parse("pump-1") else {
        return;
    };
    let sender = Sender {
        device_id: device.clone(),
        generation_id: "1".into(),
        auth_method: AuthMethod::device_key(),
    };
    let message = TelemetryEnvelope::stamp(
        DeviceMessage {
            body: br#"{"temperature": 95, "list": [1, 2]}"#.to_vec(),
            properties: Properties::from([("level".to_owned(), "critical".to_owned())]),
            system: SystemProperties {
                content_type: Some("application/json".into()),
                content_encoding: Some("utf-8".into()),
                ..Default::default()
            },
        },
        &sender,
        now(),
    );
    let twin =
        json!({ "tags": { "site": "dublin" }, "properties": { "desired": {}, "reported": {} } });
    let decision = table.decide(&MessageView::new(&message, Some(&twin), true));
    for endpoint in &decision.endpoints {
        let _ = table.enriched(&message, Some(&twin), *endpoint);
    }
    let event = LifecycleEvent {
        event_id: "e".into(),
        op_type: LifecycleOperation::UpdateTwin,
        hub_name: "hub".into(),
        device_id: device,
        generation_id: "1".into(),
        etag: String::new(),
        status: Default::default(),
        operation_timestamp: now(),
        body: Some(json!({ "version": 2, "properties": { "desired": { "mode": "eco" } } })),
    };
    let (source, envelope) = event_message(&event);
    let _ = table.decide(&MessageView::new(&envelope, Some(&twin), true).of_source(source));
}

/// A job request (Azure's `JobRequest`).
pub fn job(data: &[u8]) {
    let _ = JobSpec::parse("job-1", data, now());
}

/// A direct method call and a device's answer to one.
pub fn method(data: &[u8]) {
    let _ = MethodRequest::parse(data);
    let _ = MethodResponse::parse(data);
}
