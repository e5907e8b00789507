//! The HTTP routes of the commands function, in Azure IoT Hub's shapes: the service sends and
//! purges and reads feedback; the device receives, completes, rejects and abandons.

use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use hub_shared::authz::Principal;
use hub_shared::domain::command::{
    AckMode, LockToken, MAX_COMMAND_BYTES, NewCommand, Outcome, QueuedCommand,
};
use hub_shared::domain::envelope::Properties;
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::error::{ApiError, ErrorCode};
use hub_shared::http::{
    AuthorizedRequest, HandlerError, HttpRequest, Response, record_activity, respond,
};
use hub_shared::ports::{
    ActivityRecorder, CommandStore, DeadLetters, FeedbackQueue, QueueKey, SettleOutcome,
    TokenOutcome,
};
use hub_shared::routes::Operation;

use crate::CommandsHandler;
use crate::queue::EnqueueError;

const APP_PREFIX: &str = "iothub-app-";
const MAX_ID_LEN: usize = 128;
/// Longest `?waitSeconds=` a device may ask for (the extension beyond Azure).
pub const MAX_WAIT_SECONDS: u64 = 20;
/// How long a feedback batch stays locked for the service that received it.
const FEEDBACK_LOCK: Duration = Duration::from_secs(60);

fn precondition_failed(what: &str) -> HandlerError {
    ApiError::new(
        ErrorCode::PreconditionFailed,
        format!("the lock token is not valid for {what}: it is wrong, stale or expired"),
    )
    .into()
}

