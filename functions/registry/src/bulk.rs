//! `POST /devices`: up to 100 create, update and delete operations, each on its own; the answer
//! reports every device that failed (Azure's `BulkRegistryOperationResult`).

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use hub_shared::domain::device::DeviceDescription;
use hub_shared::domain::registry::{
    BulkRegistryOperationResult, DeviceRegistryOperationError, ExportImportDevice, ImportMode,
    MAX_BULK_OPERATIONS,
};
use hub_shared::error::ApiError;
use hub_shared::http::{AuthorizedRequest, HandlerError, Response};
use hub_shared::ports::{
    DeviceRegistry, IfMatch, JobStore, MethodCalls, PolicyStore, QueueSender, TwinStore,
};

use crate::RegistryHandler;
use crate::devices::RegistryError;

impl<R: DeviceRegistry, T: TwinStore, P: PolicyStore, Q: QueueSender, M: MethodCalls, J: JobStore>
    RegistryHandler<R, T, P, Q, M, J>
{
    pub(crate) async fn bulk(
        &self,
        request: &AuthorizedRequest<'_>,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let body = request.http.body()?;
        let operations: Vec<ExportImportDevice> = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the bulk request is not valid: {e}")))?;
        if operations.is_empty() || operations.len() > MAX_BULK_OPERATIONS {
            return Err(ApiError::bad_request(format!(
                "a bulk request holds 1 to {MAX_BULK_OPERATIONS} operations"
            ))
            .into());
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(repeated) = operations.iter().find(|o| !seen.insert(&o.id)) {
            return Err(ApiError::bad_request(format!(
                "device {} appears more than once; a bulk request names each device once",
                repeated.id
            ))
            .into());
        }
        let mut result = BulkRegistryOperationResult {
            is_successful: true,
            ..Default::default()
        };
        // Every operation is tried on its own, whatever befell the others; the answer lists
        // each one that was not applied, so what is not listed was applied. Only when the store
        // failed every operation (nothing applied) does the whole request fail, so the client
        // retries it whole.
        let total = operations.len();
        let mut store_failures = Vec::new();
        for operation in operations {
            if let Err(error) = self.apply(&operation).await {
                let (code, message) = match error {
                    RegistryError::Api(error) => (error.code.as_str().to_owned(), error.message),
                    RegistryError::Store(error) => {
                        let answer = hub_shared::http::store_failure(&error);
                        tracing::error!(device = %operation.id, error = %hub_shared::error::Chain(&error), "bulk operation not applied");
                        store_failures.push(error);
                        (
                            answer.code.as_str().to_owned(),
                            format!("not applied: {}", answer.message),
                        )
                    }
                };
                result.is_successful = false;
                result.errors.push(DeviceRegistryOperationError {
                    device_id: operation.id.to_string(),
                    error_code: code,
                    error_status: message,
                });
            }
        }
        if store_failures.len() == total
            && let Some(error) = store_failures.into_iter().next()
        {
            return Err(error.into());
        }
        Ok(Response::json(200, &result))
    }

    async fn apply(&self, operation: &ExportImportDevice) -> Result<(), RegistryError> {
        let description = DeviceDescription {
            device_id: Some(operation.id.clone()),
            status: operation.status,
            status_reason: operation.status_reason.clone(),
            authentication: operation.authentication.clone(),
            capabilities: operation.capabilities,
            ..Default::default()
        };
        let etag = || -> Result<IfMatch, RegistryError> {
            match operation
                .etag
                .as_deref()
                .map(str::trim)
                .filter(|e| !e.is_empty())
            {
                Some(etag) => Ok(IfMatch::Etag(etag.trim_matches('"').to_owned())),
                None => Err(ApiError::bad_request("this import mode needs eTag").into()),
            }
        };
        match operation.import_mode {
            ImportMode::Create => self.create(&operation.id, &description).await.map(|_| ()),
            ImportMode::Update => self
                .update(&operation.id, &description, &IfMatch::Any)
                .await
                .map(|_| ()),
            ImportMode::UpdateIfMatchEtag => self
                .update(&operation.id, &description, &etag()?)
                .await
                .map(|_| ()),
            ImportMode::Delete => self.delete(&operation.id, &IfMatch::Any).await,
            ImportMode::DeleteIfMatchEtag => self.delete(&operation.id, &etag()?).await,
        }
    }
}
