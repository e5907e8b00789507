//! A minimal Lambda Runtime API: starts a real function binary as Lambda does (bootstrap process
//! polling `invocation/next`), hands it one event and returns what it answered.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::oneshot;

#[derive(Debug)]
pub enum Outcome {
    /// The function's response payload.
    Response(Value),
    /// An invocation or initialisation error the function reported.
    Error(String),
    /// The process ended without answering (Lambda reports `Runtime.ExitError`).
    Exited { code: Option<i32>, stderr: String },
}

struct RuntimeState {
    event: Mutex<Option<Value>>,
    outcome: Mutex<Option<oneshot::Sender<Outcome>>>,
}

const REQUEST_ID: &str = "11111111-2222-3333-4444-555555555555";

async fn next(State(state): State<Arc<RuntimeState>>) -> axum::response::Response {
    let event = state.event.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(event) = event else {
        // Lambda freezes the sandbox between invocations; a poll that never answers does the same.
        return std::future::pending().await;
    };
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
        + 30_000;
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        headers.insert(
            name,
            value.parse().unwrap_or_else(|e| panic!("{name}: {e}")),
        );
    };
    set("lambda-runtime-aws-request-id", REQUEST_ID.to_owned());
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:000000000000:function:test".to_owned(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
    );
    (headers, event.to_string()).into_response()
}

fn finish(state: &RuntimeState, outcome: Outcome) {
    if let Some(sender) = state
        .outcome
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        let _ = sender.send(outcome);
    }
}

async fn response(State(state): State<Arc<RuntimeState>>, body: Bytes) -> &'static str {
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    finish(&state, Outcome::Response(value));
    "{}"
}

async fn error(State(state): State<Arc<RuntimeState>>, body: Bytes) -> &'static str {
    finish(
        &state,
        Outcome::Error(String::from_utf8_lossy(&body).into_owned()),
    );
    "{}"
}

/// The path of a workspace binary built next to this test binary.
pub fn binary_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current exe: {e}"));
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join(name))
        .unwrap_or_default();
    assert!(
        path.exists(),
        "function binary {} is missing: build the workspace binaries first (`cargo build --workspace --bins`; `make test` does)",
        path.display()
    );
    path
}

/// Runs the function binary `name` with `event` and returns its outcome.
pub async fn invoke(name: &str, event: Value, env: &[(&str, String)]) -> Outcome {
    let (sender, receiver) = oneshot::channel();
    let state = Arc::new(RuntimeState {
        event: Mutex::new(Some(event)),
        outcome: Mutex::new(Some(sender)),
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut child = tokio::process::Command::new(binary_path(name))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));

    let outcome = tokio::select! {
        outcome = receiver => outcome.unwrap_or_else(|e| panic!("runtime API: {e}")),
        status = child.wait() => {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                use tokio::io::AsyncReadExt as _;
                let _ = pipe.read_to_string(&mut stderr).await;
            }
            Outcome::Exited { code: status.ok().and_then(|s| s.code()), stderr }
        }
        _ = tokio::time::sleep(Duration::from_secs(30)) => panic!("{name} did not answer within 30 s"),
    };
    let _ = child.kill().await;
    server.abort();
    outcome
}