impl<S: CommandStore, F: FeedbackQueue, D: DeadLetters, A: ActivityRecorder>
    CommandsHandler<S, F, D, A>
{
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
        if request.route.access == hub_shared::routes::Access::Device {
            record_activity(&self.activity, &request, self.clock.now()).await;
        }
        match request.route.operation {
            Operation::SendCommand => self.send(&request).await,
            Operation::PurgeCommands => self.purge(&request).await,
            Operation::ReceiveFeedback => self.receive_feedback().await,
            Operation::CompleteFeedback => self.settle_feedback(&request, false).await,
            Operation::AbandonFeedback => self.settle_feedback(&request, true).await,
            Operation::ReceiveCommand => self.receive(&request).await,
            Operation::CompleteCommand => {
                let outcome = if request.http.query("reject").is_some() {
                    Outcome::Rejected
                } else {
                    Outcome::Success
                };
                self.settle(&request, outcome).await
            }
            Operation::AbandonCommand => self.abandon(&request).await,
            _ => Err(request.not_served("commands").into()),
        }
    }

    async fn send(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let device = request.path_device()?;
        let body = request.http.body()?;
        let new = parse_new_command(
            &request.http,
            body.into_owned(),
            self.commands.policy.max_ttl,
            self.clock.now(),
        )?;
        let enqueued =
            self.commands
                .enqueue(device, new, None)
                .await
                .map_err(|error| match error {
                    EnqueueError::DeviceNotFound(device) => ApiError::new(
                        ErrorCode::DeviceNotFound,
                        format!("device {device} is not registered"),
                    )
                    .into(),
                    EnqueueError::QueueFull { device, limit } => HandlerError::Api(ApiError::new(
                        ErrorCode::DeviceMaximumQueueDepthExceeded,
                        format!(
                            "device {device} already has {limit} cloud-to-device messages queued"
                        ),
                    )),
                    EnqueueError::Contention(device) => ApiError::unavailable(format!(
                        "too many concurrent sends to device {device}; retry"
                    ))
                    .into(),
                    EnqueueError::Store(error) => error.into(),
                })?;
        let body = serde_json::json!({
            "messageId": enqueued.message_id,
            "sequenceNumber": enqueued.sequence_number,
            "expiryTimeUtc": enqueued.expires_at,
        });
        Ok(Response::with_header(
            Response::json(202, &body),
            "iothub-messageid",
            &enqueued.message_id,
        ))
    }

    async fn purge(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let device = request.path_device()?;
        match self.commands.purge(device).await? {
            Some(purged) => Ok(Response::json(
                200,
                &serde_json::json!({ "deviceId": device, "totalMessagesPurged": purged }),
            )),
            None => Err(ApiError::new(
                ErrorCode::DeviceNotFound,
                format!("device {device} is not registered"),
            )
            .into()),
        }
    }

    async fn receive_feedback(&self) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let Some(batch) = self.commands.feedback.receive(FEEDBACK_LOCK).await? else {
            return Ok(Response::empty(204));
        };
        let response = Response::json(200, &batch.records);
        let response = Response::with_header(
            response,
            "content-type",
            "application/vnd.microsoft.iothub.feedback.json",
        );
        Ok(Response::with_header(
            response,
            "etag",
            &format!("\"{}\"", batch.lock_token),
        ))
    }

    async fn settle_feedback(
        &self,
        request: &AuthorizedRequest<'_>,
        abandon: bool,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let token = request.params.get("lockToken").unwrap_or_default();
        let outcome = if abandon {
            self.commands.feedback.abandon(token).await?
        } else {
            self.commands.feedback.complete(token).await?
        };
        match outcome {
            TokenOutcome::Done => Ok(Response::empty(204)),
            TokenOutcome::InvalidToken => Err(precondition_failed("a feedback batch")),
        }
    }

    fn device_queue(request: &AuthorizedRequest<'_>) -> Result<QueueKey, HandlerError> {
        match &request.principal {
            Principal::Device {
                device_id,
                generation_id,
                ..
            } => Ok(QueueKey {
                device_id: device_id.clone(),
                generation_id: generation_id.clone(),
            }),
            Principal::Service { .. } => {
                Err(ApiError::unauthorized("only devices receive cloud-to-device messages").into())
            }
        }
    }

    /// The lock token from the path, checked against `If-Match` when one is sent.
    fn lock_token(request: &AuthorizedRequest<'_>) -> Result<LockToken, HandlerError> {
        let raw = request.params.get("lockToken").unwrap_or_default();
        let token = hub_shared::routes::decode_segment(raw)
            .and_then(|decoded| LockToken::parse(&decoded))
            .ok_or_else(|| precondition_failed("a message of this device"))?;
        if let Some(if_match) = request.http.header("if-match")
            && LockToken::parse(if_match).as_ref() != Some(&token)
        {
            return Err(ApiError::new(
                ErrorCode::PreconditionFailed,
                "If-Match does not name the lock token in the path",
            )
            .into());
        }
        Ok(token)
    }

    async fn receive(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let queue = Self::device_queue(request)?;
        let wait = match request.http.query("waitSeconds") {
            None => None,
            Some(value) => {
                let seconds: u64 = value
                    .parse()
                    .ok()
                    .filter(|s| *s <= MAX_WAIT_SECONDS)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "waitSeconds must be a whole number from 0 to {MAX_WAIT_SECONDS}"
                        ))
                    })?;
                Some(Duration::from_secs(seconds))
            }
        };
        let received = match wait {
            Some(wait) if !wait.is_zero() => self.commands.receive_waiting(&queue, wait).await?,
            _ => self.commands.receive(&queue).await?,
        };
        Ok(match received {
            Some(command) => command_response(&command),
            None => Response::empty(204),
        })
    }

    async fn settle(
        &self,
        request: &AuthorizedRequest<'_>,
        outcome: Outcome,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let queue = Self::device_queue(request)?;
        let token = Self::lock_token(request)?;
        match self.commands.settle_locked(&queue, &token, outcome).await? {
            SettleOutcome::Settled => Ok(Response::empty(204)),
            SettleOutcome::ConditionFailed => Err(precondition_failed("a message of this device")),
        }
    }

    async fn abandon(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let queue = Self::device_queue(request)?;
        let token = Self::lock_token(request)?;
        if self.commands.abandon(&queue, &token).await? {
            Ok(Response::empty(204))
        } else {
            Err(precondition_failed("a message of this device"))
        }
    }
}

/// A message as the device receives it: the body, and its properties as `iothub-*` headers.
fn command_response(command: &QueuedCommand) -> ApiGatewayV2httpResponse {
    let token = command
        .lock
        .as_ref()
        .map(|lock| lock.token.to_string())
        .unwrap_or_default();
    let mut response = Response::binary(200, command.body.clone(), "application/octet-stream");
    let headers = [
        ("etag", format!("\"{token}\"")),
        ("iothub-messageid", command.message_id.clone()),
        ("iothub-sequencenumber", command.sequence_number.to_string()),
        ("iothub-enqueuedtime", command.enqueued_time.to_string()),
        ("iothub-expiry", command.expires_at.to_string()),
        ("iothub-deliverycount", command.delivery_count.to_string()),
        (
            "iothub-to",
            format!("/devices/{}/messages/deviceBound", command.device_id),
        ),
        ("iothub-ack", command.ack.as_str().to_owned()),
    ];
    for (name, value) in headers {
        response = Response::with_header(response, name, &value);
    }
    if let Some(correlation_id) = &command.correlation_id {
        response = Response::with_header(response, "iothub-correlationid", correlation_id);
    }
    for (name, value) in &command.properties {
        response = Response::with_dynamic_header(response, &format!("{APP_PREFIX}{name}"), value);
    }
    response
}

