//! Message routing as Azure IoT Hub defines it: named routes, each a condition in the routing
//! query language over a message (system properties, application properties, `$body`, `$twin`)
//! and one endpoint; a fallback route to the built-in endpoint when no route matches; and
//! enrichments stamped into application properties before delivery. AWS-free: the `router`
//! function delivers what [`RouteTable::decide`] chooses.
//!
//! The configuration comes from Terraform (variables `routes`, `routing_endpoints`,
//! `routing_enrichments`, `routing_fallback`) as one JSON document, compiled once at cold start;
//! a condition that does not parse is refused with its line and column.

pub mod archive;
mod events;
mod message;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::envelope::{Properties, TelemetryEnvelope};
use crate::domain::twin::Twin;
use crate::query::{Expr, Segment, holds, parse_condition, walk};

pub use events::{TELEMETRY_EVENT_TYPE, event_message, event_type, source_of};
pub use message::MessageView;

/// The built-in endpoint: the telemetry stream every accepted message is written to.
pub const BUILT_IN_ENDPOINT: &str = "events";

/// Azure's limits: 100 routes, 10 custom endpoints of each type, 10 enrichments.
pub const MAX_ROUTES: usize = 100;
pub const MAX_ENDPOINTS_PER_TYPE: usize = 10;
pub const MAX_ENRICHMENTS: usize = 10;

/// Where a custom endpoint delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// An SQS queue (standard or FIFO), Azure's Service Bus queue.
    Sqs,
    /// An SNS topic (standard or FIFO), Azure's Service Bus topic.
    Sns,
    /// A Kinesis stream, Azure's Event Hubs.
    Kinesis,
    /// An EventBridge event bus, Azure's Event Grid.
    Eventbridge,
    /// The S3 archive, Azure's storage endpoint (written by the archiver, in batches).
    S3,
}

impl EndpointKind {
    fn arn_service(self) -> &'static str {
        match self {
            EndpointKind::Sqs => "sqs",
            EndpointKind::Sns => "sns",
            EndpointKind::Kinesis => "kinesis",
            EndpointKind::Eventbridge => "events",
            EndpointKind::S3 => "s3",
        }
    }
}

/// A custom endpoint as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    #[serde(rename = "type")]
    pub kind: EndpointKind,
    /// The queue's, topic's, stream's or event bus's ARN.
    pub arn: String,
    /// The queue's URL (SQS only: the API addresses queues by URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How archive objects are named (S3 only; Azure's tokens, see `archive`).
    #[serde(
        default,
        rename = "fileNameFormat",
        skip_serializing_if = "Option::is_none"
    )]
    pub file_name_format: Option<String>,
}

/// What a route reads: device messages (from the telemetry stream) or the registry's events
/// (from the router's copy of the registry events queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RouteSource {
    DeviceMessages,
    TwinChangeEvents,
    DeviceLifecycleEvents,
    DeviceConnectionStateEvents,
}

impl RouteSource {
    /// Azure's `iothub-message-source` for messages of this source.
    pub fn message_source(self) -> &'static str {
        match self {
            RouteSource::DeviceMessages => "Telemetry",
            RouteSource::TwinChangeEvents => "twinChangeEvents",
            RouteSource::DeviceLifecycleEvents => "deviceLifecycleEvents",
            RouteSource::DeviceConnectionStateEvents => "deviceConnectionStateEvents",
        }
    }

    /// Azure's `iothub-message-schema` of the source's events.
    pub fn message_schema(self) -> Option<&'static str> {
        match self {
            RouteSource::DeviceMessages => None,
            RouteSource::TwinChangeEvents => Some("twinChangeNotification"),
            RouteSource::DeviceLifecycleEvents => Some("deviceLifecycleNotification"),
            RouteSource::DeviceConnectionStateEvents => Some("deviceConnectionStateNotification"),
        }
    }
}

fn default_source() -> RouteSource {
    RouteSource::DeviceMessages
}

fn default_condition() -> String {
    "true".to_owned()
}

fn enabled() -> bool {
    true
}

/// A route as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub name: String,
    #[serde(default = "default_source")]
    pub source: RouteSource,
    #[serde(default = "default_condition")]
    pub condition: String,
    /// A custom endpoint's name, or `events`.
    pub endpoint: String,
    #[serde(default = "enabled")]
    pub enabled: bool,
}

