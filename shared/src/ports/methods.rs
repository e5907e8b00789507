//! Direct method calls while they are waited for.

use std::future::Future;

use crate::domain::device_id::DeviceId;
use crate::domain::method::{MethodCall, MethodResponse};
use crate::domain::timestamp::Timestamp;
use crate::ports::StoreError;

/// Outcome of a conditional change of a call's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallChange {
    Changed,
    /// The call is gone or in another state (timed out, answered, taken by another poll).
    NotApplicable,
}

pub trait MethodCalls: Send + Sync {
    fn put_call(
        &self,
        device: &DeviceId,
        call: &MethodCall,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn get_call(
        &self,
        device: &DeviceId,
        request_id: &str,
    ) -> impl Future<Output = Result<Option<MethodCall>, StoreError>> + Send;

    /// The device generation's calls waiting to be taken, oldest first.
    fn pending_calls(
        &self,
        device: &DeviceId,
        generation_id: &str,
    ) -> impl Future<Output = Result<Vec<MethodCall>, StoreError>> + Send;

    /// Pending → taken at `at`, if still pending.
    fn take_call(
        &self,
        device: &DeviceId,
        request_id: &str,
        at: Timestamp,
    ) -> impl Future<Output = Result<CallChange, StoreError>> + Send;

    /// Taken → answered, if taken by this generation and still waited for.
    fn answer_call(
        &self,
        device: &DeviceId,
        generation_id: &str,
        request_id: &str,
        response: &MethodResponse,
    ) -> impl Future<Output = Result<CallChange, StoreError>> + Send;

    /// Removes the call; with `only_pending`, only if no device took it yet.
    fn remove_call(
        &self,
        device: &DeviceId,
        request_id: &str,
        only_pending: bool,
    ) -> impl Future<Output = Result<CallChange, StoreError>> + Send;
}
