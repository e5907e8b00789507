//! The registry's events as routed messages, the shape Azure gives them: the notification as a
//! UTF-8 JSON body, and `hubName`, `deviceId`, `opType`, `operationTimestamp` and
//! `iothub-message-schema` as application properties, so routes query them as they query device
//! messages (`opType = 'deleteDeviceIdentity'`, `$body.properties.desired.mode = 'eco'`).

use serde_json::json;

use crate::domain::envelope::{
    AuthMethod, AuthScope, ENVELOPE_VERSION, Properties, SystemProperties, TelemetryEnvelope,
};
use crate::domain::registry::{LifecycleEvent, LifecycleOperation};
use crate::routing::RouteSource;

/// Event Grid's type of device telemetry (EventBridge's `detail-type` of routed messages).
pub const TELEMETRY_EVENT_TYPE: &str = "Microsoft.Devices.DeviceTelemetry";

/// Event Grid's type of each registry event; twin changes have none there, so they get a name
/// of the same form.
pub fn event_type(operation: LifecycleOperation) -> &'static str {
    match operation {
        LifecycleOperation::CreateDeviceIdentity => "Microsoft.Devices.DeviceCreated",
        LifecycleOperation::DeleteDeviceIdentity => "Microsoft.Devices.DeviceDeleted",
        LifecycleOperation::UpdateTwin | LifecycleOperation::ReplaceTwin => {
            "Microsoft.Devices.DeviceTwinChanged"
        }
        LifecycleOperation::DeviceConnected => "Microsoft.Devices.DeviceConnected",
        LifecycleOperation::DeviceDisconnected => "Microsoft.Devices.DeviceDisconnected",
    }
}

/// The source a registry event is routed from.
pub fn source_of(operation: LifecycleOperation) -> RouteSource {
    match operation {
        LifecycleOperation::CreateDeviceIdentity | LifecycleOperation::DeleteDeviceIdentity => {
            RouteSource::DeviceLifecycleEvents
        }
        LifecycleOperation::UpdateTwin | LifecycleOperation::ReplaceTwin => {
            RouteSource::TwinChangeEvents
        }
        LifecycleOperation::DeviceConnected | LifecycleOperation::DeviceDisconnected => {
            RouteSource::DeviceConnectionStateEvents
        }
    }
}

/// `event` as a message to route: its source, and an envelope whose `hubMessageId` is the
/// event's id (what endpoints deduplicate by) and whose enqueued time is the operation's.
pub fn event_message(event: &LifecycleEvent) -> (RouteSource, TelemetryEnvelope) {
    let source = source_of(event.op_type);
    // Twin and connection events carry their notification body; lifecycle events carry the
    // identity they created or deleted.
    let body = event.body.clone().unwrap_or_else(|| {
        json!({
            "deviceId": event.device_id.as_str(),
            "generationId": event.generation_id,
            "etag": event.etag,
            "status": event.status,
        })
    });
    let timestamp = event.operation_timestamp.to_string();
    let mut properties = Properties::from([
        ("hubName".to_owned(), event.hub_name.clone()),
        ("deviceId".to_owned(), event.device_id.as_str().to_owned()),
        ("opType".to_owned(), event.op_type.as_str().to_owned()),
        ("operationTimestamp".to_owned(), timestamp),
    ]);
    if let Some(schema) = source.message_schema() {
        properties.insert("iothub-message-schema".to_owned(), schema.to_owned());
    }
    let envelope = TelemetryEnvelope {
        v: ENVELOPE_VERSION,
        hub_message_id: event.event_id.clone(),
        device_id: event.device_id.clone(),
        device_generation_id: event.generation_id.clone(),
        enqueued_time: event.operation_timestamp,
        // Events are the hub's own: no device or policy signed them.
        auth_method: AuthMethod {
            scope: AuthScope::Hub,
            kind: "none".into(),
            issuer: "iothub".into(),
            policy: None,
        },
        system_properties: SystemProperties {
            content_type: Some("application/json".into()),
            content_encoding: Some("utf-8".into()),
            ..Default::default()
        },
        properties,
        body: body.to_string().into_bytes(),
    };
    (source, envelope)
}