/// Checks that a property can travel as an `iothub-app-*` header.
pub fn validate_property(name: &str, value: &str) -> Result<(), ApiError> {
    let header = format!("{APP_PREFIX}{name}");
    if name.is_empty() || http::HeaderName::try_from(header.as_str()).is_err() {
        return Err(ApiError::bad_request(format!(
            "property name {name:?} is not a valid header name"
        )));
    }
    if http::HeaderValue::from_str(value).is_err() {
        return Err(ApiError::bad_request(format!(
            "property {name} must have a printable ASCII value"
        )));
    }
    Ok(())
}

/// Reads a service's send request: body as-is, `iothub-*` headers.
pub fn parse_new_command(
    request: &HttpRequest<'_>,
    body: Vec<u8>,
    max_ttl: Duration,
    now: Timestamp,
) -> Result<NewCommand, ApiError> {
    if body.len() > MAX_COMMAND_BYTES {
        return Err(ApiError::new(
            ErrorCode::MessageTooLarge,
            format!(
                "the message is {} bytes; the limit is {MAX_COMMAND_BYTES} bytes (64 KB)",
                body.len()
            ),
        ));
    }
    let id = |name: &str| -> Result<Option<String>, ApiError> {
        match request.header(name) {
            Some(value) if value.len() > MAX_ID_LEN => Err(ApiError::bad_request(format!(
                "{name} is longer than {MAX_ID_LEN} characters"
            ))),
            Some("") => Err(ApiError::bad_request(format!("{name} is empty"))),
            other => Ok(other.map(str::to_owned)),
        }
    };
    let message_id = id("iothub-messageid")?;
    let correlation_id = id("iothub-correlationid")?;
    let ack = match request.header("iothub-ack") {
        None => AckMode::None,
        Some(value) => value.parse::<AckMode>().map_err(ApiError::bad_request)?,
    };
    let max_expiry = Timestamp::from_unix_millis(
        now.unix_millis()
            .saturating_add(i64::try_from(max_ttl.as_millis()).unwrap_or(i64::MAX)),
    )
    .unwrap_or(now);
    let expires_at = match (
        request.header("iothub-expiry"),
        request.header("iothub-ttl"),
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "send either iothub-expiry or iothub-ttl, not both",
            ));
        }
        (Some(expiry), None) => {
            let at = Timestamp::parse(expiry).map_err(|_| {
                ApiError::bad_request(
                    "iothub-expiry must be an RFC 3339 time, e.g. 2026-01-01T00:00:00Z",
                )
            })?;
            Some(at)
        }
        (None, Some(ttl)) => {
            let seconds: i64 = ttl.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                ApiError::bad_request("iothub-ttl must be a positive number of seconds")
            })?;
            Timestamp::from_unix_millis(
                now.unix_millis()
                    .saturating_add(seconds.saturating_mul(1000)),
            )
        }
        (None, None) => None,
    };
    if let Some(at) = expires_at {
        if at <= now {
            return Err(ApiError::bad_request(
                "the message would expire before it is enqueued",
            ));
        }
        if at > max_expiry {
            return Err(ApiError::bad_request(format!(
                "the time to live is longer than the maximum of {} seconds",
                max_ttl.as_secs()
            )));
        }
    }
    let mut properties = Properties::new();
    for (name, value) in request.headers() {
        if let Some(property) = name.as_str().strip_prefix(APP_PREFIX) {
            let value = value.to_str().map_err(|_| {
                ApiError::bad_request(format!("header {name} must be printable ASCII"))
            })?;
            validate_property(property, value)?;
            properties.insert(property.to_owned(), value.to_owned());
        }
    }
    Ok(NewCommand {
        message_id,
        correlation_id,
        properties,
        body,
        ack,
        expires_at,
    })
}
