//! Processing Kinesis batches exactly once in effect.
//!
//! Per shard, the store keeps the sequence number of the last record applied. A batch skips
//! records at or below it, is cut into sub-batches whose state fits one DynamoDB transaction, and
//! commits each sub-batch's state together with the advanced checkpoint, conditionally on the
//! checkpoint it started from. A batch delivered again, or an overlapping retry after a partial
//! failure, therefore changes nothing that was already applied. Side effects (commands, alert
//! events, dead letters) are sent before the commit with ids derived from the records, so when a
//! commit fails and the batch is processed again they repeat with the same ids and are
//! deduplicated downstream (commands by request id; alert consumers by event id).

use std::collections::BTreeSet;

use aws_lambda_events::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hub_shared::domain::envelope::TelemetryEnvelope;
use hub_shared::error::Chain;
use hub_shared::ports::{
    AnalyticsStore, CommitOutcome, DeviceTags, QueueSender, RuleStore, StateKey, StoreError,
    TagReader,
};

use crate::AnalyticsHandler;
use crate::engine::{Effect, RuleSet, Working};

/// Items per transaction: DynamoDB allows 100, one is the checkpoint.
const MAX_ITEMS_PER_COMMIT: usize = 99;

/// Sequence numbers are decimal strings of varying length; padded, they compare as text.
pub fn padded(sequence_number: &str) -> String {
    format!("{sequence_number:0>64}")
}

/// The shard a record comes from: its stream and shard id (`eventID` is `<shard id>:<sequence>`).
fn shard_of(record: &KinesisEventRecord) -> String {
    let stream = record
        .event_source_arn
        .as_deref()
        .and_then(|arn| arn.rsplit('/').next())
        .unwrap_or("stream");
    let shard = record
        .event_id
        .as_deref()
        .and_then(|id| id.split(':').next())
        .unwrap_or("shard");
    format!("{stream}/{shard}")
}

struct Decoded<'a> {
    sequence_number: &'a str,
    envelope: Result<TelemetryEnvelope, String>,
    record: &'a KinesisEventRecord,
}

fn decode(record: &KinesisEventRecord) -> Result<TelemetryEnvelope, String> {
    let envelope = TelemetryEnvelope::from_record(&record.kinesis.data.0)?;
    if envelope.device_id.as_str() != record.kinesis.partition_key {
        return Err("the envelope's device id differs from the record's partition key".into());
    }
    Ok(envelope)
}

#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("another processor moved the shard checkpoint")]
    CheckpointMoved,
}

