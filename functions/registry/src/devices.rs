//! Device identities: create or update (`PUT`, `If-Match` for updates), read, delete, list.

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64_URL;
use hub_shared::domain::device::{
    AuthenticationType, Device, DeviceDescription, DeviceStatus, new_etag, new_generation_id,
};
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::registry::LifecycleOperation;
use hub_shared::domain::sas::SymmetricKey;
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::error::{ApiError, ErrorCode};
use hub_shared::http::{AuthorizedRequest, HandlerError, Response, parse_if_match};
use hub_shared::ports::{
    CreateOutcome, DeleteOutcome, DeviceRegistry, IfMatch, JobStore, MethodCalls, PolicyStore,
    QueueSender, TwinStore, UpdateOutcome,
};

use crate::RegistryHandler;

/// Most devices one list request returns.
pub const MAX_TOP: usize = 1000;
const CONTINUATION: &str = "x-ms-continuation";

/// Azure's device JSON, with `connectionState` as the twin shows it (active within the
/// connected window).
pub(crate) fn describe(device: &Device, connected: bool) -> DeviceDescription {
    let mut description = device.to_description();
    description.connection_state = Some(
        if connected {
            "Connected"
        } else {
            "Disconnected"
        }
        .to_owned(),
    );
    description
}

pub(crate) fn device_response(device: &Device, connected: bool) -> ApiGatewayV2httpResponse {
    Response::with_header(
        Response::json(200, &describe(device, connected)),
        "etag",
        &format!("\"{}\"", device.etag),
    )
}

pub(crate) fn not_found(device_id: &DeviceId) -> ApiError {
    ApiError::new(
        ErrorCode::DeviceNotFound,
        format!("device {device_id} is not registered"),
    )
}

pub(crate) fn etag_mismatch(device_id: &DeviceId) -> ApiError {
    ApiError::new(
        ErrorCode::PreconditionFailed,
        format!("the etag in If-Match does not match device {device_id}'s current etag"),
    )
}

pub(crate) fn path_device(request: &AuthorizedRequest<'_>) -> Result<DeviceId, HandlerError> {
    Ok(request.path_device()?.clone())
}

/// A failed registry operation, as both the single and the bulk API report it.
#[derive(Debug)]
pub(crate) enum RegistryError {
    Api(ApiError),
    Store(hub_shared::ports::StoreError),
}

impl From<ApiError> for RegistryError {
    fn from(error: ApiError) -> Self {
        RegistryError::Api(error)
    }
}

impl From<hub_shared::ports::StoreError> for RegistryError {
    fn from(error: hub_shared::ports::StoreError) -> Self {
        RegistryError::Store(error)
    }
}

impl From<RegistryError> for HandlerError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::Api(error) => error.into(),
            RegistryError::Store(error) => error.into(),
        }
    }
}

/// The keys a description asks for on update: those it names, the current ones otherwise.
fn updated_keys(
    description: &DeviceDescription,
    current: &Device,
) -> Result<(SymmetricKey, SymmetricKey), ApiError> {
    let Some(authentication) = &description.authentication else {
        return Ok((current.primary_key.clone(), current.secondary_key.clone()));
    };
    if authentication.kind != AuthenticationType::Sas {
        return Err(ApiError::bad_request(format!(
            "authentication type {:?} is not supported; this hub supports \"sas\" only",
            authentication.kind
        )));
    }
    let pair = authentication.symmetric_key.clone().unwrap_or_default();
    let key = |which: &str, given: Option<String>, current: &SymmetricKey| match given
        .filter(|k| !k.is_empty())
    {
        Some(encoded) => SymmetricKey::from_base64(&encoded)
            .map_err(|e| ApiError::bad_request(format!("{which} key is invalid: {e}"))),
        None => Ok(current.clone()),
    };
    Ok((
        key("primary", pair.primary_key, &current.primary_key)?,
        key("secondary", pair.secondary_key, &current.secondary_key)?,
    ))
}

