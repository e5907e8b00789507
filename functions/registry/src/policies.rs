//! Shared access policies: listing them with their keys, and rotating one key at a time (the
//! other keeps working, so clients move to the new key without downtime). Owner only.

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use hub_shared::domain::policy::AccessPolicy;
use hub_shared::domain::sas::SymmetricKey;
use hub_shared::error::{ApiError, ErrorCode};
use hub_shared::http::{AuthorizedRequest, HandlerError, Response};
use hub_shared::ports::{
    DeviceRegistry, JobStore, KeySlot, MethodCalls, PolicyStore, QueueSender, TwinStore,
};
use serde_json::{Value, json};

use crate::RegistryHandler;

/// Azure's `SharedAccessSignatureAuthorizationRule`.
fn rule(policy: &AccessPolicy) -> Value {
    json!({
        "keyName": policy.name,
        "primaryKey": policy.primary_key.to_base64(),
        "secondaryKey": policy.secondary_key.to_base64(),
        "rights": policy.rights.to_string(),
    })
}

impl<R: DeviceRegistry, T: TwinStore, P: PolicyStore, Q: QueueSender, M: MethodCalls, J: JobStore>
    RegistryHandler<R, T, P, Q, M, J>
{
    pub(crate) async fn list_policies(&self) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let policies = self.policies.list_policies().await?;
        Ok(Response::json(
            200,
            &json!({ "value": policies.iter().map(rule).collect::<Vec<_>>() }),
        ))
    }

    pub(crate) async fn regenerate_key(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let name = request.params.get("name").unwrap_or_default();
        let slot = match request.params.get("slot") {
            Some("primary") => KeySlot::Primary,
            Some("secondary") => KeySlot::Secondary,
            _ => {
                return Err(
                    ApiError::bad_request("the key to regenerate is primary or secondary").into(),
                );
            }
        };
        if !self
            .policies
            .set_key(name, slot, &SymmetricKey::generate())
            .await?
        {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("there is no shared access policy {name}"),
            )
            .into());
        }
        let policy = self.policies.get_policy(name).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("there is no shared access policy {name}"),
            )
        })?;
        Ok(Response::json(200, &rule(&policy)))
    }
}
