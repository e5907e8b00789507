//! The analytics query API and rules API (service tokens with ServiceConnect).

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use hub_shared::authz::Principal;
use hub_shared::domain::analytics::{
    Alert, AlertReview, FieldStats, MAX_RULE_ID_LEN, ReviewState, Rule, WindowAggregate,
    WindowSize, alert_id, alert_state,
};
use hub_shared::domain::device::new_etag;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::error::{ApiError, ErrorCode};
use hub_shared::http::{
    AuthorizedRequest, HandlerError, HttpRequest, Response, parse_if_match, respond,
};
use hub_shared::ports::{
    AnalyticsStore, IfMatch, QueueSender, RuleStore, RuleWrite, StateItem, StateKey, TagReader,
};
use hub_shared::routes::Operation;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AnalyticsHandler;
use crate::engine::MAX_RULES;

/// Most windows one telemetry query returns.
const MAX_POINTS: i64 = 10_000;
const MAX_ALERTS: usize = 1000;
/// Most devices one fleet telemetry query merges, and how many of their reads run at once.
const MAX_FLEET_DEVICES: usize = 100;

/// Most device windows one fleet query reads (100 devices over a week of hourly windows fit).
const MAX_FLEET_WINDOWS: i64 = 20_000;
const FLEET_QUERIES_AT_ONCE: usize = 16;

/// The body of `POST /fleet/telemetry`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FleetQuery {
    device_ids: Vec<String>,
    field: String,
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// One window of one field over a group of devices.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupPoint {
    window_start: Timestamp,
    window_end: Timestamp,
    /// Devices that reported the field in this window.
    devices: u32,
    message_count: u64,
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
    mean: f64,
}

impl GroupPoint {
    fn empty(aggregate: &WindowAggregate) -> Self {
        let at = |ms| Timestamp::from_unix_millis(ms).unwrap_or(Timestamp::NEVER);
        Self {
            window_start: at(aggregate.window_start),
            window_end: at(aggregate.window_start + aggregate.window.millis()),
            devices: 0,
            message_count: 0,
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            mean: 0.0,
        }
    }

    fn add(&mut self, messages: u64, stats: &FieldStats) {
        self.devices += 1;
        self.message_count += messages;
        self.count += stats.count;
        self.sum += stats.sum;
        self.min = self.min.min(stats.min);
        self.max = self.max.max(stats.max);
        if self.count > 0 {
            self.mean = self.sum / self.count as f64;
        }
    }
}

/// An alert as the API shows it: with its id and where operators have got with it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertView<'a> {
    alert_id: String,
    #[serde(flatten)]
    alert: &'a Alert,
    /// `open`, `acknowledged` or `closed` (of the current raise).
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    review: Option<&'a AlertReview>,
}

fn bad(message: impl Into<String>) -> HandlerError {
    ApiError::bad_request(message).into()
}

/// One window of one field, ready for a chart.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Point {
    window_start: Timestamp,
    window_end: Timestamp,
    message_count: u64,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    stats: Option<Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<std::collections::BTreeMap<String, Stats>>,
}

#[derive(Serialize)]
struct Stats {
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
    mean: f64,
    first: hub_shared::domain::analytics::Reading,
    last: hub_shared::domain::analytics::Reading,
}

impl From<&FieldStats> for Stats {
    fn from(stats: &FieldStats) -> Self {
        Self {
            count: stats.count,
            min: stats.min,
            max: stats.max,
            sum: stats.sum,
            mean: stats.mean(),
            first: stats.first,
            last: stats.last,
        }
    }
}

fn point(aggregate: &WindowAggregate, field: Option<&str>) -> Point {
    let at = |ms| Timestamp::from_unix_millis(ms).unwrap_or(Timestamp::NEVER);
    Point {
        window_start: at(aggregate.window_start),
        window_end: at(aggregate.window_start + aggregate.window.millis()),
        message_count: aggregate.message_count,
        stats: field.and_then(|f| aggregate.fields.get(f)).map(Stats::from),
        fields: field.is_none().then(|| {
            aggregate
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), Stats::from(v)))
                .collect()
        }),
    }
}

