//! The command line: every command group and its arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The hub's operator CLI. It talks to a running hub, local or deployed, through its HTTPS API
/// with a shared access policy's connection string; `monitor events` reads the telemetry stream
/// with AWS credentials.
///
/// Exit codes: 0 done, 1 the hub refused the request (its error code is printed), or part of an
/// import, or the device did not complete an awaited message; 2 usage or configuration errors;
/// 3 the hub could not be reached or failed (5xx); 4 a wait timed out.
#[derive(Parser)]
#[command(version, name = "hubctl")]
pub struct Cli {
    /// A shared access policy's connection string (iothubowner, service, registryRead, ...).
    #[arg(
        long,
        global = true,
        env = "HUBCTL_CONNECTION_STRING",
        hide_env_values = true
    )]
    pub connection_string: Option<String>,
    /// The hub's base URL, when it is not https://<HostName> (the local gateway:
    /// http://127.0.0.1:8080).
    #[arg(long, global = true, env = "HUBCTL_URL")]
    pub url: Option<String>,
    /// A PEM certificate to trust (the local gateway's self-signed one).
    #[arg(long, global = true, env = "HUBCTL_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// How results are printed.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Tables and text for people.
    Table,
    /// JSON for scripts (one document, or one line per event when monitoring).
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// The identity registry.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Connection strings for devices (and this policy).
    #[command(subcommand, name = "connection-string")]
    ConnectionString(ConnectionStringCommand),
    /// A SAS token for a device or for this policy.
    Sas(SasArgs),
    /// Device twins.
    #[command(subcommand)]
    Twin(TwinCommand),
    /// Cloud-to-device messages.
    #[command(subcommand)]
    C2d(C2dCommand),
    /// Delivery feedback of cloud-to-device messages.
    #[command(subcommand)]
    Feedback(FeedbackCommand),
    /// Live views of the hub.
    #[command(subcommand)]
    Monitor(MonitorCommand),
    /// Analytics rules.
    #[command(subcommand)]
    Rule(RuleCommand),
    /// Alerts raised by rules.
    #[command(subcommand)]
    Alert(AlertCommand),
    /// Query device twins in Azure IoT Hub's query language, every page:
    /// `hubctl query "SELECT * FROM devices WHERE tags.site = 'berlin'"`.
    Query(QueryArgs),
    /// How many devices are connected (active within the hub's window).
    Connected,
    /// Invoke a direct method on a device and print its answer (`status`, `payload`).
    Method(MethodArgs),
    /// Message routes, checked and tried offline against a routing configuration (the
    /// `.tfvars.json` of `routes`, `routing_endpoints`, `routing_enrichments`, or the router's
    /// `HUB_ROUTING`), as `az iot hub message-route test` does.
    #[command(subcommand)]
    Route(RouteCommand),
    /// The S3 archive (the cold path), read with the AWS credentials of the environment.
    #[command(subcommand)]
    Archive(ArchiveCommand),
}

