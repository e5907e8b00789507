//! What one batch did, per route and per endpoint, and the same as CloudWatch embedded metric
//! format (EMF) documents: one JSON line per route and per endpoint, which CloudWatch Logs turns
//! into metrics in the `IoTHub/Routing` namespace without a PutMetricData call.

use std::collections::BTreeMap;

use hub_shared::routing::{Decision, RouteTable};
use serde_json::{Value, json};

pub const NAMESPACE: &str = "IoTHub/Routing";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointCounts {
    pub delivered: u64,
    pub failed: u64,
    pub dead_lettered: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Messages each route's condition matched.
    pub matched: BTreeMap<String, u64>,
    /// Messages the fallback route took to the built-in endpoint.
    pub fallback: u64,
    /// Messages no route matched, with the fallback off: routed nowhere beyond the stream.
    pub unrouted: u64,
    pub endpoints: BTreeMap<String, EndpointCounts>,
    /// Records that could not be read as envelopes (dead-lettered).
    pub undecodable: u64,
}

impl Report {
    pub fn decided(&mut self, table: &RouteTable, decision: &Decision) {
        for name in table.names_of(decision) {
            match self.matched.get_mut(name) {
                Some(count) => *count += 1,
                None => {
                    self.matched.insert(name.to_owned(), 1);
                }
            }
        }
        if decision.fallback {
            self.fallback += 1;
        } else if decision.routes.is_empty() {
            self.unrouted += 1;
        }
    }

    pub fn delivered(&mut self, endpoint: &str, count: usize) {
        self.endpoints
            .entry(endpoint.to_owned())
            .or_default()
            .delivered += count as u64;
    }

    pub fn failed(&mut self, endpoint: &str, count: usize) {
        self.endpoints
            .entry(endpoint.to_owned())
            .or_default()
            .failed += count as u64;
    }

    /// Counts the dead letters sent (each names its endpoint, or none for unreadable records).
    pub fn dead_lettered(&mut self, letters: &[(usize, String)]) {
        for (_, body) in letters {
            let letter: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            match letter["endpoint"].as_str() {
                Some(endpoint) => {
                    self.endpoints
                        .entry(endpoint.to_owned())
                        .or_default()
                        .dead_lettered += 1;
                }
                None => self.undecodable += 1,
            }
        }
    }

    /// One EMF document per route and per endpoint (and one for the hub-wide counts).
    pub fn emf(&self, now: time::OffsetDateTime) -> Vec<String> {
        let timestamp = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let document = |dimension: Option<&str>, value: Option<&str>, metrics: &[(&str, u64)]| {
            let mut doc = json!({
                "_aws": {
                    "Timestamp": timestamp,
                    "CloudWatchMetrics": [{
                        "Namespace": NAMESPACE,
                        "Dimensions": [dimension.map_or_else(Vec::new, |d| vec![d])],
                        "Metrics": metrics.iter().map(|(name, _)| json!({ "Name": name, "Unit": "Count" })).collect::<Vec<_>>(),
                    }],
                },
            });
            if let (Some(d), Some(v)) = (dimension, value) {
                doc[d] = json!(v);
            }
            for (name, count) in metrics {
                doc[*name] = json!(count);
            }
            doc.to_string()
        };
        let mut out = vec![document(
            None,
            None,
            &[
                ("Fallback", self.fallback),
                ("Unrouted", self.unrouted),
                ("Undecodable", self.undecodable),
            ],
        )];
        for (route, matched) in &self.matched {
            out.push(document(
                Some("Route"),
                Some(route),
                &[("Matched", *matched)],
            ));
        }
        for (endpoint, counts) in &self.endpoints {
            out.push(document(
                Some("Endpoint"),
                Some(endpoint),
                &[
                    ("Delivered", counts.delivered),
                    ("Failed", counts.failed),
                    ("DeadLettered", counts.dead_lettered),
                ],
            ));
        }
        out
    }
}
