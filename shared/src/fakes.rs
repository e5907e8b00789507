//! In-memory implementations of the ports for handler unit tests. Integration tests use the
//! AWS adapters against LocalStack instead.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::domain::device::Device;
use crate::domain::device_id::DeviceId;
use crate::domain::policy::AccessPolicy;
use crate::ports::{
    CreateOutcome, DeleteOutcome, DeviceRegistry, IfMatch, PolicyStore, RecordFailure, RecordSink,
    StoreError, StreamRecord,
};

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
pub struct InMemoryRegistry {
    devices: Mutex<BTreeMap<DeviceId, Device>>,
    /// When set, every call fails as if the store were down.
    pub unavailable: std::sync::atomic::AtomicBool,
}

impl InMemoryRegistry {
    pub fn with(devices: impl IntoIterator<Item = Device>) -> Self {
        let registry = Self::default();
        lock(&registry.devices).extend(devices.into_iter().map(|d| (d.device_id.clone(), d)));
        registry
    }

    pub fn snapshot(&self) -> Vec<Device> {
        lock(&self.devices).values().cloned().collect()
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.unavailable.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::new(
                "in-memory registry",
                std::io::Error::other("unavailable"),
            ));
        }
        Ok(())
    }
}

impl DeviceRegistry for InMemoryRegistry {
    async fn get_device(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        self.check()?;
        Ok(lock(&self.devices).get(id).cloned())
    }

    async fn create_device(&self, device: &Device) -> Result<CreateOutcome, StoreError> {
        self.check()?;
        let mut devices = lock(&self.devices);
        if devices.contains_key(&device.device_id) {
            return Ok(CreateOutcome::AlreadyExists);
        }
        devices.insert(device.device_id.clone(), device.clone());
        Ok(CreateOutcome::Created)
    }

    async fn delete_device(
        &self,
        id: &DeviceId,
        condition: &IfMatch,
    ) -> Result<DeleteOutcome, StoreError> {
        self.check()?;
        let mut devices = lock(&self.devices);
        match (devices.get(id), condition) {
            (None, _) => Ok(DeleteOutcome::NotFound),
            (Some(device), IfMatch::Etag(etag)) if device.etag != *etag => {
                Ok(DeleteOutcome::EtagMismatch)
            }
            (Some(_), _) => {
                devices.remove(id);
                Ok(DeleteOutcome::Deleted)
            }
        }
    }
}

#[derive(Default)]
pub struct InMemoryPolicies {
    policies: Mutex<BTreeMap<String, AccessPolicy>>,
}

impl InMemoryPolicies {
    pub fn with(policies: impl IntoIterator<Item = AccessPolicy>) -> Self {
        let store = Self::default();
        lock(&store.policies).extend(policies.into_iter().map(|p| (p.name.clone(), p)));
        store
    }
}

impl PolicyStore for InMemoryPolicies {
    async fn get_policy(&self, name: &str) -> Result<Option<AccessPolicy>, StoreError> {
        Ok(lock(&self.policies).get(name).cloned())
    }
}

/// Stores records in memory; `fail_next` makes the next calls fail every record.
#[derive(Default)]
pub struct InMemoryStream {
    records: Mutex<Vec<StreamRecord>>,
    pub fail_next: std::sync::atomic::AtomicUsize,
}

impl InMemoryStream {
    pub fn records(&self) -> Vec<StreamRecord> {
        lock(&self.records).clone()
    }
}

impl RecordSink for InMemoryStream {
    async fn put_records(
        &self,
        records: &[StreamRecord],
    ) -> Result<Vec<RecordFailure>, StoreError> {
        use std::sync::atomic::Ordering;
        let failing = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Ok(records
                .iter()
                .map(|_| Some("ProvisionedThroughputExceededException".to_owned()))
                .collect());
        }
        lock(&self.records).extend(records.iter().cloned());
        Ok(vec![None; records.len()])
    }
}

/// A freshly registered, enabled device with random keys.
pub fn device(id: &str) -> Device {
    use crate::domain::device::{DeviceStatus, new_etag, new_generation_id};
    use crate::domain::sas::SymmetricKey;
    use crate::domain::timestamp::Timestamp;
    Device {
        device_id: DeviceId::parse(id).unwrap_or_else(|e| panic!("test device id {id:?}: {e}")),
        generation_id: new_generation_id(time::OffsetDateTime::now_utc()),
        etag: new_etag(),
        status: DeviceStatus::Enabled,
        status_reason: None,
        status_updated_time: Timestamp::now(),
        connection_state_updated_time: Timestamp::NEVER,
        last_activity_time: Timestamp::NEVER,
        cloud_to_device_message_count: 0,
        primary_key: SymmetricKey::generate(),
        secondary_key: SymmetricKey::generate(),
        iot_edge: false,
    }
}

/// The built-in policies with random keys.
pub fn built_in_policies() -> Vec<AccessPolicy> {
    use crate::domain::policy::{BUILT_IN_POLICIES, Rights};
    use crate::domain::sas::SymmetricKey;
    BUILT_IN_POLICIES
        .iter()
        .map(|(name, permissions)| AccessPolicy {
            name: (*name).to_owned(),
            rights: Rights::of(permissions),
            primary_key: SymmetricKey::generate(),
            secondary_key: SymmetricKey::generate(),
        })
        .collect()
}

/// Builds an API Gateway request as the gateway would after the authorizer gave `context`.
pub struct RequestBuilder {
    request: aws_lambda_events::apigw::ApiGatewayV2httpRequest,
}

impl RequestBuilder {
    pub fn new(route_key: &str, path: &str, context: &crate::http::AuthContext) -> Self {
        let mut request = aws_lambda_events::apigw::ApiGatewayV2httpRequest::default();
        request.route_key = Some(route_key.to_owned());
        request.raw_path = Some(path.to_owned());
        request.request_context.request_id = Some("test-request".to_owned());
        let mut authorizer = aws_lambda_events::apigw::ApiGatewayRequestAuthorizer::default();
        authorizer.fields = context.to_fields();
        request.request_context.authorizer = Some(authorizer);
        Self { request }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        let value = http::HeaderValue::from_str(value)
            .unwrap_or_else(|e| panic!("test header {name}: {e}"));
        self.request.headers.append(name, value);
        self
    }

    pub fn body(mut self, body: &[u8]) -> Self {
        use base64::Engine as _;
        self.request.body = Some(base64::engine::general_purpose::STANDARD.encode(body));
        self.request.is_base64_encoded = true;
        self
    }

    pub fn text_body(mut self, body: &str) -> Self {
        self.request.body = Some(body.to_owned());
        self
    }

    pub fn build(self) -> aws_lambda_events::apigw::ApiGatewayV2httpRequest {
        self.request
    }
}

/// The response body as text, and the error code when it is an error.
pub fn response_body(response: &aws_lambda_events::apigw::ApiGatewayV2httpResponse) -> String {
    use aws_lambda_events::encodings::Body;
    match &response.body {
        None | Some(Body::Empty) => String::new(),
        Some(Body::Text(text)) => text.clone(),
        Some(Body::Binary(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        #[allow(unreachable_patterns)]
        Some(_) => String::new(),
    }
}

pub fn error_code(response: &aws_lambda_events::apigw::ApiGatewayV2httpResponse) -> Option<String> {
    serde_json::from_str::<crate::error::ErrorBody>(&response_body(response))
        .ok()
        .and_then(|b| b.code().map(str::to_owned))
}
