//! The per-device cloud-to-device queues in DynamoDB.
//!
//! Table `<prefix>-commands`: partition key `queue` = `"<deviceId>/<generationId>"` (device ids
//! cannot contain `/`), sort key `seq` = the per-device sequence number. The queue head (last
//! sequence number, depth) lives on the device's registry item as `c2dNextSeq` and
//! `cloudToDeviceMessageCount`, so an append is one transaction: bump the head if it is unchanged
//! and below the depth limit, and put the message. Settling deletes (or marks) the message and
//! decrements the depth in one transaction as well. A sparse GSI `due` (`dueShard`, `dueAt`) lets
//! the sweeper find expired messages and settled records whose feedback is still to be sent.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, TransactWriteItem, Update,
};
use serde::{Deserialize, Serialize};

use crate::aws::{build_error, corrupt_item, sdk_error, transaction_error};
use crate::domain::command::{AckMode, Lock, LockToken, Outcome, QueuedCommand};
use crate::domain::device_id::DeviceId;
use crate::domain::envelope::Properties;
use crate::domain::timestamp::Timestamp;
use crate::ports::{
    AppendOutcome, Candidate, CommandStore, QueueHead, QueueKey, SettleCondition, SettleOutcome,
    StoreError, StoredCommand,
};

/// Partitions of the `due` index; spreads its writes.
const DUE_SHARDS: u32 = 8;
/// How long a settled record waits before the sweeper treats its feedback as lost in transit.
const SETTLED_GRACE_MS: i64 = 30_000;
/// How long items outlive their expiry before DynamoDB's TTL removes them (a backstop only).
const TTL_MARGIN_SECS: i64 = 7 * 24 * 3600;
/// How long idempotency keys of command requests are remembered.
const IDEMPOTENCY_TTL_SECS: i64 = 4 * 24 * 3600;

const QUEUED: &str = "queued";
const SETTLED: &str = "settled";

/// The tables the queues live in, by name: both are strings, and a swap would compile.
#[derive(Debug, Clone)]
pub struct CommandTables {
    /// One item per queued message.
    pub commands: String,
    /// Where the queue heads live (on the devices' items).
    pub registry: String,
}

#[derive(Clone)]
pub struct DynamoDbCommandStore {
    client: Client,
    commands_table: String,
    registry_table: String,
}

impl DynamoDbCommandStore {
    pub fn new(client: Client, tables: CommandTables) -> Self {
        Self {
            client,
            commands_table: tables.commands,
            registry_table: tables.registry,
        }
    }
}

fn queue_id(queue: &QueueKey) -> String {
    format!("{}/{}", queue.device_id, queue.generation_id)
}

fn due_shard(queue: &QueueKey, sequence_number: u64) -> String {
    let hash = queue_id(queue).bytes().fold(sequence_number, |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    (hash % u64::from(DUE_SHARDS)).to_string()
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key(queue: &QueueKey, sequence_number: u64) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("queue".to_owned(), s(queue_id(queue))),
        ("seq".to_owned(), n(sequence_number)),
    ])
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommandItem {
    queue: String,
    seq: u64,
    device_id: String,
    generation_id: String,
    message_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    correlation_id: Option<String>,
    #[serde(default)]
    properties: Properties,
    body: serde_bytes::ByteBuf,
    ack: AckMode,
    enqueued_time: Timestamp,
    expires_at: i64,
    delivery_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lock_token: Option<String>,
    #[serde(default)]
    locked_until: i64,
    state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
    due_shard: String,
    due_at: i64,
    ttl: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("stored command item is malformed: {0}")]
struct MalformedItem(String);

impl CommandItem {
    fn from_command(command: &QueuedCommand) -> Self {
        let queue = QueueKey {
            device_id: command.device_id.clone(),
            generation_id: command.generation_id.clone(),
        };
        Self {
            queue: queue_id(&queue),
            seq: command.sequence_number,
            device_id: command.device_id.to_string(),
            generation_id: command.generation_id.clone(),
            message_id: command.message_id.clone(),
            correlation_id: command.correlation_id.clone(),
            properties: command.properties.clone(),
            body: serde_bytes::ByteBuf::from(command.body.clone()),
            ack: command.ack,
            enqueued_time: command.enqueued_time,
            expires_at: command.expires_at.unix_millis(),
            delivery_count: command.delivery_count,
            lock_token: None,
            locked_until: 0,
            state: QUEUED.to_owned(),
            outcome: None,
            due_shard: due_shard(&queue, command.sequence_number),
            due_at: command.expires_at.unix_millis(),
            ttl: command.expires_at.unix_seconds() + TTL_MARGIN_SECS,
        }
    }

