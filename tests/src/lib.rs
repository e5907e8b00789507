//! Test harness for the integration and end-to-end tests: the environment an apply wrote
//! (`HUB_ENV_FILE`, by default `.local/hub.env` from `localstack/up.sh`), the hub under test, and
//! helpers that act as devices and services do.
//!
//! The hub under test is either the local gateway, started once per test binary in process
//! (LocalStack), or, when the environment names an API URL (`HUB_API_URL`, MiniStack's full
//! stack), that deployed API: the end-to-end suite runs unchanged against both.
//!
//! Without the environment the tests fail loudly; they never skip.

pub mod archive;
pub mod runtime_api;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hub_local::stream::TelemetryTail;
use hub_local::{GatewayOptions, Hub, LocalSettings};
use hub_shared::config::vars;
use hub_shared::domain::device::DeviceDescription;
use hub_shared::domain::envelope::TelemetryEnvelope;
use hub_shared::domain::sas::{SasToken, SymmetricKey};
use hub_shared::error::ErrorBody;
use hub_shared::ports::PolicyStore;

pub const API_VERSION: &str = "2021-04-12";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Loads the environment file (`HUB_ENV_FILE`, default `.local/hub.env`; variables already set
/// win) and checks the hub's variables are there.
pub fn load_environment() {
    static LOADED: OnceLock<()> = OnceLock::new();
    LOADED.get_or_init(|| {
        let file = std::env::var_os("HUB_ENV_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".local/hub.env"));
        if file.exists() {
            dotenvy::from_path(&file)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        }
        for name in [
            vars::HOST_NAME,
            vars::REGISTRY_TABLE,
            vars::POLICIES_TABLE,
            vars::TELEMETRY_STREAM,
            "AWS_ENDPOINT_URL",
            "HUB_LOCAL_SETTINGS",
        ] {
            if std::env::var(name).is_err() {
                panic!(
                    "integration tests need the local AWS environment, but {name} is not set.\n\
                     Run them with `make test` (which starts LocalStack and applies infra/), \
                     or run `localstack/up.sh` first."
                );
            }
        }
    });
}

/// Each function's environment and the event source settings, as the local apply deployed them.
pub fn settings() -> LocalSettings {
    load_environment();
    let path = std::env::var("HUB_LOCAL_SETTINGS").unwrap_or_default();
    LocalSettings::load(Path::new(&path)).unwrap_or_else(|e| panic!("{e}"))
}

/// The deployed API the environment names (`HUB_API_URL`), if any.
fn deployed_api_url() -> Option<String> {
    load_environment();
    std::env::var("HUB_API_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .map(|url| url.trim_end_matches('/').to_owned())
}

/// Whether the hub under test is a deployed API (the full-stack stage) rather than the local
/// gateway.
pub fn is_full_stack() -> bool {
    deployed_api_url().is_some()
}

/// The hub under test, shared by all tests of one test binary: the local gateway (on its own
/// runtime, so it outlives each test's runtime) or a deployed API.
pub struct Gateway {
    pub http_url: String,
    /// Empty for a deployed API (MiniStack serves plain HTTP).
    pub https_url: String,
    pub cert_pem: Vec<u8>,
    pub host_name: String,
    local: Option<LocalGateway>,
}

struct LocalGateway {
    hub: Arc<Hub>,
    runtime: tokio::runtime::Handle,
}

pub fn gateway() -> &'static Gateway {
    static GATEWAY: OnceLock<Gateway> = OnceLock::new();
    GATEWAY.get_or_init(|| {
        load_environment();
        if let Some(url) = deployed_api_url() {
            return Gateway {
                http_url: url,
                https_url: String::new(),
                cert_pem: Vec::new(),
                host_name: std::env::var(vars::HOST_NAME).unwrap_or_default(),
                local: None,
            };
        }
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("gateway runtime: {e}"));
            runtime.block_on(async {
                let hub = Arc::new(
                    Hub::from_settings(settings())
                        .await
                        .unwrap_or_else(|e| panic!("hub config: {e}")),
                );
                let tls_dir =
                    std::env::temp_dir().join(format!("hub-tests-tls-{}", std::process::id()));
                // The event sources exactly as deployed (batch sizes, windows, retries, the
                // once-a-minute schedule); tests that need a sweep at a moment of their choosing
                // run it themselves (`Gateway::sweep`).
                let mut event_sources =
                    hub_local::event_sources::EventSourceOptions::deployed(&hub)
                        .unwrap_or_else(|e| panic!("event sources: {e}"));
                // Each test binary starts a gateway of its own, with no position in the stream.
                // A deployed mapping keeps its position; one that re-read the day's stream (every
                // earlier suite's records, all processed already) would spend the first minutes
                // of each binary catching up while its tests wait for their own records. So every
                // mapping starts at the records that arrive from a minute before this gateway on
                // (no test sends before its binary's gateway starts).
                let start_at = std::time::SystemTime::now() - Duration::from_secs(60);
                event_sources.kinesis.start_at = Some(start_at);
                for mapping in [&mut event_sources.routing, &mut event_sources.archive]
                    .into_iter()
                    .flatten()
                {
                    mapping.start_at = Some(start_at);
                }
                let options = GatewayOptions {
                    http: Some("127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}"))),
                    https: Some("127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}"))),
                    tls_dir,
                    event_sources: Some(event_sources),
                };
                let running = hub_local::start(Arc::clone(&hub), &options)
                    .await
                    .unwrap_or_else(|e| panic!("gateway: {e}"));
                let (Some(http), Some(https), Some(tls)) =
                    (running.http, running.https, running.tls.clone())
                else {
                    panic!("gateway did not start both listeners")
                };
                let gateway = Gateway {
                    http_url: format!("http://{http}"),
                    https_url: format!("https://localhost:{}", https.port()),
                    cert_pem: std::fs::read(&tls.cert).unwrap_or_else(|e| panic!("read cert: {e}")),
                    host_name: hub.host_name.clone(),
                    local: Some(LocalGateway {
                        hub,
                        runtime: tokio::runtime::Handle::current(),
                    }),
                };
                sender
                    .send(gateway)
                    .unwrap_or_else(|_| panic!("test harness went away"));
                running
                    .wait()
                    .await
                    .unwrap_or_else(|e| panic!("gateway stopped: {e}"));
            });
        });
        receiver
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("gateway did not start: {e}"))
    })
}

