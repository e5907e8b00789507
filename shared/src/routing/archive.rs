//! The cold-path archive, Azure's storage endpoint mapped to S3: what an object is called and
//! what a line of it holds. An object's name and content depend only on the stream records it
//! holds (their shard, the first record's sequence number and arrival time), so a batch delivered
//! again writes the same object again instead of a second one.

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::domain::envelope::{Properties, TelemetryEnvelope};

/// Azure's default file name format, and the tokens every format must contain.
pub const DEFAULT_FILE_NAME_FORMAT: &str = "{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}";
const TOKENS: [&str; 7] = [
    "{iothub}",
    "{partition}",
    "{YYYY}",
    "{MM}",
    "{DD}",
    "{HH}",
    "{mm}",
];

/// Objects end with the batch's first sequence number and this suffix.
pub const OBJECT_SUFFIX: &str = ".json.gz";

/// Why a file name format is refused.
pub fn check_file_name_format(format: &str) -> Result<(), String> {
    let missing: Vec<&str> = TOKENS
        .iter()
        .copied()
        .filter(|t| format.matches(t).count() != 1)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "a file name format holds each of {} exactly once (missing or repeated: {})",
            TOKENS.join(" "),
            missing.join(" ")
        ));
    }
    if format.starts_with('/') || format.contains("//") || format.len() > 512 {
        return Err("a file name format is a relative S3 key of at most 512 characters".into());
    }
    Ok(())
}

/// The object holding a batch that starts at `first_sequence` on `partition`, which arrived at
/// `arrival` (the first record's Kinesis arrival time).
pub fn object_key(
    format: &str,
    hub: &str,
    partition: &str,
    arrival: OffsetDateTime,
    first_sequence: &str,
) -> String {
    let two = |n: u8| format!("{n:02}");
    let name = format
        .replace("{iothub}", hub)
        .replace("{partition}", partition)
        .replace("{YYYY}", &format!("{:04}", arrival.year()))
        .replace("{MM}", &two(u8::from(arrival.month())))
        .replace("{DD}", &two(arrival.day()))
        .replace("{HH}", &two(arrival.hour()))
        .replace("{mm}", &two(arrival.minute()));
    format!("{name}/{first_sequence}{OBJECT_SUFFIX}")
}

/// One archived message, in Azure's JSON encoding of routed messages (`EnqueuedTimeUtc`,
/// `Properties`, `SystemProperties`, `Body`: the JSON itself for UTF-8 JSON bodies, base64
/// otherwise), plus the hub's message id and the record's stream position.
pub fn archive_line(
    envelope: &TelemetryEnvelope,
    properties: &Properties,
    sequence_number: &str,
) -> Value {
    use base64::Engine as _;
    let system = &envelope.system_properties;
    let json_body = system.content_type.as_deref().is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    }) && system
        .content_encoding
        .as_deref()
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("utf-8"));
    let (body, body_encoding) = match json_body
        .then(|| serde_json::from_slice::<Value>(&envelope.body).ok())
        .flatten()
    {
        Some(value) => (value, "json"),
        None => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(&envelope.body)),
            "base64",
        ),
    };
    let mut system_properties = json!({
        "connectionDeviceId": envelope.device_id.as_str(),
        "connectionDeviceGenerationId": envelope.device_generation_id,
        "connectionAuthMethod": serde_json::to_string(&envelope.auth_method).unwrap_or_default(),
        "enqueuedTime": envelope.enqueued_time.to_string(),
    });
    for (name, value) in [
        ("messageId", &system.message_id),
        ("correlationId", &system.correlation_id),
        ("contentType", &system.content_type),
        ("contentEncoding", &system.content_encoding),
    ] {
        if let Some(value) = value {
            system_properties[name] = json!(value);
        }
    }
    json!({
        "EnqueuedTimeUtc": envelope.enqueued_time.to_string(),
        "Properties": properties,
        "SystemProperties": system_properties,
        "Body": body,
        "bodyEncoding": body_encoding,
        "hubMessageId": envelope.hub_message_id,
        "sequenceNumber": sequence_number,
    })
}