#[derive(Subcommand)]
pub enum ArchiveCommand {
    /// Publishes archived messages of the devices `--device` matches, enqueued in [from, to],
    /// into a stream again (the telemetry stream by default), for reprocessing after a rule
    /// change. Each keeps its hubMessageId and gets the property `iothub-replayed=true`.
    Replay {
        /// The archive's bucket (Terraform output `archive_bucket`).
        #[arg(long, env = "HUB_ARCHIVE_BUCKET")]
        bucket: String,
        /// The hub's host name (the `{iothub}` of object names).
        #[arg(long, env = "HUB_HOST_NAME")]
        hub: String,
        /// Device id, `*` matching any characters.
        #[arg(long)]
        device: String,
        /// RFC 3339 times.
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// The stream to publish into.
        #[arg(long, env = "HUB_TELEMETRY_STREAM")]
        stream: String,
        /// The archive's file name format, as configured.
        #[arg(long, default_value = hub_shared::routing::archive::DEFAULT_FILE_NAME_FORMAT)]
        format: String,
        /// Count what would be replayed, publish nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
pub enum RouteCommand {
    /// Parses every route's condition and checks names, endpoints and limits; says where a
    /// condition is wrong.
    Check {
        /// The routing configuration (JSON).
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Which routes a sample message takes, where it goes, and the properties each endpoint
    /// gets (enrichments included).
    Test {
        #[arg(long)]
        config: std::path::PathBuf,
        /// The sending device.
        #[arg(long, default_value = "test-device")]
        device: String,
        /// The message body.
        #[arg(long, default_value = "")]
        body: String,
        /// `contentType`; `$body` queries need application/json.
        #[arg(long)]
        content_type: Option<String>,
        /// `contentEncoding`; `$body` queries need utf-8.
        #[arg(long)]
        content_encoding: Option<String>,
        /// An application property, `name=value` (repeatable).
        #[arg(long = "property", value_name = "NAME=VALUE")]
        properties: Vec<String>,
        /// The device's twin as JSON (as `hubctl twin show` prints it), for `$twin` conditions
        /// and enrichments.
        #[arg(long)]
        twin: Option<std::path::PathBuf>,
        /// What the message is (as `az iot hub message-route test --source`): a device message,
        /// or a registry event whose notification is `--body` and whose `opType` is the
        /// source's first (updateTwin, createDeviceIdentity, deviceConnected) unless
        /// `--property opType=...` says otherwise.
        #[arg(long, value_enum, default_value_t = Source::DeviceMessages)]
        source: Source,
    },
}

/// Azure's routing sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    #[value(name = "DeviceMessages", alias = "devicemessages")]
    DeviceMessages,
    #[value(name = "TwinChangeEvents", alias = "twinchangeevents")]
    TwinChangeEvents,
    #[value(name = "DeviceLifecycleEvents", alias = "devicelifecycleevents")]
    DeviceLifecycleEvents,
    #[value(
        name = "DeviceConnectionStateEvents",
        alias = "deviceconnectionstateevents"
    )]
    DeviceConnectionStateEvents,
}

#[derive(Args)]
pub struct MethodArgs {
    pub id: String,
    /// The method's name (a simulated device answers its commands by name).
    pub name: String,
    /// The payload, as JSON.
    #[arg(long, default_value = "null")]
    pub payload: String,
    /// Seconds the device has to answer once it took the call (5 to 300; the hub waits at most
    /// 20 s in all).
    #[arg(long, default_value_t = 30)]
    pub response_timeout: u64,
    /// Seconds the device has to take the call (0: it must be polling now; devices that poll
    /// every few seconds, like the simulator's, need a few seconds).
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
}