/// A reqwest client that reaches `url`, emulated API Gateway hosts (`<id>.execute-api.localhost`)
/// included: the SDKs' own HTTP options resolve `.localhost` names to the loopback address.
pub fn http_client_for(url: &str) -> reqwest::Client {
    hub_shared::client::HttpOptions::default()
        .client(url)
        .unwrap_or_else(|e| panic!("HTTP client: {e}"))
}

impl Gateway {
    /// A client for the plain HTTP listener (the local gateway) or the deployed API.
    pub fn http(&self) -> Client {
        Client {
            base: self.http_url.clone(),
            inner: http_client_for(&self.http_url),
        }
    }

    /// The local gateway: tests that drive its internals (custom configurations, the schedule,
    /// HTTPS) need it and say so when the hub under test is a deployed API.
    fn local(&self) -> &LocalGateway {
        self.local.as_ref().unwrap_or_else(|| {
            panic!(
                "this test needs the in-process local gateway, but HUB_API_URL names a deployed API"
            )
        })
    }

    /// A client for the HTTPS listener that trusts the gateway's self-signed certificate.
    pub fn https(&self) -> Client {
        self.local();
        let cert =
            reqwest::Certificate::from_pem(&self.cert_pem).unwrap_or_else(|e| panic!("cert: {e}"));
        let inner = reqwest::Client::builder()
            .tls_certs_only([cert])
            .build()
            .unwrap_or_else(|e| panic!("client: {e}"));
        Client {
            base: self.https_url.clone(),
            inner,
        }
    }

