//! A Kinesis event source mapping (the `analytics` function's, the router's), emulated with the deployed
//! settings: each shard is read in order (from the starting position the first time, then after
//! this gateway's own checkpoint), records are gathered into batches (batch size, batching
//! window), and the function's partial-failure response is honoured as Lambda does: the batch is
//! retried from the first failed record, split in two when the function itself fails (bisect on
//! error), records older than the maximum age are skipped, and after the maximum number of
//! retries the batch is described to the on-failure destination and skipped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::streams::KinesisEventResponse;
use aws_sdk_kinesis::types::{Record, ShardIteratorType};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::hub::{FunctionName, Hub};
use crate::settings::{KinesisMappingSettings, SettingsError};

#[derive(Debug, Clone)]
pub struct KinesisMappingOptions {
    pub function: FunctionName,
    pub stream_name: String,
    pub batch_size: usize,
    /// How long to gather records before invoking with a partial batch.
    pub batching_window: Duration,
    /// `None`: retry until the records are too old.
    pub max_retries: Option<u32>,
    /// `None`: records never get too old.
    pub max_record_age: Option<Duration>,
    pub bisect_on_error: bool,
    /// Where abandoned batches are described.
    pub on_failure_queue_url: String,
    /// Where this gateway keeps its position in each shard; `None` keeps it in memory only.
    pub checkpoint_file: Option<PathBuf>,
    /// Without a checkpoint, start after the newest record (LATEST) instead of at the oldest
    /// (TRIM_HORIZON).
    pub start_at_latest: bool,
    /// Without a checkpoint, start at the first record that arrived at this time or later
    /// (AT_TIMESTAMP); before `start_at_latest`.
    pub start_at: Option<std::time::SystemTime>,
}

impl KinesisMappingOptions {
    /// The mapping as Terraform deploys it.
    pub fn deployed(settings: &KinesisMappingSettings) -> Result<Self, SettingsError> {
        Ok(Self {
            function: crate::event_sources::function_named(&settings.function)?,
            stream_name: settings.stream_name.clone(),
            batch_size: settings.batch_size.max(1),
            batching_window: Duration::from_secs(settings.maximum_batching_window_in_seconds),
            max_retries: u32::try_from(settings.maximum_retry_attempts).ok(),
            max_record_age: u64::try_from(settings.maximum_record_age_in_seconds)
                .ok()
                .map(Duration::from_secs),
            bisect_on_error: settings.bisect_batch_on_function_error,
            on_failure_queue_url: settings.on_failure_queue_url.clone(),
            checkpoint_file: None,
            start_at_latest: settings.starting_position == "LATEST",
            start_at: None,
        })
    }

    /// How long a reader waits between reads of a shard that gave nothing new: a tenth of the
    /// batching window, within 50-500 ms. The emulator's Kinesis is the local bottleneck, and a
    /// mapping that gathers for seconds (the archive's) need not ask 20 times a second.
    fn poll_interval(&self) -> Duration {
        (self.batching_window / 10).clamp(Duration::from_millis(50), Duration::from_millis(500))
    }

    fn retries_exhausted(&self, retries: u32) -> bool {
        self.max_retries.is_some_and(|max| retries > max)
    }
}