impl<A: AnalyticsStore, R: RuleStore, Q: QueueSender, T: TagReader> AnalyticsHandler<A, R, Q, T> {
    pub async fn handle_http(&self, event: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let request = HttpRequest::new(event);
        let request_id = request.request_id().to_owned();
        respond(self.route(request).await, &request_id)
    }

    async fn route(
        &self,
        request: HttpRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let request = request.authorize()?;
        match request.route.operation {
            Operation::QueryTelemetry => self.telemetry(&request).await,
            Operation::QueryFleetTelemetry => self.fleet_telemetry(&request).await,
            Operation::QueryDeviceState => self.device_state(&request).await,
            Operation::ListAlerts => self.alerts(&request).await,
            Operation::AcknowledgeAlert => self.review(&request, ReviewState::Acknowledged).await,
            Operation::CloseAlert => self.review(&request, ReviewState::Closed).await,
            Operation::ListRules => Ok(Response::json(
                200,
                &json!({ "rules": self.rule_store.list().await? }),
            )),
            Operation::CreateRule => self.write_rule(&request, None).await,
            Operation::PutRule => {
                let id = request.params.get("ruleId").unwrap_or_default().to_owned();
                self.write_rule(&request, Some(id)).await
            }
            Operation::GetRule => {
                let id = request.params.get("ruleId").unwrap_or_default();
                match self.rule_store.get(id).await? {
                    Some(rule) => Ok(rule_response(200, &rule)),
                    None => Err(rule_not_found(id)),
                }
            }
            Operation::DeleteRule => {
                let id = request.params.get("ruleId").unwrap_or_default();
                let if_match = etag_condition(&request);
                match self.rule_store.delete(id, if_match.as_deref()).await? {
                    RuleWrite::Written => {
                        self.invalidate_rules();
                        Ok(Response::empty(204))
                    }
                    RuleWrite::NotFound => Err(rule_not_found(id)),
                    RuleWrite::EtagMismatch => Err(etag_mismatch(id)),
                }
            }
            _ => Err(request.not_served("analytics").into()),
        }
    }