    /// A built-in policy as the policies table holds it (read on the calling test's runtime).
    async fn policy(&self, name: &str) -> hub_shared::domain::policy::AccessPolicy {
        let table = std::env::var(vars::POLICIES_TABLE)
            .unwrap_or_else(|_| panic!("{} is not set", vars::POLICIES_TABLE));
        hub_shared::aws::DynamoDbPolicyStore::new(dynamodb().await, &table)
            .get_policy(name)
            .await
            .unwrap_or_else(|e| panic!("policy store: {e}"))
            .unwrap_or_else(|| panic!("policy {name} missing: was infra/ applied?"))
    }

    /// A service token for a built-in policy, signed with its primary key.
    pub async fn policy_token(&self, name: &str) -> String {
        let policy = self.policy(name).await;
        SasToken::generate(
            &self.host_name,
            &policy.primary_key,
            in_an_hour(),
            Some(&policy.name),
        )
    }

    /// `HostName=...;SharedAccessKeyName=iothubowner;SharedAccessKey=...`
    pub async fn owner_connection_string(&self) -> String {
        self.policy_connection_string("iothubowner").await
    }

    /// `HostName=...;SharedAccessKeyName=<name>;SharedAccessKey=...` of a built-in policy.
    pub async fn policy_connection_string(&self, name: &str) -> String {
        let policy = self.policy(name).await;
        format!(
            "HostName={};SharedAccessKeyName={name};SharedAccessKey={}",
            self.host_name,
            policy.primary_key.to_base64()
        )
    }

    pub async fn owner_token(&self) -> String {
        self.policy_token("iothubowner").await
    }

    pub fn device_token(&self, device_id: &str, key: &SymmetricKey) -> String {
        SasToken::generate(
            &format!("{}/devices/{device_id}", self.host_name),
            key,
            in_an_hour(),
            None,
        )
    }

    /// Registers a device through the API (as a service would) and returns its description.
    pub async fn register(&self, device_id: &str) -> RegisteredDevice {
        register_on(&self.http(), &self.owner_token().await, device_id).await
    }

    pub fn telemetry_stream(&self) -> String {
        std::env::var(vars::TELEMETRY_STREAM)
            .unwrap_or_else(|_| panic!("{} is not set", vars::TELEMETRY_STREAM))
    }

    /// Invokes one of the local gateway's functions with `event`, as Lambda would; panics if the
    /// invocation failed.
    pub async fn invoke(
        &self,
        function: hub_local::hub::FunctionName,
        event: serde_json::Value,
    ) -> serde_json::Value {
        let local = self.local();
        let hub = Arc::clone(&local.hub);
        local
            .runtime
            .spawn(async move { hub.invoke(function, event).await })
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{} failed: {e}", function.as_str()))
    }

    /// Runs the sweep schedule's targets now, as EventBridge does once a minute; panics if one
    /// of them failed.
    pub async fn sweep(&self) {
        let local = self.local();
        let hub = Arc::clone(&local.hub);
        let failures = local
            .runtime
            .spawn(async move { hub.run_schedule().await })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let failures: Vec<String> = failures
            .iter()
            .map(|(function, error)| format!("{}: {error}", function.as_str()))
            .collect();
        assert!(
            failures.is_empty(),
            "scheduled invocations failed: {failures:?}"
        );
    }
}

