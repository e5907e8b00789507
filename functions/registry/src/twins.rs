//! Device twins. Services read the whole twin and change tags and desired properties
//! (`PATCH` merges, `PUT` replaces, `If-Match` with the twin's etag); devices read their twin,
//! report properties, and wait for desired changes (an extension: Azure offers twins to devices
//! over MQTT and AMQP only). Every write is conditional on the twin version it read, so racing
//! writers retry and `$version` only grows.

use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use hub_shared::domain::device::Device;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::registry::{LifecycleEvent, LifecycleOperation};
use hub_shared::domain::twin::{SectionKind, Twin};
use hub_shared::error::{ApiError, ErrorCode};
use hub_shared::http::{AuthorizedRequest, HandlerError, Response, parse_if_match};
use hub_shared::ports::{
    DeviceRegistry, IfMatch, JobStore, MethodCalls, PolicyStore, QueueSender, TwinStore, TwinWrite,
};
use serde_json::{Value, json};

use crate::devices::{not_found, path_device};
use crate::{MAX_WAIT, RegistryHandler};

/// Racing writers retry this many times before the request answers 503.
const MAX_WRITE_ATTEMPTS: u32 = 30;

fn bad(message: impl Into<String>) -> HandlerError {
    ApiError::bad_request(message).into()
}

/// A device's `waitSeconds` (0 to `MAX_WAIT`; none: do not wait).
pub(crate) fn wait_seconds(request: &AuthorizedRequest<'_>) -> Result<Duration, HandlerError> {
    match request.http.query("waitSeconds") {
        None => Ok(Duration::ZERO),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
            .filter(|w| *w <= MAX_WAIT)
            .ok_or_else(|| {
                bad(format!(
                    "waitSeconds must be a whole number from 0 to {}",
                    MAX_WAIT.as_secs()
                ))
            }),
    }
}

/// Azure's twin JSON: identity fields of the device and the twin document.
pub(crate) fn twin_json(device: &Device, twin: &Twin, connected: bool) -> Value {
    json!({
        "deviceId": device.device_id,
        "etag": twin.etag(),
        "deviceEtag": device.etag,
        "status": device.status,
        "statusReason": device.status_reason,
        "statusUpdateTime": device.status_updated_time,
        "connectionState": if connected { "Connected" } else { "Disconnected" },
        "lastActivityTime": device.last_activity_time,
        "cloudToDeviceMessageCount": device.cloud_to_device_message_count,
        "authenticationType": "sas",
        "x509Thumbprint": { "primaryThumbprint": null, "secondaryThumbprint": null },
        "version": twin.version,
        "tags": twin.tags,
        "properties": { "desired": twin.desired.to_json(), "reported": twin.reported.to_json() },
        "capabilities": { "iotEdge": device.iot_edge },
    })
}

fn twin_response(device: &Device, twin: &Twin, connected: bool) -> ApiGatewayV2httpResponse {
    Response::with_header(
        Response::json(200, &twin_json(device, twin, connected)),
        "etag",
        &format!("\"{}\"", twin.etag()),
    )
}

pub(crate) enum Change {
    Patch {
        tags: Option<Value>,
        desired: Option<Value>,
    },
    Replace {
        tags: Value,
        desired: Value,
    },
    Reported(Value),
}