/// An enrichment: `key` stamped with `value` on messages delivered to `endpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichmentSpec {
    pub key: String,
    /// A static text, `$iothubname`, or a twin path (`$twin.tags.site`,
    /// `$twin.properties.desired.mode`, `$twin.properties.reported.firmware`).
    pub value: String,
    pub endpoints: Vec<String>,
}

/// The whole routing configuration (the JSON in `HUB_ROUTING`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RoutingConfig {
    /// What `$iothubname` stands for.
    #[serde(default)]
    pub hub_name: String,
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointSpec>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    #[serde(default)]
    pub enrichments: Vec<EnrichmentSpec>,
    /// Azure's fallback route: messages no route matches go to the built-in endpoint.
    #[serde(default = "enabled")]
    pub fallback: bool,
}

/// Why a routing configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    #[error("the routing configuration is not valid JSON of the documented shape: {0}")]
    Shape(String),
    #[error("route {route}: its condition does not parse: {problem}")]
    Condition { route: String, problem: String },
    #[error("{0}")]
    Invalid(String),
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A route's target: the built-in endpoint, or a custom endpoint by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    BuiltIn,
    Custom(usize),
}

#[derive(Debug, Clone)]
struct Route {
    name: String,
    source: RouteSource,
    condition: Expr,
    target: Target,
}

#[derive(Debug, Clone)]
enum EnrichmentValue {
    Static(String),
    HubName,
    /// Path inside the twin document (after `$twin`).
    Twin(Vec<Segment>),
}

#[derive(Debug, Clone)]
struct Enrichment {
    key: String,
    value: EnrichmentValue,
    /// Raw text, used when a twin path does not resolve (as Azure does).
    text: String,
    endpoints: BTreeSet<usize>,
}

/// A compiled routing configuration.
#[derive(Debug, Clone)]
pub struct RouteTable {
    hub_name: String,
    endpoint_names: Vec<String>,
    endpoints: Vec<EndpointSpec>,
    routes: Vec<Route>,
    enrichments: Vec<Enrichment>,
    fallback: bool,
    reads_body: bool,
    reads_twin: bool,
}

/// Which routes a message matched and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Positions of the routes whose condition held, in configuration order.
    pub routes: Vec<usize>,
    /// Custom endpoints, each once however many routes chose it.
    pub endpoints: BTreeSet<usize>,
    /// Whether the built-in endpoint is chosen (by a route, or by the fallback).
    pub built_in: bool,
    /// Whether the fallback route chose the built-in endpoint.
    pub fallback: bool,
}

impl RouteTable {
    /// Parses `HUB_ROUTING`'s JSON and compiles it.
    pub fn from_json(text: &str) -> Result<Self, RoutingError> {
        let config: RoutingConfig =
            serde_json::from_str(text).map_err(|e| RoutingError::Shape(e.to_string()))?;
        Self::compile(&config)
    }

