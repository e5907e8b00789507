use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use hub_local::demo::{self, ToolError};
use hub_local::{GatewayOptions, Hub};
use hub_shared::domain::connection_string::ConnectionString;
use hub_shared::domain::device_id::DeviceId;
use hub_shared::error::Chain;
use hub_shared::ports::PolicyStore;

/// The IoT hub on this machine: serves its HTTP API as API Gateway and Lambda do in AWS, against
/// the local AWS environment (LocalStack), and hands out tokens for local use.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// File with the hub's environment (table and stream names, endpoints), written by
    /// `localstack/up.sh`. Variables already set take precedence.
    #[arg(long, global = true, default_value = ".local/hub.env")]
    env_file: PathBuf,

    /// Each function's environment and the event source settings, as Terraform defines them
    /// (`terraform output -json local_emulation`, written by `localstack/up.sh`).
    #[arg(long, global = true, env = "HUB_LOCAL_SETTINGS", default_value = hub_local::LocalSettings::DEFAULT_PATH)]
    settings: PathBuf,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve(ServeArgs),
    /// Measure cloud-to-device round trips through an in-process gateway and count DynamoDB calls.
    BenchC2d {
        #[arg(long, default_value_t = 200)]
        messages: usize,
        /// iothub-ack of the messages: none, positive, negative, full.
        #[arg(long, default_value = "none")]
        ack: String,
    },
    /// Measure telemetry-to-aggregate latency and the analytics function's DynamoDB calls per batch.
    BenchAnalytics {
        #[arg(long, default_value_t = 1000)]
        messages: usize,
        #[arg(long, default_value_t = 10)]
        devices: usize,
        /// Messages per second.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// The event source mapping's batching window, instead of the deployed one.
        #[arg(long)]
        batching_window_ms: Option<u64>,
    },
    /// Measure device twin operations and desired-change notification through an in-process
    /// gateway, and count DynamoDB calls.
    BenchTwins {
        #[arg(long, default_value_t = 200)]
        rounds: usize,
        /// Desired changes a waiting device is timed on.
        #[arg(long, default_value_t = 50)]
        notifications: usize,
    },
    /// Measure twin queries (POST /devices/query) over a fleet made for the run (and removed
    /// after): latency per page and what a page reads.
    BenchQuery {
        #[arg(long, default_value_t = 10_000)]
        devices: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Measure a twin-update job over a fleet made for the run (and removed after): time to
    /// completion and DynamoDB calls per device.
    BenchJobs {
        #[arg(long, default_value_t = 1000)]
        devices: usize,
    },
    /// Measure each function binary's cold start (spawn to first runtime-API poll) and memory,
    /// with its own Terraform environment. Build them first (`cargo build --release`).
    BenchColdStart {
        /// Folder holding the five binaries.
        #[arg(long, default_value = "target/release")]
        binaries: PathBuf,
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// Print a shared access policy's connection string, read from the local policies table:
    /// how an operator gets the first one (then `hubctl` does the rest).
    ConnectionString {
        /// iothubowner, service, device, registryRead or registryReadWrite.
        #[arg(long, default_value = "iothubowner")]
        policy: String,
    },
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Plain HTTP address.
    #[arg(long, env = "HUB_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// HTTPS address; use 127.0.0.1:443 for SDKs that build https://<HostName>/ themselves.
    #[arg(long, env = "HUB_HTTPS_ADDR", default_value = "127.0.0.1:8443")]
    https: SocketAddr,
    #[arg(long)]
    no_http: bool,
    #[arg(long)]
    no_https: bool,
    /// Folder of the self-signed certificate (made on first run).
    #[arg(long, default_value = ".local/gateway/tls")]
    tls_dir: PathBuf,
    /// After start, register this device, send it one message and read it back from Kinesis.
    #[arg(long)]
    demo_device: Option<String>,
}

/// `hub-local` without a subcommand serves with the defaults (and the HUB_*_ADDR variables).
#[derive(Parser)]
struct ServeOnly {
    #[command(flatten)]
    args: ServeArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn")
            }),
        )
        .with_target(false)
        .init();
    if cli.env_file.exists()
        && let Err(error) = dotenvy::from_path(&cli.env_file)
    {
        eprintln!("error: cannot read {}: {error}", cli.env_file.display());
        return std::process::ExitCode::FAILURE;
    }
    match run(
        cli.command
            .unwrap_or_else(|| Command::Serve(ServeOnly::parse_from(["hub-local"]).args)),
        &cli.settings,
    )
    .await
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Hub(#[from] hub_local::hub::HubError),
    #[error("{0}")]
    Settings(#[from] hub_local::settings::SettingsError),
    #[error("{0}")]
    Tool(#[from] ToolError),
    #[error("{0}")]
    Gateway(#[from] hub_local::gateway::GatewayError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("invalid device id: {0}")]
    DeviceId(#[from] hub_shared::domain::device_id::DeviceIdError),
}

async fn run(command: Command, settings: &std::path::Path) -> Result<(), CliError> {
    if let Command::BenchAnalytics {
        messages,
        devices,
        rate,
        batching_window_ms,
    } = &command
    {
        let window = batching_window_ms.map(std::time::Duration::from_millis);
        hub_local::bench::analytics(
            settings,
            (*messages).max(1),
            (*devices).max(1),
            *rate,
            window,
        )
        .await?
        .print();
        return Ok(());
    }
    if let Command::BenchTwins {
        rounds,
        notifications,
    } = &command
    {
        hub_local::bench::twins(settings, (*rounds).max(1), (*notifications).max(1))
            .await?
            .print();
        return Ok(());
    }
    if let Command::BenchQuery { devices, rounds } = &command {
        hub_local::bench::query(settings, (*devices).max(1), (*rounds).max(1))
            .await?
            .print();
        return Ok(());
    }
    if let Command::BenchJobs { devices } = &command {
        hub_local::bench::jobs(settings, (*devices).max(1))
            .await?
            .print();
        return Ok(());
    }
    if let Command::BenchColdStart { binaries, runs } = &command {
        hub_local::bench::cold_start(settings, binaries, (*runs).max(1))
            .await?
            .print();
        return Ok(());
    }
    if let Command::BenchC2d { messages, ack } = &command {
        hub_local::bench::c2d(settings, (*messages).max(1), ack)
            .await?
            .print();
        return Ok(());
    }
    let hub = Arc::new(Hub::from_settings(hub_local::LocalSettings::load(settings)?).await?);
    match command {
        Command::Serve(args) => serve(hub, args).await,
        Command::ConnectionString { policy } => {
            println!("{}", owner_connection_string(&hub, &policy).await?);
            Ok(())
        }
        Command::BenchC2d { .. }
        | Command::BenchAnalytics { .. }
        | Command::BenchTwins { .. }
        | Command::BenchQuery { .. }
        | Command::BenchJobs { .. }
        | Command::BenchColdStart { .. } => Ok(()),
    }
}

async fn owner_connection_string(hub: &Hub, policy: &str) -> Result<ConnectionString, ToolError> {
    let found = hub
        .policies
        .get_policy(policy)
        .await?
        .ok_or_else(|| ToolError::Message(format!("no shared access policy named {policy}")))?;
    Ok(ConnectionString::Service {
        host_name: hub.host_name.clone(),
        key_name: found.name,
        key: found.primary_key,
    })
}

async fn serve(hub: Arc<Hub>, args: ServeArgs) -> Result<(), CliError> {
    // The event sources as Terraform deploys them; this gateway keeps its position in the
    // stream across restarts, as a mapping does.
    let mut event_sources = hub_local::event_sources::EventSourceOptions::deployed(&hub)?;
    event_sources.kinesis.checkpoint_file = Some(
        args.tls_dir
            .parent()
            .unwrap_or(&args.tls_dir)
            .join("kinesis-mapping.json"),
    );
    for (mapping, file) in [
        (&mut event_sources.routing, "routing-mapping.json"),
        (&mut event_sources.archive, "archive-mapping.json"),
    ] {
        if let Some(mapping) = mapping {
            mapping.checkpoint_file =
                Some(args.tls_dir.parent().unwrap_or(&args.tls_dir).join(file));
        }
    }
    let options = GatewayOptions {
        http: (!args.no_http).then_some(args.http),
        https: (!args.no_https).then_some(args.https),
        tls_dir: args.tls_dir.clone(),
        event_sources: Some(event_sources),
    };
    let gateway = hub_local::start(Arc::clone(&hub), &options).await?;
    let owner = owner_connection_string(&hub, "iothubowner").await?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .unwrap_or_else(|_| "AWS (no AWS_ENDPOINT_URL set)".into());

    println!();
    println!("IoT hub running locally, on {endpoint}");
    println!("  hub host name  {}", hub.host_name);
    if let Some(addr) = gateway.http {
        println!("  HTTP           http://{addr}");
    }
    if let (Some(addr), Some(tls)) = (gateway.https, &gateway.tls) {
        println!(
            "  HTTPS          https://{addr}  (self-signed certificate: {})",
            tls.cert.display()
        );
    }
    println!("  telemetry      Kinesis stream {}", hub.telemetry_stream);
    println!("  owner          {owner}");
    println!();
    println!("  Operate it with hubctl (devices, twins, commands, telemetry, rules):");
    println!(
        "    export HUBCTL_URL=http://127.0.0.1:8080 HUBCTL_CONNECTION_STRING=\"$(target/debug/hub-local connection-string)\""
    );
    println!("    target/debug/hubctl device list");
    println!();

    if let Some(device) = &args.demo_device {
        let device = DeviceId::parse(device)?;
        let (base, ca) = match (gateway.https, &gateway.tls, gateway.http) {
            (Some(addr), Some(tls), _) => (
                format!("https://localhost:{}", addr.port()),
                Some(tls.cert.clone()),
            ),
            (_, _, Some(addr)) => (format!("http://{addr}"), None),
            _ => {
                return Err(
                    ToolError::Message("the demo needs HTTP or HTTPS enabled".into()).into(),
                );
            }
        };
        match demo::run(&hub, &base, ca.as_deref(), &device).await {
            Ok(report) => {
                println!("Demo: device {device} registered and sent one message over {base}:");
                println!("  connection string  {}", report.connection_string);
                println!(
                    "  landed in Kinesis  shard {} sequence {} (hubMessageId {})",
                    report.shard_id, report.sequence_number, report.envelope.hub_message_id
                );
                println!(
                    "  envelope           {}",
                    String::from_utf8_lossy(&report.envelope.to_json())
                );
                println!();
            }
            Err(error) => {
                gateway.shutdown();
                return Err(CliError::Tool(ToolError::Message(format!(
                    "the demo failed: {}",
                    Chain(&error)
                ))));
            }
        }
    }
    println!("Press Ctrl-C to stop.");

    tokio::signal::ctrl_c().await?;
    println!("stopping");
    gateway.shutdown();
    gateway.wait().await?;
    Ok(())
}
