//! A small device SDK for the hub, speaking Azure IoT Hub's HTTPS device API (api-version
//! 2021-04-12): telemetry (single and batch) and cloud-to-device messages (receive, long-poll
//! receive, complete, reject, abandon), authenticated with SAS tokens made from the device's key.
//! It depends on no AWS crate.
//!
//! ```no_run
//! # async fn run() -> Result<(), hub_device_sdk::Error> {
//! use hub_device_sdk::{DeviceClient, Message};
//! let client = DeviceClient::builder("HostName=hub.example.com;DeviceId=d1;SharedAccessKey=...")?.build()?;
//! client.send_event(&Message::new(br#"{"temperature":21.5}"#.to_vec())).await?;
//! if let Some(command) = client.receive_wait(std::time::Duration::from_secs(20)).await? {
//!     client.complete(&command.lock_token).await?;
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hub_shared::client::{HttpOptions, TokenSource, check, with_retries};
use hub_shared::domain::connection_string::ConnectionString;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::sas::{SymmetricKey, url_encode};
use reqwest::{Method, StatusCode};

pub use hub_shared::client::{API_VERSION, Error};

const BATCH_CONTENT_TYPE: &str = "application/vnd.microsoft.iothub.json";

pub use hub_shared::domain::method::MethodDelivery;

/// A device-to-cloud message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub body: Vec<u8>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// Application properties (sent as `iothub-app-<name>`).
    pub properties: BTreeMap<String, String>,
}

impl Message {
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Self {
            body: body.into(),
            ..Default::default()
        }
    }

    pub fn with_message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(name.into(), value.into());
        self
    }
}

/// A cloud-to-device message the device received and holds locked until it settles it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudToDeviceMessage {
    pub body: Vec<u8>,
    pub lock_token: String,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub sequence_number: Option<u64>,
    pub enqueued_time: Option<String>,
    pub expiry_time: Option<String>,
    pub delivery_count: Option<u32>,
    pub ack: Option<String>,
    pub properties: BTreeMap<String, String>,
}

pub struct DeviceClientBuilder {
    host_name: String,
    device_id: DeviceId,
    key: SymmetricKey,
    base_url: Option<String>,
    http: HttpOptions,
    shared_http: Option<reqwest::Client>,
    token_ttl: Duration,
    send_attempts: u32,
}

impl DeviceClientBuilder {
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

    /// Connects to `addr` whatever the base URL's host resolves to (as `curl --connect-to`), for
    /// hubs on names no resolver knows, such as an emulator's `<id>.execute-api.localhost`.
    pub fn connect_to(mut self, addr: std::net::SocketAddr) -> Self {
        self.http.connect_to = Some(addr);
        self
    }

    /// Shares an HTTP client (its connection pool) with other device clients, as a process that
    /// plays many devices does; the other HTTP options are then the shared client's.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.shared_http = Some(client);
        self
    }

    /// Lifetime of the SAS tokens the client makes (renewed before they expire).
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// Attempts for sending telemetry when the hub answers 503 or 429, or cannot be reached.
    pub fn send_attempts(mut self, attempts: u32) -> Self {
        self.send_attempts = attempts.max(1);
        self
    }

    pub fn build(self) -> Result<DeviceClient, Error> {
        let base_url = self
            .base_url
            .unwrap_or_else(|| format!("https://{}", self.host_name));
        let http = match self.shared_http {
            Some(client) => client,
            None => self.http.client(&base_url)?,
        };
        let resource = format!(
            "{}/devices/{}",
            self.host_name,
            url_encode(self.device_id.as_str())
        );
        Ok(DeviceClient {
            http,
            base_url,
            path: format!("/devices/{}", url_encode(self.device_id.as_str())),
            device_id: self.device_id,
            send_attempts: self.send_attempts,
            token: TokenSource::new(resource, self.key, None, self.token_ttl),
        })
    }
}

pub struct DeviceClient {
    http: reqwest::Client,
    base_url: String,
    path: String,
    device_id: DeviceId,
    send_attempts: u32,
    token: TokenSource,
}

