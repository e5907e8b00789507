//! Direct methods for devices on HTTPS. The service side is Azure's (`POST /twins/{id}/methods`,
//! answered with the device's `status` and `payload`, or 404 `DeviceNotOnline` / 504
//! `GatewayTimeout`); the device side is an extension (Azure offers methods over MQTT and AMQP
//! only): the device long-polls `GET /devices/{id}/methods?waitSeconds=N` and posts its answer to
//! `POST /devices/{id}/methods/{requestId}/response`. The call is an item in
//! `<prefix>-method-calls` that the waiting service request polls (docs/methods.md).

use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::method::{
    MethodCall, MethodDelivery, MethodRequest, MethodResponse, MethodState,
};
use hub_shared::error::{ApiError, ErrorCode};
use hub_shared::http::{AuthorizedRequest, HandlerError, Response};
use hub_shared::ports::{
    CallChange, DeviceRegistry, JobStore, MethodCalls, PolicyStore, QueueSender, TwinStore,
};
use tokio::time::Instant;

use crate::RegistryHandler;
use crate::devices::{not_found, path_device};
use crate::twins::wait_seconds;

/// Longest one invocation waits for the device, whatever its timeouts say: API Gateway ends an
/// integration at 30 s, and the function must answer before that.
pub const MAX_INVOKE_WAIT: Duration = Duration::from_secs(20);
/// With `connectTimeoutInSeconds` 0 (Azure: "the device must be online now"), how long a device
/// has to take the call; a device that keeps a method poll open takes it within half a second.
pub const CONNECT_GRACE: Duration = Duration::from_secs(2);

pub(crate) fn not_online(device: &str) -> HandlerError {
    ApiError::new(
        ErrorCode::DeviceNotOnline,
        format!(
            "device {device} did not take the method call in time (it is not polling for methods)"
        ),
    )
    .into()
}

fn bad(message: impl Into<String>) -> HandlerError {
    ApiError::bad_request(message).into()
}

/// Backoff between re-reads while waiting: quick at first, then at most twice a second.
fn next_pause(pause: Duration) -> Duration {
    (pause * 2).min(Duration::from_millis(500))
}