/// The envelope an archived line was made from (for replay): the body as sent for base64
/// bodies, re-serialised for JSON ones (same value, whitespace may differ).
pub fn envelope_from_line(line: &Value) -> Result<TelemetryEnvelope, String> {
    use base64::Engine as _;
    let system = &line["SystemProperties"];
    let text = |v: &Value, name: &str| -> Result<String, String> {
        v[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("the line has no {name}"))
    };
    let optional = |name: &str| system[name].as_str().map(str::to_owned);
    let body = match line["bodyEncoding"].as_str() {
        Some("json") => serde_json::to_vec(&line["Body"]).map_err(|e| e.to_string())?,
        _ => base64::engine::general_purpose::STANDARD
            .decode(line["Body"].as_str().unwrap_or_default())
            .map_err(|e| format!("the body is not base64: {e}"))?,
    };
    let auth_method = serde_json::from_str(&text(system, "connectionAuthMethod")?)
        .map_err(|e| format!("connectionAuthMethod: {e}"))?;
    let properties: Properties = serde_json::from_value(line["Properties"].clone())
        .map_err(|e| format!("Properties: {e}"))?;
    Ok(TelemetryEnvelope {
        v: crate::domain::envelope::ENVELOPE_VERSION,
        hub_message_id: text(line, "hubMessageId")?,
        device_id: crate::DeviceId::parse(&text(system, "connectionDeviceId")?)
            .map_err(|e| e.to_string())?,
        device_generation_id: text(system, "connectionDeviceGenerationId")?,
        enqueued_time: crate::domain::timestamp::Timestamp::parse(&text(line, "EnqueuedTimeUtc")?)
            .map_err(|e| format!("EnqueuedTimeUtc: {e}"))?,
        auth_method,
        system_properties: crate::domain::envelope::SystemProperties {
            message_id: optional("messageId"),
            correlation_id: optional("correlationId"),
            content_type: optional("contentType"),
            content_encoding: optional("contentEncoding"),
        },
        properties,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_need_every_token_once() {
        assert!(check_file_name_format(DEFAULT_FILE_NAME_FORMAT).is_ok());
        assert!(check_file_name_format("{YYYY}/{MM}/{DD}/{HH}/{mm}/{iothub}/{partition}").is_ok());
        let missing = check_file_name_format("{iothub}/{YYYY}/{MM}/{DD}/{HH}").unwrap_err();
        assert!(missing.contains("{partition} {mm}"), "{missing}");
        assert!(
            check_file_name_format("{iothub}/{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}")
                .is_err()
        );
        assert!(
            check_file_name_format("/{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}").is_err()
        );
    }

    #[test]
    fn a_line_gives_back_its_envelope() {
        use crate::domain::envelope::{AuthMethod, DeviceMessage, Sender, SystemProperties};
        let sender = Sender {
            device_id: crate::DeviceId::parse("d1").unwrap(),
            generation_id: "7".into(),
            auth_method: AuthMethod::policy("service"),
        };
        let stamp = |body: &[u8], json: bool| {
            TelemetryEnvelope::stamp(
                DeviceMessage {
                    body: body.to_vec(),
                    properties: Properties::from([("k".into(), "v".into())]),
                    system: SystemProperties {
                        message_id: Some("m".into()),
                        content_type: json.then(|| "application/json".into()),
                        content_encoding: json.then(|| "utf-8".into()),
                        ..Default::default()
                    },
                },
                &sender,
                crate::domain::timestamp::Timestamp::parse("2026-12-04T09:01:05.123Z").unwrap(),
            )
        };
        for (envelope, encoding) in [
            (stamp(br#"{"t":1.5}"#, true), "json"),
            (stamp(br#""text""#, true), "json"),
            (stamp(b"not json", true), "base64"),
            (stamp(&[0, 159, 255], false), "base64"),
        ] {
            let line = archive_line(&envelope, &envelope.properties, "42");
            assert_eq!(line["bodyEncoding"], encoding, "{line}");
            assert_eq!(envelope_from_line(&line).unwrap(), envelope);
        }
    }

    #[test]
    fn keys_name_the_hub_partition_arrival_minute_and_first_record() {
        let arrival = OffsetDateTime::from_unix_timestamp(1_796_374_865).unwrap();
        assert_eq!(
            object_key(
                DEFAULT_FILE_NAME_FORMAT,
                "hub.example",
                "shardId-000000000001",
                arrival,
                "4960"
            ),
            "hub.example/shardId-000000000001/2026/12/04/09/01/4960.json.gz"
        );
    }
}