#[derive(Args)]
pub struct QueryArgs {
    /// `SELECT ... FROM devices [WHERE ...] [GROUP BY ...]`.
    pub query: String,
    /// Results per request.
    #[arg(long, default_value_t = 100)]
    pub page_size: usize,
    /// Stop after this many results.
    #[arg(long)]
    pub max: Option<usize>,
}

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Register a device (keys are generated unless given).
    Create {
        id: String,
        #[arg(long)]
        disabled: bool,
        #[arg(long)]
        primary_key: Option<String>,
        #[arg(long)]
        secondary_key: Option<String>,
    },
    Show {
        id: String,
    },
    /// List devices, a page at a time (--all for every page).
    List {
        #[arg(long, default_value_t = 100)]
        top: usize,
        #[arg(long)]
        all: bool,
    },
    /// Change a device's status.
    Update {
        id: String,
        #[arg(long, value_enum)]
        status: Option<Status>,
        #[arg(long)]
        status_reason: Option<String>,
        /// Only if the device's etag is still this one.
        #[arg(long)]
        etag: Option<String>,
    },
    Delete {
        id: String,
        #[arg(long)]
        etag: Option<String>,
    },
    /// Give a device new keys: tokens signed with the old ones stop working at once.
    RenewKey {
        id: String,
        #[arg(long, value_enum, default_value_t = KeySlot::Primary)]
        key: KeySlot,
    },
    /// Register (or update) devices from a file, 100 per request.
    Import {
        #[arg(long)]
        file: PathBuf,
        #[arg(long, value_enum)]
        format: Option<FileFormat>,
        /// What to do with each device.
        #[arg(long, value_enum, default_value_t = ImportAs::Create)]
        mode: ImportAs,
    },
    /// Write every device (id, status, keys) to a file or standard output.
    Export {
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = FileFormat::Jsonl)]
        format: FileFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Status {
    Enabled,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeySlot {
    Primary,
    Secondary,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    /// One JSON object per line: {"id": ..., "status": ..., "primaryKey": ..., "secondaryKey": ...}.
    Jsonl,
    /// A header line `id,status,primaryKey,secondaryKey`, then one device per line.
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportAs {
    Create,
    Update,
    Delete,
}

#[derive(Subcommand)]
pub enum ConnectionStringCommand {
    /// A device's connection string (with --device), or this policy's.
    Show {
        #[arg(long)]
        device: Option<String>,
        #[arg(long, value_enum, default_value_t = KeySlot::Primary)]
        key: KeySlot,
    },
}

#[derive(Args)]
pub struct SasArgs {
    /// A device's token, signed with its primary key (read through the registry); without it,
    /// this policy's token.
    #[arg(long)]
    pub device: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
}

#[derive(Subcommand)]
pub enum TwinCommand {
    Show {
        id: String,
    },
    /// Merge a patch into the twin (`tags`, `properties.desired`); `null` removes a property.
    Update {
        id: String,
        #[command(flatten)]
        document: JsonInput,
        #[arg(long)]
        etag: Option<String>,
    },
    /// Replace the twin's tags and desired properties.
    Replace {
        id: String,
        #[command(flatten)]
        document: JsonInput,
        #[arg(long)]
        etag: Option<String>,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct JsonInput {
    /// The JSON document.
    #[arg(long)]
    pub json: Option<String>,
    /// A file holding it.
    #[arg(long)]
    pub file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum C2dCommand {
    /// Send a message to a device.
    Send {
        id: String,
        /// The body; a simulated device takes {"name": "<command>", "payload": {...}}.
        #[arg(long)]
        body: String,
        /// An application property, name=value (repeatable).
        #[arg(long = "property", value_parser = parse_property)]
        properties: Vec<(String, String)>,
        #[arg(long, value_enum)]
        ack: Option<Ack>,
        #[arg(long)]
        message_id: Option<String>,
        /// Seconds the message may wait in the device's queue.
        #[arg(long)]
        ttl: Option<u64>,
        /// Wait for the delivery feedback (needs --ack).
        #[arg(long, requires = "ack")]
        wait: bool,
        /// How long --wait waits, in seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Remove every message waiting for a device.
    Purge { id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Ack {
    None,
    Positive,
    Negative,
    Full,
}

impl Ack {
    pub fn as_str(self) -> &'static str {
        match self {
            Ack::None => "none",
            Ack::Positive => "positive",
            Ack::Negative => "negative",
            Ack::Full => "full",
        }
    }
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{text:?} is not name=value"))
}

#[derive(Subcommand)]
pub enum FeedbackCommand {
    /// Print delivery feedback as it arrives (and complete it).
    Monitor {
        /// Stop after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// Stop after this many records.
        #[arg(long)]
        count: Option<usize>,
    },
}

#[derive(Subcommand)]
pub enum MonitorCommand {
    /// Tail the telemetry stream, every shard (AWS credentials and the stream's name).
    Events {
        /// Device ids to show; `*` matches any characters (`sim-chiller-*`).
        #[arg(long)]
        device: Option<String>,
        /// Show system and application properties too.
        #[arg(long)]
        properties: bool,
        /// Stop after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
        /// The Kinesis stream (Terraform output telemetry_stream_name).
        #[arg(long, env = "HUB_TELEMETRY_STREAM")]
        stream: String,
        /// Read from the oldest record kept, not from now.
        #[arg(long)]
        from_start: bool,
    },
}

#[derive(Subcommand)]
pub enum RuleCommand {
    List,
    Show {
        id: String,
    },
    /// Create or replace a rule.
    Put {
        id: String,
        #[command(flatten)]
        document: JsonInput,
    },
    Delete {
        id: String,
    },
}

#[derive(Subcommand)]
pub enum AlertCommand {
    /// Active alerts (--all for every alert, active or cleared).
    List {
        #[arg(long)]
        all: bool,
    },
}
