//! A fleet of simulated devices against a hub: registered in bulk, each sending telemetry at its
//! interval (in batches when asked), receiving and acting on cloud-to-device commands, reporting
//! its properties and obeying desired ones, all within fleet-wide rate limits, with live
//! statistics. One process, one HTTP connection pool, one task per device.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hub_device_sdk::{DeviceClient, Message};
use hub_service_sdk::ServiceClient;
use hub_shared::domain::device::{
    Authentication, AuthenticationType, DeviceStatus, SymmetricKeyPair,
};
use hub_shared::domain::device_id::DeviceId;
use hub_shared::domain::registry::{ExportImportDevice, ImportMode};
use hub_shared::domain::sas::SymmetricKey;
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

use crate::device::SimulatedDevice;
use crate::model::{Disposition, Model};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{0}")]
    Spec(String),
    #[error("registering the fleet failed: {0}")]
    Register(#[source] hub_service_sdk::Error),
    #[error("{0}")]
    Device(#[source] hub_device_sdk::Error),
}

/// How many devices of which model: `chiller=3,chiller-faulty=1,elevator=2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSpec {
    pub groups: Vec<(String, bool, usize)>,
}

impl FleetSpec {
    pub fn parse(text: &str, models: &BTreeMap<String, Model>) -> Result<Self, FleetError> {
        let mut groups = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, count) = part.split_once('=').unwrap_or((part, "1"));
            let count: usize = count.trim().parse().map_err(|_| {
                FleetError::Spec(format!(
                    "{part}: the count after '=' must be a whole number"
                ))
            })?;
            let (model, faulty) = match name.trim().strip_suffix("-faulty") {
                Some(model) => (model, true),
                None => (name.trim(), false),
            };
            let known = models.get(model).ok_or_else(|| {
                let names: Vec<&str> = models.keys().map(String::as_str).collect();
                FleetError::Spec(format!(
                    "{part}: no model named {model} (models: {})",
                    names.join(", ")
                ))
            })?;
            if faulty && known.faulty.is_none() {
                return Err(FleetError::Spec(format!(
                    "{part}: model {model} has no faulty variant"
                )));
            }
            groups.push((model.to_owned(), faulty, count));
        }
        if groups.is_empty() {
            return Err(FleetError::Spec("the fleet names no devices".into()));
        }
        Ok(Self { groups })
    }

    pub fn devices(&self) -> usize {
        self.groups.iter().map(|g| g.2).sum()
    }
}

#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Device ids are `<prefix>-<model>[-faulty]-<n>`.
    pub prefix: String,
    /// Readings per second across the fleet, at most.
    pub message_rate: Option<f64>,
    /// Registry operations per second (registration, tags), at most.
    pub registry_rate: f64,
    /// Readings a device gathers before sending them in one request (1: one message each).
    pub batch: usize,
    pub c2d_poll: Duration,
    pub twin_poll: Duration,
    /// Set twin tags (`site`, `building`, `model`) on each device, for device groups.
    pub tags: bool,
    pub seed: u64,
    /// Overrides every model's telemetry interval (a desired one still wins).
    pub interval: Option<Duration>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            prefix: "sim".into(),
            message_rate: None,
            registry_rate: 20.0,
            batch: 1,
            c2d_poll: Duration::from_secs(5),
            twin_poll: Duration::from_secs(30),
            tags: true,
            seed: 1,
            interval: None,
        }
    }
}

/// Live counters of a running fleet.
#[derive(Debug, Default)]
pub struct Stats {
    pub devices: AtomicU64,
    pub registered: AtomicU64,
    pub messages_sent: AtomicU64,
    pub requests: AtomicU64,
    pub send_failures: AtomicU64,
    pub commands_completed: AtomicU64,
    pub commands_rejected: AtomicU64,
    pub commands_abandoned: AtomicU64,
    /// Direct method calls answered (any status).
    pub methods_answered: AtomicU64,
    pub reported_updates: AtomicU64,
    pub desired_applied: AtomicU64,
    pub other_failures: AtomicU64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    pub elapsed_seconds: f64,
    pub devices: u64,
    pub registered: u64,
    pub messages_sent: u64,
    pub requests: u64,
    pub send_failures: u64,
    pub commands_completed: u64,
    pub commands_rejected: u64,
    pub commands_abandoned: u64,
    pub methods_answered: u64,
    pub reported_updates: u64,
    pub desired_applied: u64,
    pub other_failures: u64,
}

