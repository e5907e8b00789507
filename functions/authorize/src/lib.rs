//! The `authorize` function: API Gateway's Lambda REQUEST authorizer.
//!
//! Authenticates the SAS token in `Authorization` with Azure IoT Hub's semantics (device keys and
//! shared access policies), checks that the caller may use the route, and returns the verdict in
//! the authorizer context (see `hub_shared::http::auth_context` for why it never answers
//! `isAuthorized: false`).

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use hub_shared::authz::{Principal, check_access, policy_may_act_as_device};
use hub_shared::aws::{Clients, DynamoDbDeviceRegistry, DynamoDbPolicyStore};
use hub_shared::clock::SharedClock;
use hub_shared::config::{ConfigError, Env, vars};
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::sas::SasToken;
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::error::Chain;
use hub_shared::http::{AuthContext, LAST_ACTIVITY_FIELD};
use hub_shared::lambda::{Function, InvocationError};
use hub_shared::ports::{DeviceRegistry, PolicyStore, StoreError};
use hub_shared::routes::{Access, Route, resource_segments};
use serde_json::Value;

pub type AuthorizerResponse = ApiGatewayV2CustomAuthorizerSimpleResponse<HashMap<String, Value>>;

#[derive(Debug, Clone)]
pub struct AuthorizerConfig {
    /// The hub's host name: the first segment of every token's `sr`.
    pub host_name: String,
    pub clock_skew: Duration,
    pub registry_table: String,
    pub policies_table: String,
}

impl AuthorizerConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            host_name: env.required(vars::HOST_NAME)?,
            clock_skew: env.seconds_or(vars::SAS_CLOCK_SKEW_SECONDS, 60)?,
            registry_table: env.required(vars::REGISTRY_TABLE)?,
            policies_table: env.required(vars::POLICIES_TABLE)?,
        })
    }
}

/// The function as deployed: device identities and policies in DynamoDB.
pub type Handler = Authorizer<DynamoDbDeviceRegistry, DynamoDbPolicyStore>;

/// Builds the function from its configuration, as its `main` does at cold start and the local
/// gateway does for its in-process functions.
pub fn build(config: &AuthorizerConfig, clients: &Clients) -> Handler {
    Authorizer::new(
        DynamoDbDeviceRegistry::new(clients.dynamodb.clone(), &config.registry_table),
        DynamoDbPolicyStore::new(clients.dynamodb.clone(), &config.policies_table),
        &config.host_name,
        config.clock_skew,
    )
}

pub struct Authorizer<R, P> {
    registry: R,
    policies: P,
    host_name: String,
    clock_skew: Duration,
    clock: SharedClock,
}

impl<R: DeviceRegistry, P: PolicyStore> Function for Authorizer<R, P> {
    async fn invoke(&self, event: Value) -> Result<Value, InvocationError> {
        let request: ApiGatewayV2CustomAuthorizerV2Request = hub_shared::lambda::event(event)?;
        hub_shared::lambda::response(&self.handle(&request).await)
    }
}

/// Why a request is not let through.
enum Rejection {
    Unauthorized(String),
    Unavailable(StoreError),
}

impl<T: Into<String>> From<T> for Rejection {
    fn from(reason: T) -> Self {
        Rejection::Unauthorized(reason.into())
    }
}

impl<R: DeviceRegistry, P: PolicyStore> Authorizer<R, P> {
    pub fn new(
        registry: R,
        policies: P,
        host_name: impl Into<String>,
        clock_skew: Duration,
    ) -> Self {
        Self {
            registry,
            policies,
            host_name: host_name.into(),
            clock_skew,
            clock: hub_shared::clock::system(),
        }
    }

