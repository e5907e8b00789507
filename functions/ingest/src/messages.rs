//! Reading device messages from an HTTP request, as Azure IoT Hub's device API defines them:
//! a single message (raw body, `iothub-*` headers) or a batch
//! (`application/vnd.microsoft.iothub.json`: a JSON array of `{"body", "properties"}`).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::HeaderMap;
use hub_shared::domain::envelope::{
    DeviceMessage, MAX_MESSAGE_BYTES, Properties, SystemProperties,
};
use hub_shared::error::{ApiError, ErrorCode};
use serde::Deserialize;

pub const BATCH_CONTENT_TYPE: &str = "application/vnd.microsoft.iothub.json";
const APP_PROPERTY_PREFIX: &str = "iothub-app-";
/// Azure's limit for message and correlation ids.
const MAX_ID_LEN: usize = 128;

pub fn is_batch(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(BATCH_CONTENT_TYPE))
}

fn too_large(what: &str, size: usize) -> ApiError {
    ApiError::new(
        ErrorCode::MessageTooLarge,
        format!("{what} is {size} bytes; the limit is {MAX_MESSAGE_BYTES} bytes (256 KB)"),
    )
}

/// Sorts one property into system or application properties.
fn add_property(message: &mut DeviceMessage, name: &str, value: String) -> Result<(), ApiError> {
    let lower = name.to_ascii_lowercase();
    let system = &mut message.system;
    let slot = match lower.as_str() {
        "iothub-messageid" => &mut system.message_id,
        "iothub-correlationid" => &mut system.correlation_id,
        "iothub-contenttype" => &mut system.content_type,
        "iothub-contentencoding" => &mut system.content_encoding,
        _ => {
            let app_name = if lower.starts_with(APP_PROPERTY_PREFIX) {
                &name[APP_PROPERTY_PREFIX.len()..]
            } else {
                name
            };
            if app_name.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "property {name:?} has an empty name"
                )));
            }
            message.properties.insert(app_name.to_owned(), value);
            return Ok(());
        }
    };
    if matches!(lower.as_str(), "iothub-messageid" | "iothub-correlationid")
        && value.len() > MAX_ID_LEN
    {
        return Err(ApiError::bad_request(format!(
            "{lower} is longer than {MAX_ID_LEN} characters"
        )));
    }
    *slot = Some(value);
    Ok(())
}

