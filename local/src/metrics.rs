//! Counting AWS calls: an SDK interceptor that tallies requests per operation (every attempt,
//! retries included), so tools can report how many DynamoDB calls an operation costs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;

#[derive(Debug, Default, Clone)]
pub struct CallCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl CallCounter {
    /// Calls per operation since the last `take`, and resets.
    pub fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn total(counts: &BTreeMap<String, u64>) -> u64 {
        counts.values().sum()
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // JSON-protocol services name the operation in X-Amz-Target ("DynamoDB_20120810.GetItem").
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("unknown");
        let operation = target.rsplit('.').next().unwrap_or(target).to_owned();
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(operation)
            .or_default() += 1;
        Ok(())
    }
}

/// Counters for the DynamoDB clients of the authorizer and of the route functions, kept apart
/// as they are separate Lambdas in AWS.
#[derive(Debug, Default, Clone)]
pub struct Instrumentation {
    pub authorizer_dynamodb: CallCounter,
    pub functions_dynamodb: CallCounter,
    pub analytics_dynamodb: CallCounter,
    /// Invocations of the analytics function with Kinesis batches, and records in them.
    pub analytics_batches: Arc<std::sync::atomic::AtomicU64>,
    pub analytics_records: Arc<std::sync::atomic::AtomicU64>,
    /// When the invocation that committed each message returned, by the device's message id
    /// (the commit is when its aggregates become visible).
    pub analytics_committed: Arc<Mutex<std::collections::HashMap<String, std::time::Instant>>>,
}
