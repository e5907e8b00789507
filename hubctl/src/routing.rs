//! `hubctl route check|test`: the router's own routing code, run offline on a configuration
//! file, so a route is tried before `terraform apply` ships it.

use hub_shared::DeviceId;
use hub_shared::domain::device::DeviceStatus;
use hub_shared::domain::envelope::{
    AuthMethod, DeviceMessage, Properties, Sender, SystemProperties, TelemetryEnvelope,
};
use hub_shared::domain::registry::{LifecycleEvent, LifecycleOperation};
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::routing::{
    BUILT_IN_ENDPOINT, MessageView, RouteSource, RouteTable, RoutingConfig, event_message,
};
use serde_json::{Value, json};

use crate::CliError;
use crate::cli::{RouteCommand, Source};
use crate::output::Printer;

/// The router's configuration from either spelling: Terraform's variables (`routes`,
/// `routing_endpoints`, `routing_enrichments`, `routing_fallback`, `archive`) or `HUB_ROUTING`.
pub fn config_from(value: Value) -> Result<RoutingConfig, CliError> {
    let terraform = [
        "routing_endpoints",
        "routing_enrichments",
        "routing_fallback",
        "archive",
    ]
    .iter()
    .any(|k| value.get(k).is_some());
    let value = if terraform {
        let mut endpoints = value
            .get("routing_endpoints")
            .cloned()
            .unwrap_or_else(|| json!({}));
        if !endpoints.is_object() {
            return Err(CliError::Usage(
                "routing_endpoints must be an object of endpoints by name".into(),
            ));
        }
        if value["archive"]["enabled"] == json!(true) {
            let mut archive = json!({ "type": "s3", "arn": "arn:aws:s3:::archive" });
            if let Some(format) = value["archive"].get("file_name_format") {
                archive["fileNameFormat"] = format.clone();
            }
            endpoints["archive"] = archive;
        }
        json!({
            "endpoints": endpoints,
            "routes": value.get("routes").cloned().unwrap_or_else(|| json!([])),
            "enrichments": value.get("routing_enrichments").cloned().unwrap_or_else(|| json!([])),
            "fallback": value.get("routing_fallback").cloned().unwrap_or(json!(true)),
        })
    } else {
        value
    };
    serde_json::from_value(value)
        .map_err(|e| CliError::Usage(format!("the routing configuration: {e}")))
}

fn table_from(path: &std::path::Path) -> Result<RouteTable, CliError> {
    let text = std::fs::read_to_string(path)?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("{} is not JSON: {e}", path.display())))?;
    RouteTable::compile(&config_from(value)?).map_err(|e| CliError::Refused(e.to_string()))
}