/// The hub's functions as deployed, with some variables of their environments overridden (each
/// function that reads a variable gets the override).
pub async fn custom_hub(overrides: &[(&'static str, &str)]) -> Hub {
    Hub::build(settings(), overrides, None)
        .await
        .unwrap_or_else(|e| panic!("hub config: {e}"))
}

/// A gateway of the test's own, with some configuration overridden (e.g. a short lock time), on
/// the calling test's runtime; it stops when dropped. It shares LocalStack and the tables with the
/// shared gateway.
pub struct CustomGateway {
    pub http_url: String,
    /// Its functions, to invoke directly (as an event source mapping would).
    pub hub: Arc<Hub>,
    running: Option<hub_local::RunningGateway>,
}

impl CustomGateway {
    pub async fn start(overrides: &[(&'static str, &str)]) -> Self {
        Self::with_settings(settings(), overrides).await
    }

    /// A gateway of the test's own from `settings` changed by the test (e.g. variables a
    /// configuration the environment does not deploy would add), with `overrides` applied.
    pub async fn with_settings(
        settings: LocalSettings,
        overrides: &[(&'static str, &str)],
    ) -> Self {
        let hub = Arc::new(
            Hub::build(settings, overrides, None)
                .await
                .unwrap_or_else(|e| panic!("hub config: {e}")),
        );
        let options = GatewayOptions {
            http: Some("127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}"))),
            https: None,
            tls_dir: std::env::temp_dir(),
            event_sources: None,
        };
        let running = hub_local::start(Arc::clone(&hub), &options)
            .await
            .unwrap_or_else(|e| panic!("gateway: {e}"));
        let http_url = format!(
            "http://{}",
            running.http.unwrap_or_else(|| panic!("no HTTP listener"))
        );
        Self {
            http_url,
            hub,
            running: Some(running),
        }
    }

    pub fn client(&self) -> Client {
        Client {
            base: self.http_url.clone(),
            inner: reqwest::Client::new(),
        }
    }
}

impl Drop for CustomGateway {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown();
        }
    }
}

/// Registers a device through `client`'s gateway with the `owner` token.
pub async fn register_on(client: &Client, owner: &str, device_id: &str) -> RegisteredDevice {
    let response = client
        .put(&format!("/devices/{device_id}"), owner)
        .json(&serde_json::json!({ "deviceId": device_id }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("register {device_id}: {e}"));
    assert_eq!(response.status().as_u16(), 200, "register {device_id}");
    let description: DeviceDescription = response
        .json()
        .await
        .unwrap_or_else(|e| panic!("device json: {e}"));
    RegisteredDevice::from_description(device_id, description)
}

/// A device registered for a test, with the keys the registry gave it.
pub struct RegisteredDevice {
    pub id: String,
    pub primary_key: SymmetricKey,
    pub secondary_key: SymmetricKey,
    pub etag: String,
}

impl RegisteredDevice {
    fn from_description(id: &str, description: DeviceDescription) -> Self {
        let keys = description
            .authentication
            .and_then(|a| a.symmetric_key)
            .unwrap_or_default();
        let key = |k: Option<String>| {
            SymmetricKey::from_base64(&k.unwrap_or_default()).unwrap_or_else(|e| panic!("key: {e}"))
        };
        Self {
            id: id.to_owned(),
            primary_key: key(keys.primary_key),
            secondary_key: key(keys.secondary_key),
            etag: description.etag.unwrap_or_default(),
        }
    }

    pub fn token(&self) -> String {
        gateway().device_token(&self.id, &self.primary_key)
    }

    /// A device SDK client for this device, talking to `base_url` (a gateway's HTTP listener or
    /// the deployed API).
    pub fn client(&self, base_url: &str) -> hub_device_sdk::DeviceClient {
        let connection = format!(
            "HostName={};DeviceId={};SharedAccessKey={}",
            gateway().host_name,
            self.id,
            self.primary_key.to_base64()
        );
        hub_device_sdk::DeviceClient::builder(&connection)
            .unwrap_or_else(|e| panic!("{e}"))
            .base_url(base_url)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A device SDK client over HTTPS, trusting the gateway's self-signed certificate.
    pub fn https_client(&self) -> hub_device_sdk::DeviceClient {
        let gateway = gateway();
        let connection = format!(
            "HostName={};DeviceId={};SharedAccessKey={}",
            gateway.host_name,
            self.id,
            self.primary_key.to_base64()
        );
        hub_device_sdk::DeviceClient::builder(&connection)
            .unwrap_or_else(|e| panic!("{e}"))
            .base_url(&gateway.https_url)
            .root_certificate_pem(gateway.cert_pem.clone())
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn events_path(&self) -> String {
        format!("/devices/{}/messages/events", self.id)
    }
}

/// A thin reqwest wrapper: paths relative to the gateway, `api-version` added as the SDKs do.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub inner: reqwest::Client,
}

impl Client {
    pub fn url(&self, path: &str) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{separator}api-version={API_VERSION}", self.base)
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        authorization: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let builder = self.inner.request(method, self.url(path));
        match authorization {
            Some(value) => builder.header("authorization", value),
            None => builder,
        }
    }

    pub fn put(&self, path: &str, authorization: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::PUT, path, Some(authorization))
    }

    pub fn get(&self, path: &str, authorization: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path, Some(authorization))
    }

    pub fn delete(&self, path: &str, authorization: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::DELETE, path, Some(authorization))
    }

    pub fn post(&self, path: &str, authorization: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path, Some(authorization))
    }

    pub fn patch(&self, path: &str, authorization: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::PATCH, path, Some(authorization))
    }

    /// Every page of a twin query (`POST /devices/query`), `page` results at a time, following
    /// `x-ms-continuation`; with the number of requests it took.
    pub async fn query_all(
        &self,
        authorization: &str,
        query: &str,
        page: usize,
    ) -> (Vec<serde_json::Value>, usize) {
        let mut continuation: Option<String> = None;
        let mut items = Vec::new();
        let mut requests = 0;
        loop {
            let mut request = self
                .post("/devices/query", authorization)
                .header("x-ms-max-item-count", page.to_string())
                .json(&serde_json::json!({ "query": query }));
            if let Some(token) = &continuation {
                request = request.header("x-ms-continuation", token);
            }
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{query}: {e}"));
            assert_eq!(response.status().as_u16(), 200, "{query}");
            requests += 1;
            continuation = response
                .headers()
                .get("x-ms-continuation")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let page: Vec<serde_json::Value> = response
                .json()
                .await
                .unwrap_or_else(|e| panic!("{query}: not a JSON array: {e}"));
            items.extend(page);
            if continuation.is_none() {
                return (items, requests);
            }
            assert!(requests < 100, "{query}: the pages never end");
        }
    }

    /// GETs `path` and decodes its JSON body, whatever the status.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        authorization: &str,
    ) -> T {
        let response = self
            .get(path, authorization)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: not the JSON expected: {e}"))
    }
}