    /// The window and `[from, to]` of a telemetry query, checked against the hub's windows and
    /// the most points one answer holds.
    fn span(
        &self,
        window: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<(WindowSize, Timestamp, Timestamp), HandlerError> {
        let window = match window {
            Some(value) => value.parse::<WindowSize>().map_err(bad)?,
            None => self.engine.windows[0],
        };
        if !self.engine.windows.contains(&window) {
            let known: Vec<String> = self
                .engine
                .windows
                .iter()
                .map(ToString::to_string)
                .collect();
            return Err(bad(format!(
                "window {window} is not aggregated; use one of {}",
                known.join(", ")
            )));
        }
        let time = |name: &str, value: Option<&str>| {
            value
                .map(|v| {
                    Timestamp::parse(v).map_err(|_| bad(format!("{name} must be an RFC 3339 time")))
                })
                .transpose()
        };
        let to = time("to", to)?.unwrap_or_else(Timestamp::now);
        let default_span = window.millis() * 60;
        let from = time("from", from)?.unwrap_or_else(|| {
            Timestamp::from_unix_millis(to.unix_millis() - default_span).unwrap_or(Timestamp::NEVER)
        });
        if from > to {
            return Err(bad("from must not be after to"));
        }
        if (to.unix_millis() - from.unix_millis()) / window.millis() > MAX_POINTS {
            return Err(bad(format!(
                "the range spans more than {MAX_POINTS} windows of {window}"
            )));
        }
        Ok((window, from, to))
    }

    async fn telemetry(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let device = request.path_device()?;
        let (window, from, to) = self.span(
            request.http.query("window"),
            request.http.query("from"),
            request.http.query("to"),
        )?;
        let field = request.http.query("field").filter(|f| !f.is_empty());
        let aggregates = self
            .store
            .aggregates(device, window, window.start_of(from), to.unix_millis())
            .await?;
        let points: Vec<Point> = aggregates.iter().map(|a| point(a, field)).collect();
        Ok(Response::json(
            200,
            &json!({ "deviceId": device, "window": window, "field": field, "from": from, "to": to, "points": points }),
        ))
    }

    /// `POST /fleet/telemetry`: one field of a group of devices, window by window, merged from
    /// each device's aggregates (counts and sums add, min and max of the extremes), so a group
    /// chart costs one request of at most `MAX_FLEET_DEVICES` devices, not one per device.
    async fn fleet_telemetry(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let body = request.http.body()?;
        let query: FleetQuery = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("the query is not valid: {e}")))?;
        if query.field.is_empty() {
            return Err(bad("field must name a numeric field"));
        }
        let devices = query
            .device_ids
            .iter()
            .map(|id| DeviceId::parse(id).map_err(|e| bad(e.to_string())))
            .collect::<Result<std::collections::BTreeSet<DeviceId>, _>>()?;
        if devices.is_empty() || devices.len() > MAX_FLEET_DEVICES {
            return Err(bad(format!(
                "deviceIds must list 1 to {MAX_FLEET_DEVICES} devices"
            )));
        }
        let (window, from, to) = self.span(
            query.window.as_deref(),
            query.from.as_deref(),
            query.to.as_deref(),
        )?;
        let (start, end) = (window.start_of(from), to.unix_millis());
        // Each device's windows are items read: cap their product, not only each factor.
        let windows = (end - start) / window.millis() + 1;
        if windows.saturating_mul(devices.len() as i64) > MAX_FLEET_WINDOWS {
            return Err(bad(format!(
                "{} devices over {windows} windows of {window} read more than {MAX_FLEET_WINDOWS} aggregates: narrow the range, choose a larger window, or ask for fewer devices",
                devices.len()
            )));
        }
        let devices: Vec<DeviceId> = devices.into_iter().collect();
        let mut merged = std::collections::BTreeMap::<i64, GroupPoint>::new();
        for chunk in devices.chunks(FLEET_QUERIES_AT_ONCE) {
            let reads = chunk
                .iter()
                .map(|device| self.store.aggregates(device, window, start, end));
            for aggregates in futures::future::join_all(reads).await {
                for aggregate in aggregates? {
                    if let Some(stats) = aggregate.fields.get(&query.field) {
                        merged
                            .entry(aggregate.window_start)
                            .or_insert_with(|| GroupPoint::empty(&aggregate))
                            .add(aggregate.message_count, stats);
                    }
                }
            }
        }
        let points: Vec<GroupPoint> = merged.into_values().collect();
        Ok(Response::json(
            200,
            &json!({ "deviceCount": devices.len(), "window": window, "field": query.field, "from": from, "to": to, "points": points }),
        ))
    }

    async fn device_state(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let device = request.path_device()?;
        match self.store.device_state(device).await? {
            Some(state) => Ok(Response::json(200, &state)),
            None => Err(ApiError::new(
                ErrorCode::DeviceNotFound,
                format!("no telemetry from device {device} has been processed"),
            )
            .into()),
        }
    }

    async fn alerts(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let active_only = match request.http.query("active") {
            None | Some("false") => false,
            Some("true") | Some("") => true,
            Some(_) => return Err(bad("active must be true or false")),
        };
        let state = match request.http.query("state") {
            None | Some("") => None,
            Some(state @ ("open" | "acknowledged" | "closed")) => Some(state),
            Some(_) => return Err(bad("state must be open, acknowledged or closed")),
        };
        let mut alerts = self.store.alerts(active_only, MAX_ALERTS).await?;
        if let Some(device) = request.http.query("deviceId") {
            alerts.retain(|a| a.device_id.as_str() == device);
        }
        if let Some(rule) = request.http.query("ruleId") {
            alerts.retain(|a| a.rule_id == rule);
        }
        let ids: Vec<String> = alerts.iter().map(Alert::id).collect();
        let reviews = self.store.reviews(&ids).await?;
        let views: Vec<AlertView<'_>> = alerts
            .iter()
            .map(|alert| {
                let review = reviews.get(&alert.id());
                AlertView {
                    alert_id: alert.id(),
                    alert,
                    state: alert_state(alert, review),
                    review,
                }
            })
            .filter(|view| state.is_none_or(|s| view.state == s))
            .collect();
        Ok(Response::json(200, &json!({ "alerts": views })))
    }

    /// `POST /alerts/{ruleId}/{deviceId}/acknowledge|close`: an operator's review of the alert's
    /// current raise. The alert must exist and have been raised.
    async fn review(
        &self,
        request: &AuthorizedRequest<'_>,
        state: ReviewState,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let rule_id = request.params.get("ruleId").unwrap_or_default().to_owned();
        let device = request.params.get("deviceId").unwrap_or_default();
        let device = DeviceId::parse(device).map_err(|e| bad(e.to_string()))?;
        let key = StateKey::Alert {
            rule_id: rule_id.clone(),
            device: device.clone(),
        };
        let loaded = self.store.load(std::slice::from_ref(&key)).await?;
        if let Some(why) = loaded.unreadable.get(&key) {
            return Err(hub_shared::ports::StoreError::corrupt(
                "reading the alert to review",
                std::io::Error::other(why.clone()),
            )
            .into());
        }
        let alert = match loaded.items.get(&key) {
            Some(StateItem::Alert(alert)) if alert.raised_at.is_some() => alert.clone(),
            _ => {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("rule {rule_id} has raised no alert for device {device}"),
                )
                .into());
            }
        };
        let by = match &request.principal {
            Principal::Service { policy, .. } => policy.clone(),
            Principal::Device { device_id, .. } => device_id.to_string(),
        };
        let review = AlertReview {
            state,
            raised_at: alert.raised_at,
            by,
            at: Timestamp::now(),
        };
        let id = alert_id(&rule_id, &device);
        self.store.put_review(&id, &review).await?;
        Ok(Response::json(
            200,
            &AlertView {
                alert_id: id,
                alert: &alert,
                state: alert_state(&alert, Some(&review)),
                review: Some(&review),
            },
        ))
    }

    /// POST /rules (create; the id comes from the body or is generated) and PUT /rules/{id}
    /// (create or replace; `If-Match` to replace a known version only).
    async fn write_rule(
        &self,
        request: &AuthorizedRequest<'_>,
        path_id: Option<String>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let body = request.http.body()?;
        let mut rule: Rule = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("the rule is not valid: {e}")))?;
        match (&path_id, rule.id.is_empty()) {
            (Some(id), true) => rule.id.clone_from(id),
            (Some(id), false) if *id != rule.id => {
                return Err(bad(format!(
                    "id {} in the body does not match {id} in the path",
                    rule.id
                )));
            }
            (None, true) => {
                rule.id =
                    uuid::Uuid::new_v4().simple().to_string()[..MAX_RULE_ID_LEN.min(32)].to_owned()
            }
            _ => {}
        }
        rule.validate(&self.engine.windows).map_err(bad)?;
        rule.etag = new_etag();
        let existing = self.rule_store.get(&rule.id).await?;
        if existing.is_none() && self.rule_store.list().await?.len() >= MAX_RULES {
            return Err(bad(format!(
                "the hub holds at most {MAX_RULES} rules; delete one first"
            )));
        }
        let if_match = etag_condition(request);
        let create_only = path_id.is_none();
        let status = if existing.is_some() { 200 } else { 201 };
        match self
            .rule_store
            .put(&rule, if_match.as_deref(), create_only)
            .await?
        {
            RuleWrite::Written => {
                self.invalidate_rules();
                Ok(rule_response(status, &rule))
            }
            RuleWrite::EtagMismatch if create_only => Err(ApiError::new(
                ErrorCode::Conflict,
                format!("rule {} already exists", rule.id),
            )
            .into()),
            RuleWrite::EtagMismatch => Err(etag_mismatch(&rule.id)),
            RuleWrite::NotFound => Err(rule_not_found(&rule.id)),
        }
    }
}

fn etag_condition(request: &AuthorizedRequest<'_>) -> Option<String> {
    match parse_if_match(request.http.header("if-match")) {
        IfMatch::Any => None,
        IfMatch::Etag(etag) => Some(etag),
    }
}

fn rule_response(status: u16, rule: &Rule) -> ApiGatewayV2httpResponse {
    Response::with_header(
        Response::json(status, rule),
        "etag",
        &format!("\"{}\"", rule.etag),
    )
}

fn rule_not_found(id: &str) -> HandlerError {
    ApiError::new(ErrorCode::NotFound, format!("there is no rule {id}")).into()
}

fn etag_mismatch(id: &str) -> HandlerError {
    ApiError::new(
        ErrorCode::PreconditionFailed,
        format!("If-Match does not match rule {id}'s current etag"),
    )
    .into()
}