/// A single message: the raw body, properties from the `iothub-*` headers.
pub fn single(headers: &HeaderMap, body: Vec<u8>) -> Result<DeviceMessage, ApiError> {
    let mut message = DeviceMessage {
        body,
        properties: Properties::new(),
        system: SystemProperties::default(),
    };
    for (name, value) in headers {
        let name = name.as_str();
        let is_app = name.starts_with(APP_PROPERTY_PREFIX);
        let is_system = matches!(
            name,
            "iothub-messageid"
                | "iothub-correlationid"
                | "iothub-contenttype"
                | "iothub-contentencoding"
        );
        if !(is_app || is_system) {
            continue;
        }
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request(format!("header {name} must be printable ASCII")))?;
        add_property(&mut message, name, value.to_owned())?;
    }
    if message.size() > MAX_MESSAGE_BYTES {
        return Err(too_large("the message", message.size()));
    }
    Ok(message)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchItem {
    body: String,
    #[serde(default = "yes")]
    base64_encoded: bool,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

/// A batch: a JSON array of `{"body": "<base64>", "base64Encoded": true, "properties": {...}}`.
/// Property names are `iothub-app-<name>` (the prefix is optional) or the system properties.
pub fn batch(body: &[u8]) -> Result<Vec<DeviceMessage>, ApiError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(too_large("the batch", body.len()));
    }
    let items: Vec<BatchItem> = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the batch is not a valid JSON array of messages: {e}"
        ))
    })?;
    if items.is_empty() {
        return Err(ApiError::bad_request("the batch holds no messages"));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let body = if item.base64_encoded {
                BASE64.decode(item.body.as_bytes()).map_err(|_| {
                    ApiError::bad_request(format!(
                        "message {index} of the batch: body is not base64"
                    ))
                })?
            } else {
                item.body.into_bytes()
            };
            let mut message = DeviceMessage {
                body,
                ..Default::default()
            };
            for (name, value) in item.properties {
                add_property(&mut message, &name, value).map_err(|e| {
                    ApiError::bad_request(format!("message {index} of the batch: {}", e.message))
                })?;
            }
            Ok(message)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn single_messages_take_properties_from_headers() {
        let message = single(
            &headers(&[
                ("iothub-app-temperature-alert", "true"),
                ("iothub-messageid", "m-1"),
                ("iothub-correlationid", "c-1"),
                ("iothub-contenttype", "application/json"),
                ("iothub-contentencoding", "utf-8"),
                ("content-type", "application/octet-stream"),
                ("user-agent", "sdk"),
            ]),
            b"{}".to_vec(),
        )
        .unwrap();
        assert_eq!(
            message.properties,
            Properties::from([("temperature-alert".into(), "true".into())])
        );
        assert_eq!(message.system.message_id.as_deref(), Some("m-1"));
        assert_eq!(message.system.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(
            message.system.content_type.as_deref(),
            Some("application/json")
        );
        assert_eq!(message.system.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(message.body, b"{}");
    }

    #[test]
    fn single_messages_over_256_kb_are_refused() {
        assert!(single(&HeaderMap::new(), vec![0; MAX_MESSAGE_BYTES]).is_ok());
        let error = single(&HeaderMap::new(), vec![0; MAX_MESSAGE_BYTES + 1]).unwrap_err();
        assert_eq!(
            (error.status(), error.code),
            (413, ErrorCode::MessageTooLarge)
        );
        let error = single(
            &headers(&[("iothub-app-x", "y")]),
            vec![0; MAX_MESSAGE_BYTES - 1],
        )
        .unwrap_err();
        assert_eq!(error.status(), 413, "properties count toward the limit");
    }

    #[test]
    fn overlong_message_ids_are_bad_requests() {
        let long = "m".repeat(129);
        assert_eq!(
            single(&headers(&[("iothub-messageid", &long)]), vec![])
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn batches_decode_bodies_and_properties() {
        let json = r#"[
            {"body":"aGVsbG8=","base64Encoded":true,"properties":{"iothub-app-Kind":"greeting","iothub-messageid":"m-1"}},
            {"body":"plain","base64Encoded":false,"properties":{"Unprefixed":"ok"}},
            {"body":"AAEC"}
        ]"#;
        let messages = batch(json.as_bytes()).unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0].body, b"hello");
        assert_eq!(messages[0].properties["Kind"], "greeting");
        assert_eq!(messages[0].system.message_id.as_deref(), Some("m-1"));
        assert_eq!(messages[1].body, b"plain");
        assert_eq!(messages[1].properties["Unprefixed"], "ok");
        assert_eq!(messages[2].body, [0, 1, 2]);
    }

    #[test]
    fn malformed_batches_are_bad_requests() {
        for bad in [
            "",
            "{}",
            "[",
            "[]",
            r#"[{"nobody":1}]"#,
            r#"[{"body":"***"}]"#,
            r#"[{"body":"YQ==","properties":{"iothub-app-":"x"}}]"#,
        ] {
            let error = batch(bad.as_bytes()).unwrap_err();
            assert_eq!(error.status(), 400, "{bad}: {error}");
        }
    }

    #[test]
    fn batches_over_256_kb_are_refused() {
        let item = format!(r#"{{"body":"{}"}}"#, "A".repeat(1000));
        let json = format!("[{}]", vec![item; 300].join(","));
        assert_eq!(batch(json.as_bytes()).unwrap_err().status(), 413);
    }

    #[test]
    fn recognises_the_batch_content_type() {
        assert!(is_batch(Some("application/vnd.microsoft.iothub.json")));
        assert!(is_batch(Some(
            "Application/Vnd.Microsoft.IotHub.Json; charset=utf-8"
        )));
        assert!(!is_batch(Some("application/json")));
        assert!(!is_batch(None));
    }
}
