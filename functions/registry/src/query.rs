//! `POST /devices/query`: Azure IoT Hub's query language over device twins (api-version
//! 2021-04-12), a page at a time. Documents are the twin as `GET /twins/{id}` shows it (the
//! device's identity fields and its twin); see docs/queries.md for what a query costs.

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64_URL;
use hub_shared::domain::device::Device;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::twin::Twin;
use hub_shared::error::ApiError;
use hub_shared::http::{AuthorizedRequest, HandlerError, Response};
use hub_shared::ports::{
    DeviceRegistry, JobStore, MethodCalls, PolicyStore, QueueSender, TwinStore,
};

use hub_shared::query::ast::BinaryOp;
use hub_shared::query::{Expr, Groups, Query, Segment, Select, holds, parse_query, project};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::RegistryHandler;
use crate::query_plan::{Plan, intersect, plan};
use crate::twins::twin_json;

/// Results per page when the caller does not say (`x-ms-max-item-count`), and the most it may ask.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;
/// Devices read per registry page while scanning.
const SCAN_PAGE: usize = 100;
/// Most devices one request examines before it answers what it found with a continuation, so a
/// rare match over a large fleet costs several bounded requests rather than one that times out.
const MAX_EXAMINED: usize = 2000;
/// Longest one request scans before answering what it has (API Gateway allows 30 s).
const SCAN_DEADLINE: Duration = Duration::from_secs(10);

const CONTINUATION: &str = "x-ms-continuation";
const PAGE_SIZE: &str = "x-ms-max-item-count";

#[derive(Debug, Deserialize)]
struct QueryRequest {
    query: Option<String>,
}

/// Where the next page of a query starts. Bound to the query's text, so a token cannot be
/// replayed against another query.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Continuation {
    /// First 8 bytes of the query's SHA-256, hex.
    pub(crate) q: String,
    /// The scan continues after this device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) after: Option<String>,
    /// Results answered so far (for TOP) or, for aggregates, rows answered so far.
    pub(crate) served: usize,
}

