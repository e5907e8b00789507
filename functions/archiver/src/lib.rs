//! The `archiver` function: the cold path. Its own Kinesis mapping on the telemetry stream hands
//! it batches gathered over the archive's interval; it writes the messages routed to the archive
//! endpoint as one gzipped JSON-lines object per batch, then moves the shard's checkpoint.
//!
//! Exactly once in the archive: records at or below the checkpoint are skipped, and an object is
//! named after the first record it holds (shard, arrival minute, sequence number), so a batch
//! delivered again, split by bisection or cut differently after a failure starts where the
//! checkpoint left off and overwrites the object an unfinished attempt wrote. Content depends
//! only on the records (gzip without a time stamp), so a repeat writes identical bytes.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;

use aws_lambda_events::kinesis::{KinesisEvent, KinesisEventRecord};
use flate2::Compression;
use flate2::write::GzEncoder;
use hub_shared::DeviceId;
use hub_shared::aws::{Clients, DynamoDbArchiveCheckpoints, DynamoDbTwinStore, S3Archive};
use hub_shared::config::{ConfigError, Env, vars};
use hub_shared::domain::envelope::TelemetryEnvelope;
use hub_shared::error::Chain;
use hub_shared::lambda::{Function, InvocationError};
use hub_shared::ports::{ArchiveCheckpoints, FailureKind, ObjectStore, StoreError, TwinStore};
use hub_shared::routing::archive::{DEFAULT_FILE_NAME_FORMAT, archive_line, object_key};
use hub_shared::routing::{MessageView, RouteTable, twin_document};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct ArchiverConfig {
    pub table: RouteTable,
    pub bucket: String,
    pub checkpoints_table: String,
    pub twins_table: String,
}

impl ArchiverConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let text: String = env.parse_or(vars::ROUTING, "{}".to_owned())?;
        let invalid = |reason: String| ConfigError::Invalid {
            name: vars::ROUTING,
            value: text.chars().take(200).collect(),
            reason,
        };
        let table = RouteTable::from_json(&text).map_err(|e| invalid(e.to_string()))?;
        if table.archive().is_none() {
            return Err(invalid(
                "the routing configuration has no s3 (archive) endpoint".into(),
            ));
        }
        Ok(Self {
            table,
            bucket: env.required(vars::ARCHIVE_BUCKET)?,
            checkpoints_table: env.required(vars::ARCHIVE_CHECKPOINTS_TABLE)?,
            twins_table: env.required(vars::TWINS_TABLE)?,
        })
    }
}

pub type Handler = ArchiverHandler<S3Archive, DynamoDbArchiveCheckpoints, DynamoDbTwinStore>;

/// Builds the function from its configuration, as its `main` does at cold start and the local
/// gateway does for its in-process functions.
pub fn build(config: &ArchiverConfig, clients: &Clients) -> Handler {
    ArchiverHandler {
        table: config.table.clone(),
        objects: S3Archive::new(clients.s3.clone(), &config.bucket),
        checkpoints: DynamoDbArchiveCheckpoints::new(
            clients.dynamodb.clone(),
            &config.checkpoints_table,
        ),
        twins: DynamoDbTwinStore::new(clients.dynamodb.clone(), &config.twins_table),
    }
}

pub struct ArchiverHandler<O, C, T> {
    pub table: RouteTable,
    pub objects: O,
    pub checkpoints: C,
    pub twins: T,
}

/// What one batch wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archived {
    /// Object keys written, with the messages each holds.
    pub objects: Vec<(String, usize)>,
    /// Records skipped as already archived (at or below the checkpoint).
    pub already: usize,
    /// Records that are not telemetry envelopes (left out, logged).
    pub unreadable: usize,
}

/// Sequence numbers are decimal strings of up to 128 digits; padded, they compare as text.
fn padded(sequence_number: &str) -> String {
    format!("{sequence_number:0>128}")
}

/// The record's shard id (`eventID` is `<shard id>:<sequence>`), and its stream.
fn shard_of(record: &KinesisEventRecord) -> (String, String) {
    let stream = record
        .event_source_arn
        .as_deref()
        .and_then(|arn| arn.rsplit('/').next())
        .unwrap_or("stream")
        .to_owned();
    let shard = record
        .event_id
        .as_deref()
        .and_then(|id| id.split(':').next())
        .unwrap_or("shard")
        .to_owned();
    (stream, shard)
}

fn gzip(lines: &[Value]) -> Result<Vec<u8>, std::io::Error> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    for line in lines {
        serde_json::to_writer(&mut encoder, line)?;
        encoder.write_all(b"\n")?;
    }
    encoder.finish()
}

impl<O: ObjectStore, C: ArchiveCheckpoints, T: TwinStore> ArchiverHandler<O, C, T> {
    /// Archives one batch (of one shard, as Kinesis mappings deliver them); an error leaves the
    /// checkpoint where it was, for the batch to be delivered again.
    pub async fn handle_kinesis(&self, event: &KinesisEvent) -> Result<Archived, StoreError> {
        let mut by_shard: BTreeMap<(String, String), Vec<&KinesisEventRecord>> = BTreeMap::new();
        for record in &event.records {
            by_shard.entry(shard_of(record)).or_default().push(record);
        }
        let mut archived = Archived::default();
        for ((stream, shard), mut records) in by_shard {
            records.sort_by_key(|r| padded(&r.kinesis.sequence_number));
            self.archive_shard(&stream, &shard, &records, &mut archived)
                .await?;
        }
        Ok(archived)
    }

