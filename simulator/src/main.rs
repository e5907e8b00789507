use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use hub_service_sdk::ServiceClient;
use hub_simulator::fleet::{self, FleetOptions, FleetSpec, Stats};
use hub_simulator::model::Model;

/// Simulated devices for the hub: a fleet of device models (chillers, elevators, engines,
/// trucks and their faulty variants) sending telemetry, acting on commands, reporting and
/// obeying twin properties, against any hub.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Register a fleet and play it until Ctrl-C (or --duration).
    Run(Box<RunArgs>),
    /// Check model files and list what they define.
    Models {
        #[arg(long, default_value = "simulator/models")]
        models: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// A shared access policy's connection string with registry write and service connect
    /// rights (iothubowner).
    #[arg(long, env = "HUB_CONNECTION_STRING", hide_env_values = true)]
    connection_string: String,
    /// The hub's base URL, when it is not https://<HostName> (the local gateway:
    /// http://127.0.0.1:8080).
    #[arg(long, env = "HUB_URL")]
    url: Option<String>,
    /// A PEM certificate to trust (the local gateway's self-signed one).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    #[arg(long, default_value = "simulator/models")]
    models: PathBuf,
    /// The fleet: model=count, comma-separated; `<model>-faulty` for the faulty variant.
    #[arg(
        long,
        default_value = "chiller=2,chiller-faulty=1,elevator=2,elevator-faulty=1,engine=2,engine-faulty=1,truck=2,truck-faulty=1"
    )]
    fleet: String,
    /// Device ids are <prefix>-<model>[-faulty]-<n>.
    #[arg(long, default_value = "sim")]
    prefix: String,
    /// Readings per second for the whole fleet, at most.
    #[arg(long)]
    rate: Option<f64>,
    /// Registry operations per second, at most.
    #[arg(long, default_value_t = 20.0)]
    registry_rate: f64,
    /// Readings a device gathers before sending them as one batch.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Seconds between a device's polls for commands.
    #[arg(long, default_value_t = 5.0)]
    c2d_poll: f64,
    /// Seconds between a device's reads of its desired properties.
    #[arg(long, default_value_t = 30.0)]
    twin_poll: f64,
    /// Seconds between readings, for every model (a desired telemetryInterval still wins).
    #[arg(long)]
    interval: Option<u64>,
    /// Do not set twin tags (site, building, model) on the devices.
    #[arg(long)]
    no_tags: bool,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds between statistics lines (0: none).
    #[arg(long, default_value_t = 10.0)]
    stats_every: f64,
    /// Print statistics as JSON lines instead of text.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A folder of rules (`<rule id>.json`) to put on the hub before the fleet starts: the
    /// solution's automatic feedback loop (simulator/solution/rules).
    #[arg(long)]
    rules: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Models { models } => {
            let models = Model::load_dir(&models).map_err(|e| e.to_string())?;
            for model in models.values() {
                let fields: Vec<&str> = model.telemetry_fields().collect();
                let commands: Vec<&str> = model.commands.keys().map(String::as_str).collect();
                println!(
                    "{:<10} {:<10} telemetry: {}; commands: {}{}",
                    model.name,
                    model.kind,
                    fields.join(", "),
                    commands.join(", "),
                    if model.faulty.is_some() {
                        "; faulty variant"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
        Command::Run(args) => run_fleet(*args).await,
    }
}

/// Puts every `<id>.json` rule of a folder on the hub (creating or replacing it).
async fn put_rules(service: &ServiceClient, dir: &std::path::Path) -> Result<(), String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for path in paths {
        let id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let rule: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        service
            .put_rule(&id, &rule)
            .await
            .map_err(|e| format!("rule {id}: {e}"))?;
        eprintln!("rule {id} in place");
    }
    Ok(())
}

async fn run_fleet(args: RunArgs) -> Result<(), String> {
    let models = Model::load_dir(&args.models).map_err(|e| e.to_string())?;
    let spec = FleetSpec::parse(&args.fleet, &models).map_err(|e| e.to_string())?;
    let mut builder = ServiceClient::builder(&args.connection_string).map_err(|e| e.to_string())?;
    if let Some(url) = &args.url {
        builder = builder.base_url(url);
    }
    if let Some(path) = &args.ca_cert {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        builder = builder.root_certificate_pem(pem);
    }
    let service = Arc::new(builder.build().map_err(|e| e.to_string())?);
    if let Some(dir) = &args.rules {
        put_rules(&service, dir).await?;
    }
    let options = FleetOptions {
        prefix: args.prefix,
        message_rate: args.rate,
        registry_rate: args.registry_rate,
        batch: args.batch.max(1),
        c2d_poll: Duration::from_secs_f64(args.c2d_poll.max(0.1)),
        twin_poll: Duration::from_secs_f64(args.twin_poll.max(0.1)),
        tags: !args.no_tags,
        seed: args.seed,
        interval: args.interval.map(Duration::from_secs),
    };
    let stats = Arc::new(Stats::default());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    eprintln!(
        "simulating {} devices ({}) against {}",
        spec.devices(),
        args.fleet,
        service.base_url()
    );
    let reporter = {
        let stats = Arc::clone(&stats);
        let every = args.stats_every;
        let json = args.json;
        tokio::spawn(async move {
            if every <= 0.0 {
                return;
            }
            let bar = (!json).then(|| {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar
            });
            let mut last = stats.snapshot(started);
            loop {
                tokio::time::sleep(Duration::from_secs_f64(every)).await;
                let now = stats.snapshot(started);
                let rate = (now.messages_sent - last.messages_sent) as f64
                    / (now.elapsed_seconds - last.elapsed_seconds).max(0.001);
                if json {
                    let mut line = serde_json::to_value(&now).unwrap_or_default();
                    line["messagesPerSecond"] = serde_json::json!((rate * 10.0).round() / 10.0);
                    println!("{line}");
                } else if let Some(bar) = &bar {
                    bar.set_message(format!(
                        "{} devices | sent {} ({rate:.1}/s, {} failed) | commands {} done, {} rejected, {} abandoned | methods {} | reported {} | desired {}",
                        now.registered, now.messages_sent, now.send_failures, now.commands_completed,
                        now.commands_rejected, now.commands_abandoned, now.methods_answered, now.reported_updates, now.desired_applied,
                    ));
                    bar.tick();
                }
                last = now;
            }
        })
    };
    let deadline = args.duration.map(Duration::from_secs_f64);
    let stopper = tokio::spawn(async move {
        match deadline {
            Some(after) => {
                tokio::select! {
                    _ = tokio::time::sleep(after) => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        let _ = stop.send(true);
    });
    let result = fleet::run(
        service,
        &models,
        &spec,
        &options,
        Arc::clone(&stats),
        shutdown,
    )
    .await;
    stopper.abort();
    reporter.abort();
    let last = stats.snapshot(started);
    eprintln!("{}", serde_json::to_string(&last).unwrap_or_default());
    result.map_err(|e| e.to_string())
}