pub(crate) fn fingerprint(text: &str) -> String {
    Sha256::digest(text.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn bad(message: impl Into<String>) -> HandlerError {
    ApiError::bad_request(message).into()
}

/// The page size a caller asks for (`x-ms-max-item-count`, 1 to `MAX_PAGE`), as Azure's query
/// APIs take it.
pub(crate) fn page_size(request: &AuthorizedRequest<'_>) -> Result<usize, HandlerError> {
    match request.http.header(PAGE_SIZE).filter(|v| !v.is_empty()) {
        None => Ok(DEFAULT_PAGE),
        Some(value) => value
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| bad(format!("{PAGE_SIZE} must be a number from 1 to {MAX_PAGE}"))),
    }
}

/// One page of answers and where the next starts.
pub(crate) struct Page {
    pub(crate) items: Vec<Value>,
    pub(crate) next: Option<Continuation>,
    /// Devices read to answer it (what it cost; see docs/queries.md).
    devices_read: usize,
}

/// Tells the caller what a page cost (devices whose identity and twin were read).
const DEVICES_READ: &str = "x-hub-devices-read";

/// A page of candidates: devices in the plan's order, and where the next page starts.
struct Candidates {
    devices: Vec<Device>,
    more_after: Option<DeviceId>,
}

impl<R: DeviceRegistry, T: TwinStore, P: PolicyStore, Q: QueueSender, M: MethodCalls, J: JobStore>
    RegistryHandler<R, T, P, Q, M, J>
{
    async fn candidates(
        &self,
        plan: &Plan,
        limit: usize,
        after: Option<&DeviceId>,
    ) -> Result<Candidates, HandlerError> {
        let tagged = match plan {
            Plan::Tagged(entries) if entries.len() == 1 => {
                self.twins.tagged(&entries[0], limit, after).await?
            }
            Plan::Tagged(entries) => intersect(&self.twins, entries, limit, after).await?,
            Plan::IdPrefix(prefix) if self.id_index_complete => {
                self.twins.ids_starting_with(prefix, limit, after).await?
            }
            // Devices registered before the index existed are not in it yet: read them all.
            Plan::IdPrefix(_) => None,
            Plan::Scan => None,
        };
        if let Some(page) = tagged {
            let mut found: HashMap<DeviceId, Device> = self
                .registry
                .get_devices(&page.ids)
                .await?
                .into_iter()
                .map(|d| (d.device_id.clone(), d))
                .collect();
            // In the index's order, which is what a continuation counts from; a stale entry of
            // a deleted device finds no device and is skipped.
            let devices = page.ids.iter().filter_map(|id| found.remove(id)).collect();
            return Ok(Candidates {
                devices,
                more_after: page.more_after,
            });
        }
        let page = self.registry.list_devices(limit, after).await?;
        Ok(Candidates {
            devices: page.devices,
            more_after: page.more_after,
        })
    }

    pub(crate) async fn query_devices(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let body: QueryRequest = serde_json::from_slice(&request.http.body()?)
            .map_err(|e| bad(format!("the body must be {{\"query\": \"...\"}}: {e}")))?;
        let text = body
            .query
            .filter(|q| !q.trim().is_empty())
            .ok_or_else(|| bad("the body must be {\"query\": \"...\"} with a query"))?;
        let query = parse_query(&text)
            .map_err(|e| bad(format!("the query is not valid: {}", e.located(&text))))?;
        let device_jobs = query.from.eq_ignore_ascii_case("devices.jobs");
        if !query.from.eq_ignore_ascii_case("devices") && !device_jobs {
            return Err(bad(format!(
                "the query is not valid: FROM {} is not a collection this hub queries \
                 (devices and devices.jobs are)",
                query.from
            )));
        }
        let page_size = page_size(request)?;
        let fingerprint = fingerprint(&text);
        let start = match request.http.header(CONTINUATION).filter(|v| !v.is_empty()) {
            None => Continuation {
                q: fingerprint.clone(),
                after: None,
                served: 0,
            },
            Some(token) => BASE64_URL
                .decode(token)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Continuation>(&bytes).ok())
                .filter(|c| c.q == fingerprint)
                // Device ids are at most 128 characters; reserved items' keys a few dozen.
                .filter(|c| c.after.as_ref().is_none_or(|a| a.len() <= 1024))
                .ok_or_else(|| bad("the continuation token is not one of this query's"))?,
        };
        let plan = plan(&query);
        let page = if device_jobs {
            self.device_jobs_page(&query, page_size, start).await?
        } else if query.aggregates() {
            self.aggregate(&query, &plan, page_size, start).await?
        } else {
            self.documents(&query, &plan, page_size, start).await?
        };
        let item_type = match query.select {
            Select::All if device_jobs => "DeviceJob",
            Select::All => "Twin",
            Select::Items(_) => "Raw",
        };
        let mut response = Response::with_header(
            Response::with_header(
                Response::json(200, &page.items),
                "x-ms-item-type",
                item_type,
            ),
            DEVICES_READ,
            &page.devices_read.to_string(),
        );
        if let Some(next) = page.next {
            let token = BASE64_URL.encode(serde_json::to_vec(&next).unwrap_or_default());
            response = Response::with_header(response, CONTINUATION, &token);
        }
        Ok(response)
    }

    /// The twin document of each device of a registry page, in the page's order.
    async fn documents_of(
        &self,
        devices: Vec<Device>,
    ) -> Result<Vec<(DeviceId, Value)>, HandlerError> {
        let keys: Vec<(DeviceId, String)> = devices
            .iter()
            .map(|d| (d.device_id.clone(), d.generation_id.clone()))
            .collect();
        let mut twins = self.twins.twins_of(&keys).await?;
        let now = self.clock.now();
        Ok(devices
            .into_iter()
            .map(|device| {
                let twin = twins
                    .remove(&device.device_id)
                    .unwrap_or_else(|| Twin::new(&device.generation_id));
                let document = twin_json(&device, &twin, self.connected(&device, now));
                (device.device_id, document)
            })
            .collect())
    }

    /// Matching documents from where `start` left off, until the page is full, the registry
    /// ends, or this request has examined its share of the fleet.
    pub(crate) async fn documents(
        &self,
        query: &Query,
        plan: &Plan,
        page_size: usize,
        start: Continuation,
    ) -> Result<Page, HandlerError> {
        let wanted = match query.top {
            Some(top) => page_size.min(top.saturating_sub(start.served)),
            None => page_size,
        };
        let mut items = Vec::new();
        let mut after = start
            .after
            .as_deref()
            .map(|id| DeviceId::parse(id).unwrap_or_else(|_| DeviceId::reserved(id)));
        let began = std::time::Instant::now();
        let mut examined = 0;
        // TOP already answered in full: nothing to read.
        let mut done = wanted == 0;
        while !done {
            let page = self.candidates(plan, SCAN_PAGE, after.as_ref()).await?;
            let mut documents = self.documents_of(page.devices).await?.into_iter();
            for (device, document) in documents.by_ref() {
                examined += 1;
                after = Some(device);
                if query.filter.as_ref().is_none_or(|f| holds(f, &document)) {
                    items.push(project(query, &document));
                    if items.len() == wanted {
                        break;
                    }
                }
            }
            // Stopped inside the page: the rest of it comes next time, after the last device
            // examined. Otherwise the registry's own continuation says whether more follow.
            if documents.len() == 0 {
                match page.more_after {
                    Some(more) => after = Some(more),
                    None => {
                        after = None;
                        break;
                    }
                }
            }
            done = items.len() == wanted
                || examined >= MAX_EXAMINED
                || began.elapsed() >= SCAN_DEADLINE;
        }
        let served = start.served + items.len();
        let top_reached = query.top.is_some_and(|top| served >= top);
        let next = match after {
            Some(after) if !top_reached => Some(Continuation {
                q: start.q,
                after: Some(after.to_string()),
                served,
            }),
            _ => None,
        };
        Ok(Page {
            items,
            next,
            devices_read: examined,
        })
    }

    /// `SELECT ... FROM devices.jobs WHERE devices.jobs.jobId = '<id>' [AND ...]`: one job's
    /// per-device results (Azure's device jobs), in device id order. The job must be named: the
    /// results are stored by job.
    async fn device_jobs_page(
        &self,
        query: &Query,
        page_size: usize,
        start: Continuation,
    ) -> Result<Page, HandlerError> {
        if query.aggregates() {
            return Err(bad(
                "the query is not valid: devices.jobs queries do not aggregate",
            ));
        }
        let job_id = query
            .filter
            .iter()
            .flat_map(Expr::conjuncts)
            .find_map(job_equality)
            .ok_or_else(|| {
                bad(
                    "the query is not valid: a devices.jobs query names its job \
                     (WHERE devices.jobs.jobId = '<id>')",
                )
            })?;
        let wanted = match query.top {
            Some(top) => page_size.min(top.saturating_sub(start.served)),
            None => page_size,
        };
        let mut items = Vec::new();
        let mut after = start.after.clone();
        let mut read = 0;
        while items.len() < wanted {
            let (results, more_after) = self
                .jobs
                .device_jobs(&job_id, SCAN_PAGE, after.as_deref())
                .await?;
            let mut results = results.into_iter();
            for result in results.by_ref() {
                read += 1;
                after = Some(result.device_id.clone());
                let mut document = serde_json::to_value(&result).unwrap_or_default();
                // Conditions name fields as `devices.jobs.<field>`, or bare.
                let nested = json!({ "jobs": document.clone() });
                if let Value::Object(fields) = &mut document {
                    fields.insert("devices".into(), nested);
                }
                if query.filter.as_ref().is_none_or(|f| holds(f, &document)) {
                    if let Value::Object(fields) = &mut document {
                        fields.remove("devices");
                    }
                    items.push(project(query, &document));
                    if items.len() == wanted {
                        break;
                    }
                }
            }
            if results.len() == 0 {
                match more_after {
                    Some(more) => after = Some(more),
                    None => {
                        after = None;
                        break;
                    }
                }
            }
        }
        let served = start.served + items.len();
        let next = match after {
            Some(after) if query.top.is_none_or(|top| served < top) => Some(Continuation {
                q: start.q,
                after: Some(after),
                served,
            }),
            _ => None,
        };
        Ok(Page {
            items,
            next,
            devices_read: read,
        })
    }

    /// Every device read once, grouped; rows answered a page at a time from the whole result.
    async fn aggregate(
        &self,
        query: &Query,
        plan: &Plan,
        page_size: usize,
        start: Continuation,
    ) -> Result<Page, HandlerError> {
        let mut groups = Groups::new();
        let mut after: Option<DeviceId> = None;
        let mut devices_read = 0;
        loop {
            let page = self.candidates(plan, MAX_PAGE, after.as_ref()).await?;
            devices_read += page.devices.len();
            for chunk in page.devices.chunks(SCAN_PAGE) {
                for (_, document) in self.documents_of(chunk.to_vec()).await? {
                    if query.filter.as_ref().is_none_or(|f| holds(f, &document)) {
                        groups.add(query, &document);
                    }
                }
            }
            after = page.more_after;
            if after.is_none() {
                break;
            }
        }
        let rows = groups.rows(query);
        let limit = query.top.unwrap_or(usize::MAX).min(rows.len());
        let end = (start.served + page_size).min(limit);
        let items = rows
            .get(start.served.min(end)..end)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
        let next = (end < limit).then_some(Continuation {
            q: start.q,
            after: None,
            served: end,
        });
        Ok(Page {
            items,
            next,
            devices_read,
        })
    }
}

/// The job a conjunct `devices.jobs.jobId = '<id>'` (or `jobId = '<id>'`) names.
fn job_equality(conjunct: &Expr) -> Option<String> {
    let Expr::Binary(BinaryOp::Eq, left, right) = conjunct else {
        return None;
    };
    let ((Expr::Path(path), Expr::Literal(Value::String(id)))
    | (Expr::Literal(Value::String(id)), Expr::Path(path))) = (left.as_ref(), right.as_ref())
    else {
        return None;
    };
    let names: Vec<&str> = path
        .segments
        .iter()
        .map(|s| match s {
            Segment::Field(name) => Some(name.as_str()),
            Segment::Index(_) => None,
        })
        .collect::<Option<_>>()?;
    matches!(names.as_slice(), ["devices", "jobs", "jobId"] | ["jobId"]).then(|| id.clone())
}
