//! `hub-local bench-cold-start`: how long each function binary takes from spawn to its first
//! poll of the Lambda Runtime API (its init: configuration, SDK clients, adapters), and its
//! resident memory then and after one invocation. Each binary runs with its own Terraform
//! environment, as Lambda starts it; the runs alternate between functions so machine drift
//! spreads evenly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::Notify;

use crate::demo::ToolError;
use crate::hub::FunctionName;
use crate::settings::LocalSettings;

use super::Latency;

#[derive(Debug, Default, Clone)]
pub struct FunctionStart {
    pub init: Vec<Duration>,
    pub rss_at_init_kib: Vec<u64>,
    pub rss_after_invoke_kib: Vec<u64>,
}

pub struct ColdStartReport {
    pub binaries: PathBuf,
    pub runs: usize,
    pub functions: BTreeMap<FunctionName, FunctionStart>,
}

/// What the runtime API saw of one start.
#[derive(Default)]
struct Seen {
    polls: usize,
    answered: bool,
}

struct Runtime {
    seen: Mutex<Seen>,
    polled: Notify,
    responded: Notify,
    event: serde_json::Value,
}

async fn next(State(runtime): State<Arc<Runtime>>) -> axum::response::Response {
    let first = {
        let mut seen = runtime.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.polls += 1;
        seen.polls == 1
    };
    runtime.polled.notify_one();
    if !first {
        // Lambda freezes the sandbox after an invocation; a poll that never answers does too.
        return std::future::pending().await;
    }
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() + 30_000)
        .unwrap_or_default();
    (
        [
            ("lambda-runtime-aws-request-id", "cold-start-1".to_owned()),
            ("lambda-runtime-deadline-ms", deadline.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:local:000000000000:function:bench".to_owned(),
            ),
        ],
        runtime.event.to_string(),
    )
        .into_response()
}

async fn done(State(runtime): State<Arc<Runtime>>, _body: Bytes) -> &'static str {
    runtime
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .answered = true;
    runtime.responded.notify_one();
    "{}"
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// One cold start of `binary`; the event is a scheduled event for the sweeps and an HTTP request
/// without a token for the others (answered without touching AWS beyond the init).
async fn start_once(
    binary: &Path,
    function: FunctionName,
    environment: &BTreeMap<String, String>,
) -> Result<(Duration, u64, u64), ToolError> {
    let event = match function {
        FunctionName::Commands | FunctionName::Registry => crate::Hub::scheduled_event(),
        FunctionName::Authorize => serde_json::json!({
            "version": "2.0", "type": "REQUEST", "routeKey": "GET /devices/{id}",
            "rawPath": "/devices/bench", "headers": {}, "requestContext": {"http": {"method": "GET"}},
        }),
        _ => serde_json::json!({
            "version": "2.0", "routeKey": "GET /nowhere", "rawPath": "/nowhere",
            "headers": {}, "isBase64Encoded": false,
            "requestContext": {"http": {"method": "GET", "path": "/nowhere"}, "requestId": "bench"},
        }),
    };
    let runtime = Arc::new(Runtime {
        seen: Mutex::new(Seen::default()),
        polled: Notify::new(),
        responded: Notify::new(),
        event,
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(done))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(done))
        .route("/2018-06-01/runtime/init/error", post(done))
        .with_state(Arc::clone(&runtime));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| ToolError::Message(format!("cannot listen for the runtime API: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ToolError::Message(e.to_string()))?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .envs(std::env::vars().filter(|(k, _)| k.starts_with("AWS_") || k == "PATH" || k == "HOME"))
        .envs(environment)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", function.as_str())
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "ERROR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ToolError::Message(format!("cannot start {}: {e}", binary.display())))?;
    let pid = child.id().unwrap_or_default();
    tokio::time::timeout(Duration::from_secs(30), runtime.polled.notified())
        .await
        .map_err(|_| {
            ToolError::Message(format!(
                "{} never polled the runtime API",
                function.as_str()
            ))
        })?;
    let init = started.elapsed();
    let rss_at_init = rss_kib(pid).unwrap_or_default();
    let _ = tokio::time::timeout(Duration::from_secs(30), runtime.responded.notified()).await;
    // The next poll means the invocation is over and the process is idle.
    let _ = tokio::time::timeout(Duration::from_secs(5), runtime.polled.notified()).await;
    let rss_after = rss_kib(pid).unwrap_or_default();
    let _ = child.kill().await;
    server.abort();
    Ok((init, rss_at_init, rss_after))
}

pub async fn cold_start(
    settings: &Path,
    binaries: &Path,
    runs: usize,
) -> Result<ColdStartReport, ToolError> {
    let settings = LocalSettings::load(settings).map_err(|e| ToolError::Message(e.to_string()))?;
    let mut functions: BTreeMap<FunctionName, FunctionStart> = BTreeMap::new();
    for _ in 0..runs {
        for function in FunctionName::ALL {
            let environment = &settings
                .function(function)
                .map_err(|e| ToolError::Message(e.to_string()))?
                .environment;
            let binary = binaries.join(function.as_str());
            let (init, rss_init, rss_after) = start_once(&binary, function, environment).await?;
            let entry = functions.entry(function).or_default();
            entry.init.push(init);
            entry.rss_at_init_kib.push(rss_init);
            entry.rss_after_invoke_kib.push(rss_after);
        }
    }
    Ok(ColdStartReport {
        binaries: binaries.to_owned(),
        runs,
        functions,
    })
}

fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

impl ColdStartReport {
    pub fn print(&self) {
        println!(
            "cold starts of {} ({} runs each, alternating): spawn to first runtime-API poll",
            self.binaries.display(),
            self.runs
        );
        println!(
            "  {:<10} {:>12} {:>10} {:>14} {:>16}",
            "function", "median ms", "p95 ms", "RSS at init", "RSS after 1 call"
        );
        for (function, start) in &self.functions {
            let latency = Latency::of(&mut start.init.clone());
            println!(
                "  {:<10} {:>12.2} {:>10.2} {:>11} KiB {:>12} KiB",
                function.as_str(),
                latency.median_ms,
                latency.p95_ms,
                median(&start.rss_at_init_kib),
                median(&start.rss_after_invoke_kib)
            );
        }
    }
}
