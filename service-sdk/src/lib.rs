//! A service SDK for the hub: what a back end (or an operator's tool, `hubctl`, or the device
//! simulator) does with a shared access policy — the identity registry, twins, cloud-to-device
//! messages and their feedback, rules and alerts — over the hub's HTTPS API (Azure IoT Hub's,
//! api-version 2021-04-12, and the hub's own routes). It depends on no AWS crate.
//!
//! ```no_run
//! # async fn run() -> Result<(), hub_service_sdk::Error> {
//! use hub_service_sdk::ServiceClient;
//! let hub = ServiceClient::builder("HostName=hub.example.com;SharedAccessKeyName=iothubowner;SharedAccessKey=...")?.build()?;
//! let device = hub.create_device("thermostat-1").await?;
//! hub.send_c2d("thermostat-1", &hub_service_sdk::C2dMessage::new("set-point 19")).await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use hub_shared::client::{HttpOptions, TokenSource, check, with_retries};
use hub_shared::domain::command::FeedbackRecord;
use hub_shared::domain::connection_string::ConnectionString;
use hub_shared::domain::device::DeviceDescription;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::registry::{
    BulkRegistryOperationResult, ExportImportDevice, RegistryStatistics,
};
use hub_shared::domain::sas::{SasToken, SymmetricKey, url_encode};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub use hub_shared::client::{API_VERSION, Error};

/// A cloud-to-device message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct C2dMessage {
    pub body: Vec<u8>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    /// `none`, `positive`, `negative` or `full`.
    pub ack: Option<String>,
    /// Seconds the message may wait in the device's queue.
    pub ttl_seconds: Option<u64>,
    pub properties: BTreeMap<String, String>,
}

impl C2dMessage {
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Self {
            body: body.into(),
            ..Default::default()
        }
    }
}

/// A batch of delivery feedback, locked to this reader until completed or abandoned.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackBatch {
    pub lock_token: String,
    pub records: Vec<FeedbackRecord>,
}

pub struct ServiceClientBuilder {
    host_name: String,
    key_name: String,
    key: SymmetricKey,
    base_url: Option<String>,
    http: HttpOptions,
    attempts: u32,
}

impl ServiceClientBuilder {
    /// Talks to `url` (e.g. `http://127.0.0.1:8080`) instead of `https://<HostName>`; tokens still
    /// name the hub's host name.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// Trusts this PEM certificate (e.g. the local gateway's self-signed one).
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.http.root_certificates.push(pem.into());
        self
    }

    /// Connects to `addr` whatever the base URL's host resolves to (`curl --connect-to`).
    pub fn connect_to(mut self, addr: std::net::SocketAddr) -> Self {
        self.http.connect_to = Some(addr);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.http.timeout = Some(timeout);
        self
    }

    /// Attempts for each call when the hub answers 503 or 429, or cannot be reached.
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    pub fn build(self) -> Result<ServiceClient, Error> {
        let base_url = self
            .base_url
            .unwrap_or_else(|| format!("https://{}", self.host_name));
        Ok(ServiceClient {
            http: self.http.client(&base_url)?,
            base_url,
            token: TokenSource::new(
                self.host_name.clone(),
                self.key.clone(),
                Some(self.key_name.clone()),
                Duration::from_secs(3600),
            ),
            host_name: self.host_name,
            key_name: self.key_name,
            key: self.key,
            attempts: self.attempts,
        })
    }
}

pub struct ServiceClient {
    http: reqwest::Client,
    base_url: String,
    token: TokenSource,
    host_name: String,
    key_name: String,
    key: SymmetricKey,
    attempts: u32,
}

/// A page's items and the continuation of the next page, if the hub sent one.
async fn page<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<(T, Option<String>), Error> {
    let next = response
        .headers()
        .get("x-ms-continuation")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((response.json().await?, next))
}

fn encode(segment: &str) -> String {
    url_encode(segment)
}