    async fn archive_shard(
        &self,
        stream: &str,
        shard: &str,
        records: &[&KinesisEventRecord],
        archived: &mut Archived,
    ) -> Result<(), StoreError> {
        let checkpoint_key = format!("{stream}/{shard}");
        let checkpoint = self.checkpoints.checkpoint(&checkpoint_key).await?;
        let fresh: Vec<&KinesisEventRecord> = records
            .iter()
            .copied()
            .filter(|r| {
                checkpoint
                    .as_deref()
                    .is_none_or(|c| padded(&r.kinesis.sequence_number).as_str() > c)
            })
            .collect();
        archived.already += records.len() - fresh.len();
        let Some(last) = fresh.last() else {
            return Ok(());
        };

        let envelopes: Vec<(&KinesisEventRecord, TelemetryEnvelope)> = fresh
            .iter()
            .filter_map(|r| match TelemetryEnvelope::from_record(&r.kinesis.data.0) {
                Ok(envelope) => Some((*r, envelope)),
                Err(error) => {
                    archived.unreadable += 1;
                    tracing::warn!(sequence = r.kinesis.sequence_number, error = %error, "a record that is not a telemetry envelope is left out of the archive");
                    None
                }
            })
            .collect();
        let twins = self.twins_of(&envelopes).await?;
        let Some((archive, spec)) = self.table.archive() else {
            return Ok(());
        };
        let archived_records: Vec<(&KinesisEventRecord, Value)> = envelopes
            .iter()
            .filter_map(|(record, envelope)| {
                let twin = twins.get(&envelope.device_id);
                let view = MessageView::new(envelope, twin, self.table.reads_body());
                self.table
                    .decide(&view)
                    .endpoints
                    .contains(&archive)
                    .then(|| {
                        let properties = self.table.enriched(envelope, twin, archive);
                        let line =
                            archive_line(envelope, &properties, &record.kinesis.sequence_number);
                        (*record, line)
                    })
            })
            .collect();
        // Named after the first record it holds: a retry that starts at the same checkpoint
        // holds the same first record (however the batch was cut), and overwrites.
        if let Some((first, _)) = archived_records.first() {
            let first = *first;
            let lines: Vec<Value> = archived_records.into_iter().map(|(_, l)| l).collect();
            let arrival = first
                .kinesis
                .approximate_arrival_timestamp
                .0
                .timestamp_millis();
            let arrival =
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(arrival) * 1_000_000)
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let key = object_key(
                spec.file_name_format
                    .as_deref()
                    .unwrap_or(DEFAULT_FILE_NAME_FORMAT),
                self.table.hub_name(),
                shard,
                arrival,
                &first.kinesis.sequence_number,
            );
            let count = lines.len();
            // Compression is the batch's one heavy computation: off the async workers, so
            // other work on the same runtime (the local gateway's functions) goes on.
            let body = tokio::task::spawn_blocking(move || gzip(&lines))
                .await
                .map_err(|e| StoreError::rejected("compressing an archive object", e))?
                .map_err(|e| StoreError::rejected("compressing an archive object", e))?;
            self.objects.put_object(&key, body).await?;
            archived.objects.push((key, count));
        }
        let moved = self
            .checkpoints
            .advance(
                &checkpoint_key,
                checkpoint.as_deref(),
                &padded(&last.kinesis.sequence_number),
            )
            .await?;
        if !moved {
            return Err(StoreError::new(
                "advancing an archive checkpoint",
                FailureKind::Transient,
                std::io::Error::other("another processor moved the shard's archive checkpoint"),
            ));
        }
        Ok(())
    }

    async fn twins_of(
        &self,
        envelopes: &[(&KinesisEventRecord, TelemetryEnvelope)],
    ) -> Result<HashMap<DeviceId, Value>, StoreError> {
        if !self.table.reads_twin() {
            return Ok(HashMap::new());
        }
        let mut devices: Vec<(DeviceId, String)> = envelopes
            .iter()
            .map(|(_, e)| (e.device_id.clone(), e.device_generation_id.clone()))
            .collect();
        devices.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
        devices.dedup();
        Ok(self
            .twins
            .twins_of(&devices)
            .await?
            .into_iter()
            .map(|(id, twin)| (id, twin_document(&twin)))
            .collect())
    }
}

impl<O: ObjectStore, C: ArchiveCheckpoints, T: TwinStore> Function for ArchiverHandler<O, C, T> {
    /// A failed batch is a function error, so the mapping retries it (and bisects it).
    async fn invoke(&self, event: Value) -> Result<Value, InvocationError> {
        let batch: KinesisEvent = hub_shared::lambda::event(event)?;
        match self.handle_kinesis(&batch).await {
            Ok(archived) => {
                tracing::info!(objects = ?archived.objects, already = archived.already, unreadable = archived.unreadable, "archived");
                hub_shared::lambda::response(
                    &aws_lambda_events::streams::KinesisEventResponse::default(),
                )
            }
            Err(error) => {
                tracing::error!(error = %Chain(&error), "the batch was not archived; it is retried");
                Err(InvocationError::Failed(error))
            }
        }
    }
}

#[cfg(test)]
mod tests;
