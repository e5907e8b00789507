//! The gateway's HTTP and HTTPS servers. Both serve the same routes through `api_gateway::serve`.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::to_bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum_server::tls_rustls::RustlsConfig;
use axum_server::{Handle, accept::DefaultAcceptor};
use tokio::task::JoinHandle;

use crate::api_gateway::{self, IncomingRequest, MAX_REQUEST_BYTES};
use crate::event_sources::{self, EventSourceOptions};
use crate::hub::Hub;
use crate::tls::{TlsError, TlsFiles, ensure_self_signed};

#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Plain HTTP address; `None` disables it.
    pub http: Option<SocketAddr>,
    /// HTTPS address (e.g. 127.0.0.1:443 for SDKs that build URLs from the host name alone).
    pub https: Option<SocketAddr>,
    /// Where the self-signed certificate is kept.
    pub tls_dir: PathBuf,
    /// Run the functions' other event sources (SQS mapping, sweep schedule) too.
    pub event_sources: Option<EventSourceOptions>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot load the TLS certificate: {0}")]
    TlsConfig(io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

pub struct RunningGateway {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub tls: Option<TlsFiles>,
    handles: Vec<Handle<SocketAddr>>,
    tasks: Vec<JoinHandle<io::Result<()>>>,
    background: Vec<JoinHandle<()>>,
}

impl RunningGateway {
    pub fn shutdown(&self) {
        for task in &self.background {
            task.abort();
        }
        for handle in &self.handles {
            handle.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
        }
    }

    /// Waits until every server stops; an error if one failed.
    pub async fn wait(self) -> io::Result<()> {
        for task in self.tasks {
            task.await.map_err(io::Error::other)??;
        }
        Ok(())
    }
}

async fn handle(
    State(hub): State<Arc<Hub>>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, MAX_REQUEST_BYTES).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            [("content-type", "application/json")],
            r#"{"message":"Request Entity Too Large"}"#,
        )
            .into_response();
    };
    let protocol = match parts.version {
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    api_gateway::serve(
        &hub,
        IncomingRequest {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
            source: Some(source),
            protocol,
        },
    )
    .await
}

pub async fn start(
    hub: Arc<Hub>,
    options: &GatewayOptions,
) -> Result<RunningGateway, GatewayError> {
    let router = Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(Arc::clone(&hub));
    let mut running = RunningGateway {
        http: None,
        https: None,
        tls: None,
        handles: Vec::new(),
        tasks: Vec::new(),
        background: Vec::new(),
    };
    if let Some(sources) = &options.event_sources {
        running.background = event_sources::spawn(Arc::clone(&hub), sources);
    }

    if let Some(addr) = options.http {
        let handle = Handle::new();
        let server = axum_server::bind(addr)
            .acceptor(DefaultAcceptor::new())
            .handle(handle.clone());
        let service = router
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(server.serve(service));
        running.http = Some(listening(&handle, addr, &mut running.tasks, task).await?);
        running.handles.push(handle);
    }

    if let Some(addr) = options.https {
        // Every name the gateway may be reached by: SDKs check the certificate against the host.
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        if !names.contains(&hub.host_name) {
            names.push(hub.host_name.clone());
        }
        let files = ensure_self_signed(&options.tls_dir, &names)?;
        // Several crates may enable rustls providers; pick aws-lc-rs (the AWS SDK's) explicitly.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let config = RustlsConfig::from_pem_file(&files.cert, &files.key)
            .await
            .map_err(GatewayError::TlsConfig)?;
        let handle = Handle::new();
        let server = axum_server::bind_rustls(addr, config).handle(handle.clone());
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(server.serve(service));
        running.https = Some(listening(&handle, addr, &mut running.tasks, task).await?);
        running.handles.push(handle);
        running.tls = Some(files);
    }
    Ok(running)
}

/// The address the server listens on, or why it could not bind.
async fn listening(
    handle: &Handle<SocketAddr>,
    addr: SocketAddr,
    tasks: &mut Vec<JoinHandle<io::Result<()>>>,
    task: JoinHandle<io::Result<()>>,
) -> Result<SocketAddr, GatewayError> {
    if let Some(bound) = handle.listening().await {
        tasks.push(task);
        return Ok(bound);
    }
    let source = match task.await {
        Ok(Err(error)) => error,
        Ok(Ok(())) => io::Error::other("the server stopped before listening"),
        Err(join) => io::Error::other(join),
    };
    Err(GatewayError::Bind { addr, source })
}