impl<R: DeviceRegistry, T: TwinStore, P: PolicyStore, Q: QueueSender, M: MethodCalls, J: JobStore>
    RegistryHandler<R, T, P, Q, M, J>
{
    pub(crate) async fn put_device(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let device_id = path_device(request)?;
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
        let device = match request.http.header("if-match") {
            None => self.create(&device_id, &description).await?,
            Some(header) => {
                self.update(&device_id, &description, &parse_if_match(Some(header)))
                    .await?
            }
        };
        Ok(device_response(
            &device,
            self.connected(&device, self.clock.now()),
        ))
    }

    /// Creates a device; `DeviceAlreadyExists` if the id is taken.
    pub(crate) async fn create(
        &self,
        device_id: &DeviceId,
        description: &DeviceDescription,
    ) -> Result<Device, RegistryError> {
        let (primary_key, secondary_key) = description
            .keys_or_generate()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let now = self.clock.now();
        let device = Device {
            device_id: device_id.clone(),
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
        // Indexed first, so a search by id prefix never misses a device that exists.
        self.twins
            .index_device(device_id, &device.generation_id)
            .await?;
        let event = self.lifecycle_event(LifecycleOperation::CreateDeviceIdentity, &device);
        match self.registry.create_device(&device, &event).await? {
            CreateOutcome::Created => {
                self.publish(&event).await;
                Ok(device)
            }
            CreateOutcome::AlreadyExists => {
                // The entry written above names a generation that was never created: give it
                // back to the device that holds the id, so deleting that device forgets it.
                if let Some(existing) = self.registry.get_device(device_id).await? {
                    self.twins
                        .index_device(device_id, &existing.generation_id)
                        .await?;
                }
                Err(ApiError::new(
                ErrorCode::DeviceAlreadyExists,
                format!(
                    "a device with id {device_id} is already registered; send If-Match to update it"
                ),
            )
            .into())
            }
        }
    }

    /// The device as stored, if it exists and matches `condition`.
    async fn current(
        &self,
        device_id: &DeviceId,
        condition: &IfMatch,
    ) -> Result<Device, RegistryError> {
        let current = self
            .registry
            .get_device(device_id)
            .await?
            .ok_or_else(|| not_found(device_id))?;
        match condition {
            IfMatch::Etag(etag) if *etag != current.etag => Err(etag_mismatch(device_id).into()),
            _ => Ok(current),
        }
    }

    /// Updates status, status reason, keys and capabilities under `condition`.
    pub(crate) async fn update(
        &self,
        device_id: &DeviceId,
        description: &DeviceDescription,
        condition: &IfMatch,
    ) -> Result<Device, RegistryError> {
        let current = self.current(device_id, condition).await?;
        // Again on every update (idempotent): devices registered before the index existed
        // become searchable by updating them, e.g. `hubctl device export` then `import --mode update`.
        self.twins
            .index_device(device_id, &current.generation_id)
            .await?;
        let (primary_key, secondary_key) = updated_keys(description, &current)?;
        let status = description.status.unwrap_or(current.status);
        let device = Device {
            etag: new_etag(),
            status,
            status_reason: description.status_reason.clone(),
            status_updated_time: if status == current.status {
                current.status_updated_time
            } else {
                self.clock.now()
            },
            primary_key,
            secondary_key,
            iot_edge: description
                .capabilities
                .map_or(current.iot_edge, |c| c.iot_edge),
            ..current.clone()
        };
        match self
            .registry
            .update_device(&device, &current.etag, current.status)
            .await?
        {
            UpdateOutcome::Updated => Ok(device),
            UpdateOutcome::NotFound => Err(not_found(device_id).into()),
            // Changed between the read and the write.
            UpdateOutcome::EtagMismatch => Err(etag_mismatch(device_id).into()),
        }
    }

    pub(crate) async fn get_device(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let device_id = path_device(request)?;
        match self.registry.get_device(&device_id).await? {
            Some(device) => Ok(device_response(
                &device,
                self.connected(&device, self.clock.now()),
            )),
            None => Err(not_found(&device_id).into()),
        }
    }

    pub(crate) async fn delete_device(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let device_id = path_device(request)?;
        self.delete(&device_id, &parse_if_match(request.http.header("if-match")))
            .await?;
        Ok(Response::empty(204))
    }

    /// Deletes a device (with its twin) under `condition`.
    pub(crate) async fn delete(
        &self,
        device_id: &DeviceId,
        condition: &IfMatch,
    ) -> Result<(), RegistryError> {
        let current = self.current(device_id, condition).await?;
        // Read first: the twin goes with the device, and its tag index entries after it.
        let twin = self
            .twins
            .get_twin(device_id)
            .await?
            .filter(|t| t.generation_id == current.generation_id);
        let event = self.lifecycle_event(LifecycleOperation::DeleteDeviceIdentity, &current);
        match self
            .registry
            .delete_device(&current, &current.etag, &event)
            .await?
        {
            DeleteOutcome::Deleted => {
                self.publish(&event).await;
                if let Err(error) = self
                    .twins
                    .forget_device(device_id, &current.generation_id)
                    .await
                {
                    tracing::warn!(device = %device_id, error = %hub_shared::error::Chain(&error), "the id index entry of a deleted device stays (searches skip it)");
                }
                if let Some(twin) = twin
                    && let Err(error) = self.twins.forget_tags(device_id, &twin).await
                {
                    // Queries skip entries of deleted devices; this one costs a read each time.
                    tracing::warn!(device = %device_id, error = %hub_shared::error::Chain(&error), "tag index entries of a deleted device stay");
                }
                Ok(())
            }
            DeleteOutcome::NotFound => Err(not_found(device_id).into()),
            DeleteOutcome::EtagMismatch => Err(etag_mismatch(device_id).into()),
        }
    }

    /// `GET /devices?top=N`, continued with the `x-ms-continuation` header.
    pub(crate) async fn list_devices(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let (top, after) = page_request(request)?;
        let page = self.registry.list_devices(top, after.as_ref()).await?;
        let now = self.clock.now();
        let descriptions: Vec<DeviceDescription> = page
            .devices
            .iter()
            .map(|d| describe(d, self.connected(d, now)))
            .collect();
        Ok(with_continuation(
            Response::json(200, &descriptions),
            page.more_after.as_ref(),
        ))
    }
}

/// A page's size (`top`, 1 to `MAX_TOP`) and where it starts (the `x-ms-continuation` header).
pub(crate) fn page_request(
    request: &AuthorizedRequest<'_>,
) -> Result<(usize, Option<DeviceId>), ApiError> {
    let top = match request.http.query("top") {
        None => MAX_TOP,
        Some(value) => value
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_TOP).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("top must be a number from 1 to {MAX_TOP}"))
            })?,
    };
    let after = match request.http.header(CONTINUATION).filter(|c| !c.is_empty()) {
        None => None,
        Some(token) => Some(
            BASE64_URL
                .decode(token)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .map(|id| DeviceId::parse(&id).unwrap_or_else(|_| DeviceId::reserved(&id)))
                .ok_or_else(|| ApiError::bad_request("the continuation token is not valid"))?,
        ),
    };
    Ok((top, after))
}

/// `response` with the continuation of the next page, if there is one.
pub(crate) fn with_continuation(
    response: ApiGatewayV2httpResponse,
    more_after: Option<&DeviceId>,
) -> ApiGatewayV2httpResponse {
    match more_after.map(|last| BASE64_URL.encode(last.as_str())) {
        Some(token) => Response::with_header(response, CONTINUATION, &token),
        None => response,
    }
}