impl<A: AnalyticsStore, R: RuleStore, Q: QueueSender, T: TagReader> AnalyticsHandler<A, R, Q, T> {
    /// Handles one batch; failed records are reported so the event source mapping retries from
    /// the first of them, and everything before it counts as processed.
    pub async fn handle_kinesis(&self, event: &KinesisEvent) -> KinesisEventResponse {
        let mut shards: Vec<(String, Vec<&KinesisEventRecord>)> = Vec::new();
        for record in &event.records {
            let shard = shard_of(record);
            match shards.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, records)) => records.push(record),
                None => shards.push((shard, vec![record])),
            }
        }
        let mut response = KinesisEventResponse::default();
        for (shard, records) in shards {
            if let Err((sequence_number, error)) = self.process_shard(&shard, &records).await {
                tracing::warn!(shard, sequence_number, error = %Chain(&error), "batch will be retried from this record");
                let mut failure = KinesisBatchItemFailure::default();
                failure.item_identifier = Some(sequence_number);
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    async fn process_shard<'a>(
        &self,
        shard: &str,
        records: &[&'a KinesisEventRecord],
    ) -> Result<(), (String, BatchError)> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let fail_at = |sequence_number: &str| {
            let sequence_number = sequence_number.to_owned();
            move |error: BatchError| (sequence_number, error)
        };
        let first_sequence = first.kinesis.sequence_number.as_str();
        let mut checkpoint = self
            .store
            .checkpoint(shard)
            .await
            .map_err(|e| fail_at(first_sequence)(e.into()))?;
        let pending: Vec<Decoded<'a>> = records
            .iter()
            .filter(|r| {
                checkpoint
                    .as_ref()
                    .is_none_or(|c| padded(&r.kinesis.sequence_number) > *c)
            })
            .map(|r| Decoded {
                sequence_number: r.kinesis.sequence_number.as_str(),
                envelope: decode(r),
                record: r,
            })
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let rules = self
            .rules()
            .await
            .map_err(|e| fail_at(first_sequence)(e.into()))?;
        let tags = self
            .tags_for(&pending, &rules)
            .await
            .map_err(|e| fail_at(first_sequence)(e.into()))?;
        let rules = RuleSet {
            rules: &rules,
            tags: &tags,
        };

        let mut working = Working::default();
        for sub in self.sub_batches(&pending, rules) {
            let start = sub[0].sequence_number;
            let keys: BTreeSet<StateKey> = sub
                .iter()
                .filter_map(|d| d.envelope.as_ref().ok())
                .flat_map(|e| self.engine.keys(e, rules))
                .filter(|k| !working.contains(k))
                .collect();
            let keys: Vec<StateKey> = keys.into_iter().collect();
            let mut loaded = self
                .store
                .load(&keys)
                .await
                .map_err(|e| fail_at(start)(e.into()))?;
            // A damaged item is left as it is (not reset over): the records that need it go to
            // the dead-letter queue with the reason, to be replayed once it is repaired, and the
            // rest of the batch goes on.
            let mut damaged = std::collections::BTreeMap::new();
            for key in keys {
                match loaded.unreadable.remove(&key) {
                    Some(why) => {
                        damaged.insert(key, why);
                    }
                    None => {
                        let item = loaded.items.remove(&key);
                        working.insert_loaded(key, item);
                    }
                }
            }

            let mut effects = Vec::new();
            let mut poison = Vec::new();
            for decoded in sub {
                match &decoded.envelope {
                    Ok(envelope) => {
                        let blocked = self
                            .engine
                            .keys(envelope, rules)
                            .into_iter()
                            .find_map(|k| damaged.get(&k).map(|why| (k, why)));
                        match blocked {
                            Some((key, why)) => poison.push(dead_letter(
                                shard,
                                decoded,
                                &format!(
                                    "the stored state {key:?} it updates cannot be read: {why}"
                                ),
                            )),
                            None => self
                                .engine
                                .apply(&mut working, envelope, rules, &mut effects),
                        }
                    }
                    Err(reason) => poison.push(dead_letter(shard, decoded, reason)),
                }
            }
            self.send_effects(&poison, &effects)
                .await
                .map_err(fail_at(start))?;

            let end = padded(sub[sub.len() - 1].sequence_number);
            let items = working.take_dirty();
            match self
                .store
                .commit(shard, checkpoint.as_deref(), &end, &items)
                .await
            {
                Ok(CommitOutcome::Committed) => checkpoint = Some(end),
                Ok(CommitOutcome::CheckpointMoved) => {
                    return Err(fail_at(start)(BatchError::CheckpointMoved));
                }
                Err(error) => return Err(fail_at(start)(error.into())),
            }
        }
        Ok(())
    }

    /// The twin tags of the batch's devices (one read per 100 devices), when a rule selects by tag.
    async fn tags_for(
        &self,
        pending: &[Decoded<'_>],
        rules: &[hub_shared::domain::analytics::Rule],
    ) -> Result<DeviceTags, StoreError> {
        if !rules.iter().any(|rule| rule.devices.uses_tags()) {
            return Ok(DeviceTags::new());
        }
        let devices: BTreeSet<(hub_shared::domain::device_id::DeviceId, String)> = pending
            .iter()
            .filter_map(|d| d.envelope.as_ref().ok())
            .map(|e| (e.device_id.clone(), e.device_generation_id.clone()))
            .collect();
        let devices: Vec<_> = devices.into_iter().collect();
        self.tags.tags_of(&devices).await
    }

    /// Cuts records, in order, into runs whose state items fit one transaction.
    fn sub_batches<'b, 'a>(
        &self,
        pending: &'b [Decoded<'a>],
        rules: RuleSet<'_>,
    ) -> Vec<&'b [Decoded<'a>]> {
        let mut batches = Vec::new();
        let mut start = 0;
        let mut keys = BTreeSet::new();
        for (index, decoded) in pending.iter().enumerate() {
            let record_keys = decoded
                .envelope
                .as_ref()
                .map(|e| self.engine.keys(e, rules))
                .unwrap_or_default();
            let added = record_keys.iter().filter(|k| !keys.contains(*k)).count();
            if index > start && keys.len() + added > MAX_ITEMS_PER_COMMIT {
                batches.push(&pending[start..index]);
                start = index;
                keys.clear();
            }
            keys.extend(record_keys);
        }
        batches.push(&pending[start..]);
        batches
    }

    async fn send_effects(&self, poison: &[String], effects: &[Effect]) -> Result<(), BatchError> {
        let (mut commands, mut alerts) = (Vec::new(), Vec::new());
        for effect in effects {
            match effect {
                Effect::Command(request) => commands.push(
                    serde_json::to_string(request)
                        .map_err(|e| StoreError::rejected("encoding a command request", e))?,
                ),
                Effect::Alert(event) => alerts.push(
                    serde_json::to_string(event)
                        .map_err(|e| StoreError::rejected("encoding an alert event", e))?,
                ),
            }
        }
        if !poison.is_empty() {
            tracing::warn!(
                records = poison.len(),
                "unprocessable records dead-lettered"
            );
            self.dead_letters.send_all(poison).await?;
        }
        self.command_requests.send_all(&commands).await?;
        self.alert_events.send_all(&alerts).await?;
        Ok(())
    }
}

/// What the analytics dead-letter queue receives for a record that can never be processed.
fn dead_letter(shard: &str, decoded: &Decoded<'_>, reason: &str) -> String {
    serde_json::json!({
        "reason": reason,
        "shard": shard,
        "sequenceNumber": decoded.sequence_number,
        "partitionKey": decoded.record.kinesis.partition_key,
        "data": BASE64.encode(&decoded.record.kinesis.data.0),
    })
    .to_string()
}
