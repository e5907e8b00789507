//! What the hub's client SDKs share (the device SDK, the service SDK): the error a call ends in,
//! reading the hub's Azure-style error answers, SAS tokens kept until shortly before they expire,
//! and the HTTP client options. AWS-free; behind the `client` feature.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::domain::sas::{SasToken, SymmetricKey};
use crate::error::ErrorBody;

pub const API_VERSION: &str = "2021-04-12";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot reach the hub: {0}")]
    Transport(#[from] reqwest::Error),
    /// The hub answered with an error.
    #[error("the hub answered {status}{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Hub {
        status: u16,
        code: Option<String>,
        message: String,
    },
}

impl Error {
    /// The Azure error code, when the hub gave one (e.g. `PreconditionFailed`).
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Hub { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Hub { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Worth trying again: the hub was unavailable, throttled, or not reached.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Hub { status, .. } => *status == 503 || *status == 429,
            Error::Transport(_) => true,
            Error::Config(_) => false,
        }
    }
}

/// Passes a successful answer through; turns an error answer into `Error::Hub`, reading the
/// code from Azure's body (or the `iothub-errorcode` header).
pub async fn check(response: reqwest::Response) -> Result<reqwest::Response, Error> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let header_code = response
        .headers()
        .get("iothub-errorcode")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.unwrap_or_default();
    let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => (body.code().map(str::to_owned).or(header_code), body.message),
        Err(_) => (header_code, text),
    };
    Err(Error::Hub {
        status: status.as_u16(),
        code,
        message,
    })
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A SAS token for one resource, made again a minute before it expires.
#[derive(Debug)]
pub struct TokenSource {
    resource: String,
    key: SymmetricKey,
    key_name: Option<String>,
    ttl: Duration,
    cached: Mutex<Option<(String, u64)>>,
}

impl TokenSource {
    pub fn new(
        resource: impl Into<String>,
        key: SymmetricKey,
        key_name: Option<String>,
        ttl: Duration,
    ) -> Self {
        Self {
            resource: resource.into(),
            key,
            key_name,
            ttl,
            cached: Mutex::new(None),
        }
    }

    pub fn token(&self) -> String {
        let now = now_secs();
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, expiry)) = cached.as_ref()
            && *expiry > now + 60
        {
            return token.clone();
        }
        let expiry = now + self.ttl.as_secs().max(120);
        let token = SasToken::generate(&self.resource, &self.key, expiry, self.key_name.as_deref());
        *cached = Some((token.clone(), expiry));
        token
    }
}

/// How a client reaches the hub.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// PEM certificates to trust besides the system's (e.g. the local gateway's self-signed one).
    pub root_certificates: Vec<Vec<u8>>,
    /// Connect here whatever the base URL's host resolves to (`curl --connect-to`), for hubs on
    /// names no resolver knows (an emulator's `<id>.execute-api.localhost`).
    pub connect_to: Option<std::net::SocketAddr>,
    pub timeout: Option<Duration>,
}

impl HttpOptions {
    /// An HTTP client for `base_url` with these options.
    pub fn client(&self, base_url: &str) -> Result<reqwest::Client, Error> {
        let mut http =
            reqwest::Client::builder().timeout(self.timeout.unwrap_or(Duration::from_secs(60)));
        if !self.root_certificates.is_empty() {
            let certificates = self
                .root_certificates
                .iter()
                .map(|pem| reqwest::Certificate::from_pem(pem))
                .collect::<Result<Vec<_>, _>>()?;
            http = http.tls_certs_merge(certificates);
        }
        if let Ok(url) = reqwest::Url::parse(base_url)
            && let Some(host) = url.host_str()
        {
            // Names under .localhost are the loopback address (RFC 6761), as emulators' API
            // hosts are (`<id>.execute-api.localhost`), but the system resolver knows none.
            let loopback = host.ends_with(".localhost").then(|| {
                std::net::SocketAddr::from((
                    [127, 0, 0, 1],
                    url.port_or_known_default().unwrap_or(80),
                ))
            });
            if let Some(addr) = self.connect_to.or(loopback) {
                http = http.resolve(host, addr);
            }
        }
        Ok(http.build()?)
    }
}

/// Retries `call` while it fails with a retryable error, with capped exponential backoff and
/// jitter, `attempts` times in all.
pub async fn with_retries<T, F, Fut>(attempts: u32, mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Err(error) if error.is_retryable() && attempt < attempts.max(1) => {
                let ceiling = 100u64 << attempt.min(6);
                tokio::time::sleep(Duration::from_millis(rand::random_range(
                    ceiling / 2..=ceiling,
                )))
                .await;
            }
            result => return result,
        }
    }
}
