//! The `registry` function: Azure IoT Hub's identity registry API (api-version 2021-04-12) for
//! creating, reading and deleting devices.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use hub_shared::config::{ConfigError, Env, vars};
use hub_shared::domain::device::{
    Device, DeviceDescription, DeviceStatus, new_etag, new_generation_id,
};
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::error::{ApiError, ErrorCode};
use hub_shared::http::{
    AuthorizedRequest, HandlerError, HttpRequest, Response, parse_if_match, respond,
};
use hub_shared::ports::{CreateOutcome, DeleteOutcome, DeviceRegistry};
use hub_shared::routes::Operation;

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub registry_table: String,
}

impl RegistryConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            registry_table: env.required(vars::REGISTRY_TABLE)?,
        })
    }
}

pub struct RegistryHandler<R> {
    registry: R,
}

impl<R: DeviceRegistry> RegistryHandler<R> {
    pub fn new(registry: R) -> Self {
        Self { registry }
    }

    pub async fn handle(&self, event: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let request = HttpRequest::new(event);
        let request_id = request.request_id().to_owned();
        respond(self.dispatch(request).await, &request_id)
    }

    async fn dispatch(
        &self,
        request: HttpRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let request = request.authorize()?;
        let device_id = request
            .device_id
            .clone()
            .ok_or_else(|| ApiError::bad_request("the path has no device id"))?;
        match request.route.operation {
            Operation::CreateOrUpdateDevice => self.create(&request, device_id).await,
            Operation::GetDevice => self.get(&device_id).await,
            Operation::DeleteDevice => self.delete(&request, &device_id).await,
            other => Err(ApiError::new(
                ErrorCode::ServerError,
                format!("{other:?} is not served by the registry"),
            )
            .into()),
        }
    }

    async fn create(
        &self,
        request: &AuthorizedRequest<'_>,
        device_id: DeviceId,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let body = request.http.body()?;
        if body.is_empty() {
            return Err(ApiError::new(
                ErrorCode::ArgumentNull,
                "the request body must be a device description",
            )
            .into());
        }
        let description: DeviceDescription = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("the device description is not valid: {e}"))
        })?;
        if let Some(given) = &description.device_id
            && *given != device_id
        {
            return Err(ApiError::bad_request(format!(
                "deviceId {given} in the body does not match {device_id} in the path"
            ))
            .into());
        }
        let (primary_key, secondary_key) = description
            .keys_or_generate()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let now = Timestamp::now();
        let device = Device {
            device_id,
            generation_id: new_generation_id(now.datetime()),
            etag: new_etag(),
            status: description.status.unwrap_or(DeviceStatus::Enabled),
            status_reason: description.status_reason.clone(),
            status_updated_time: now,
            connection_state_updated_time: Timestamp::NEVER,
            last_activity_time: Timestamp::NEVER,
            cloud_to_device_message_count: 0,
            primary_key,
            secondary_key,
            iot_edge: description.capabilities.is_some_and(|c| c.iot_edge),
        };
        match self.registry.create_device(&device).await? {
            CreateOutcome::Created => Ok(device_response(&device)),
            CreateOutcome::AlreadyExists => Err(ApiError::new(
                ErrorCode::DeviceAlreadyExists,
                format!(
                    "a device with id {} is already registered",
                    device.device_id
                ),
            )
            .into()),
        }
    }

    async fn get(&self, device_id: &DeviceId) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        match self.registry.get_device(device_id).await? {
            Some(device) => Ok(device_response(&device)),
            None => Err(not_found(device_id).into()),
        }
    }

    async fn delete(
        &self,
        request: &AuthorizedRequest<'_>,
        device_id: &DeviceId,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let condition = parse_if_match(request.http.header("if-match"));
        match self.registry.delete_device(device_id, &condition).await? {
            DeleteOutcome::Deleted => Ok(Response::empty(204)),
            DeleteOutcome::NotFound => Err(not_found(device_id).into()),
            DeleteOutcome::EtagMismatch => Err(ApiError::new(
                ErrorCode::PreconditionFailed,
                format!("the etag in If-Match does not match device {device_id}'s current etag"),
            )
            .into()),
        }
    }
}

fn device_response(device: &Device) -> ApiGatewayV2httpResponse {
    Response::with_header(
        Response::json(200, &device.to_description()),
        "etag",
        &format!("\"{}\"", device.etag),
    )
}

fn not_found(device_id: &DeviceId) -> ApiError {
    ApiError::new(
        ErrorCode::DeviceNotFound,
        format!("device {device_id} is not registered"),
    )
}

#[cfg(test)]
mod tests;