impl ServiceClient {
    /// From a shared access policy's connection string
    /// (`HostName=...;SharedAccessKeyName=...;SharedAccessKey=...`).
    pub fn builder(connection_string: &str) -> Result<ServiceClientBuilder, Error> {
        match ConnectionString::parse(connection_string)
            .map_err(|e| Error::Config(e.to_string()))?
        {
            ConnectionString::Service {
                host_name,
                key_name,
                key,
            } => Ok(ServiceClientBuilder {
                host_name,
                key_name,
                key,
                base_url: None,
                http: HttpOptions::default(),
                attempts: 3,
            }),
            ConnectionString::Device { .. } => Err(Error::Config(
                "a device connection string was given; a service needs SharedAccessKeyName and SharedAccessKey"
                    .into(),
            )),
        }
    }

    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    pub fn policy_name(&self) -> &str {
        &self.key_name
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The HTTP client, to share its connections with device clients (the simulator does).
    pub fn http_client(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// A SAS token of this client's policy, valid for `ttl`.
    pub fn policy_token(&self, ttl: Duration) -> String {
        SasToken::generate(
            &self.host_name,
            &self.key,
            hub_shared::client::now_secs() + ttl.as_secs(),
            Some(&self.key_name),
        )
    }

    /// A SAS token for a device, signed with one of its keys.
    pub fn device_token(&self, device_id: &DeviceId, key: &SymmetricKey, ttl: Duration) -> String {
        SasToken::generate(
            &format!("{}/devices/{}", self.host_name, encode(device_id.as_str())),
            key,
            hub_shared::client::now_secs() + ttl.as_secs(),
            None,
        )
    }

    /// A device's connection string, as its SDK takes it.
    pub fn device_connection_string(&self, device_id: &DeviceId, key: &SymmetricKey) -> String {
        ConnectionString::Device {
            host_name: self.host_name.clone(),
            device_id: device_id.clone(),
            key: key.clone(),
        }
        .to_string()
    }

    fn request(&self, method: Method, path: &str, query: &str) -> reqwest::RequestBuilder {
        let separator = if query.is_empty() { "" } else { "&" };
        self.http
            .request(
                method,
                format!(
                    "{}{path}?api-version={API_VERSION}{separator}{query}",
                    self.base_url
                ),
            )
            .header("authorization", self.token.token())
    }

    /// Sends with retries on 503, 429 and transport errors.
    async fn call(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        with_retries(self.attempts, || async {
            check(build().send().await?).await
        })
        .await
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, Error> {
        Ok(self.call(build).await?.json().await?)
    }

    // --- Identity registry ---------------------------------------------------------------

    pub async fn get_device(&self, device_id: &str) -> Result<DeviceDescription, Error> {
        let path = format!("/devices/{}", encode(device_id));
        self.json(|| self.request(Method::GET, &path, "")).await
    }

    /// Registers a device with generated keys.
    pub async fn create_device(&self, device_id: &str) -> Result<DeviceDescription, Error> {
        let id = DeviceId::parse(device_id).map_err(|e| Error::Config(e.to_string()))?;
        self.put_device(
            &DeviceDescription {
                device_id: Some(id),
                ..Default::default()
            },
            None,
        )
        .await
    }

    /// Creates (no `If-Match`) or updates a device (`If-Match`: an etag, or `*` for any).
    pub async fn put_device(
        &self,
        description: &DeviceDescription,
        if_match: Option<&str>,
    ) -> Result<DeviceDescription, Error> {
        let id = description
            .device_id
            .as_ref()
            .ok_or_else(|| Error::Config("the device description needs a deviceId".into()))?;
        let path = format!("/devices/{}", encode(id.as_str()));
        self.json(|| {
            let request = self.request(Method::PUT, &path, "").json(description);
            match if_match {
                Some(etag) => request.header("if-match", quoted(etag)),
                None => request,
            }
        })
        .await
    }

    pub async fn delete_device(
        &self,
        device_id: &str,
        if_match: Option<&str>,
    ) -> Result<(), Error> {
        let path = format!("/devices/{}", encode(device_id));
        self.call(|| {
            self.request(Method::DELETE, &path, "")
                .header("if-match", quoted(if_match.unwrap_or("*")))
        })
        .await
        .map(|_| ())
    }

    /// One page of devices (`top` at most 1000) and the continuation token of the next page.
    pub async fn list_devices(
        &self,
        top: usize,
        continuation: Option<&str>,
    ) -> Result<(Vec<DeviceDescription>, Option<String>), Error> {
        let query = format!("top={}", top.clamp(1, 1000));
        let response = self
            .call(|| {
                let request = self.request(Method::GET, "/devices", &query);
                match continuation {
                    Some(token) => request.header("x-ms-continuation", token),
                    None => request,
                }
            })
            .await?;
        page(response).await
    }

    /// One page of a twin query (`SELECT ... FROM devices ...`, Azure's query language) and the
    /// continuation of the next, if more may follow. A page may hold fewer than `page_size`
    /// results and still continue.
    pub async fn query(
        &self,
        query: &str,
        page_size: usize,
        continuation: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), Error> {
        let body = serde_json::json!({ "query": query });
        let response = self
            .call(|| {
                let request = self
                    .request(Method::POST, "/devices/query", "")
                    .header("x-ms-max-item-count", page_size.clamp(1, 1000).to_string())
                    .json(&body);
                match continuation {
                    Some(token) => request.header("x-ms-continuation", token),
                    None => request,
                }
            })
            .await?;
        page(response).await
    }

    /// Invokes a direct method on a device and waits for its answer (`{"status", "payload"}`);
    /// a device that does not take the call answers `DeviceNotOnline` (404), one that does not
    /// answer `GatewayTimeout` (504). Not retried: the device may already have acted.
    pub async fn invoke_method(
        &self,
        device_id: &str,
        method_name: &str,
        payload: &Value,
        response_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Value, Error> {
        let body = serde_json::json!({
            "methodName": method_name,
            "payload": payload,
            "responseTimeoutInSeconds": response_timeout.as_secs(),
            "connectTimeoutInSeconds": connect_timeout.as_secs(),
        });
        let path = format!("/twins/{}/methods", encode(device_id));
        let response = self
            .request(Method::POST, &path, "")
            .json(&body)
            .send()
            .await?;
        Ok(check(response).await?.json().await?)
    }

    /// How many devices are connected (active within the hub's window).
    pub async fn service_statistics(&self) -> Result<Value, Error> {
        self.json(|| self.request(Method::GET, "/statistics/service", ""))
            .await
    }

    /// Up to 100 create, update and delete operations; the answer lists what was not applied.
    pub async fn bulk(
        &self,
        operations: &[ExportImportDevice],
    ) -> Result<BulkRegistryOperationResult, Error> {
        self.json(|| self.request(Method::POST, "/devices", "").json(operations))
            .await
    }

    pub async fn statistics(&self) -> Result<RegistryStatistics, Error> {
        self.json(|| self.request(Method::GET, "/statistics/devices", ""))
            .await
    }

    /// The hub's shared access policies and their keys (owner only).
    pub async fn policies(&self) -> Result<Value, Error> {
        self.json(|| self.request(Method::GET, "/policies", ""))
            .await
    }

    // --- Twins -------------------------------------------------------------------------

    pub async fn twin(&self, device_id: &str) -> Result<Value, Error> {
        let path = format!("/twins/{}", encode(device_id));
        self.json(|| self.request(Method::GET, &path, "")).await
    }

    /// Merges `patch` (`tags`, `properties.desired`; `null` removes) into the twin.
    pub async fn patch_twin(
        &self,
        device_id: &str,
        patch: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, Error> {
        let path = format!("/twins/{}", encode(device_id));
        self.json(|| {
            let request = self.request(Method::PATCH, &path, "").json(patch);
            match if_match {
                Some(etag) => request.header("if-match", quoted(etag)),
                None => request,
            }
        })
        .await
    }

    /// Replaces the twin's tags and desired properties.
    pub async fn replace_twin(
        &self,
        device_id: &str,
        twin: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, Error> {
        let path = format!("/twins/{}", encode(device_id));
        self.json(|| {
            let request = self.request(Method::PUT, &path, "").json(twin);
            match if_match {
                Some(etag) => request.header("if-match", quoted(etag)),
                None => request,
            }
        })
        .await
    }

    // --- Cloud-to-device messages ------------------------------------------------------

    pub async fn send_c2d(&self, device_id: &str, message: &C2dMessage) -> Result<(), Error> {
        let path = format!("/devices/{}/messages/deviceBound", encode(device_id));
        self.call(|| {
            let mut request = self
                .request(Method::POST, &path, "")
                .body(message.body.clone());
            for (name, value) in [
                ("iothub-messageid", message.message_id.clone()),
                ("iothub-correlationid", message.correlation_id.clone()),
                ("iothub-ack", message.ack.clone()),
                ("iothub-ttl", message.ttl_seconds.map(|s| s.to_string())),
            ] {
                if let Some(value) = value {
                    request = request.header(name, value);
                }
            }
            for (name, value) in &message.properties {
                request = request.header(format!("iothub-app-{name}"), value);
            }
            request
        })
        .await
        .map(|_| ())
    }

    /// Removes every message queued for a device; answers how many.
    pub async fn purge_c2d(&self, device_id: &str) -> Result<Value, Error> {
        let path = format!("/devices/{}/commands", encode(device_id));
        self.json(|| self.request(Method::DELETE, &path, "")).await
    }

    /// The next batch of delivery feedback, if any.
    pub async fn receive_feedback(&self) -> Result<Option<FeedbackBatch>, Error> {
        let response = self
            .call(|| self.request(Method::GET, "/messages/serviceBound/feedback", ""))
            .await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let lock_token = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_owned())
            .ok_or_else(|| Error::Config("feedback came without a lock token".into()))?;
        Ok(Some(FeedbackBatch {
            lock_token,
            records: response.json().await?,
        }))
    }

    pub async fn complete_feedback(&self, lock_token: &str) -> Result<(), Error> {
        let path = format!("/messages/serviceBound/feedback/{}", encode(lock_token));
        self.call(|| self.request(Method::DELETE, &path, ""))
            .await
            .map(|_| ())
    }

    pub async fn abandon_feedback(&self, lock_token: &str) -> Result<(), Error> {
        let path = format!(
            "/messages/serviceBound/feedback/{}/abandon",
            encode(lock_token)
        );
        self.call(|| self.request(Method::POST, &path, ""))
            .await
            .map(|_| ())
    }

    // --- Analytics ---------------------------------------------------------------------

    pub async fn rules(&self) -> Result<Value, Error> {
        self.json(|| self.request(Method::GET, "/rules", "")).await
    }

    pub async fn rule(&self, rule_id: &str) -> Result<Value, Error> {
        let path = format!("/rules/{}", encode(rule_id));
        self.json(|| self.request(Method::GET, &path, "")).await
    }

    /// Creates or replaces a rule.
    pub async fn put_rule(&self, rule_id: &str, rule: &Value) -> Result<Value, Error> {
        let path = format!("/rules/{}", encode(rule_id));
        self.json(|| self.request(Method::PUT, &path, "").json(rule))
            .await
    }

    pub async fn delete_rule(&self, rule_id: &str) -> Result<(), Error> {
        let path = format!("/rules/{}", encode(rule_id));
        self.call(|| self.request(Method::DELETE, &path, ""))
            .await
            .map(|_| ())
    }

    /// Alerts: the active ones, or all.
    pub async fn alerts(&self, active_only: bool) -> Result<Value, Error> {
        let query = if active_only { "active=true" } else { "" };
        self.json(|| self.request(Method::GET, "/alerts", query))
            .await
    }

    /// A device's window aggregates (`query`: `window=1m&field=...&from=...&to=...`).
    pub async fn telemetry(&self, device_id: &str, query: &str) -> Result<Value, Error> {
        let path = format!("/devices/{}/telemetry", encode(device_id));
        self.json(|| self.request(Method::GET, &path, query)).await
    }

    /// What the hub knows of a device from its telemetry.
    pub async fn device_state(&self, device_id: &str) -> Result<Value, Error> {
        let path = format!("/devices/{}/state", encode(device_id));
        self.json(|| self.request(Method::GET, &path, "")).await
    }
}

fn quoted(etag: &str) -> String {
    if etag == "*" || etag.starts_with('"') {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_a_policy_connection_string() {
        assert!(ServiceClient::builder("HostName=h;DeviceId=d;SharedAccessKey=YQ==").is_err());
        let client = ServiceClient::builder(
            "HostName=hub.example;SharedAccessKeyName=service;SharedAccessKey=MDEyMzQ1Njc4OWFiY2RlZg==",
        )
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(client.base_url(), "https://hub.example");
        assert_eq!(client.policy_name(), "service");
        assert!(
            client
                .policy_token(Duration::from_secs(60))
                .contains("skn=service")
        );
    }

    #[test]
    fn etags_are_quoted_once() {
        assert_eq!(quoted("abc"), "\"abc\"");
        assert_eq!(quoted("\"abc\""), "\"abc\"");
        assert_eq!(quoted("*"), "*");
    }
}