    fn into_stored(self) -> Result<StoredCommand, MalformedItem> {
        let device_id =
            DeviceId::parse(&self.device_id).map_err(|e| MalformedItem(e.to_string()))?;
        let millis = |ms: i64| {
            Timestamp::from_unix_millis(ms).ok_or_else(|| MalformedItem(format!("time {ms}")))
        };
        let lock = match (self.lock_token, self.locked_until) {
            (Some(token), until) if until > 0 => Some(Lock {
                token: LockToken::parse(&token).ok_or_else(|| MalformedItem("lockToken".into()))?,
                until: millis(until)?,
            }),
            _ => None,
        };
        let settled = if self.state == SETTLED {
            Some(self.outcome.unwrap_or(Outcome::Expired))
        } else {
            None
        };
        Ok(StoredCommand {
            command: QueuedCommand {
                device_id,
                generation_id: self.generation_id,
                sequence_number: self.seq,
                message_id: self.message_id,
                correlation_id: self.correlation_id,
                properties: self.properties,
                body: self.body.into_vec(),
                ack: self.ack,
                enqueued_time: self.enqueued_time,
                expires_at: millis(self.expires_at)?,
                delivery_count: self.delivery_count,
                lock,
            },
            settled,
        })
    }
}

/// The command a conditional lock or unlock left (`None` when its condition failed).
fn updated_command(
    result: Result<
        aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
        aws_sdk_dynamodb::error::SdkError<
            aws_sdk_dynamodb::operation::update_item::UpdateItemError,
        >,
    >,
    operation: &'static str,
) -> Result<Option<QueuedCommand>, StoreError> {
    match result {
        Ok(output) => match output.attributes {
            Some(item) => parse_item(item, operation).map(|stored| Some(stored.command)),
            None => Ok(None),
        },
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(sdk_error(operation)(e)),
    }
}

fn parse_item(
    item: HashMap<String, AttributeValue>,
    operation: &'static str,
) -> Result<StoredCommand, StoreError> {
    let item: CommandItem = serde_dynamo::from_item(item).map_err(corrupt_item(operation))?;
    item.into_stored().map_err(corrupt_item(operation))
}

/// The cancellation reason codes of a cancelled transaction, or `None` if the error is another one.
fn cancellation_codes(
    error: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError>,
) -> Option<Vec<String>> {
    match error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => Some(
            cancelled
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_owned())
                .collect(),
        ),
        _ => None,
    }
}

impl DynamoDbCommandStore {
    /// Decrements the queue depth on the registry item, if the device generation still exists.
    fn release_depth(&self, queue: &QueueKey) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.registry_table)
            .key("deviceId", s(queue.device_id.to_string()))
            .update_expression("SET cloudToDeviceMessageCount = cloudToDeviceMessageCount - :one")
            .condition_expression("generationId = :gen AND cloudToDeviceMessageCount > :zero")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":gen", s(&queue.generation_id))
            .build()
            .map_err(build_error("settling a command"))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn settle_item(
        &self,
        queue: &QueueKey,
        sequence_number: u64,
        condition: &SettleCondition,
        outcome: Outcome,
        keep_record: bool,
        now: Timestamp,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut values = HashMap::from([(":queued".to_owned(), s(QUEUED))]);
        let condition_expression = match condition {
            SettleCondition::LockedBy(token) => {
                values.insert(":token".into(), s(token.as_str()));
                values.insert(":now".into(), n(now.unix_millis()));
                "#state = :queued AND lockToken = :token AND lockedUntil > :now"
            }
            SettleCondition::Unlocked => {
                values.insert(":now".into(), n(now.unix_millis()));
                "#state = :queued AND lockedUntil <= :now"
            }
            SettleCondition::Queued => "#state = :queued",
        };
        let names = HashMap::from([("#state".to_owned(), "state".to_owned())]);
        if keep_record {
            values.insert(":settled".into(), s(SETTLED));
            values.insert(":outcome".into(), s(outcome.as_str()));
            values.insert(":due".into(), n(now.unix_millis() + SETTLED_GRACE_MS));
            values.insert(":zero".into(), n(0));
            let update = Update::builder()
                .table_name(&self.commands_table)
                .set_key(Some(key(queue, sequence_number)))
                .update_expression("SET #state = :settled, outcome = :outcome, dueAt = :due, lockedUntil = :zero REMOVE lockToken")
                .condition_expression(condition_expression)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .build()
                .map_err(build_error("settling a command"))?;
            Ok(TransactWriteItem::builder().update(update).build())
        } else {
            let delete = Delete::builder()
                .table_name(&self.commands_table)
                .set_key(Some(key(queue, sequence_number)))
                .condition_expression(condition_expression)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .build()
                .map_err(build_error("settling a command"))?;
            Ok(TransactWriteItem::builder().delete(delete).build())
        }
    }
}