impl DeviceClient {
    /// From a device connection string (`HostName=...;DeviceId=...;SharedAccessKey=...`).
    pub fn builder(connection_string: &str) -> Result<DeviceClientBuilder, Error> {
        match ConnectionString::parse(connection_string).map_err(|e| Error::Config(e.to_string()))? {
            ConnectionString::Device { host_name, device_id, key } => Ok(DeviceClientBuilder {
                host_name,
                device_id,
                key,
                base_url: None,
                http: HttpOptions::default(),
                shared_http: None,
                token_ttl: Duration::from_secs(3600),
                send_attempts: 4,
            }),
            ConnectionString::Service { .. } => {
                Err(Error::Config("a service connection string was given; a device needs DeviceId and SharedAccessKey".into()))
            }
        }
    }

    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }

    fn request(&self, method: Method, path_suffix: &str, query: &str) -> reqwest::RequestBuilder {
        let url = format!(
            "{}{}{path_suffix}?api-version={API_VERSION}{query}",
            self.base_url, self.path
        );
        self.http
            .request(method, url)
            .header("authorization", self.token.token())
    }

    async fn check(response: reqwest::Response) -> Result<reqwest::Response, Error> {
        check(response).await
    }

    /// Sends with retries on 503, 429 and transport errors (the hub stored nothing then, or at
    /// worst some messages twice: delivery is at least once).
    async fn send_with_retry(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(), Error> {
        with_retries(self.send_attempts, || async {
            let response = build().send().await?;
            Self::check(response).await.map(|_| ())
        })
        .await
    }

    pub async fn send_event(&self, message: &Message) -> Result<(), Error> {
        self.send_with_retry(|| {
            let mut request = self
                .request(Method::POST, "/messages/events", "")
                .body(message.body.clone());
            let system = [
                ("iothub-messageid", &message.message_id),
                ("iothub-correlationid", &message.correlation_id),
                ("iothub-contenttype", &message.content_type),
                ("iothub-contentencoding", &message.content_encoding),
            ];
            for (name, value) in system {
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
    }

    pub async fn send_event_batch(&self, messages: &[Message]) -> Result<(), Error> {
        let batch: Vec<serde_json::Value> = messages
            .iter()
            .map(|message| {
                let mut properties: serde_json::Map<String, serde_json::Value> = message
                    .properties
                    .iter()
                    .map(|(k, v)| (format!("iothub-app-{k}"), serde_json::Value::String(v.clone())))
                    .collect();
                for (name, value) in [
                    ("iothub-messageid", &message.message_id),
                    ("iothub-correlationid", &message.correlation_id),
                    ("iothub-contenttype", &message.content_type),
                    ("iothub-contentencoding", &message.content_encoding),
                ] {
                    if let Some(value) = value {
                        properties.insert(name.to_owned(), serde_json::Value::String(value.clone()));
                    }
                }
                serde_json::json!({ "body": BASE64.encode(&message.body), "base64Encoded": true, "properties": properties })
            })
            .collect();
        let body = serde_json::to_vec(&batch).map_err(|e| Error::Config(e.to_string()))?;
        self.send_with_retry(|| {
            self.request(Method::POST, "/messages/events", "")
                .header("content-type", BATCH_CONTENT_TYPE)
                .body(body.clone())
        })
        .await
    }

    /// The oldest available cloud-to-device message, locked to this device; `None` when the queue
    /// has nothing for it.
    pub async fn receive(&self) -> Result<Option<CloudToDeviceMessage>, Error> {
        self.receive_query("").await
    }

    /// Like `receive`, but waits up to `wait` (at most 20 s) for a message to arrive. This uses
    /// the hub's `waitSeconds` extension; Azure IoT Hub itself does not long-poll.
    pub async fn receive_wait(
        &self,
        wait: Duration,
    ) -> Result<Option<CloudToDeviceMessage>, Error> {
        self.receive_query(&format!("&waitSeconds={}", wait.as_secs().min(20)))
            .await
    }

    async fn receive_query(&self, query: &str) -> Result<Option<CloudToDeviceMessage>, Error> {
        let response = Self::check(
            self.request(Method::GET, "/messages/deviceBound", query)
                .send()
                .await?,
        )
        .await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let headers = response.headers().clone();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let lock_token = header("etag")
            .map(|etag| etag.trim_matches('"').to_owned())
            .ok_or_else(|| {
                Error::Config("the hub sent a message without an ETag lock token".into())
            })?;
        let properties = headers
            .iter()
            .filter_map(|(name, value)| {
                let property = name.as_str().strip_prefix("iothub-app-")?;
                Some((property.to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        Ok(Some(CloudToDeviceMessage {
            body: response.bytes().await?.to_vec(),
            lock_token,
            message_id: header("iothub-messageid"),
            correlation_id: header("iothub-correlationid"),
            sequence_number: header("iothub-sequencenumber").and_then(|v| v.parse().ok()),
            enqueued_time: header("iothub-enqueuedtime"),
            expiry_time: header("iothub-expiry"),
            delivery_count: header("iothub-deliverycount").and_then(|v| v.parse().ok()),
            ack: header("iothub-ack"),
            properties,
        }))
    }

    /// Settles a message as done (the hub sends `Success` feedback if asked for).
    pub async fn complete(&self, lock_token: &str) -> Result<(), Error> {
        self.settle(Method::DELETE, lock_token, "", "").await
    }

    /// Settles a message as refused: it is not delivered again (`Rejected` feedback).
    pub async fn reject(&self, lock_token: &str) -> Result<(), Error> {
        self.settle(Method::DELETE, lock_token, "", "&reject").await
    }

    /// Gives a message back to the queue to be received again.
    pub async fn abandon(&self, lock_token: &str) -> Result<(), Error> {
        self.settle(Method::POST, lock_token, "/abandon", "").await
    }

    /// The device's twin: `{"desired": {...}, "reported": {...}}`.
    pub async fn twin(&self) -> Result<serde_json::Value, Error> {
        let response = with_retries(self.send_attempts, || async {
            Self::check(self.request(Method::GET, "/twin", "").send().await?).await
        })
        .await?;
        Ok(response.json().await?)
    }

    /// Reports properties (a JSON merge patch: `null` removes one), retried like telemetry.
    pub async fn update_reported(&self, patch: &serde_json::Value) -> Result<(), Error> {
        self.send_with_retry(|| {
            self.request(Method::PATCH, "/twin/properties/reported", "")
                .json(patch)
        })
        .await
    }

    /// The desired properties. With `since_version`, waits up to `wait` (at most 20 s) for a
    /// version above it, and answers `None` if none came (the hub's `waitSeconds` extension).
    pub async fn desired(
        &self,
        since_version: Option<u64>,
        wait: Duration,
    ) -> Result<Option<serde_json::Value>, Error> {
        let query = match since_version {
            Some(version) => format!(
                "&sinceVersion={version}&waitSeconds={}",
                wait.as_secs().min(20)
            ),
            None => String::new(),
        };
        let response = with_retries(self.send_attempts, || async {
            Self::check(
                self.request(Method::GET, "/twin/properties/desired", &query)
                    .send()
                    .await?,
            )
            .await
        })
        .await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Ok(Some(response.json().await?))
    }

    /// The oldest direct method call waiting for this device, taken by this request; waits up
    /// to `wait` (at most 20 s) for one (the hub's extension: Azure offers methods over MQTT and
    /// AMQP only). Answer it with [`DeviceClient::respond_method`] within the caller's response
    /// timeout. Not retried: a call taken by a request whose answer was lost is not offered
    /// again (methods are at most once; the caller gets a timeout).
    pub async fn receive_method(&self, wait: Duration) -> Result<Option<MethodDelivery>, Error> {
        let query = format!("&waitSeconds={}", wait.as_secs().min(20));
        let response =
            Self::check(self.request(Method::GET, "/methods", &query).send().await?).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Ok(Some(response.json().await?))
    }

    /// Answers a method call with a status of the device's choosing and a JSON payload.
    pub async fn respond_method(
        &self,
        request_id: &str,
        status: i64,
        payload: &serde_json::Value,
    ) -> Result<(), Error> {
        let path = format!("/methods/{}/response", url_encode(request_id));
        let body = serde_json::json!({ "status": status, "payload": payload });
        self.send_with_retry(|| self.request(Method::POST, &path, "").json(&body))
            .await
    }

    async fn settle(
        &self,
        method: Method,
        lock_token: &str,
        suffix: &str,
        query: &str,
    ) -> Result<(), Error> {
        let token = lock_token.trim_matches('"');
        let path = format!("/messages/deviceBound/{}{suffix}", url_encode(token));
        let request = self
            .request(method, &path, query)
            .header("if-match", format!("\"{token}\""));
        Self::check(request.send().await?).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests;
