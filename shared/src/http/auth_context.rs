//! The authorizer's verdict, carried to the route's function in the authorizer context.
//!
//! API Gateway HTTP APIs answer a denying authorizer with `403 {"message":"Forbidden"}` and no
//! way to change it, but Azure IoT Hub answers `401` with an error code its SDKs read. So the
//! authorizer always lets the request through and puts its verdict here; every handler refuses
//! a request whose verdict is not `allow` (see `HttpRequest::authorize`). Clients cannot write
//! this context: API Gateway fills it from the authorizer's response only.

use std::collections::HashMap;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use serde_json::Value;

use crate::authz::Principal;
use crate::domain::device_id::DeviceId;
use crate::error::ApiError;

/// Context field with the device's `lastActivityTime` (ms since the epoch) as the authorizer read it.
pub const LAST_ACTIVITY_FIELD: &str = "lastActivity";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthContext {
    Allow(Principal),
    Deny {
        reason: String,
    },
    /// The authorizer could not reach the registry: the client should retry, not re-authenticate.
    Unavailable,
    /// The registry answered, but with an item the authorizer cannot read, or refused the read:
    /// retrying does not help, and the client is told so (500).
    Failed,
}

impl AuthContext {
    /// Flat string fields, as API Gateway passes simple-response contexts.
    pub fn to_fields(&self) -> HashMap<String, Value> {
        let mut fields = HashMap::new();
        let mut set = |name: &str, value: &str| {
            fields.insert(name.to_owned(), Value::String(value.to_owned()));
        };
        match self {
            AuthContext::Deny { reason } => {
                set("verdict", "deny");
                set("reason", reason);
            }
            AuthContext::Unavailable => set("verdict", "unavailable"),
            AuthContext::Failed => set("verdict", "failed"),
            AuthContext::Allow(Principal::Device {
                device_id,
                generation_id,
                via_policy,
            }) => {
                set("verdict", "allow");
                set("principal", "device");
                set("deviceId", device_id.as_str());
                set("generationId", generation_id);
                if let Some(policy) = via_policy {
                    set("policy", policy);
                }
            }
            AuthContext::Allow(Principal::Service { policy, rights }) => {
                set("verdict", "allow");
                set("principal", "service");
                set("policy", policy);
                set("rights", &rights.to_string());
            }
        }
        fields
    }

    pub fn from_fields(fields: &HashMap<String, Value>) -> Self {
        let get = |name: &str| fields.get(name).and_then(Value::as_str);
        let deny = |reason: &str| AuthContext::Deny {
            reason: reason.to_owned(),
        };
        match get("verdict") {
            Some("allow") => {}
            Some("deny") => return deny(get("reason").unwrap_or("unauthorized")),
            Some("unavailable") => return AuthContext::Unavailable,
            Some("failed") => return AuthContext::Failed,
            _ => return deny("the request was not authenticated"),
        }
        match get("principal") {
            Some("device") => match (get("deviceId").map(DeviceId::parse), get("generationId")) {
                (Some(Ok(device_id)), Some(generation_id)) => {
                    AuthContext::Allow(Principal::Device {
                        device_id,
                        generation_id: generation_id.to_owned(),
                        via_policy: get("policy").map(str::to_owned),
                    })
                }
                _ => deny("the authorizer context is incomplete"),
            },
            Some("service") => match (get("policy"), get("rights").map(str::parse)) {
                (Some(policy), Some(Ok(rights))) => AuthContext::Allow(Principal::Service {
                    policy: policy.to_owned(),
                    rights,
                }),
                _ => deny("the authorizer context is incomplete"),
            },
            _ => deny("the authorizer context names no principal"),
        }
    }

    pub fn from_request(request: &ApiGatewayV2httpRequest) -> Self {
        match &request.request_context.authorizer {
            Some(authorizer) => Self::from_fields(&authorizer.fields),
            None => AuthContext::Deny {
                reason: "the request was not authenticated".into(),
            },
        }
    }

    pub fn into_principal(self) -> Result<Principal, ApiError> {
        match self {
            AuthContext::Allow(principal) => Ok(principal),
            AuthContext::Deny { reason } => Err(ApiError::unauthorized(reason)),
            AuthContext::Unavailable => Err(ApiError::unavailable(
                "authentication is unavailable; retry later",
            )),
            AuthContext::Failed => Err(ApiError::new(
                crate::error::ErrorCode::ServerError,
                "authentication failed on the hub's side; retrying will not help (the operator has the details under this tracking id)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::{Permission, Rights};

    #[test]
    fn round_trips_every_verdict() {
        let cases = [
            AuthContext::Deny {
                reason: "token expired".into(),
            },
            AuthContext::Unavailable,
            AuthContext::Allow(Principal::Device {
                device_id: DeviceId::parse("d1").unwrap(),
                generation_id: "638".into(),
                via_policy: None,
            }),
            AuthContext::Allow(Principal::Device {
                device_id: DeviceId::parse("d1").unwrap(),
                generation_id: "638".into(),
                via_policy: Some("iothubowner".into()),
            }),
            AuthContext::Allow(Principal::Service {
                policy: "registryReadWrite".into(),
                rights: Rights::of(&[Permission::RegistryRead, Permission::RegistryWrite]),
            }),
        ];
        for context in cases {
            assert_eq!(AuthContext::from_fields(&context.to_fields()), context);
        }
    }

    #[test]
    fn anything_but_a_complete_allow_is_a_denial() {
        let fields = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect::<HashMap<_, _>>()
        };
        for case in [
            fields(&[]),
            fields(&[("verdict", "maybe")]),
            fields(&[("verdict", "allow")]),
            fields(&[
                ("verdict", "allow"),
                ("principal", "device"),
                ("deviceId", "d1"),
            ]),
            fields(&[
                ("verdict", "allow"),
                ("principal", "device"),
                ("deviceId", "bad id"),
                ("generationId", "1"),
            ]),
            fields(&[
                ("verdict", "allow"),
                ("principal", "service"),
                ("policy", "p"),
                ("rights", "All"),
            ]),
        ] {
            assert!(
                matches!(AuthContext::from_fields(&case), AuthContext::Deny { .. }),
                "{case:?}"
            );
        }
    }
}
