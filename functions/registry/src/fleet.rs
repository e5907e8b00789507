//! Reads for operators' tools (the dashboard): who is signed in, and the fleet a page at a time
//! with what each twin reports, in one registry page read and one batched twin read per page.

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use hub_shared::authz::Principal;
use hub_shared::domain::device::DeviceStatus;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::domain::twin::Twin;
use hub_shared::error::ApiError;
use hub_shared::http::{AuthorizedRequest, HandlerError, Response};
use hub_shared::ports::{
    DeviceRegistry, JobStore, MethodCalls, PolicyStore, QueueSender, TwinStore,
};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::RegistryHandler;
use crate::devices::{page_request, with_continuation};

/// Most devices one fleet page holds: each costs a share of one BatchGetItem of twins.
pub const MAX_FLEET_PAGE: usize = 200;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Session {
    policy: String,
    rights: Vec<String>,
}

/// A device as a fleet list shows it: its identity's state and what its twin reports about it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetDevice {
    pub device_id: DeviceId,
    pub status: DeviceStatus,
    pub last_activity_time: Timestamp,
    pub cloud_to_device_message_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
    pub tags: Map<String, Value>,
}

#[derive(Debug, Serialize)]
struct FleetPage {
    devices: Vec<FleetDevice>,
}

impl<R: DeviceRegistry, T: TwinStore, P: PolicyStore, Q: QueueSender, M: MethodCalls, J: JobStore>
    RegistryHandler<R, T, P, Q, M, J>
{
    /// `GET /session`: the policy the token was signed with and its rights, so a tool offers
    /// only what the hub would allow.
    pub(crate) fn describe_session(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let Principal::Service { policy, rights } = &request.principal else {
            return Err(ApiError::unauthorized("a device token has no session").into());
        };
        let session = Session {
            policy: policy.clone(),
            rights: rights.iter().map(|p| p.to_string()).collect(),
        };
        Ok(Response::json(200, &session))
    }

    /// `GET /fleet/devices?top=N` (continued with `x-ms-continuation`, as `GET /devices`).
    pub(crate) async fn list_fleet(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let (top, after) = page_request(request)?;
        if top > MAX_FLEET_PAGE {
            return Err(ApiError::bad_request(format!(
                "top must be a number from 1 to {MAX_FLEET_PAGE}"
            ))
            .into());
        }
        let page = self.registry.list_devices(top, after.as_ref()).await?;
        let keys: Vec<(DeviceId, String)> = page
            .devices
            .iter()
            .map(|d| (d.device_id.clone(), d.generation_id.clone()))
            .collect();
        let mut twins = self.twins.twins_of(&keys).await?;
        let devices = page
            .devices
            .into_iter()
            .map(|device| {
                let twin = twins.remove(&device.device_id);
                let reported = twin.as_ref().map(|t| &t.reported.properties);
                FleetDevice {
                    r#type: reported.and_then(|r| text(r.get("type"))),
                    model: reported.and_then(|r| text(r.get("model"))),
                    firmware: reported.and_then(firmware),
                    tags: twin.map(|t: Twin| t.tags).unwrap_or_default(),
                    device_id: device.device_id,
                    status: device.status,
                    last_activity_time: device.last_activity_time,
                    cloud_to_device_message_count: device.cloud_to_device_message_count,
                }
            })
            .collect();
        Ok(with_continuation(
            Response::json(200, &FleetPage { devices }),
            page.more_after.as_ref(),
        ))
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_owned)
}

/// `firmware` reported as a version string, or as `{version, status}` while an update runs.
fn firmware(reported: &Map<String, Value>) -> Option<String> {
    match reported.get("firmware")? {
        Value::String(version) => Some(version.clone()),
        Value::Object(firmware) => {
            let version = text(firmware.get("version"))?;
            Some(match text(firmware.get("status")) {
                Some(status) if status != "current" => format!("{version} ({status})"),
                _ => version,
            })
        }
        _ => None,
    }
}