    /// Checks every name, reference and limit and parses every condition.
    pub fn compile(config: &RoutingConfig) -> Result<Self, RoutingError> {
        let invalid = |m: String| RoutingError::Invalid(m);
        let mut per_kind = BTreeMap::<EndpointKind, usize>::new();
        for (name, spec) in &config.endpoints {
            if !valid_name(name) || name == BUILT_IN_ENDPOINT {
                return Err(invalid(format!(
                    "endpoint name {name:?} must be 1 to 64 letters, digits, '-', '_' or '.', and not {BUILT_IN_ENDPOINT:?}"
                )));
            }
            let service = format!("arn:aws:{}:", spec.kind.arn_service());
            let partitioned = spec.arn.split(':').nth(2) == Some(spec.kind.arn_service())
                && spec.arn.starts_with("arn:");
            if !partitioned {
                return Err(invalid(format!(
                    "endpoint {name}: {:?} is not an ARN of its type (expected {service}...)",
                    spec.arn
                )));
            }
            match (spec.kind, &spec.url) {
                (EndpointKind::Sqs, None) => {
                    return Err(invalid(format!(
                        "endpoint {name}: an sqs endpoint needs its url"
                    )));
                }
                (EndpointKind::Sqs, Some(_)) | (_, None) => {}
                (_, Some(_)) => {
                    return Err(invalid(format!(
                        "endpoint {name}: only sqs endpoints take a url"
                    )));
                }
            }
            match (spec.kind, &spec.file_name_format) {
                (EndpointKind::S3, Some(format)) => archive::check_file_name_format(format)
                    .map_err(|e| invalid(format!("endpoint {name}: {e}")))?,
                (EndpointKind::S3, None) | (_, None) => {}
                (_, Some(_)) => {
                    return Err(invalid(format!(
                        "endpoint {name}: only the s3 archive takes a fileNameFormat"
                    )));
                }
            }
            if spec.kind == EndpointKind::S3 && per_kind.contains_key(&EndpointKind::S3) {
                return Err(invalid("the hub has one archive (s3) endpoint".into()));
            }
            let count = per_kind.entry(spec.kind).or_default();
            *count += 1;
            if *count > MAX_ENDPOINTS_PER_TYPE {
                return Err(invalid(format!(
                    "at most {MAX_ENDPOINTS_PER_TYPE} endpoints of each type"
                )));
            }
        }
        let endpoint_names: Vec<String> = config.endpoints.keys().cloned().collect();
        let position = |name: &str| endpoint_names.iter().position(|n| n == name);

        if config.routes.len() > MAX_ROUTES {
            return Err(invalid(format!("at most {MAX_ROUTES} routes")));
        }
        let mut names = BTreeSet::new();
        let mut routes = Vec::new();
        for spec in &config.routes {
            if !valid_name(&spec.name) || !names.insert(spec.name.as_str()) {
                return Err(invalid(format!(
                    "route name {:?} must be unique and 1 to 64 letters, digits, '-', '_' or '.'",
                    spec.name
                )));
            }
            let condition =
                parse_condition(&spec.condition).map_err(|e| RoutingError::Condition {
                    route: spec.name.clone(),
                    problem: e.located(&spec.condition),
                })?;
            let target = if spec.endpoint == BUILT_IN_ENDPOINT {
                Target::BuiltIn
            } else {
                Target::Custom(position(&spec.endpoint).ok_or_else(|| {
                    invalid(format!(
                        "route {}: no endpoint is named {:?}",
                        spec.name, spec.endpoint
                    ))
                })?)
            };
            if spec.source != RouteSource::DeviceMessages {
                // Both read the telemetry stream, which holds device messages only.
                let stream_bound = match target {
                    Target::BuiltIn => true,
                    Target::Custom(e) => config
                        .endpoints
                        .get(&endpoint_names[e])
                        .is_some_and(|e| e.kind == EndpointKind::S3),
                };
                if stream_bound {
                    return Err(invalid(format!(
                        "route {}: {:?} go to custom queues, topics, streams and buses; the built-in endpoint and the archive hold device messages",
                        spec.name, spec.source
                    )));
                }
            }
            if spec.enabled {
                routes.push(Route {
                    name: spec.name.clone(),
                    source: spec.source,
                    condition,
                    target,
                });
            }
        }

        if config.enrichments.len() > MAX_ENRICHMENTS {
            return Err(invalid(format!("at most {MAX_ENRICHMENTS} enrichments")));
        }
        let mut enrichments = Vec::new();
        for spec in &config.enrichments {
            if spec.key.is_empty() || spec.key.len() > 64 || spec.value.is_empty() {
                return Err(invalid(format!(
                    "enrichment {:?}: key and value must be given (keys up to 64 characters)",
                    spec.key
                )));
            }
            let mut endpoints = BTreeSet::new();
            for name in &spec.endpoints {
                if name == BUILT_IN_ENDPOINT {
                    return Err(invalid(format!(
                        "enrichment {}: the built-in endpoint holds each message as the device sent it (it is written before routing), so it cannot be enriched",
                        spec.key
                    )));
                }
                endpoints.insert(position(name).ok_or_else(|| {
                    invalid(format!(
                        "enrichment {}: no endpoint is named {name:?}",
                        spec.key
                    ))
                })?);
            }
            enrichments.push(Enrichment {
                key: spec.key.clone(),
                value: enrichment_value(&spec.value),
                text: spec.value.clone(),
                endpoints,
            });
        }

        let reads = |root: &str| {
            routes.iter().any(|r| {
                r.condition
                    .paths()
                    .iter()
                    .any(|p| p.root().is_some_and(|n| n.eq_ignore_ascii_case(root)))
            })
        };
        let reads_body = reads("$body");
        let reads_twin = reads("$twin")
            || enrichments
                .iter()
                .any(|e| matches!(e.value, EnrichmentValue::Twin(_)));
        Ok(Self {
            hub_name: config.hub_name.clone(),
            endpoints: config.endpoints.values().cloned().collect(),
            endpoint_names,
            routes,
            enrichments,
            fallback: config.fallback,
            reads_body,
            reads_twin,
        })
    }