/// Status and Azure error code of a response; panics if an error response lacks the error body.
pub async fn status_and_code(response: reqwest::Response) -> (u16, Option<String>) {
    let status = response.status().as_u16();
    let header_code = response
        .headers()
        .get("iothub-errorcode")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.unwrap_or_default();
    if status < 400 {
        return (status, None);
    }
    let body: ErrorBody = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("error {status} without an Azure error body ({e}): {text}"));
    let code = body.code().map(str::to_owned);
    assert_eq!(
        code, header_code,
        "iothub-errorcode header and body disagree: {text}"
    );
    (status, code)
}

/// Sends a cloud-to-device message as a back-end service (`service` policy), with extra headers.
pub async fn send_command(
    client: &Client,
    device_id: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client.post(
        &format!("/devices/{device_id}/messages/deviceBound"),
        &gateway().policy_token("service").await,
    );
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .body(body.to_owned())
        .send()
        .await
        .unwrap_or_else(|e| panic!("send command: {e}"))
}

/// Feedback records other tests' readers received for devices that are not theirs; each reader
/// looks here first. (A feedback batch can mix devices, and all tests share one queue.)
static FEEDBACK_STASH: std::sync::Mutex<Vec<hub_shared::domain::command::FeedbackRecord>> =
    std::sync::Mutex::new(Vec::new());

fn take_stashed(device_id: &str) -> Vec<hub_shared::domain::command::FeedbackRecord> {
    let mut stash = FEEDBACK_STASH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (mine, others) = stash.drain(..).partition(|r| r.device_id == device_id);
    *stash = others;
    mine
}