impl<R: DeviceRegistry, T: TwinStore, P: PolicyStore, Q: QueueSender, M: MethodCalls, J: JobStore>
    RegistryHandler<R, T, P, Q, M, J>
{
    /// `POST /twins/{id}/methods`: records the call, then waits for the device to take it
    /// (connect timeout) and to answer it (response timeout), within `MAX_INVOKE_WAIT`.
    pub(crate) async fn invoke_method(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let device_id = path_device(request)?;
        let invocation =
            MethodRequest::parse(&request.http.body()?).map_err(|e| bad(e.to_string()))?;
        let device = self
            .registry
            .get_device(&device_id)
            .await?
            .ok_or_else(|| not_found(&device_id))?;
        if !device.is_enabled() {
            return Err(not_online(device_id.as_str()));
        }
        let started = Instant::now();
        let call = MethodCall {
            request_id: uuid::Uuid::now_v7().to_string(),
            generation_id: device.generation_id.clone(),
            method_name: invocation.method_name.clone(),
            payload: invocation.payload.clone(),
            created_at: self.clock.now(),
            state: MethodState::Pending,
        };
        self.methods.put_call(&device_id, &call).await?;
        let response = self
            .await_answer(&device_id, &call.request_id, &invocation, started)
            .await?;
        if let Err(error) = self
            .methods
            .remove_call(&device_id, &call.request_id, false)
            .await
        {
            // The answer is in hand; the item expires on its own.
            tracing::warn!(device = %device_id, error = %hub_shared::error::Chain(&error), "an answered method call stays until its TTL");
        }
        Ok(Response::json(200, &response))
    }

    /// Waits, from `started`, for the device to take the call (connect timeout) and to answer it
    /// (response timeout), within `MAX_INVOKE_WAIT`. An answered call stays stored: the caller
    /// removes it once the answer is safe (a job records it first, so a retried job finds it).
    pub(crate) async fn await_answer(
        &self,
        device_id: &DeviceId,
        request_id: &str,
        invocation: &MethodRequest,
        started: Instant,
    ) -> Result<MethodResponse, HandlerError> {
        // Azure's SDKs wait connect + response timeout in all before giving up themselves, so
        // the answer must come within that, and within what API Gateway allows.
        let give_up = started
            + (invocation.connect_timeout + invocation.response_timeout).min(MAX_INVOKE_WAIT);
        let connect_by = (started + invocation.connect_timeout.max(CONNECT_GRACE)).min(give_up);
        let mut taken_seen: Option<Instant> = None;
        let mut pause = Duration::from_millis(50);
        loop {
            tokio::time::sleep(pause).await;
            pause = next_pause(pause);
            let now = Instant::now();
            let Some(current) = self.methods.get_call(device_id, request_id).await? else {
                return Err(not_online(device_id.as_str()));
            };
            match current.state {
                MethodState::Answered { response } => return Ok(response),
                MethodState::Pending if now >= connect_by => {
                    // Taken meanwhile: wait for the answer after all.
                    if self
                        .methods
                        .remove_call(device_id, request_id, true)
                        .await?
                        == CallChange::Changed
                    {
                        return Err(not_online(device_id.as_str()));
                    }
                }
                MethodState::Pending => {}
                MethodState::Taken { .. } => {
                    let taken = *taken_seen.get_or_insert(now);
                    if now >= (taken + invocation.response_timeout).min(give_up) {
                        self.methods
                            .remove_call(device_id, request_id, false)
                            .await?;
                        return Err(ApiError::new(
                            ErrorCode::GatewayTimeout,
                            format!(
                                "device {device_id} took the method call {} but did not answer within {} s",
                                invocation.method_name,
                                invocation.response_timeout.min(MAX_INVOKE_WAIT).as_secs()
                            ),
                        )
                        .into());
                    }
                }
            }
        }
    }

    /// `GET /devices/{id}/methods?waitSeconds=N`: the oldest call waiting for this device
    /// (taken by this request), waiting up to N ≤ 20 s for one; 204 if none came.
    pub(crate) async fn receive_method(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let device_id = path_device(request)?;
        let wait = wait_seconds(request)?;
        let device = self
            .registry
            .get_device(&device_id)
            .await?
            .ok_or_else(|| not_found(&device_id))?;
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(100);
        loop {
            let mut pending = self
                .methods
                .pending_calls(&device_id, &device.generation_id)
                .await?;
            pending.sort_by(|a, b| a.request_id.cmp(&b.request_id));
            for call in pending {
                // Another poll of the same device may take it first.
                if self
                    .methods
                    .take_call(&device_id, &call.request_id, self.clock.now())
                    .await?
                    == CallChange::Changed
                {
                    return Ok(Response::json(
                        200,
                        &MethodDelivery {
                            request_id: call.request_id,
                            method_name: call.method_name,
                            payload: call.payload,
                        },
                    ));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Response::empty(204));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = next_pause(pause);
        }
    }

    /// `POST /devices/{id}/methods/{requestId}/response` with `{"status": n, "payload": ...}`.
    pub(crate) async fn respond_method(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let device_id = path_device(request)?;
        let request_id = request.params.get("requestId").unwrap_or_default();
        let response =
            MethodResponse::parse(&request.http.body()?).map_err(|e| bad(e.to_string()))?;
        let gone = || -> HandlerError {
            ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "method call {request_id} of device {device_id} is not waiting for an answer \
                     (it timed out, was answered, or was never taken)"
                ),
            )
            .into()
        };
        // Request ids are the hub's UUIDs; anything else was never a call.
        if uuid::Uuid::parse_str(request_id).is_err() {
            return Err(gone());
        }
        let device = self
            .registry
            .get_device(&device_id)
            .await?
            .ok_or_else(|| not_found(&device_id))?;
        match self
            .methods
            .answer_call(&device_id, &device.generation_id, request_id, &response)
            .await?
        {
            CallChange::Changed => Ok(Response::empty(204)),
            CallChange::NotApplicable => Err(gone()),
        }
    }
}