impl<R: DeviceRegistry, T: TwinStore, P: PolicyStore, Q: QueueSender, M: MethodCalls, J: JobStore>
    RegistryHandler<R, T, P, Q, M, J>
{
    /// The device and its twin (a fresh one if none is stored for this generation).
    async fn device_and_twin(
        &self,
        device_id: &DeviceId,
    ) -> Result<(Device, Twin, Option<Twin>), HandlerError> {
        let device = self
            .registry
            .get_device(device_id)
            .await?
            .ok_or_else(|| not_found(device_id))?;
        let stored = self
            .twins
            .get_twin(device_id)
            .await?
            .filter(|t| t.generation_id == device.generation_id);
        let twin = stored
            .clone()
            .unwrap_or_else(|| Twin::new(&device.generation_id));
        Ok((device, twin, stored))
    }

    pub(crate) async fn get_twin(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let (device, twin, _) = self.device_and_twin(&path_device(request)?).await?;
        Ok(twin_response(
            &device,
            &twin,
            self.connected(&device, self.clock.now()),
        ))
    }

    /// `PATCH /twins/{id}` (merge tags and desired) or `PUT /twins/{id}` (replace them).
    pub(crate) async fn write_twin(
        &self,
        request: &AuthorizedRequest<'_>,
        replace: bool,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let body: Value = serde_json::from_slice(&request.http.body()?)
            .map_err(|e| bad(format!("the twin is not valid JSON: {e}")))?;
        let Value::Object(fields) = &body else {
            return Err(bad("the twin must be a JSON object"));
        };
        if let Some(unknown) = fields
            .keys()
            .find(|k| !["deviceId", "etag", "tags", "properties", "version"].contains(&k.as_str()))
        {
            return Err(bad(format!(
                "twin field {unknown} cannot be written; change tags and properties.desired"
            )));
        }
        if body["properties"].get("reported").is_some() {
            return Err(bad("reported properties are written by the device only"));
        }
        let tags = body.get("tags").cloned();
        let desired = body["properties"].get("desired").cloned();
        let change = if replace {
            Change::Replace {
                tags: tags.unwrap_or_else(|| json!({})),
                desired: desired.unwrap_or_else(|| json!({})),
            }
        } else {
            Change::Patch { tags, desired }
        };
        let condition = parse_if_match(request.http.header("if-match"));
        let (device, twin) = self
            .change_twin(&path_device(request)?, &condition, &change, None)
            .await?;
        Ok(twin_response(
            &device,
            &twin,
            self.connected(&device, self.clock.now()),
        ))
    }

    /// Applies a change with optimistic concurrency: read, change, write if the version is
    /// unchanged, else read again (or 412 when the caller named an etag). A job's change is
    /// written with the job's id in the twin, and not applied again to a twin that has it.
    pub(crate) async fn change_twin(
        &self,
        device_id: &DeviceId,
        condition: &IfMatch,
        change: &Change,
        job: Option<&str>,
    ) -> Result<(Device, Twin), HandlerError> {
        for attempt in 0..MAX_WRITE_ATTEMPTS {
            let (device, mut twin, stored) = self.device_and_twin(device_id).await?;
            if let Some(job) = job {
                if twin.jobs.iter().any(|j| j == job) {
                    return Ok((device, twin));
                }
                twin.remember_job(job);
            }
            if let IfMatch::Etag(etag) = condition
                && *etag != twin.etag()
            {
                return Err(ApiError::new(
                    ErrorCode::PreconditionFailed,
                    format!("the etag in If-Match does not match the twin of {device_id}"),
                )
                .into());
            }
            let now = self.clock.now();
            let applied = match change {
                Change::Patch { tags, desired } => tags
                    .as_ref()
                    .map(|t| twin.patch(SectionKind::Tags, t, now))
                    .transpose()
                    .and_then(|_| {
                        desired
                            .as_ref()
                            .map(|d| twin.patch(SectionKind::Desired, d, now))
                            .transpose()
                    })
                    .map(|_| ()),
                Change::Replace { tags, desired } => twin.replace(tags, desired, now),
                Change::Reported(reported) => twin.patch(SectionKind::Reported, reported, now),
            };
            applied.map_err(|e| bad(e.to_string()))?;
            let event = self.twin_event(&device, &twin, change);
            match self
                .twins
                .put_twin(device_id, &twin, stored.as_ref(), Some(&event))
                .await?
            {
                TwinWrite::Written => {
                    self.publish(&event).await;
                    return Ok((device, twin));
                }
                TwinWrite::Conflict if matches!(condition, IfMatch::Etag(_)) => {
                    return Err(ApiError::new(
                        ErrorCode::PreconditionFailed,
                        format!("the twin of {device_id} changed meanwhile"),
                    )
                    .into());
                }
                TwinWrite::Conflict => {
                    let ceiling = 5 + 5 * u64::from(attempt.min(10));
                    tokio::time::sleep(Duration::from_millis(rand::random_range(0..=ceiling)))
                        .await;
                }
            }
        }
        Err(ApiError::unavailable(format!(
            "too many concurrent changes to the twin of {device_id}; retry"
        ))
        .into())
    }

    /// The change event of a twin write: Azure's `twinChangeNotification`, whose body holds the
    /// new version and the sections as the change wrote them.
    fn twin_event(&self, device: &Device, twin: &Twin, change: &Change) -> LifecycleEvent {
        let (op_type, body) = match change {
            Change::Patch { tags, desired } => {
                let mut body = json!({ "version": twin.version });
                if let Some(tags) = tags {
                    body["tags"] = tags.clone();
                }
                if let Some(desired) = desired {
                    body["properties"] = json!({ "desired": desired });
                }
                (LifecycleOperation::UpdateTwin, body)
            }
            Change::Replace { tags, desired } => (
                LifecycleOperation::ReplaceTwin,
                json!({ "version": twin.version, "tags": tags, "properties": { "desired": desired } }),
            ),
            Change::Reported(reported) => (
                LifecycleOperation::UpdateTwin,
                json!({ "version": twin.version, "properties": { "reported": reported } }),
            ),
        };
        let mut event = self.lifecycle_event(op_type, device);
        event.body = Some(body);
        event
    }

    /// `GET /devices/{id}/twin`: the device's view, desired and reported.
    pub(crate) async fn device_twin(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let (_, twin, _) = self.device_and_twin(&path_device(request)?).await?;
        let body =
            json!({ "desired": twin.desired.to_json(), "reported": twin.reported.to_json() });
        Ok(Response::with_header(
            Response::json(200, &body),
            "etag",
            &format!("\"{}\"", twin.etag()),
        ))
    }

    /// `PATCH /devices/{id}/twin/properties/reported`.
    pub(crate) async fn update_reported(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let patch: Value = serde_json::from_slice(&request.http.body()?)
            .map_err(|e| bad(format!("the reported properties are not valid JSON: {e}")))?;
        let (_, twin) = self
            .change_twin(
                &path_device(request)?,
                &IfMatch::Any,
                &Change::Reported(patch),
                None,
            )
            .await?;
        let body = json!({ "$version": twin.reported.version });
        Ok(Response::with_header(
            Response::json(200, &body),
            "etag",
            &format!("\"{}\"", twin.etag()),
        ))
    }

    /// `GET /devices/{id}/twin/properties/desired?sinceVersion=N&waitSeconds=M`: the desired
    /// properties once their `$version` is above N, waiting up to M seconds (204 if they are not).
    pub(crate) async fn desired(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let device_id = path_device(request)?;
        let since = request
            .http
            .query("sinceVersion")
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| bad("sinceVersion must be a whole number"))
            })
            .transpose()?;
        let wait = wait_seconds(request)?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(100);
        let (device, mut twin, _) = self.device_and_twin(&device_id).await?;
        loop {
            if since.is_none_or(|version| twin.desired.version > version) {
                return Ok(Response::json(200, &twin.desired.to_json()));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Response::empty(204));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_secs(1));
            // Only the twin is read again: one read per wake-up. A twin of another generation
            // means the device was deleted and re-created: this wait is over. (A twin never
            // written is absent; so is a deleted device's, whose next request fails its auth.)
            match self.twins.get_twin(&device_id).await? {
                Some(stored) if stored.generation_id == device.generation_id => twin = stored,
                Some(_) => return Err(not_found(&device_id).into()),
                None => {}
            }
        }
    }
}
