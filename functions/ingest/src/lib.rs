//! The `ingest` function: `POST /devices/{id}/messages/events`, Azure IoT Hub's device-to-cloud
//! telemetry over HTTPS. Each message becomes one record on the telemetry stream (see
//! `hub_shared::domain::envelope`); the device gets 204 only when all of them are stored.

pub mod messages;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use hub_shared::authz::Principal;
use hub_shared::aws::{Clients, KinesisRecordSink};
use hub_shared::clock::SharedClock;
use hub_shared::config::{ConfigError, Env, vars};
use hub_shared::connection::{ActivityConfig, DeployedTracker};
use hub_shared::domain::envelope::{Sender, TelemetryEnvelope};
use hub_shared::error::ApiError;
use hub_shared::http::{HandlerError, HttpRequest, Response, record_activity, respond};
use hub_shared::lambda::{Function, InvocationError};
use hub_shared::ports::{ActivityRecorder, RecordSink, StreamRecord};
use hub_shared::publish::{RetryPolicy, publish_all};
use hub_shared::routes::Operation;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub telemetry_stream: String,
    pub activity: ActivityConfig,
    pub retry: RetryPolicy,
}

impl IngestConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            telemetry_stream: env.required(vars::TELEMETRY_STREAM)?,
            activity: ActivityConfig::from_env(env)?,
            retry: RetryPolicy {
                max_attempts: env.parse_or(vars::PUBLISH_MAX_ATTEMPTS, 5)?,
                ..RetryPolicy::default()
            },
        })
    }
}

/// The function as deployed: Kinesis for telemetry, the registry for activity.
pub type Handler = IngestHandler<KinesisRecordSink, DeployedTracker>;

/// Builds the function from its configuration, as its `main` does at cold start and the local
/// gateway does for its in-process functions.
pub fn build(config: &IngestConfig, clients: &Clients) -> Handler {
    IngestHandler::new(
        KinesisRecordSink::new(clients.kinesis.clone(), &config.telemetry_stream),
        config.retry.clone(),
        hub_shared::connection::build(&config.activity, clients),
    )
}

pub struct IngestHandler<S, A> {
    sink: S,
    retry: RetryPolicy,
    /// Records the device's `lastActivityTime` and connection state.
    activity: A,
    clock: SharedClock,
}

impl<S: RecordSink, A: ActivityRecorder> Function for IngestHandler<S, A> {
    async fn invoke(&self, event: serde_json::Value) -> Result<serde_json::Value, InvocationError> {
        let request: ApiGatewayV2httpRequest = hub_shared::lambda::event(event)?;
        hub_shared::lambda::response(&self.handle(&request).await)
    }
}

impl<S: RecordSink, A: ActivityRecorder> IngestHandler<S, A> {
    pub fn new(sink: S, retry: RetryPolicy, activity: A) -> Self {
        Self {
            sink,
            retry,
            activity,
            clock: hub_shared::clock::system(),
        }
    }

    /// Takes the time from `clock` (tests).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    pub async fn handle(&self, event: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let request = HttpRequest::new(event);
        let request_id = request.request_id().to_owned();
        respond(self.send(request).await, &request_id)
    }

    async fn send(
        &self,
        request: HttpRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let request = request.authorize()?;
        if request.route.operation != Operation::SendDeviceEvent {
            return Err(request.not_served("ingest").into());
        }
        let sender = match &request.principal {
            principal @ Principal::Device {
                device_id,
                generation_id,
                ..
            } => Sender {
                device_id: device_id.clone(),
                generation_id: generation_id.clone(),
                auth_method: principal.auth_method(),
            },
            Principal::Service { .. } => {
                return Err(ApiError::unauthorized("only devices send telemetry").into());
            }
        };
        let body = request.http.body()?;
        let messages = if messages::is_batch(request.http.header("content-type")) {
            messages::batch(&body)?
        } else {
            vec![messages::single(request.http.headers(), body.into_owned())?]
        };
        let enqueued_time = self.clock.now();
        let records: Vec<StreamRecord> = messages
            .into_iter()
            .map(|message| {
                let envelope = TelemetryEnvelope::stamp(message, &sender, enqueued_time);
                StreamRecord {
                    partition_key: envelope.partition_key().to_owned(),
                    data: envelope.to_json(),
                }
            })
            .collect();
        publish_all(&self.sink, &records, &self.retry)
            .await
            .map_err(hub_shared::ports::StoreError::from)?;
        tracing::debug!(device = %sender.device_id, messages = records.len(), "telemetry stored");
        record_activity(&self.activity, &request, self.clock.now()).await;
        Ok(Response::empty(204))
    }
}

#[cfg(test)]
mod tests;