pub fn run(command: &RouteCommand, printer: &Printer) -> Result<(), CliError> {
    match command {
        RouteCommand::Check { config } => {
            let table = table_from(config)?;
            let routes = table.route_names().count();
            printer.line(
                &format!(
                    "{routes} enabled routes and {} endpoints are valid",
                    table.endpoint_names().len()
                ),
                &json!({ "valid": true, "routes": routes, "endpoints": table.endpoint_names() }),
            );
            Ok(())
        }
        RouteCommand::Test {
            config,
            device,
            body,
            content_type,
            content_encoding,
            properties,
            twin,
            source,
        } => {
            let table = table_from(config)?;
            let properties = properties
                .iter()
                .map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .ok_or_else(|| CliError::Usage(format!("--property {p}: give NAME=VALUE")))
                })
                .collect::<Result<Properties, _>>()?;
            let twin: Option<Value> = match twin {
                Some(path) => Some(
                    serde_json::from_str(&std::fs::read_to_string(path)?).map_err(|e| {
                        CliError::Usage(format!("{} is not JSON: {e}", path.display()))
                    })?,
                ),
                None => None,
            };
            let device = DeviceId::parse(device).map_err(|e| CliError::Usage(e.to_string()))?;
            let (source, envelope) = match source {
                Source::DeviceMessages => (
                    RouteSource::DeviceMessages,
                    device_message(device, body, content_type, content_encoding, properties),
                ),
                Source::TwinChangeEvents => event(
                    &table,
                    device,
                    LifecycleOperation::UpdateTwin,
                    body,
                    properties,
                )?,
                Source::DeviceLifecycleEvents => event(
                    &table,
                    device,
                    LifecycleOperation::CreateDeviceIdentity,
                    body,
                    properties,
                )?,
                Source::DeviceConnectionStateEvents => event(
                    &table,
                    device,
                    LifecycleOperation::DeviceConnected,
                    body,
                    properties,
                )?,
            };
            let view = MessageView::new(&envelope, twin.as_ref(), true).of_source(source);
            let decision = table.decide(&view);
            let matched: Vec<&str> = table.names_of(&decision).collect();
            let routes: Vec<Value> = table
                .route_names()
                .map(|name| json!({ "route": name, "result": if matched.contains(&name) { "true" } else { "false" } }))
                .collect();
            let mut endpoints: Vec<Value> = decision
                .endpoints
                .iter()
                .filter_map(|i| {
                    table.endpoint(*i).map(|(name, _)| {
                        json!({ "endpoint": name, "properties": table.enriched(&envelope, twin.as_ref(), *i) })
                    })
                })
                .collect();
            if decision.built_in {
                endpoints
                    .push(json!({ "endpoint": BUILT_IN_ENDPOINT, "fallback": decision.fallback }));
            }
            if printer.json() {
                printer.document(&json!({ "routes": routes, "endpoints": endpoints }));
                return Ok(());
            }
            printer.table(&[("Route", "route"), ("Result", "result")], &routes);
            if endpoints.is_empty() {
                println!(
                    "No route matched and the fallback is off: the message goes nowhere beyond the telemetry stream."
                );
            }
            for endpoint in &endpoints {
                let name = endpoint["endpoint"].as_str().unwrap_or_default();
                if endpoint["fallback"] == json!(true) {
                    println!("-> {name} (fallback route)");
                } else {
                    println!("-> {name} with properties {}", endpoint["properties"]);
                }
            }
            Ok(())
        }
    }
}

fn device_message(
    device: DeviceId,
    body: &str,
    content_type: &Option<String>,
    content_encoding: &Option<String>,
    properties: Properties,
) -> TelemetryEnvelope {
    let sender = Sender {
        device_id: device,
        generation_id: "0".into(),
        auth_method: AuthMethod::device_key(),
    };
    TelemetryEnvelope::stamp(
        DeviceMessage {
            body: body.as_bytes().to_vec(),
            properties,
            system: SystemProperties {
                content_type: content_type.clone(),
                content_encoding: content_encoding.clone(),
                ..Default::default()
            },
        },
        &sender,
        Timestamp::now(),
    )
}

/// A registry event as the router reads it: `body` is its notification (JSON), `properties`
/// override Azure's (`opType` among them).
fn event(
    table: &RouteTable,
    device: DeviceId,
    op_type: LifecycleOperation,
    body: &str,
    properties: Properties,
) -> Result<(RouteSource, TelemetryEnvelope), CliError> {
    let body = match body.trim() {
        // Twin and connection events always carry a notification; lifecycle events carry the
        // identity (made from the event) instead.
        "" if op_type == LifecycleOperation::CreateDeviceIdentity => None,
        "" => Some(json!({})),
        text => Some(serde_json::from_str(text).map_err(|e| {
            CliError::Usage(format!("--body: an event's notification is JSON: {e}"))
        })?),
    };
    let event = LifecycleEvent {
        event_id: "test-event".into(),
        op_type,
        hub_name: table.hub_name().to_owned(),
        device_id: device,
        generation_id: "0".into(),
        etag: String::new(),
        status: DeviceStatus::Enabled,
        operation_timestamp: Timestamp::now(),
        body,
    };
    let (source, mut envelope) = event_message(&event);
    envelope.properties.extend(properties);
    Ok((source, envelope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terraform_variables_and_the_router_environment_read_alike() {
        let terraform = config_from(json!({
            "routing_endpoints": { "q": { "type": "sqs", "arn": "arn:aws:sqs:r:1:q", "url": "http://q" } },
            "routes": [{ "name": "r", "endpoint": "q" }, { "name": "cold", "endpoint": "archive" }],
            "routing_fallback": false,
            "archive": { "enabled": true },
        }))
        .unwrap();
        assert!(!terraform.fallback);
        assert_eq!(terraform.endpoints.len(), 2);
        assert!(RouteTable::compile(&terraform).is_ok());
        let router =
            config_from(json!({ "routes": [{ "name": "r", "endpoint": "events" }] })).unwrap();
        assert_eq!(router.routes.len(), 1);
    }
}
