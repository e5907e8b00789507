//! The hub's functions, in process. Each is built by its own crate's `build`, from its own
//! environment exactly as Terraform sets it (see `settings`), with its own AWS clients, and is
//! invoked through the entry point Lambda calls: event JSON in, response JSON out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hub_shared::aws::{Clients, DynamoDbDeviceRegistry, DynamoDbPolicyStore};
use hub_shared::config::{ConfigError, Env};
use hub_shared::lambda::{Function, InvocationError};
use serde_json::Value;

use crate::aws_calls::CallRecorder;
use crate::metrics::{CallCounter, Instrumentation};
use crate::settings::{LocalSettings, SettingsError};

/// The hub's Lambda functions, by the names Terraform gives them (after the prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FunctionName {
    Authorize,
    Registry,
    Ingest,
    Commands,
    Analytics,
    Dashboard,
    Router,
    Archiver,
}

impl FunctionName {
    pub const ALL: [FunctionName; 8] = [
        FunctionName::Authorize,
        FunctionName::Registry,
        FunctionName::Ingest,
        FunctionName::Commands,
        FunctionName::Analytics,
        FunctionName::Dashboard,
        FunctionName::Router,
        FunctionName::Archiver,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FunctionName::Authorize => "authorize",
            FunctionName::Registry => "registry",
            FunctionName::Ingest => "ingest",
            FunctionName::Commands => "commands",
            FunctionName::Analytics => "analytics",
            FunctionName::Dashboard => "dashboard",
            FunctionName::Router => "router",
            FunctionName::Archiver => "archiver",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

impl From<hub_shared::routes::Function> for FunctionName {
    fn from(function: hub_shared::routes::Function) -> Self {
        use hub_shared::routes::Function;
        match function {
            Function::Registry => FunctionName::Registry,
            Function::Ingest => FunctionName::Ingest,
            Function::Commands => FunctionName::Commands,
            Function::Analytics => FunctionName::Analytics,
            Function::Dashboard => FunctionName::Dashboard,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("function {function}: {source}")]
    Config {
        function: &'static str,
        source: ConfigError,
    },
    #[error("no function reads {0}; an override must name a variable of a function's environment")]
    UnknownOverride(String),
}

/// Why an invocation did not produce a response, as Lambda would report it.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the function failed: {0}")]
    Function(#[from] InvocationError),
    #[error("the event or response did not survive the Lambda JSON boundary: {0}")]
    Payload(#[from] serde_json::Error),
    #[error("the function panicked")]
    Panicked,
    #[error("the function timed out after {0:?}")]
    TimedOut(Duration),
}

pub struct Hub {
    pub authorize: hub_authorize::Handler,
    pub registry: hub_registry::Handler,
    pub ingest: hub_ingest::Handler,
    pub commands: hub_commands::Handler,
    pub analytics: hub_analytics::Handler,
    pub dashboard: hub_dashboard::Handler,
    pub router: hub_router::Handler,
    /// Only when a route fills the archive (the archiver needs an archive endpoint).
    pub archiver: Option<hub_archiver::Handler>,
    /// Each function's environment (with overrides applied), mappings and schedule.
    pub settings: LocalSettings,
    /// Clients of the emulated event sources and the local tools: AWS's side, not a function's.
    pub clients: Clients,
    /// Direct access to identities, for the local tools (tokens, connection strings).
    pub devices: DynamoDbDeviceRegistry,
    pub policies: DynamoDbPolicyStore,
    pub host_name: String,
    pub telemetry_stream: String,
    pub instrumentation: Option<Instrumentation>,
    timeouts: BTreeMap<FunctionName, Duration>,
}

impl Hub {
    /// Builds every function from its settings, as each Lambda's `main` does at cold start.
    pub async fn from_settings(settings: LocalSettings) -> Result<Self, HubError> {
        Self::build(settings, &[], None).await
    }

    /// As `from_settings`, with variables of the functions' environments overridden (each
    /// function that reads a variable gets the override), counting AWS calls when
    /// `instrumentation` is given.
    pub async fn build(
        mut settings: LocalSettings,
        overrides: &[(&str, &str)],
        instrumentation: Option<&Instrumentation>,
    ) -> Result<Self, HubError> {
        for (name, value) in overrides {
            let mut applied = false;
            for function in settings.functions.values_mut() {
                if let Some(slot) = function.environment.get_mut(*name) {
                    *slot = (*value).to_owned();
                    applied = true;
                }
            }
            if !applied {
                return Err(HubError::UnknownOverride((*name).to_owned()));
            }
        }
        let sdk = hub_shared::aws::sdk_config().await;
        let clients_for = |function: FunctionName| {
            let counter = instrumentation.map(|i| match function {
                FunctionName::Authorize => &i.authorizer_dynamodb,
                FunctionName::Analytics => &i.analytics_dynamodb,
                _ => &i.functions_dynamodb,
            });
            let recorder = settings
                .functions
                .get(function.as_str())
                .filter(|_| !settings.not_deployed)
                .and_then(|f| CallRecorder::for_function(function.as_str(), &f.environment));
            function_clients(&sdk, counter, recorder)
        };
        let env_of = |function: FunctionName| -> Result<Env<_>, HubError> {
            let environment = settings.function(function)?.environment.clone();
            Ok(Env::from_fn(move |name: &str| {
                environment.get(name).cloned()
            }))
        };
        let config_error = |function: FunctionName| {
            move |source| HubError::Config {
                function: function.as_str(),
                source,
            }
        };

        let authorize_config =
            hub_authorize::AuthorizerConfig::from_env(&env_of(FunctionName::Authorize)?)
                .map_err(config_error(FunctionName::Authorize))?;
        let registry_config =
            hub_registry::RegistryConfig::from_env(&env_of(FunctionName::Registry)?)
                .map_err(config_error(FunctionName::Registry))?;
        let ingest_config = hub_ingest::IngestConfig::from_env(&env_of(FunctionName::Ingest)?)
            .map_err(config_error(FunctionName::Ingest))?;
        let commands_config =
            hub_commands::CommandsConfig::from_env(&env_of(FunctionName::Commands)?)
                .map_err(config_error(FunctionName::Commands))?;
        let analytics_config =
            hub_analytics::AnalyticsConfig::from_env(&env_of(FunctionName::Analytics)?)
                .map_err(config_error(FunctionName::Analytics))?;

        let router_config = hub_router::RouterConfig::from_env(&env_of(FunctionName::Router)?)
            .map_err(config_error(FunctionName::Router))?;

        let archiver_config = match settings.archive_mapping {
            Some(_) => Some(
                hub_archiver::ArchiverConfig::from_env(&env_of(FunctionName::Archiver)?)
                    .map_err(config_error(FunctionName::Archiver))?,
            ),
            None => None,
        };

        let clients = Clients::from_sdk(&sdk);
        let tools_dynamodb = clients.dynamodb.clone();
        let mut timeouts = BTreeMap::new();
        for function in FunctionName::ALL {
            timeouts.insert(
                function,
                Duration::from_secs(settings.function(function)?.timeout_seconds.max(1)),
            );
        }
        Ok(Self {
            authorize: hub_authorize::build(
                &authorize_config,
                &clients_for(FunctionName::Authorize),
            ),
            registry: hub_registry::build(&registry_config, &clients_for(FunctionName::Registry)),
            ingest: hub_ingest::build(&ingest_config, &clients_for(FunctionName::Ingest)),
            commands: hub_commands::build(&commands_config, &clients_for(FunctionName::Commands)),
            analytics: hub_analytics::build(
                &analytics_config,
                &clients_for(FunctionName::Analytics),
            ),
            dashboard: hub_dashboard::build(),
            router: hub_router::build(&router_config, &clients_for(FunctionName::Router)),
            archiver: archiver_config
                .map(|config| hub_archiver::build(&config, &clients_for(FunctionName::Archiver))),
            devices: DynamoDbDeviceRegistry::new(
                tools_dynamodb.clone(),
                &authorize_config.registry_table,
            ),
            policies: DynamoDbPolicyStore::new(tools_dynamodb, &authorize_config.policies_table),
            host_name: authorize_config.host_name,
            telemetry_stream: ingest_config.telemetry_stream,
            settings,
            clients,
            instrumentation: instrumentation.cloned(),
            timeouts,
        })
    }

    /// The value of a variable in a function's environment (as Terraform set it).
    pub fn variable(&self, function: FunctionName, name: &str) -> Option<&str> {
        self.settings
            .functions
            .get(function.as_str())
            .and_then(|f| f.environment.get(name))
            .map(String::as_str)
    }

    /// Invokes a function as Lambda does: the event as JSON, on a task of its own (a panic
    /// becomes an invocation error), within the function's timeout.
    pub async fn invoke(
        self: &Arc<Self>,
        function: FunctionName,
        event: Value,
    ) -> Result<Value, InvokeError> {
        let hub = Arc::clone(self);
        let timeout = self
            .timeouts
            .get(&function)
            .copied()
            .unwrap_or(Duration::from_secs(3));
        let task = tokio::spawn(async move {
            match function {
                FunctionName::Authorize => hub.authorize.invoke(event).await,
                FunctionName::Registry => hub.registry.invoke(event).await,
                FunctionName::Ingest => hub.ingest.invoke(event).await,
                FunctionName::Commands => hub.commands.invoke(event).await,
                FunctionName::Analytics => hub.analytics.invoke(event).await,
                FunctionName::Dashboard => hub.dashboard.invoke(event).await,
                FunctionName::Router => hub.router.invoke(event).await,
                FunctionName::Archiver => match &hub.archiver {
                    Some(archiver) => archiver.invoke(event).await,
                    None => Err(InvocationError::Failed(
                        hub_shared::ports::StoreError::rejected(
                            "invoking the archiver",
                            std::io::Error::other(
                                "no route fills the archive, so no archiver runs",
                            ),
                        ),
                    )),
                },
            }
        });
        match tokio::time::timeout(timeout, task).await {
            Err(_) => Err(InvokeError::TimedOut(timeout)),
            Ok(Err(_)) => Err(InvokeError::Panicked),
            Ok(Ok(result)) => Ok(result?),
        }
    }

    /// Invokes the authorizer with a REQUEST event.
    pub async fn authorize(
        self: &Arc<Self>,
        event: Value,
    ) -> Result<hub_authorize::AuthorizerResponse, InvokeError> {
        Ok(serde_json::from_value(
            self.invoke(FunctionName::Authorize, event).await?,
        )?)
    }

    /// Invokes the `analytics` function with a Kinesis batch, noting for the benches when each
    /// message's aggregates were committed.
    pub async fn invoke_analytics(self: &Arc<Self>, event: Value) -> Result<Value, InvokeError> {
        let Some(instrumentation) = &self.instrumentation else {
            return self.invoke(FunctionName::Analytics, event).await;
        };
        let records = event["Records"].as_array().map_or(0, Vec::len) as u64;
        instrumentation
            .analytics_batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        instrumentation
            .analytics_records
            .fetch_add(records, std::sync::atomic::Ordering::Relaxed);
        let message_ids = committed_message_ids(&event);
        let response = self.invoke(FunctionName::Analytics, event).await?;
        // Records before the first reported failure were committed.
        let failed: Vec<&str> = response["batchItemFailures"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|x| x["itemIdentifier"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let now = std::time::Instant::now();
        let mut committed = instrumentation
            .analytics_committed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (sequence, message_id) in message_ids {
            if failed.contains(&sequence.as_str()) {
                break;
            }
            if let Some(id) = message_id {
                committed.entry(id).or_insert(now);
            }
        }
        Ok(response)
    }

    /// The scheduled event EventBridge sends its targets.
    pub fn scheduled_event() -> Value {
        serde_json::json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "time": time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            "resources": [],
            "detail": {},
        })
    }

    /// Runs the schedule's targets once, as EventBridge does on each tick (each target
    /// independently); every failure is returned for the caller to log or assert on.
    pub async fn run_schedule(self: &Arc<Self>) -> Vec<(FunctionName, InvokeError)> {
        let runs: Vec<_> = self
            .settings
            .schedule
            .targets
            .iter()
            .filter_map(|t| FunctionName::parse(t))
            .map(|target| {
                let hub = Arc::clone(self);
                let run =
                    tokio::spawn(async move { hub.invoke(target, Self::scheduled_event()).await });
                (target, run)
            })
            .collect();
        let mut failures = Vec::new();
        for (target, run) in runs {
            match run.await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => failures.push((target, error)),
                Err(_) => failures.push((target, InvokeError::Panicked)),
            }
        }
        failures
    }
}

/// One function's AWS clients: DynamoDB calls counted when a counter is given, every call
/// recorded for the IAM audit when recording is on.
fn function_clients(
    sdk: &aws_config::SdkConfig,
    counter: Option<&CallCounter>,
    recorder: Option<CallRecorder>,
) -> Clients {
    let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk);
    let mut kinesis = aws_sdk_kinesis::config::Builder::from(sdk);
    let mut sqs = aws_sdk_sqs::config::Builder::from(sdk);
    let mut sns = aws_sdk_sns::config::Builder::from(sdk);
    let mut eventbridge = aws_sdk_eventbridge::config::Builder::from(sdk);
    let mut s3 = aws_sdk_s3::config::Builder::from(sdk).force_path_style(true);
    if let Some(counter) = counter {
        dynamodb = dynamodb.interceptor(counter.clone());
    }
    if let Some(recorder) = recorder {
        dynamodb = dynamodb.interceptor(recorder.clone());
        kinesis = kinesis.interceptor(recorder.clone());
        sqs = sqs.interceptor(recorder.clone());
        sns = sns.interceptor(recorder.clone());
        eventbridge = eventbridge.interceptor(recorder.clone());
        s3 = s3.interceptor(recorder);
    }
    Clients {
        dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
        kinesis: aws_sdk_kinesis::Client::from_conf(kinesis.build()),
        sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
        sns: aws_sdk_sns::Client::from_conf(sns.build()),
        eventbridge: aws_sdk_eventbridge::Client::from_conf(eventbridge.build()),
        s3: aws_sdk_s3::Client::from_conf(s3.build()),
    }
}

/// (sequence number, device message id) of each record of a Kinesis batch event.
fn committed_message_ids(event: &Value) -> Vec<(String, Option<String>)> {
    use base64::Engine as _;
    event["Records"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .map(|r| {
                    let sequence = r["kinesis"]["sequenceNumber"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let message_id = r["kinesis"]["data"]
                        .as_str()
                        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                        .and_then(|bytes| {
                            hub_shared::domain::envelope::TelemetryEnvelope::from_json(&bytes).ok()
                        })
                        .and_then(|e| e.system_properties.message_id);
                    (sequence, message_id)
                })
                .collect()
        })
        .unwrap_or_default()
}