    /// Takes the time from `clock` (tests).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    pub async fn handle(
        &self,
        request: &ApiGatewayV2CustomAuthorizerV2Request,
    ) -> AuthorizerResponse {
        let mut last_activity = None;
        let context = match self.authenticate(request).await {
            Ok((principal, activity)) => {
                last_activity = activity;
                AuthContext::Allow(principal)
            }
            Err(Rejection::Unauthorized(reason)) => {
                tracing::info!(
                    route = request.route_key.as_deref(),
                    reason,
                    "request not authorized"
                );
                AuthContext::Deny { reason }
            }
            Err(Rejection::Unavailable(error)) => {
                tracing::error!(kind = ?error.kind, error = %Chain(&error), "cannot authenticate: backing store failed");
                if error.is_transient() {
                    AuthContext::Unavailable
                } else {
                    AuthContext::Failed
                }
            }
        };
        let mut response = AuthorizerResponse::default();
        response.is_authorized = true;
        response.context = context.to_fields();
        if let Some(at) = last_activity {
            // Lets the device's function record activity at most once a minute without a read.
            response.context.insert(
                LAST_ACTIVITY_FIELD.to_owned(),
                Value::String(at.unix_millis().to_string()),
            );
        }
        response
    }

    async fn authenticate(
        &self,
        request: &ApiGatewayV2CustomAuthorizerV2Request,
    ) -> Result<(Principal, Option<Timestamp>), Rejection> {
        let route = request
            .route_key
            .as_deref()
            .and_then(Route::by_key)
            .ok_or("the route is not served by this hub")?;
        let raw_path = request.raw_path.as_deref().unwrap_or_default();
        let params = route
            .match_path(raw_path)
            .ok_or("the request path does not match its route")?;
        // A device route needs a valid device to authenticate; on a service route an invalid id
        // is the handler's to refuse (400), not an authentication failure.
        let path_device = match (route.access, params.get("id")) {
            (_, None) => None,
            (Access::Device, Some(_)) => Some(params.device_id().map_err(|e| e.message)?),
            (Access::Service(_) | Access::Owner | Access::AnyPolicy | Access::Public, Some(_)) => {
                params.device_id().ok()
            }
        };

        let header = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or("the request has no Authorization header")?;
        let token = SasToken::parse(header).map_err(|e| e.to_string())?;
        let now = u64::try_from(self.clock.now().unix_seconds()).unwrap_or_default();
        if token.is_expired(now, self.clock_skew.as_secs()) {
            return Err("the SharedAccessSignature has expired".into());
        }
        let resource = resource_segments(&self.host_name, raw_path);
        let resource: Vec<&str> = resource.iter().map(|s| s.as_ref()).collect();
        if !token.covers(&resource) {
            return Err(format!(
                "the SharedAccessSignature resource (sr) {:?} does not cover {}{}",
                token.resource(),
                self.host_name,
                raw_path
            )
            .into());
        }

        let (principal, activity) = match token.key_name() {
            Some(policy) => {
                self.authenticate_policy(&token, policy, route, path_device.as_ref())
                    .await?
            }
            None => {
                self.authenticate_device(&token, route, path_device.as_ref())
                    .await?
            }
        };
        check_access(route.access, path_device.as_ref(), &principal).map_err(|e| e.message)?;
        Ok((principal, activity))
    }

    async fn authenticate_policy(
        &self,
        token: &SasToken,
        name: &str,
        route: &Route,
        path_device: Option<&DeviceId>,
    ) -> Result<(Principal, Option<Timestamp>), Rejection> {
        let invalid = || format!("the SharedAccessSignature is not valid for policy {name}");
        let policy = self
            .policies
            .get_policy(name)
            .await
            .map_err(Rejection::Unavailable)?
            .ok_or_else(invalid)?;
        if !policy.keys().into_iter().any(|key| token.verify(key)) {
            return Err(invalid().into());
        }
        match (route.access, path_device) {
            (Access::Device, Some(device_id)) if policy_may_act_as_device(policy.rights) => {
                let device = self.enabled_device(device_id).await?;
                let activity = Some(device.last_activity_time);
                let principal = Principal::Device {
                    device_id: device.device_id,
                    generation_id: device.generation_id,
                    via_policy: Some(policy.name),
                };
                Ok((principal, activity))
            }
            _ => Ok((
                Principal::Service {
                    policy: policy.name,
                    rights: policy.rights,
                },
                None,
            )),
        }
    }

    async fn authenticate_device(
        &self,
        token: &SasToken,
        route: &Route,
        path_device: Option<&DeviceId>,
    ) -> Result<(Principal, Option<Timestamp>), Rejection> {
        let device_id = match (route.access, path_device) {
            (Access::Device, Some(device_id)) => device_id,
            _ => return Err("this route needs a shared access policy token (skn); device tokens are not accepted".into()),
        };
        // The same answer for an unknown device and a wrong key, so callers cannot probe for ids.
        let invalid = || format!("the SharedAccessSignature is not valid for device {device_id}");
        let device = self
            .registry
            .get_device(device_id)
            .await
            .map_err(Rejection::Unavailable)?
            .ok_or_else(invalid)?;
        if !device.keys().into_iter().any(|key| token.verify(key)) {
            return Err(invalid().into());
        }
        if !device.is_enabled() {
            return Err(format!("device {device_id} is disabled").into());
        }
        let activity = Some(device.last_activity_time);
        let principal = Principal::Device {
            device_id: device.device_id,
            generation_id: device.generation_id,
            via_policy: None,
        };
        Ok((principal, activity))
    }

    async fn enabled_device(
        &self,
        device_id: &DeviceId,
    ) -> Result<hub_shared::domain::device::Device, Rejection> {
        match self
            .registry
            .get_device(device_id)
            .await
            .map_err(Rejection::Unavailable)?
        {
            None => Err(format!("device {device_id} is not registered").into()),
            Some(device) if !device.is_enabled() => {
                Err(format!("device {device_id} is disabled").into())
            }
            Some(device) => Ok(device),
        }
    }
}

#[cfg(test)]
mod tests;