/// Reads the shared feedback queue until `count` records about `device_id` arrived. Every batch
/// is completed; records about other devices go to the stash for their readers.
pub async fn read_feedback(
    device_id: &str,
    count: usize,
) -> Vec<hub_shared::domain::command::FeedbackRecord> {
    let client = gateway().http();
    let token = gateway().policy_token("service").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut mine = Vec::new();
    loop {
        mine.extend(take_stashed(device_id));
        if mine.len() >= count {
            return mine;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for feedback for {device_id}: {mine:?}"
        );
        let response = client
            .get("/messages/serviceBound/feedback", &token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if response.status().as_u16() == 204 {
            // Another reader may have stashed ours meanwhile; look again shortly.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(response.status().as_u16(), 200);
        let lock = response.headers()["etag"]
            .to_str()
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned();
        let records: Vec<hub_shared::domain::command::FeedbackRecord> = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("feedback json: {e}"));
        let status = client
            .delete(&format!("/messages/serviceBound/feedback/{lock}"), &token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .status()
            .as_u16();
        assert_eq!(status, 204, "settling feedback");
        FEEDBACK_STASH
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(records);
    }
}

/// SQS client for the test's runtime.
pub async fn sqs() -> aws_sdk_sqs::Client {
    load_environment();
    aws_sdk_sqs::Client::new(&hub_shared::aws::sdk_config().await)
}

/// DynamoDB client for the test's runtime.
pub async fn dynamodb() -> aws_sdk_dynamodb::Client {
    load_environment();
    aws_sdk_dynamodb::Client::new(&hub_shared::aws::sdk_config().await)
}

/// A new, empty table with the keys and indexes of a deployed one, for tests that need exact
/// counts or change hub-wide state (statistics, listings, policy keys) without disturbing the
/// tests running beside them. `copy_items` copies the items too (small tables only).
pub async fn clone_table(source_variable: &str, copy_items: bool) -> String {
    use aws_sdk_dynamodb::types::{BillingMode, GlobalSecondaryIndex, Projection};
    let client = dynamodb().await;
    let source =
        std::env::var(source_variable).unwrap_or_else(|_| panic!("{source_variable} is not set"));
    let table = client
        .describe_table()
        .table_name(&source)
        .send()
        .await
        .unwrap_or_else(|e| panic!("describe {source}: {e:?}"))
        .table
        .unwrap_or_else(|| panic!("{source} has no description"));
    let name = unique(&format!("{source}-test"));
    let indexes: Vec<GlobalSecondaryIndex> = table
        .global_secondary_indexes()
        .iter()
        .map(|index| {
            GlobalSecondaryIndex::builder()
                .index_name(index.index_name().unwrap_or_default())
                .set_key_schema(index.key_schema.clone())
                .projection(
                    index
                        .projection
                        .clone()
                        .unwrap_or_else(|| Projection::builder().build()),
                )
                .build()
                .unwrap_or_else(|e| panic!("index: {e}"))
        })
        .collect();
    client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(table.key_schema.clone())
        .set_attribute_definitions(table.attribute_definitions.clone())
        .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
    if copy_items {
        let items = client
            .scan()
            .table_name(&source)
            .send()
            .await
            .unwrap_or_else(|e| panic!("scan {source}: {e:?}"))
            .items
            .unwrap_or_default();
        for item in items {
            client
                .put_item()
                .table_name(&name)
                .set_item(Some(item))
                .send()
                .await
                .unwrap_or_else(|e| panic!("copy into {name}: {e:?}"));
        }
    }
    name
}

/// A new SQS queue of the test's own; returns its URL.
pub async fn fresh_queue(prefix: &str) -> String {
    sqs()
        .await
        .create_queue()
        .queue_name(unique(prefix))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create queue: {e:?}"))
        .queue_url
        .unwrap_or_else(|| panic!("no queue url"))
}

/// Receives from `queue_url` until `done` holds for the bodies seen so far, or panics after
/// `within`.
pub async fn receive_until(
    queue_url: &str,
    within: Duration,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let client = sqs().await;
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    while !done(&seen) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue_url} did not deliver the expected messages within {within:?}; got {seen:?}"
        );
        let messages = receive_some(&client, queue_url).await;
        let mut receipts = Vec::new();
        for (i, message) in messages.iter().enumerate() {
            let body = message.body().unwrap_or_default();
            seen.push(
                serde_json::from_str(body).unwrap_or_else(|e| panic!("{body} is not JSON: {e}")),
            );
            if let Some(receipt) = message.receipt_handle() {
                receipts.push(
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .unwrap_or_else(|e| panic!("delete entry: {e}")),
                );
            }
        }
        // One call for the batch: a shared queue can hold thousands of events to get through.
        if !receipts.is_empty() {
            client
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(receipts))
                .send()
                .await
                .unwrap_or_else(|e| panic!("delete: {e:?}"));
        }
    }
    seen
}