    /// Whether any route or enrichment reads the device's twin (so the router reads twins).
    pub fn reads_twin(&self) -> bool {
        self.reads_twin
    }

    /// Whether any route reads `$body` (so the router parses JSON bodies).
    pub fn reads_body(&self) -> bool {
        self.reads_body
    }

    /// The archive endpoint's position and settings, if the hub has one.
    pub fn archive(&self) -> Option<(usize, &EndpointSpec)> {
        self.endpoints
            .iter()
            .enumerate()
            .find(|(_, e)| e.kind == EndpointKind::S3)
    }

    /// What `$iothubname` stands for (and the source of EventBridge events).
    pub fn hub_name(&self) -> &str {
        &self.hub_name
    }

    pub fn endpoint_names(&self) -> &[String] {
        &self.endpoint_names
    }

    pub fn endpoint(&self, index: usize) -> Option<(&str, &EndpointSpec)> {
        Some((
            self.endpoint_names.get(index)?.as_str(),
            self.endpoints.get(index)?,
        ))
    }

    pub fn route_names(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|r| r.name.as_str())
    }

    /// Which routes `message` matches and where it goes. Null or undefined is false, as Azure.
    /// Only routes of the message's source apply, and the fallback only to device messages
    /// (Azure's fallback route reads `DeviceMessages`).
    pub fn decide(&self, message: &MessageView<'_>) -> Decision {
        let mut decision = Decision::default();
        let source = message.source();
        for (i, route) in self.routes.iter().enumerate() {
            if route.source == source && holds(&route.condition, message) {
                decision.routes.push(i);
                match route.target {
                    Target::BuiltIn => decision.built_in = true,
                    Target::Custom(e) => {
                        decision.endpoints.insert(e);
                    }
                }
            }
        }
        if decision.routes.is_empty() && self.fallback && source == RouteSource::DeviceMessages {
            decision.built_in = true;
            decision.fallback = true;
        }
        decision
    }

    /// The routes' names a decision names.
    pub fn names_of<'a>(&'a self, decision: &'a Decision) -> impl Iterator<Item = &'a str> {
        decision
            .routes
            .iter()
            .filter_map(|i| self.routes.get(*i).map(|r| r.name.as_str()))
    }

    /// Whether any enrichment applies to `endpoint` (if not, it receives the envelope as stored).
    pub fn enriches(&self, endpoint: usize) -> bool {
        self.enrichments
            .iter()
            .any(|e| e.endpoints.contains(&endpoint))
    }

    /// The application properties a message carries to `endpoint`: its own, with the
    /// endpoint's enrichments stamped over them. A twin path the twin does not have stamps the
    /// path's text, as Azure does.
    pub fn enriched(
        &self,
        envelope: &TelemetryEnvelope,
        twin: Option<&Value>,
        endpoint: usize,
    ) -> Properties {
        let mut properties = envelope.properties.clone();
        for enrichment in self
            .enrichments
            .iter()
            .filter(|e| e.endpoints.contains(&endpoint))
        {
            let value = match &enrichment.value {
                EnrichmentValue::Static(text) => text.clone(),
                EnrichmentValue::HubName => self.hub_name.clone(),
                EnrichmentValue::Twin(path) => twin
                    .and_then(|t| walk(t, path))
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .unwrap_or_else(|| enrichment.text.clone()),
            };
            properties.insert(enrichment.key.clone(), value);
        }
        properties
    }
}

fn enrichment_value(text: &str) -> EnrichmentValue {
    if text.eq_ignore_ascii_case("$iothubname") {
        return EnrichmentValue::HubName;
    }
    let Some(rest) = text
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("$twin."))
        .map(|_| &text[6..])
    else {
        return EnrichmentValue::Static(text.to_owned());
    };
    EnrichmentValue::Twin(
        rest.split('.')
            .map(|field| Segment::Field(field.to_owned()))
            .collect(),
    )
}

/// The twin as routing queries see it (`$twin.tags...`, `$twin.properties.desired...`).
pub fn twin_document(twin: &Twin) -> Value {
    serde_json::json!({
        "tags": twin.tags,
        "properties": {
            "desired": twin.desired.to_json(),
            "reported": twin.reported.to_json(),
        },
        "version": twin.version,
    })
}

#[cfg(test)]
mod tests;
