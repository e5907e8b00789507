//! A device message as routing queries see it: `$`-names are system properties, other names are
//! application properties (matched without regard to case, as Azure does), `$body.<path>` reads
//! a JSON body, and `$twin.<path>` the sender's twin. The registry's events are read the same way
//! (see `events`), with their source in `$iothub-message-source`.

use std::borrow::Cow;

use serde_json::Value;

use crate::domain::envelope::TelemetryEnvelope;
use crate::query::{Document, Path, Segment, walk};
use crate::routing::RouteSource;

pub struct MessageView<'a> {
    envelope: &'a TelemetryEnvelope,
    source: RouteSource,
    body: Option<Value>,
    twin: Option<&'a Value>,
}

impl<'a> MessageView<'a> {
    /// The message with its twin document (see `twin_document`), if the router read it. The
    /// body is parsed only when `parse_body` (some route reads `$body`).
    pub fn new(envelope: &'a TelemetryEnvelope, twin: Option<&'a Value>, parse_body: bool) -> Self {
        Self {
            envelope,
            source: RouteSource::DeviceMessages,
            body: parse_body.then(|| json_body(envelope)).flatten(),
            twin,
        }
    }

    /// The same message read as one of `source` (a registry event, see `event_message`).
    pub fn of_source(mut self, source: RouteSource) -> Self {
        self.source = source;
        self
    }

    pub fn source(&self) -> RouteSource {
        self.source
    }
}

/// The body as JSON, when the device said it is: Azure routes on `$body` only for
/// `contentType` application/json with `contentEncoding` UTF-8 (UTF-16 and UTF-32 bodies are
/// not read here).
fn json_body(envelope: &TelemetryEnvelope) -> Option<Value> {
    let system = &envelope.system_properties;
    let media = system.content_type.as_deref()?.split(';').next()?.trim();
    let encoding = system.content_encoding.as_deref()?.trim();
    if !media.eq_ignore_ascii_case("application/json") || !encoding.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    serde_json::from_slice(&envelope.body).ok()
}

fn text(value: &str) -> Option<Cow<'static, Value>> {
    Some(Cow::Owned(Value::String(value.to_owned())))
}

impl Document for MessageView<'_> {
    fn resolve(&self, path: &Path) -> Option<Cow<'_, Value>> {
        let (Segment::Field(root), rest) = path.segments.split_first()? else {
            return None;
        };
        if root.eq_ignore_ascii_case("$body") {
            return walk(self.body.as_ref()?, rest).map(Cow::Borrowed);
        }
        if root.eq_ignore_ascii_case("$twin") {
            return walk(self.twin?, rest).map(Cow::Borrowed);
        }
        if !rest.is_empty() {
            // Properties are strings: nothing lies beneath them.
            return None;
        }
        let envelope = self.envelope;
        let system = &envelope.system_properties;
        if let Some(name) = root.strip_prefix('$') {
            return match name.to_ascii_lowercase().as_str() {
                "contenttype" => text(system.content_type.as_deref()?),
                "contentencoding" => text(system.content_encoding.as_deref()?),
                "messageid" => text(system.message_id.as_deref()?),
                "correlationid" => text(system.correlation_id.as_deref()?),
                "connectiondeviceid" | "iothub-connection-device-id" => {
                    text(envelope.device_id.as_str())
                }
                "connectiondevicegenerationid" | "iothub-connection-auth-generation-id" => {
                    text(&envelope.device_generation_id)
                }
                "iothub-connection-auth-method" if self.source == RouteSource::DeviceMessages => {
                    text(&serde_json::to_string(&envelope.auth_method).ok()?)
                }
                "enqueuedtime" | "iothub-enqueuedtime" => text(&envelope.enqueued_time.to_string()),
                "iothub-message-source" => text(self.source.message_source()),
                // Azure stamps the events' schema as a property, and queries name it with `$`.
                "iothub-message-schema" if self.source != RouteSource::DeviceMessages => {
                    text(envelope.properties.get("iothub-message-schema")?)
                }
                _ => None,
            };
        }
        envelope
            .properties
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(root))
            .and_then(|(_, v)| text(v))
    }
}
