//! `GET /statistics/service`: Azure's service statistics. HTTP devices hold no connection, so a
//! device counts as connected when it was active within the configured window
//! (`HUB_CONNECTED_WINDOW_SECONDS`, 300 s unless set), the same rule a twin's `connectionState`
//! follows.

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use hub_shared::http::{HandlerError, Response};
use hub_shared::ports::{
    DeviceRegistry, JobStore, MethodCalls, PolicyStore, QueueSender, TwinStore,
};
use serde::Serialize;

use crate::RegistryHandler;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceStatistics {
    connected_device_count: u64,
}

impl<R: DeviceRegistry, T: TwinStore, P: PolicyStore, Q: QueueSender, M: MethodCalls, J: JobStore>
    RegistryHandler<R, T, P, Q, M, J>
{
    pub(crate) async fn service_statistics(
        &self,
    ) -> Result<ApiGatewayV2httpResponse, HandlerError> {
        let since = self.connected_since(self.clock.now());
        let connected_device_count = self.registry.count_active_since(since).await?;
        Ok(Response::json(
            200,
            &ServiceStatistics {
                connected_device_count,
            },
        ))
    }
}