impl CommandStore for DynamoDbCommandStore {
    async fn queue_head(&self, device: &DeviceId) -> Result<Option<QueueHead>, StoreError> {
        const OPERATION: &str = "reading a device's command queue";
        let output = self
            .client
            .get_item()
            .table_name(&self.registry_table)
            .key("deviceId", s(device.to_string()))
            .consistent_read(true)
            .projection_expression("generationId, c2dNextSeq, cloudToDeviceMessageCount")
            .send()
            .await
            .map_err(sdk_error(OPERATION))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Head {
            generation_id: String,
            #[serde(default)]
            c2d_next_seq: u64,
            #[serde(default)]
            cloud_to_device_message_count: u32,
        }
        let head: Head = serde_dynamo::from_item(item).map_err(corrupt_item(OPERATION))?;
        Ok(Some(QueueHead {
            queue: QueueKey {
                device_id: device.clone(),
                generation_id: head.generation_id,
            },
            last_sequence_number: head.c2d_next_seq,
            depth: head.cloud_to_device_message_count,
        }))
    }

    async fn append(
        &self,
        head: &QueueHead,
        command: &QueuedCommand,
        max_depth: u32,
        idempotency_key: Option<&str>,
    ) -> Result<AppendOutcome, StoreError> {
        const OPERATION: &str = "enqueuing a command";
        let bump = Update::builder()
            .table_name(&self.registry_table)
            .key("deviceId", s(head.queue.device_id.to_string()))
            .update_expression("SET c2dNextSeq = :next, cloudToDeviceMessageCount = cloudToDeviceMessageCount + :one")
            .condition_expression(
                "generationId = :gen AND cloudToDeviceMessageCount < :limit \
                 AND (c2dNextSeq = :last OR (attribute_not_exists(c2dNextSeq) AND :last = :zero))",
            )
            .expression_attribute_values(":next", n(command.sequence_number))
            .expression_attribute_values(":last", n(head.last_sequence_number))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(max_depth))
            .expression_attribute_values(":gen", s(&head.queue.generation_id))
            .build()
            .map_err(build_error(OPERATION))?;
        let item = serde_dynamo::to_item(CommandItem::from_command(command))
            .map_err(|e| StoreError::rejected(OPERATION, e))?;
        let put = Put::builder()
            .table_name(&self.commands_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(queue)")
            .build()
            .map_err(build_error(OPERATION))?;
        let mut request = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(bump).build())
            .transact_items(TransactWriteItem::builder().put(put).build());
        if let Some(request_key) = idempotency_key {
            let expires = Timestamp::now().unix_seconds() + IDEMPOTENCY_TTL_SECS;
            let marker = Put::builder()
                .table_name(&self.commands_table)
                .item("queue", s(format!("request#{request_key}")))
                .item("seq", n(0))
                .item("ttl", n(expires))
                .condition_expression("attribute_not_exists(queue)")
                .build()
                .map_err(build_error(OPERATION))?;
            request = request.transact_items(TransactWriteItem::builder().put(marker).build());
        }
        match request.send().await {
            Ok(_) => Ok(AppendOutcome::Appended),
            Err(error) => match cancellation_codes(&error) {
                Some(codes)
                    if codes.get(2).map(String::as_str) == Some("ConditionalCheckFailed") =>
                {
                    Ok(AppendOutcome::Duplicate)
                }
                // The head changed, the device went, or another transaction touched it: re-read.
                Some(_) => Ok(AppendOutcome::Conflict),
                None => Err(sdk_error(OPERATION)(error)),
            },
        }
    }

    async fn candidates(&self, queue: &QueueKey) -> Result<Vec<Candidate>, StoreError> {
        const OPERATION: &str = "reading a command queue";
        let mut candidates = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.commands_table)
                .key_condition_expression("queue = :q")
                .filter_expression("#state = :queued")
                .projection_expression("seq, ack, deliveryCount, lockedUntil, expiresAt")
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":q", s(queue_id(queue)))
                .expression_attribute_values(":queued", s(QUEUED))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error(OPERATION))?;
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Projected {
                seq: u64,
                ack: AckMode,
                delivery_count: u32,
                #[serde(default)]
                locked_until: i64,
                expires_at: i64,
            }
            for item in output.items.unwrap_or_default() {
                let p: Projected =
                    serde_dynamo::from_item(item).map_err(corrupt_item(OPERATION))?;
                candidates.push(Candidate {
                    sequence_number: p.seq,
                    ack: p.ack,
                    delivery_count: p.delivery_count,
                    locked_until: (p.locked_until > 0)
                        .then(|| Timestamp::from_unix_millis(p.locked_until))
                        .flatten(),
                    expires_at: Timestamp::from_unix_millis(p.expires_at)
                        .unwrap_or(Timestamp::NEVER),
                });
            }
            match output.last_evaluated_key {
                Some(next) => start = Some(next),
                None => return Ok(candidates),
            }
        }
    }

    async fn lock(
        &self,
        queue: &QueueKey,
        sequence_number: u64,
        seen_delivery_count: u32,
        token: &LockToken,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<QueuedCommand>, StoreError> {
        const OPERATION: &str = "locking a command";
        let result = self
            .client
            .update_item()
            .table_name(&self.commands_table)
            .set_key(Some(key(queue, sequence_number)))
            .update_expression("SET lockToken = :token, lockedUntil = :until, deliveryCount = deliveryCount + :one")
            .condition_expression(
                "#state = :queued AND lockedUntil <= :now AND deliveryCount = :seen AND expiresAt > :now",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":token", s(token.as_str()))
            .expression_attribute_values(":until", n(until.unix_millis()))
            .expression_attribute_values(":now", n(now.unix_millis()))
            .expression_attribute_values(":seen", n(seen_delivery_count))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":queued", s(QUEUED))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        updated_command(result, OPERATION)
    }

    async fn unlock(
        &self,
        queue: &QueueKey,
        token: &LockToken,
        now: Timestamp,
    ) -> Result<Option<QueuedCommand>, StoreError> {
        const OPERATION: &str = "abandoning a command";
        let result = self
            .client
            .update_item()
            .table_name(&self.commands_table)
            .set_key(Some(key(queue, token.sequence_number())))
            .update_expression("SET lockedUntil = :zero REMOVE lockToken")
            .condition_expression("#state = :queued AND lockToken = :token AND lockedUntil > :now")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":token", s(token.as_str()))
            .expression_attribute_values(":now", n(now.unix_millis()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":queued", s(QUEUED))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        updated_command(result, OPERATION)
    }

    async fn settle(
        &self,
        queue: &QueueKey,
        sequence_number: u64,
        condition: &SettleCondition,
        outcome: Outcome,
        keep_record: bool,
        now: Timestamp,
    ) -> Result<SettleOutcome, StoreError> {
        const OPERATION: &str = "settling a command";
        let settle =
            self.settle_item(queue, sequence_number, condition, outcome, keep_record, now)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(settle.clone())
            .transact_items(self.release_depth(queue)?)
            .send()
            .await;
        let codes = match result {
            Ok(_) => return Ok(SettleOutcome::Settled),
            Err(error) => {
                let Some(codes) = cancellation_codes(&error) else {
                    return Err(transaction_error(OPERATION)(error));
                };
                codes
            }
        };
        if codes.first().map(String::as_str) == Some("ConditionalCheckFailed") {
            return Ok(SettleOutcome::ConditionFailed);
        }
        if codes.get(1).map(String::as_str) != Some("ConditionalCheckFailed") {
            let reasons: Vec<Option<&str>> = codes.iter().map(|c| Some(c.as_str())).collect();
            return Err(StoreError::new(
                OPERATION,
                crate::aws::failures::cancellation_kind(&reasons),
                MalformedItem(format!("transaction cancelled: {codes:?}")),
            ));
        }
        // The device was deleted or registered again: this queue is an orphan with no depth to
        // keep, so settle the message alone.
        let single = self
            .client
            .transact_write_items()
            .transact_items(settle)
            .send()
            .await;
        match single {
            Ok(_) => Ok(SettleOutcome::Settled),
            Err(error) => match cancellation_codes(&error) {
                Some(_) => Ok(SettleOutcome::ConditionFailed),
                None => Err(sdk_error(OPERATION)(error)),
            },
        }
    }

    async fn get(
        &self,
        queue: &QueueKey,
        sequence_number: u64,
    ) -> Result<Option<StoredCommand>, StoreError> {
        const OPERATION: &str = "reading a command";
        let output = self
            .client
            .get_item()
            .table_name(&self.commands_table)
            .set_key(Some(key(queue, sequence_number)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error(OPERATION))?;
        output
            .item
            .map(|item| parse_item(item, OPERATION))
            .transpose()
    }

    async fn delete(&self, queue: &QueueKey, sequence_number: u64) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.commands_table)
            .set_key(Some(key(queue, sequence_number)))
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error("deleting a settled command"))
    }

    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<(QueueKey, u64)>, StoreError> {
        const OPERATION: &str = "finding due commands";
        let mut due = Vec::new();
        for shard in 0..DUE_SHARDS {
            let output = self
                .client
                .query()
                .table_name(&self.commands_table)
                .index_name("due")
                .key_condition_expression("dueShard = :shard AND dueAt <= :now")
                .expression_attribute_values(":shard", s(shard.to_string()))
                .expression_attribute_values(":now", n(now.unix_millis()))
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(sdk_error(OPERATION))?;
            for item in output.items.unwrap_or_default() {
                let queue = item.get("queue").and_then(|v| v.as_s().ok());
                let seq = item
                    .get("seq")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let parsed =
                    queue
                        .and_then(|q| q.split_once('/'))
                        .and_then(|(device, generation)| {
                            DeviceId::parse(device).ok().map(|device_id| QueueKey {
                                device_id,
                                generation_id: generation.to_owned(),
                            })
                        });
                if let (Some(queue), Some(seq)) = (parsed, seq) {
                    due.push((queue, seq));
                }
            }
            if due.len() >= limit {
                break;
            }
        }
        due.truncate(limit);
        Ok(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_through_dynamodb_attributes() {
        let command = QueuedCommand {
            device_id: DeviceId::parse("d-1").unwrap(),
            generation_id: "638".into(),
            sequence_number: 7,
            message_id: "m".into(),
            correlation_id: Some("c".into()),
            properties: Properties::from([("k".into(), "v".into())]),
            body: vec![0, 1, 255],
            ack: AckMode::Full,
            enqueued_time: Timestamp::from_unix_millis(1_000).unwrap(),
            expires_at: Timestamp::from_unix_millis(61_000).unwrap(),
            delivery_count: 0,
            lock: None,
        };
        let item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(CommandItem::from_command(&command)).unwrap();
        assert!(
            matches!(item["body"], AttributeValue::B(_)),
            "bodies are stored as binary"
        );
        assert_eq!(item["queue"], s("d-1/638"));
        assert_eq!(item["dueAt"], n(61_000));
        let stored = parse_item(item, "test").unwrap();
        assert_eq!(
            stored,
            StoredCommand {
                command,
                settled: None
            }
        );
    }

    #[test]
    fn due_shards_are_spread_and_stable() {
        let queue = QueueKey {
            device_id: DeviceId::parse("d").unwrap(),
            generation_id: "1".into(),
        };
        let shards: std::collections::BTreeSet<String> =
            (0..64).map(|seq| due_shard(&queue, seq)).collect();
        assert_eq!(shards.len(), DUE_SHARDS as usize);
        assert_eq!(due_shard(&queue, 5), due_shard(&queue, 5));
    }
}
