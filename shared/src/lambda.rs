//! The one entry point every function has: a Lambda event as JSON in, the response as JSON out.
//! Lambda calls it through [`run`]; the local gateway calls the same method, so both run exactly
//! the code that handles events, event shapes included.

use std::future::Future;

use serde_json::Value;

/// Why an invocation produced no response. Lambda reports it as a function error, so the
/// caller (API Gateway, an event source mapping, EventBridge) sees a failure: retries, the
/// `Errors` metric and alarms all depend on it.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error("the event is not one this function handles: {0}")]
    Event(#[source] serde_json::Error),
    #[error("the response could not be encoded: {0}")]
    Response(#[source] serde_json::Error),
    #[error("{0}")]
    Failed(#[source] crate::ports::StoreError),
}

/// A Lambda function of the hub.
pub trait Function: Send + Sync {
    fn invoke(&self, event: Value) -> impl Future<Output = Result<Value, InvocationError>> + Send;
}

/// Decodes an event into the type a handler takes.
pub fn event<T: serde::de::DeserializeOwned>(event: Value) -> Result<T, InvocationError> {
    serde_json::from_value(event).map_err(InvocationError::Event)
}

/// Encodes a handler's response.
pub fn response<T: serde::Serialize>(response: &T) -> Result<Value, InvocationError> {
    serde_json::to_value(response).map_err(InvocationError::Response)
}

/// Serves `function` on the Lambda Runtime API until the sandbox is shut down.
pub async fn run<F: Function>(function: F) -> Result<(), lambda_runtime::Error> {
    let function = &function;
    // Boxed: the runtime's service stack nests deep enough to overflow rustc's layout
    // recursion limit in every `main` otherwise.
    Box::pin(lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| async move {
            function
                .invoke(event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        },
    )))
    .await
}