/// Reads every shard of the telemetry stream, one reader each, until cancelled (dropping this
/// future stops the readers too).
pub async fn run(hub: Arc<Hub>, options: KinesisMappingOptions) {
    let shards = loop {
        match hub
            .clients
            .kinesis
            .list_shards()
            .stream_name(&options.stream_name)
            .send()
            .await
        {
            Ok(output) => break output.shards.unwrap_or_default(),
            Err(error) => {
                tracing::error!(error = %hub_shared::error::Chain(&error), "cannot list the telemetry stream's shards; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let stream = stream_identity(&hub, &options.stream_name).await;
    let checkpoints = Arc::new(Checkpoints::load(options.checkpoint_file.clone(), &stream));
    let mut readers = JoinSet::new();
    for shard in shards {
        let reader = ShardReader {
            hub: Arc::clone(&hub),
            shard_id: shard.shard_id().to_owned(),
            options: options.clone(),
            checkpoints: Arc::clone(&checkpoints),
        };
        readers.spawn(reader.run());
    }
    while readers.join_next().await.is_some() {}
}

/// The stream's ARN and creation time: a LocalStack restart re-creates the stream under the same
/// name, and positions in the old one mean nothing in the new one.
async fn stream_identity(hub: &Hub, stream_name: &str) -> String {
    match hub
        .clients
        .kinesis
        .describe_stream_summary()
        .stream_name(stream_name)
        .send()
        .await
    {
        Ok(output) => output
            .stream_description_summary
            .map_or_else(String::new, |summary| {
                format!(
                    "{} created {}",
                    summary.stream_arn, summary.stream_creation_timestamp
                )
            }),
        Err(error) => {
            tracing::warn!(error = %hub_shared::error::Chain(&error), "cannot describe the telemetry stream; its saved positions are not trusted");
            String::new()
        }
    }
}

/// This gateway's position in each shard (the emulator's own state, not the function's).
struct Checkpoints {
    file: Option<PathBuf>,
    saved: std::sync::Mutex<SavedCheckpoints>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct SavedCheckpoints {
    /// The stream these positions belong to (see [`stream_identity`]).
    stream: String,
    positions: BTreeMap<String, String>,
}

impl Checkpoints {
    fn load(file: Option<PathBuf>, stream: &str) -> Self {
        let saved: Option<SavedCheckpoints> = file
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .and_then(|text| serde_json::from_str(&text).ok());
        let positions = match saved {
            Some(saved) if !stream.is_empty() && saved.stream == stream => saved.positions,
            Some(_) => {
                tracing::info!(
                    "the telemetry stream is not the one of the saved positions; reading it from the start"
                );
                BTreeMap::new()
            }
            None => BTreeMap::new(),
        };
        Self {
            file,
            saved: std::sync::Mutex::new(SavedCheckpoints {
                stream: stream.to_owned(),
                positions,
            }),
        }
    }

    /// Forgets a shard's position that the stream no longer knows (it starts from the oldest).
    fn forget(&self, shard: &str) {
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        saved.positions.remove(shard);
        self.save(&saved);
    }

    fn get(&self, shard: &str) -> Option<String> {
        self.saved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .positions
            .get(shard)
            .cloned()
    }

    fn set(&self, shard: &str, sequence_number: &str) {
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        saved
            .positions
            .insert(shard.to_owned(), sequence_number.to_owned());
        self.save(&saved);
    }

    fn save(&self, saved: &SavedCheckpoints) {
        if let Some(path) = &self.file {
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| {
                    std::fs::write(
                        path,
                        serde_json::to_string_pretty(saved).unwrap_or_default(),
                    )
                });
            if let Err(error) = written {
                tracing::warn!(%error, path = %path.display(), "cannot save the event source mapping's checkpoint");
            }
        }
    }
}

struct ShardReader {
    hub: Arc<Hub>,
    shard_id: String,
    options: KinesisMappingOptions,
    checkpoints: Arc<Checkpoints>,
}

impl ShardReader {
    async fn iterator(&self) -> Option<String> {
        let mut request = self
            .hub
            .clients
            .kinesis
            .get_shard_iterator()
            .stream_name(&self.options.stream_name)
            .shard_id(&self.shard_id);
        let checkpoint = self.checkpoints.get(&self.shard_id);
        request = match checkpoint.clone() {
            Some(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(sequence),
            None if self.options.start_at.is_some() => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .set_timestamp(
                    self.options
                        .start_at
                        .map(aws_sdk_kinesis::primitives::DateTime::from),
                ),
            None if self.options.start_at_latest => {
                request.shard_iterator_type(ShardIteratorType::Latest)
            }
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        match request.send().await {
            Ok(output) => output.shard_iterator,
            Err(error) => {
                let unknown_position = checkpoint.is_some()
                    && error.as_service_error().is_some_and(|e| {
                        e.is_resource_not_found_exception() || e.is_invalid_argument_exception()
                    });
                if unknown_position {
                    tracing::warn!(shard = self.shard_id, error = %hub_shared::error::Chain(&error), "the saved position is not in the stream; reading the shard from the start");
                    self.checkpoints.forget(&self.shard_id);
                } else {
                    tracing::warn!(shard = self.shard_id, error = %hub_shared::error::Chain(&error), "cannot get a shard iterator");
                }
                None
            }
        }
    }

    async fn run(self) {
        let mut iterator = None;
        let mut batch: Vec<Record> = Vec::new();
        let mut gathering_since = None;
        loop {
            if iterator.is_none() {
                iterator = self.iterator().await;
                if iterator.is_none() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            let limit = i32::try_from(self.options.batch_size.saturating_sub(batch.len()).max(1))
                .unwrap_or(100);
            let read = self
                .hub
                .clients
                .kinesis
                .get_records()
                .set_shard_iterator(iterator.take())
                .limit(limit)
                .send()
                .await;
            match read {
                Ok(output) => {
                    iterator = output.next_shard_iterator.clone();
                    if !output.records.is_empty() && gathering_since.is_none() {
                        gathering_since = Some(tokio::time::Instant::now());
                    }
                    batch.extend(output.records);
                }
                Err(error) => {
                    tracing::warn!(shard = self.shard_id, error = %hub_shared::error::Chain(&error), "reading the shard failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
            let window_over = gathering_since
                .is_some_and(|since| since.elapsed() >= self.options.batching_window);
            if !batch.is_empty() && (batch.len() >= self.options.batch_size || window_over) {
                let records = std::mem::take(&mut batch);
                gathering_since = None;
                let last = records.last().map(|r| r.sequence_number().to_owned());
                self.deliver(records).await;
                if let Some(last) = last {
                    self.checkpoints.set(&self.shard_id, &last);
                }
            } else if batch.is_empty() || !window_over {
                tokio::time::sleep(self.options.poll_interval()).await;
            }
        }
    }

    /// Invokes the function until the batch is processed or given up.
    async fn deliver(&self, records: Vec<Record>) {
        let mut pending = records;
        let mut retries = 0;
        while !pending.is_empty() {
            let expired = self.expired(&pending);
            if expired > 0 {
                let rest = pending.split_off(expired);
                self.give_up(&pending, "RecordAgeExceeded", retries).await;
                pending = rest;
                continue;
            }
            let event = self.event(&pending);
            let invoked = match self.options.function {
                FunctionName::Analytics => self.hub.invoke_analytics(event).await,
                other => self.hub.invoke(other, event).await,
            };
            let outcome = invoked.map_err(|e| e.to_string()).and_then(|response| {
                serde_json::from_value::<KinesisEventResponse>(response)
                    .map_err(|e| format!("malformed batch response: {e}"))
            });
            match outcome {
                Ok(response) if response.batch_item_failures.is_empty() => return,
                Ok(response) => {
                    // Retry from the first failed record; everything before it is done.
                    let failed: Vec<String> = response
                        .batch_item_failures
                        .into_iter()
                        .filter_map(|f| f.item_identifier)
                        .collect();
                    let position = pending
                        .iter()
                        .position(|r| failed.iter().any(|f| f == r.sequence_number()))
                        .unwrap_or(0);
                    pending.drain(..position);
                }
                Err(error) => {
                    tracing::warn!(
                        shard = self.shard_id,
                        error,
                        records = pending.len(),
                        function = self.options.function.as_str(),
                        "the function failed on a Kinesis batch"
                    );
                    if self.options.bisect_on_error
                        && pending.len() > 1
                        && !self.options.retries_exhausted(retries + 1)
                    {
                        let second = pending.split_off(pending.len() / 2);
                        Box::pin(self.deliver(pending)).await;
                        Box::pin(self.deliver(second)).await;
                        return;
                    }
                }
            }
            retries += 1;
            if self.options.retries_exhausted(retries) {
                self.give_up(&pending, "RetryAttemptsExhausted", retries)
                    .await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100 * u64::from(retries.min(50)))).await;
        }
    }

    /// How many of the records, from the first, are older than the mapping's maximum age.
    fn expired(&self, records: &[Record]) -> usize {
        let Some(max_age) = self.options.max_record_age else {
            return 0;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        records
            .iter()
            .take_while(|r| {
                r.approximate_arrival_timestamp()
                    .is_some_and(|t| now - t.as_secs_f64() > max_age.as_secs_f64())
            })
            .count()
    }

    /// Describes an abandoned batch to the on-failure destination, as Lambda does.
    async fn give_up(&self, records: &[Record], condition: &str, retries: u32) {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return;
        };
        tracing::error!(
            shard = self.shard_id,
            records = records.len(),
            condition,
            "giving up on a batch"
        );
        let body = json!({
            "requestContext": { "condition": condition, "approximateInvokeCount": retries + 1 },
            "KinesisBatchInfo": {
                "shardId": self.shard_id,
                "startSequenceNumber": first.sequence_number(),
                "endSequenceNumber": last.sequence_number(),
                "batchSize": records.len(),
                "streamArn": self.stream_arn(),
            },
        });
        let sent = self
            .hub
            .clients
            .sqs
            .send_message()
            .queue_url(&self.options.on_failure_queue_url)
            .message_body(body.to_string())
            .send()
            .await;
        if let Err(error) = sent {
            tracing::error!(error = %hub_shared::error::Chain(&error), "cannot report the abandoned batch");
        }
    }

    fn stream_arn(&self) -> String {
        format!(
            "arn:aws:kinesis:local:000000000000:stream/{}",
            self.options.stream_name
        )
    }

    /// The event Lambda would pass: Kinesis records of this shard.
    fn event(&self, records: &[Record]) -> Value {
        let arn = self.stream_arn();
        let records: Vec<Value> = records
            .iter()
            .map(|r| {
                let arrival = r
                    .approximate_arrival_timestamp()
                    .map_or(0.0, |t| t.as_secs_f64());
                json!({
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": r.partition_key(),
                        "sequenceNumber": r.sequence_number(),
                        "data": BASE64.encode(r.data().as_ref()),
                        "approximateArrivalTimestamp": arrival,
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": format!("{}:{}", self.shard_id, r.sequence_number()),
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": "arn:aws:iam::000000000000:role/local",
                    "awsRegion": "local",
                    "eventSourceARN": arn,
                })
            })
            .collect();
        json!({ "Records": records })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_survive_a_restart_but_not_a_recreated_stream() {
        let dir = std::env::temp_dir().join(format!("hub-mapping-{}", uuid::Uuid::new_v4()));
        let file = dir.join("kinesis-mapping.json");
        let first = Checkpoints::load(Some(file.clone()), "arn:stream created 1");
        first.set("shard-0", "42");
        first.set("shard-1", "7");

        let restarted = Checkpoints::load(Some(file.clone()), "arn:stream created 1");
        assert_eq!(restarted.get("shard-0").as_deref(), Some("42"));
        restarted.forget("shard-0");
        let after_forget = Checkpoints::load(Some(file.clone()), "arn:stream created 1");
        assert_eq!(after_forget.get("shard-0"), None);
        assert_eq!(after_forget.get("shard-1").as_deref(), Some("7"));

        let recreated = Checkpoints::load(Some(file.clone()), "arn:stream created 2");
        assert_eq!(
            recreated.get("shard-1"),
            None,
            "positions of another stream"
        );
        let unknown = Checkpoints::load(Some(file), "");
        assert_eq!(
            unknown.get("shard-1"),
            None,
            "an unknown stream trusts nothing"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
