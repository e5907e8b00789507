//! Load tools of `hub-local`: each runs an in-process gateway against the local AWS environment,
//! measures latencies through it, and counts the DynamoDB calls operations cost.

mod analytics;
mod c2d;
mod cold_start;
mod jobs;
mod query;
mod twins;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::event_sources::EventSourceOptions;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::sas::SymmetricKey;

pub use analytics::{AnalyticsReport, analytics};
pub use c2d::{C2dReport, c2d};
pub use cold_start::{ColdStartReport, cold_start};
pub use jobs::{JobsReport, jobs};
pub use query::{QueryReport, query};
pub use twins::{TwinsReport, twins};

use crate::demo::{ToolError, device_token, policy_token};
use crate::gateway::RunningGateway;
use crate::metrics::Instrumentation;
use crate::{GatewayOptions, Hub};

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub median_ms: f64,
    pub p95_ms: f64,
}

impl Latency {
    fn of(samples: &mut [Duration]) -> Self {
        samples.sort();
        let at = |q: f64| {
            let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        Self {
            median_ms: at(0.5),
            p95_ms: at(0.95),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Calls {
    pub authorizer: BTreeMap<String, u64>,
    pub function: BTreeMap<String, u64>,
}

impl Calls {
    fn add(&mut self, instrumentation: &Instrumentation) {
        for (target, counter) in [
            (&mut self.authorizer, &instrumentation.authorizer_dynamodb),
            (&mut self.function, &instrumentation.functions_dynamodb),
        ] {
            for (operation, count) in counter.take() {
                *target.entry(operation).or_default() += count;
            }
        }
    }

    /// Average calls per operation over `n` runs, as "GetItem 1.00, TransactWriteItems 1.00".
    pub fn per(&self, map: &BTreeMap<String, u64>, n: usize) -> String {
        if map.is_empty() {
            return "none".into();
        }
        map.iter()
            .map(|(op, count)| format!("{op} {:.2}", *count as f64 / n as f64))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn fail(what: &str, status: reqwest::StatusCode) -> ToolError {
    ToolError::Message(format!("{what} answered {status}"))
}

fn tool_error(error: impl std::fmt::Display) -> ToolError {
    ToolError::Message(error.to_string())
}

/// An instrumented hub behind an in-process gateway on a free local port, with an owner token.
struct Bench {
    instrumentation: Instrumentation,
    hub: Arc<Hub>,
    gateway: RunningGateway,
    base: String,
    http: reqwest::Client,
    owner: String,
}

impl Bench {
    /// `event_sources` picks the emulated event sources (from the deployed ones), or none.
    async fn start(
        settings: &std::path::Path,
        event_sources: impl FnOnce(&Hub) -> Result<Option<EventSourceOptions>, ToolError>,
    ) -> Result<Self, ToolError> {
        let instrumentation = Instrumentation::default();
        let settings = crate::LocalSettings::load(settings).map_err(tool_error)?;
        let hub = Arc::new(
            Hub::build(settings, &[], Some(&instrumentation))
                .await
                .map_err(tool_error)?,
        );
        let event_sources = event_sources(&hub)?;
        let options = GatewayOptions {
            http: Some(([127, 0, 0, 1], 0).into()),
            https: None,
            tls_dir: std::env::temp_dir(),
            event_sources,
        };
        let gateway = crate::start(Arc::clone(&hub), &options)
            .await
            .map_err(tool_error)?;
        let base = format!(
            "http://{}",
            gateway
                .http
                .ok_or_else(|| ToolError::Message("no HTTP listener".into()))?
        );
        let owner = policy_token(&hub, "iothubowner", Duration::from_secs(3600)).await?;
        Ok(Self {
            instrumentation,
            hub,
            gateway,
            base,
            http: reqwest::Client::new(),
            owner,
        })
    }

    /// Registers a device and answers it with a token signed by its primary key.
    async fn register(&self, id: &str) -> Result<(DeviceId, String), ToolError> {
        let device = DeviceId::parse(id).map_err(tool_error)?;
        let created = self
            .http
            .put(format!("{}/devices/{device}", self.base))
            .header("authorization", &self.owner)
            .body(format!(r#"{{"deviceId":"{device}"}}"#))
            .send()
            .await?;
        if !created.status().is_success() {
            return Err(fail("registering a bench device", created.status()));
        }
        let description: serde_json::Value = created.json().await?;
        let key = SymmetricKey::from_base64(
            description["authentication"]["symmetricKey"]["primaryKey"]
                .as_str()
                .unwrap_or_default(),
        )
        .map_err(tool_error)?;
        let token = device_token(
            &self.hub.host_name,
            &device,
            &key,
            Duration::from_secs(3600),
        );
        Ok((device, token))
    }

    async fn service_token(&self) -> Result<String, ToolError> {
        policy_token(&self.hub, "service", Duration::from_secs(3600)).await
    }

    /// Sends a request, times it into `latencies`, checks its status, and charges the DynamoDB
    /// calls made meanwhile to `calls`.
    async fn measure(
        &self,
        request: reqwest::RequestBuilder,
        expected: u16,
        what: &str,
        latencies: &mut Vec<Duration>,
        calls: &mut Calls,
    ) -> Result<reqwest::Response, ToolError> {
        let started = std::time::Instant::now();
        let response = request.send().await?;
        latencies.push(started.elapsed());
        if response.status().as_u16() != expected {
            return Err(fail(what, response.status()));
        }
        calls.add(&self.instrumentation);
        Ok(response)
    }

    /// Removes a bench device (best effort: the tool's numbers are already taken).
    async fn unregister(&self, device: &DeviceId) {
        let _ = self
            .http
            .delete(format!("{}/devices/{device}", self.base))
            .header("authorization", &self.owner)
            .send()
            .await;
    }
}