/// Up to ten messages of a queue, waiting a second for them.
async fn receive_some(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Vec<aws_sdk_sqs::types::Message> {
    client
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap_or_else(|e| panic!("receive: {e:?}"))
        .messages
        .unwrap_or_default()
}

/// Takes from a queue that tests share the first message whose JSON body `matches`, deleting
/// only that one: the others are made visible again at once for the tests they belong to.
pub async fn take_matching(
    queue_url: &str,
    within: Duration,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let client = sqs().await;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no matching message arrived in {queue_url} within {within:?}"
        );
        let mut found = None;
        for message in &receive_some(&client, queue_url).await {
            let receipt = message.receipt_handle().unwrap_or_default();
            let body: serde_json::Value =
                serde_json::from_str(message.body().unwrap_or_default()).unwrap_or_default();
            if found.is_none() && matches(&body) {
                client
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("delete: {e:?}"));
                found = Some(body);
            } else {
                client
                    .change_message_visibility()
                    .queue_url(queue_url)
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("release: {e:?}"));
            }
        }
        if let Some(body) = found {
            return body;
        }
    }
}

/// A new one-shard Kinesis stream, once it is active.
pub async fn fresh_stream(prefix: &str) -> String {
    let client = kinesis().await;
    let stream = unique(prefix);
    client
        .create_stream()
        .stream_name(&stream)
        .shard_count(1)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create stream: {e:?}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = client
            .describe_stream_summary()
            .stream_name(&stream)
            .send()
            .await
            .ok()
            .and_then(|o| o.stream_description_summary)
            .map(|s| s.stream_status);
        if status == Some(aws_sdk_kinesis::types::StreamStatus::Active) {
            return stream;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream {stream} never became active"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

pub fn in_an_hour() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        + 3600
}

/// AWS clients are tied to the runtime that made their connections, and each test has its own:
/// make them per test.
pub async fn kinesis() -> aws_sdk_kinesis::Client {
    load_environment();
    aws_sdk_kinesis::Client::new(&hub_shared::aws::sdk_config().await)
}

/// Starts reading the telemetry stream; only records put after this are seen.
pub async fn tail() -> TelemetryTail {
    let gateway = gateway();
    TelemetryTail::from_now(kinesis().await, &gateway.telemetry_stream())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A record read back from the stream, decoded.
pub struct StoredMessage {
    pub partition_key: String,
    pub envelope: TelemetryEnvelope,
}

/// Reads the stream until `count` records for `device_id` arrived, and returns exactly those.
pub async fn read_device_records(
    tail: &mut TelemetryTail,
    device_id: &str,
    count: usize,
) -> Vec<StoredMessage> {
    let mine = |records: &[hub_local::stream::ReceivedRecord]| {
        records
            .iter()
            .filter(|r| r.partition_key == device_id)
            .count()
    };
    let records = tail
        .read_until(Duration::from_secs(30), |records| mine(records) >= count)
        .await
        .unwrap_or_else(|e| panic!("waiting for {count} records of {device_id}: {e}"));
    records
        .iter()
        .filter(|r| r.partition_key == device_id)
        .map(|r| StoredMessage {
            partition_key: r.partition_key.clone(),
            envelope: TelemetryEnvelope::from_json(&r.data)
                .unwrap_or_else(|e| panic!("envelope: {e}")),
        })
        .collect()
}

/// Proves that nothing was written for `device` since `tail` started: sends one valid sentinel
/// message and checks it is the only record of that device (same partition key, same shard, so a
/// record written earlier would come first).
pub async fn assert_nothing_written(tail: &mut TelemetryTail, device: &RegisteredDevice) {
    let sentinel = unique("sentinel");
    let response = gateway()
        .http()
        .post(&device.events_path(), &device.token())
        .header("iothub-messageid", &sentinel)
        .body("sentinel")
        .send()
        .await
        .unwrap_or_else(|e| panic!("sentinel: {e}"));
    assert_eq!(
        response.status().as_u16(),
        204,
        "the sentinel message must be accepted"
    );
    let records = read_device_records(tail, &device.id, 1).await;
    let ids: Vec<Option<&str>> = records
        .iter()
        .map(|r| r.envelope.system_properties.message_id.as_deref())
        .collect();
    assert_eq!(
        ids,
        [Some(sentinel.as_str())],
        "rejected requests wrote to the stream"
    );
}

/// Telemetry envelopes put straight on the stream (as a producer would), for analytics tests
/// that need chosen enqueued times: late, out of order, spread over several windows.
pub async fn put_envelopes(envelopes: &[hub_shared::domain::envelope::TelemetryEnvelope]) {
    let kinesis = kinesis().await;
    let stream = gateway().telemetry_stream();
    for envelope in envelopes {
        kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key(envelope.device_id.as_str())
            .data(aws_sdk_kinesis::primitives::Blob::new(envelope.to_json()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put record: {e}"));
    }
}

/// Raw bytes on the stream under a device's partition key (poison for the analytics function).
pub async fn put_raw(partition_key: &str, data: &[u8]) {
    kinesis()
        .await
        .put_record()
        .stream_name(gateway().telemetry_stream())
        .partition_key(partition_key)
        .data(aws_sdk_kinesis::primitives::Blob::new(data.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put record: {e}"));
}

/// An envelope as ingest makes it, for a device, at a chosen time.
pub fn envelope_at(
    device_id: &str,
    at: hub_shared::domain::timestamp::Timestamp,
    body: &str,
) -> hub_shared::domain::envelope::TelemetryEnvelope {
    use hub_shared::domain::envelope::{AuthMethod, DeviceMessage, Sender, TelemetryEnvelope};
    let sender = Sender {
        device_id: hub_shared::DeviceId::parse(device_id).unwrap_or_else(|e| panic!("{e}")),
        generation_id: "638000000000000000".into(),
        auth_method: AuthMethod::device_key(),
    };
    TelemetryEnvelope::stamp(
        DeviceMessage {
            body: body.as_bytes().to_vec(),
            ..Default::default()
        },
        &sender,
        at,
    )
}

/// Device ids (with `prefix`) that Kinesis puts on different shards: MD5 of the partition key
/// against each shard's hash key range, as Kinesis routes records.
pub async fn device_ids_on_each_shard(prefix: &str) -> Vec<String> {
    use md5::Digest as _;
    let shards = kinesis()
        .await
        .list_shards()
        .stream_name(gateway().telemetry_stream())
        .send()
        .await
        .unwrap_or_else(|e| panic!("list shards: {e}"))
        .shards
        .unwrap_or_default();
    let ranges: Vec<(u128, u128)> = shards
        .iter()
        .filter_map(|s| s.hash_key_range())
        .map(|r| {
            (
                r.starting_hash_key().parse().unwrap_or(0),
                r.ending_hash_key().parse().unwrap_or(u128::MAX),
            )
        })
        .collect();
    let mut chosen: Vec<Option<String>> = vec![None; ranges.len()];
    for i in 0.. {
        let id = format!("{prefix}-{i}");
        let hash = u128::from_be_bytes(md5::Md5::digest(id.as_bytes()).into());
        if let Some(slot) = ranges
            .iter()
            .position(|(lo, hi)| (*lo..=*hi).contains(&hash))
            && chosen[slot].is_none()
        {
            chosen[slot] = Some(id);
        }
        if chosen.iter().all(Option::is_some) {
            break;
        }
    }
    chosen.into_iter().flatten().collect()
}

/// Polls the telemetry query API until `done` holds for its answer (or fails after 60 s).
pub async fn wait_for_telemetry(
    device_id: &str,
    query: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let client = gateway().http();
    let token = gateway().policy_token("service").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let response = client
            .get(&format!("/devices/{device_id}/telemetry?{query}"), &token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status().as_u16(), 200);
        let body: serde_json::Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
        if done(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "telemetry for {device_id} never satisfied the condition: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