impl Stats {
    pub fn snapshot(&self, started: Instant) -> StatsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StatsSnapshot {
            elapsed_seconds: started.elapsed().as_secs_f64(),
            devices: get(&self.devices),
            registered: get(&self.registered),
            messages_sent: get(&self.messages_sent),
            requests: get(&self.requests),
            send_failures: get(&self.send_failures),
            commands_completed: get(&self.commands_completed),
            commands_rejected: get(&self.commands_rejected),
            commands_abandoned: get(&self.commands_abandoned),
            methods_answered: get(&self.methods_answered),
            reported_updates: get(&self.reported_updates),
            desired_applied: get(&self.desired_applied),
            other_failures: get(&self.other_failures),
        }
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// One device to play.
struct Member {
    id: DeviceId,
    model: Arc<Model>,
    faulty: bool,
    key: SymmetricKey,
    index: usize,
}

const SITES: [&str; 3] = ["seattle", "redmond", "dublin"];

/// Waits for `n` cells, one at a time: a batch may be larger than the limiter's burst.
async fn acquire(limit: &DefaultDirectRateLimiter, n: usize) {
    for _ in 0..n {
        limit.until_ready().await;
    }
}

fn limiter(per_second: f64) -> Option<DefaultDirectRateLimiter> {
    if !(per_second.is_finite() && per_second > 0.0) {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / per_second);
    let burst = NonZeroU32::new((per_second.ceil() as u32).clamp(1, 1000))?;
    Quota::with_period(period).map(|q| RateLimiter::direct(q.allow_burst(burst)))
}

/// Registers the fleet (bulk, 100 per request; devices that exist get new keys) and plays every
/// device until `shutdown` turns true.
pub async fn run(
    service: Arc<ServiceClient>,
    models: &BTreeMap<String, Model>,
    spec: &FleetSpec,
    options: &FleetOptions,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), FleetError> {
    let mut members = Vec::new();
    for (model_name, faulty, count) in &spec.groups {
        let model = Arc::new(models[model_name].clone());
        for n in 1..=*count {
            let id = format!(
                "{}-{}{}-{n}",
                options.prefix,
                model_name,
                if *faulty { "-faulty" } else { "" }
            );
            let id = DeviceId::parse(&id).map_err(|e| FleetError::Spec(e.to_string()))?;
            members.push(Member {
                id,
                model: Arc::clone(&model),
                faulty: *faulty,
                key: SymmetricKey::generate(),
                index: members.len(),
            });
        }
    }
    bump(&stats.devices, members.len() as u64);
    let registry_limit = limiter(options.registry_rate).map(Arc::new);
    register(&service, &members, registry_limit.as_deref(), &stats).await?;
    if options.tags {
        for member in &members {
            if let Some(limit) = &registry_limit {
                limit.until_ready().await;
            }
            let tags = json!({"tags": {
                "site": SITES[member.index % SITES.len()],
                "building": format!("B{}", member.index % 4 + 1),
                "model": member.model.name,
                "simulated": true,
            }});
            if service
                .patch_twin(member.id.as_str(), &tags, None)
                .await
                .is_err()
            {
                bump(&stats.other_failures, 1);
            }
        }
    }

    let messages = options.message_rate.and_then(limiter).map(Arc::new);
    let http = service.http_client();
    let mut tasks = tokio::task::JoinSet::new();
    for member in members {
        let client =
            DeviceClient::builder(&service.device_connection_string(&member.id, &member.key))
                .map_err(FleetError::Device)?
                .base_url(service.base_url())
                .http_client(http.clone())
                .build()
                .map_err(FleetError::Device)?;
        let seed = options
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(member.index as u64);
        let started_unix = hub_shared::domain::timestamp::Timestamp::now().unix_millis();
        let mut device = SimulatedDevice::new(member.model, member.faulty, seed, started_unix);
        if let Some(interval) = options.interval {
            device.desired(&json!({ "telemetryInterval": interval.as_secs().max(1) }));
            device.take_reported(0);
        }
        let player = Player {
            client,
            device,
            options: options.clone(),
            stats: Arc::clone(&stats),
            messages: messages.clone(),
            registry: registry_limit.clone(),
            // Spread the fleet's first readings over the interval instead of all at once.
            offset: Duration::from_millis(
                (member.index as u64 * 7919)
                    % (options.interval.map_or(10, |i| i.as_secs().max(1)) * 1000),
            ),
        };
        tasks.spawn(player.play(shutdown.clone()));
    }
    let _ = shutdown.wait_for(|stop| *stop).await;
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn register(
    service: &ServiceClient,
    members: &[Member],
    limit: Option<&DefaultDirectRateLimiter>,
    stats: &Stats,
) -> Result<(), FleetError> {
    let operation = |member: &Member, mode: ImportMode| ExportImportDevice {
        id: member.id.clone(),
        import_mode: mode,
        etag: None,
        status: Some(DeviceStatus::Enabled),
        status_reason: None,
        authentication: Some(Authentication {
            kind: AuthenticationType::Sas,
            symmetric_key: Some(SymmetricKeyPair {
                primary_key: Some(member.key.to_base64()),
                secondary_key: Some(SymmetricKey::generate().to_base64()),
            }),
            x509_thumbprint: None,
        }),
        capabilities: None,
    };
    for chunk in members.chunks(100) {
        if let Some(limit) = limit {
            acquire(limit, chunk.len()).await;
        }
        let creates: Vec<_> = chunk
            .iter()
            .map(|m| operation(m, ImportMode::Create))
            .collect();
        let result = service.bulk(&creates).await.map_err(FleetError::Register)?;
        let existing: Vec<&Member> = chunk
            .iter()
            .filter(|m| {
                result
                    .errors
                    .iter()
                    .any(|e| e.device_id == m.id.as_str() && e.error_code == "DeviceAlreadyExists")
            })
            .collect();
        if let Some(other) = result
            .errors
            .iter()
            .find(|e| e.error_code != "DeviceAlreadyExists")
        {
            return Err(FleetError::Spec(format!(
                "the hub did not register {}: {} {}",
                other.device_id, other.error_code, other.error_status
            )));
        }
        if !existing.is_empty() {
            // Registered by an earlier run: give them this run's keys.
            let updates: Vec<_> = existing
                .iter()
                .map(|m| operation(m, ImportMode::Update))
                .collect();
            let result = service.bulk(&updates).await.map_err(FleetError::Register)?;
            if let Some(error) = result.errors.first() {
                return Err(FleetError::Spec(format!(
                    "the hub did not update {}: {} {}",
                    error.device_id, error.error_code, error.error_status
                )));
            }
        }
        bump(&stats.registered, chunk.len() as u64);
    }
    Ok(())
}

struct Player {
    client: DeviceClient,
    device: SimulatedDevice,
    options: FleetOptions,
    stats: Arc<Stats>,
    messages: Option<Arc<DefaultDirectRateLimiter>>,
    /// Twin reads and reports count against the registry's rate, with registration.
    registry: Option<Arc<DefaultDirectRateLimiter>>,
    offset: Duration,
}

impl Player {
    async fn play(mut self, mut shutdown: watch::Receiver<bool>) {
        let started = Instant::now();
        let millis = |at: Instant| at.duration_since(started).as_millis() as u64;
        if let Some(limit) = &self.registry {
            limit.until_ready().await;
        }
        if self
            .client
            .update_reported(&self.device.initial_reported())
            .await
            .is_ok()
        {
            bump(&self.stats.reported_updates, 1);
        } else {
            bump(&self.stats.other_failures, 1);
        }
        let mut next_reading = started + self.offset;
        let mut next_c2d = started + self.offset;
        let mut next_twin = started + self.offset;
        let mut buffer: Vec<Message> = Vec::new();
        let mut sequence = 0u64;
        loop {
            let now = Instant::now();
            if now >= next_twin {
                self.check_desired().await;
                next_twin = now + self.options.twin_poll;
            }
            if now >= next_reading {
                if let Some(fields) = self.device.read(millis(now)) {
                    sequence += 1;
                    let body = serde_json::Value::Object(fields).to_string();
                    buffer.push(
                        Message::new(body.into_bytes())
                            .with_message_id(format!("{}-{sequence}", self.client.device_id()))
                            .with_property("model", self.device.model_name()),
                    );
                }
                next_reading += Duration::from_secs(self.device.interval_seconds());
                if next_reading < now {
                    next_reading = now + Duration::from_secs(self.device.interval_seconds());
                }
                if buffer.len() >= self.options.batch.max(1) {
                    self.send(std::mem::take(&mut buffer)).await;
                }
            }
            if now >= next_c2d {
                self.receive_commands(millis(Instant::now())).await;
                self.answer_methods(millis(Instant::now())).await;
                next_c2d = Instant::now() + self.options.c2d_poll;
            }
            if let Some(patch) = self.device.take_reported(millis(Instant::now())) {
                if let Some(limit) = &self.registry {
                    limit.until_ready().await;
                }
                match self.client.update_reported(&patch).await {
                    Ok(()) => bump(&self.stats.reported_updates, 1),
                    Err(_) => bump(&self.stats.other_failures, 1),
                }
            }
            let wake = next_reading.min(next_c2d).min(next_twin);
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    async fn send(&self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        if let Some(limit) = &self.messages {
            acquire(limit, messages.len()).await;
        }
        let result = if messages.len() == 1 {
            self.client.send_event(&messages[0]).await
        } else {
            self.client.send_event_batch(&messages).await
        };
        bump(&self.stats.requests, 1);
        match result {
            Ok(()) => bump(&self.stats.messages_sent, messages.len() as u64),
            Err(_) => bump(&self.stats.send_failures, messages.len() as u64),
        }
    }

    /// Takes every queued command, acting on each as the model says.
    async fn receive_commands(&mut self, now: u64) {
        for _ in 0..10 {
            let message = match self.client.receive().await {
                Ok(Some(message)) => message,
                Ok(None) => return,
                Err(_) => {
                    bump(&self.stats.other_failures, 1);
                    return;
                }
            };
            let outcome = self.device.command(&message.body, now);
            let (settled, counter) = match outcome.disposition {
                Disposition::Complete => (
                    self.client.complete(&message.lock_token).await,
                    &self.stats.commands_completed,
                ),
                Disposition::Reject => (
                    self.client.reject(&message.lock_token).await,
                    &self.stats.commands_rejected,
                ),
                Disposition::Abandon => (
                    self.client.abandon(&message.lock_token).await,
                    &self.stats.commands_abandoned,
                ),
            };
            match settled {
                Ok(()) => bump(counter, 1),
                Err(_) => bump(&self.stats.other_failures, 1),
            }
            if outcome.disposition == Disposition::Abandon {
                // It will be there again; give the device time before taking it once more.
                return;
            }
        }
    }

    /// Answers the direct method calls waiting for the device: its commands by name, with the
    /// HTTP status of what it did (200 done, 400 refused, 503 busy) and the reason.
    async fn answer_methods(&mut self, now: u64) {
        for _ in 0..10 {
            let call = match self.client.receive_method(Duration::ZERO).await {
                Ok(Some(call)) => call,
                Ok(None) => return,
                Err(_) => {
                    bump(&self.stats.other_failures, 1);
                    return;
                }
            };
            let body = serde_json::json!({ "name": call.method_name, "payload": call.payload });
            let outcome = self.device.command(body.to_string().as_bytes(), now);
            let status = match outcome.disposition {
                Disposition::Complete => 200,
                Disposition::Reject => 400,
                Disposition::Abandon => 503,
            };
            let payload = match &outcome.reason {
                Some(reason) => serde_json::json!({ "result": "not done", "reason": reason }),
                None => serde_json::json!({ "result": "done" }),
            };
            match self
                .client
                .respond_method(&call.request_id, status, &payload)
                .await
            {
                Ok(()) => bump(&self.stats.methods_answered, 1),
                Err(_) => bump(&self.stats.other_failures, 1),
            }
        }
    }

    async fn check_desired(&mut self) {
        if let Some(limit) = &self.registry {
            limit.until_ready().await;
        }
        match self.client.desired(None, Duration::ZERO).await {
            Ok(Some(desired)) => {
                self.device.desired(&desired);
                if desired.get("telemetryInterval").is_some() {
                    bump(&self.stats.desired_applied, 1);
                }
            }
            Ok(None) => {}
            Err(_) => bump(&self.stats.other_failures, 1),
        }
    }
}
