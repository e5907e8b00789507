mod archive;
mod cli;
mod devices;
mod messages;
mod monitor;
mod output;
mod resources;
mod routing;

use clap::Parser;
use hub_service_sdk::ServiceClient;

use crate::cli::{Cli, Command};
use crate::output::Printer;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Hub(#[from] hub_service_sdk::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the telemetry stream: {0}")]
    Stream(String),
    #[error("{0}")]
    TimedOut(String),
    /// The hub took the request but refused part of it (a bulk import), or the device did not
    /// complete a message whose feedback was awaited.
    #[error("{0}")]
    Refused(String),
}

impl CliError {
    /// The process's exit code (see `hubctl --help`).
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Io(_) => 2,
            CliError::Hub(error) => match error.status() {
                Some(status) if status < 500 => 1,
                Some(_) => 3,
                None if matches!(error, hub_service_sdk::Error::Config(_)) => 2,
                None => 3,
            },
            CliError::Stream(_) => 3,
            CliError::TimedOut(_) => 4,
            CliError::Refused(_) => 1,
        }
    }
}

fn service(cli: &Cli) -> Result<ServiceClient, CliError> {
    let connection_string = cli.connection_string.as_deref().ok_or_else(|| {
        CliError::Usage(
            "give the hub's connection string: --connection-string or HUBCTL_CONNECTION_STRING"
                .into(),
        )
    })?;
    let mut builder = ServiceClient::builder(connection_string)?;
    if let Some(url) = &cli.url {
        builder = builder.base_url(url);
    }
    if let Some(path) = &cli.ca_cert {
        builder = builder.root_certificate_pem(std::fs::read(path)?);
    }
    Ok(builder.build()?)
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let printer = Printer::new(cli.output);
    match &cli.command {
        Command::Monitor(command) => monitor::run(command, &printer).await,
        Command::Route(command) => routing::run(command, &printer),
        Command::Archive(command) => archive::run(command, &printer).await,
        command => {
            let hub = service(&cli)?;
            match command {
                Command::Device(command) => devices::run(&hub, command, &printer).await,
                Command::ConnectionString(command) => {
                    resources::connection_string(&hub, command, &printer).await
                }
                Command::Sas(args) => resources::sas(&hub, args, &printer).await,
                Command::Twin(command) => resources::twin(&hub, command, &printer).await,
                Command::C2d(command) => messages::c2d(&hub, command, &printer).await,
                Command::Feedback(command) => messages::feedback(&hub, command, &printer).await,
                Command::Rule(command) => resources::rule(&hub, command, &printer).await,
                Command::Alert(command) => resources::alert(&hub, command, &printer).await,
                Command::Query(args) => resources::query(&hub, args, &printer).await,
                Command::Method(args) => resources::method(&hub, args, &printer).await,
                Command::Connected => {
                    let statistics = hub.service_statistics().await?;
                    let count = statistics["connectedDeviceCount"].as_u64().unwrap_or(0);
                    printer.line(&format!("{count} devices connected"), &statistics);
                    Ok(())
                }
                Command::Monitor(_) | Command::Route(_) | Command::Archive(_) => Ok(()),
            }
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            match &error {
                CliError::Hub(hub_service_sdk::Error::Hub {
                    status,
                    code,
                    message,
                }) => eprintln!(
                    "error: {} ({status}): {message}",
                    code.as_deref().unwrap_or("no error code")
                ),
                other => eprintln!("error: {other}"),
            }
            std::process::ExitCode::from(error.exit_code())
        }
    }
}
