//! Analytics state and rules in DynamoDB.
//!
//! Table `<prefix>-analytics` (pk `pk`, sk `sk`, TTL `ttl`):
//! - `agg#<deviceId>#<window>` / `<window start ms, 15 digits>`: one window's aggregates
//!   (every field's statistics in one item), expiring after the retention period;
//! - `state#<deviceId>` / `-`: the device state;
//! - `checkpoint#<shard>` / `-`: the last sequence number applied for a shard;
//! - `review#<alertId>` / `-`: an operator's review of an alert (acknowledged, closed), apart
//!   from the alert, which the stream processor rewrites whole.
//!
//! Table `<prefix>-alerts` (pk `alertId` = `<ruleId>/<deviceId>`) with a sparse GSI `active` on
//! `activeKey`, present only while the alert is active. Table `<prefix>-rules` (pk `id`).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use serde::{Deserialize, Serialize};

use crate::aws::{build_error, corrupt_item, sdk_error, transaction_error};
use crate::domain::analytics::{
    Alert, AlertReview, DeviceState, Rule, WindowAggregate, WindowSize, alert_id,
};
use crate::domain::device_id::DeviceId;
use crate::domain::timestamp::Timestamp;
use crate::ports::{
    AnalyticsStore, CommitOutcome, LoadedState, RuleStore, RuleWrite, StateItem, StateKey,
    StoreError,
};

const ACTIVE: &str = "active";

#[derive(Clone)]
pub struct DynamoDbAnalyticsStore {
    client: Client,
    analytics_table: String,
    alerts_table: String,
    retention: Duration,
}

impl DynamoDbAnalyticsStore {
    pub fn new(client: Client, tables: AnalyticsTables, retention: Duration) -> Self {
        Self {
            client,
            analytics_table: tables.analytics,
            alerts_table: tables.alerts,
            retention,
        }
    }
}

/// The tables analytics state lives in, by name: both are strings, and a swap would compile.
#[derive(Debug, Clone)]
pub struct AnalyticsTables {
    /// Aggregates, device states and shard checkpoints.
    pub analytics: String,
    pub alerts: String,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn aggregate_pk(device: &DeviceId, window: WindowSize) -> String {
    format!("agg#{device}#{window}")
}

fn window_sk(start: i64) -> String {
    format!("{start:015}")
}

/// Table, and key attributes, of a state item.
fn item_key(key: &StateKey) -> (bool, HashMap<String, AttributeValue>) {
    match key {
        StateKey::Device(device) => (
            true,
            HashMap::from([
                ("pk".to_owned(), s(format!("state#{device}"))),
                ("sk".to_owned(), s("-")),
            ]),
        ),
        StateKey::Aggregate {
            device,
            window,
            start,
        } => (
            true,
            HashMap::from([
                ("pk".to_owned(), s(aggregate_pk(device, *window))),
                ("sk".to_owned(), s(window_sk(*start))),
            ]),
        ),
        StateKey::Alert { rule_id, device } => (
            false,
            HashMap::from([("alertId".to_owned(), s(alert_id(rule_id, device)))]),
        ),
    }
}

#[derive(Serialize, Deserialize)]
struct DeviceItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    state: DeviceState,
}

#[derive(Serialize, Deserialize)]
struct AggregateItem {
    pk: String,
    sk: String,
    ttl: i64,
    #[serde(flatten)]
    aggregate: WindowAggregate,
}

#[derive(Serialize, Deserialize)]
struct ReviewItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    review: AlertReview,
}

fn review_pk(alert_id: &str) -> String {
    format!("review#{alert_id}")
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertItem {
    alert_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    active_key: Option<String>,
    #[serde(flatten)]
    alert: Alert,
}

fn parse<T: for<'de> Deserialize<'de>>(
    item: HashMap<String, AttributeValue>,
    operation: &'static str,
) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(corrupt_item(operation))
}

impl DynamoDbAnalyticsStore {
    fn to_put(&self, item: &StateItem) -> Result<Put, StoreError> {
        const OPERATION: &str = "writing analytics state";
        let (table, attributes) = match item {
            StateItem::Device(state) => (
                &self.analytics_table,
                serde_dynamo::to_item(DeviceItem {
                    pk: format!("state#{}", state.device_id),
                    sk: "-".into(),
                    state: state.clone(),
                }),
            ),
            StateItem::Aggregate(aggregate) => {
                let expires = (aggregate.window_start + aggregate.window.millis()) / 1000
                    + i64::try_from(self.retention.as_secs()).unwrap_or(i64::MAX / 2);
                (
                    &self.analytics_table,
                    serde_dynamo::to_item(AggregateItem {
                        pk: aggregate_pk(&aggregate.device_id, aggregate.window),
                        sk: window_sk(aggregate.window_start),
                        ttl: expires,
                        aggregate: aggregate.clone(),
                    }),
                )
            }
            StateItem::Alert(alert) => (
                &self.alerts_table,
                serde_dynamo::to_item(AlertItem {
                    alert_id: alert.id(),
                    active_key: alert.active.then(|| ACTIVE.to_owned()),
                    alert: alert.clone(),
                }),
            ),
        };
        let attributes = attributes.map_err(|e| StoreError::rejected(OPERATION, e))?;
        Put::builder()
            .table_name(table)
            .set_item(Some(attributes))
            .build()
            .map_err(build_error(OPERATION))
    }

    fn parse_state(
        &self,
        key: &StateKey,
        item: HashMap<String, AttributeValue>,
    ) -> Result<StateItem, StoreError> {
        const OPERATION: &str = "reading analytics state";
        Ok(match key {
            StateKey::Device(_) => StateItem::Device(parse::<DeviceItem>(item, OPERATION)?.state),
            StateKey::Aggregate { .. } => {
                StateItem::Aggregate(parse::<AggregateItem>(item, OPERATION)?.aggregate)
            }
            StateKey::Alert { .. } => StateItem::Alert(parse::<AlertItem>(item, OPERATION)?.alert),
        })
    }
}

impl AnalyticsStore for DynamoDbAnalyticsStore {
    async fn checkpoint(&self, shard: &str) -> Result<Option<String>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.analytics_table)
            .key("pk", s(format!("checkpoint#{shard}")))
            .key("sk", s("-"))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error("reading a shard checkpoint"))?;
        Ok(output
            .item
            .and_then(|item| item.get("seq").and_then(|v| v.as_s().ok()).cloned()))
    }

    async fn load(&self, keys: &[StateKey]) -> Result<LoadedState, StoreError> {
        const OPERATION: &str = "reading analytics state";
        let mut found = LoadedState::default();
        for chunk in keys.chunks(100) {
            let mut by_key: HashMap<(bool, String), StateKey> = HashMap::new();
            let (mut analytics, mut alerts) = (Vec::new(), Vec::new());
            for key in chunk {
                let (is_analytics, attributes) = item_key(key);
                let id = identity(&attributes);
                by_key.insert((is_analytics, id), key.clone());
                if is_analytics {
                    analytics.push(attributes)
                } else {
                    alerts.push(attributes)
                }
            }
            let mut request = HashMap::new();
            for (table, list) in [
                (&self.analytics_table, analytics),
                (&self.alerts_table, alerts),
            ] {
                if !list.is_empty() {
                    let keys = KeysAndAttributes::builder()
                        .set_keys(Some(list))
                        .consistent_read(true)
                        .build()
                        .map_err(build_error(OPERATION))?;
                    request.insert(table.clone(), keys);
                }
            }
            for (table, item) in
                super::batch_get::batch_get_all(&self.client, request, OPERATION).await?
            {
                let is_analytics = table == self.analytics_table;
                let id = identity(&item);
                if let Some(key) = by_key.get(&(is_analytics, id)) {
                    match self.parse_state(key, item) {
                        Ok(state) => {
                            found.items.insert(key.clone(), state);
                        }
                        Err(error) if error.kind == crate::ports::FailureKind::Corrupt => {
                            let why = crate::error::Chain(&error).to_string();
                            found.unreadable.insert(key.clone(), why);
                        }
                        Err(error) => return Err(error),
                    }
                }
            }
        }
        Ok(found)
    }

    async fn commit(
        &self,
        shard: &str,
        expected: Option<&str>,
        checkpoint: &str,
        items: &[StateItem],
    ) -> Result<CommitOutcome, StoreError> {
        const OPERATION: &str = "committing analytics state";
        let mut request = self.client.transact_write_items();
        for item in items {
            request = request
                .transact_items(TransactWriteItem::builder().put(self.to_put(item)?).build());
        }
        let mut update = Update::builder()
            .table_name(&self.analytics_table)
            .key("pk", s(format!("checkpoint#{shard}")))
            .key("sk", s("-"))
            .update_expression("SET seq = :new, updatedAt = :now")
            .expression_attribute_values(":new", s(checkpoint))
            .expression_attribute_values(":now", s(Timestamp::now().to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        update = match expected {
            Some(previous) => update
                .condition_expression("seq = :old")
                .expression_attribute_values(":old", s(previous)),
            None => update.condition_expression("attribute_not_exists(seq)"),
        };
        let update = update.build().map_err(build_error(OPERATION))?;
        match request
            .transact_items(TransactWriteItem::builder().update(update).build())
            .send()
            .await
        {
            Ok(_) => Ok(CommitOutcome::Committed),
            Err(error) => match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled))
                    if cancelled
                        .cancellation_reasons()
                        .last()
                        .and_then(|r| r.code())
                        == Some("ConditionalCheckFailed") =>
                {
                    Ok(CommitOutcome::CheckpointMoved)
                }
                _ => Err(transaction_error(OPERATION)(error)),
            },
        }
    }

    async fn aggregates(
        &self,
        device: &DeviceId,
        window: WindowSize,
        from: i64,
        to: i64,
    ) -> Result<Vec<WindowAggregate>, StoreError> {
        const OPERATION: &str = "querying aggregates";
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.analytics_table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(aggregate_pk(device, window)))
                .expression_attribute_values(":from", s(window_sk(from.max(0))))
                .expression_attribute_values(":to", s(window_sk(to.max(0))))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error(OPERATION))?;
            for item in output.items.unwrap_or_default() {
                found.push(parse::<AggregateItem>(item, OPERATION)?.aggregate);
            }
            match output.last_evaluated_key {
                Some(next) => start = Some(next),
                None => return Ok(found),
            }
        }
    }

    async fn device_state(&self, device: &DeviceId) -> Result<Option<DeviceState>, StoreError> {
        let key = StateKey::Device(device.clone());
        let mut loaded = self.load(std::slice::from_ref(&key)).await?;
        if let Some(why) = loaded.unreadable.remove(&key) {
            return Err(StoreError::corrupt(
                "reading a device state",
                std::io::Error::other(why),
            ));
        }
        Ok(match loaded.items.remove(&key) {
            Some(StateItem::Device(state)) => Some(state),
            _ => None,
        })
    }

    async fn alerts(&self, active_only: bool, limit: usize) -> Result<Vec<Alert>, StoreError> {
        const OPERATION: &str = "listing alerts";
        let page = i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000);
        let items = if active_only {
            self.client
                .query()
                .table_name(&self.alerts_table)
                .index_name("active")
                .key_condition_expression("activeKey = :active")
                .expression_attribute_values(":active", s(ACTIVE))
                .limit(page)
                .send()
                .await
                .map_err(sdk_error(OPERATION))?
                .items
        } else {
            self.client
                .scan()
                .table_name(&self.alerts_table)
                .limit(page)
                .send()
                .await
                .map_err(sdk_error(OPERATION))?
                .items
        };
        items
            .unwrap_or_default()
            .into_iter()
            .map(|item| parse::<AlertItem>(item, OPERATION).map(|a| a.alert))
            .collect()
    }

    async fn reviews(
        &self,
        alert_ids: &[String],
    ) -> Result<HashMap<String, AlertReview>, StoreError> {
        const OPERATION: &str = "reading alert reviews";
        let mut found = HashMap::new();
        for chunk in alert_ids.chunks(100) {
            let keys = chunk
                .iter()
                .map(|id| {
                    HashMap::from([
                        ("pk".to_owned(), s(review_pk(id))),
                        ("sk".to_owned(), s("-")),
                    ])
                })
                .collect();
            let keys = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .build()
                .map_err(build_error(OPERATION))?;
            let request = HashMap::from([(self.analytics_table.clone(), keys)]);
            for (_, item) in
                super::batch_get::batch_get_all(&self.client, request, OPERATION).await?
            {
                let item: ReviewItem = parse(item, OPERATION)?;
                if let Some(id) = item.pk.strip_prefix("review#") {
                    found.insert(id.to_owned(), item.review);
                }
            }
        }
        Ok(found)
    }

    async fn put_review(&self, alert_id: &str, review: &AlertReview) -> Result<(), StoreError> {
        const OPERATION: &str = "writing an alert review";
        let item = serde_dynamo::to_item(ReviewItem {
            pk: review_pk(alert_id),
            sk: "-".into(),
            review: review.clone(),
        })
        .map_err(|e| StoreError::rejected(OPERATION, e))?;
        self.client
            .put_item()
            .table_name(&self.analytics_table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk_error(OPERATION))?;
        Ok(())
    }
}

/// The key attributes of an item as one string, to match BatchGetItem answers to requests.
fn identity(item: &HashMap<String, AttributeValue>) -> String {
    ["pk", "sk", "alertId"]
        .iter()
        .filter_map(|name| item.get(*name).and_then(|v| v.as_s().ok()))
        .cloned()
        .collect::<Vec<_>>()
        .join("\u{0}")
}

#[derive(Clone)]
pub struct DynamoDbRuleStore {
    client: Client,
    table: String,
}

impl DynamoDbRuleStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl RuleStore for DynamoDbRuleStore {
    async fn list(&self) -> Result<Vec<Rule>, StoreError> {
        const OPERATION: &str = "listing rules";
        let mut rules = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error(OPERATION))?;
            for item in output.items.unwrap_or_default() {
                rules.push(parse::<Rule>(item, OPERATION)?);
            }
            match output.last_evaluated_key {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(rules)
    }

    async fn get(&self, id: &str) -> Result<Option<Rule>, StoreError> {
        const OPERATION: &str = "reading a rule";
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error(OPERATION))?;
        output
            .item
            .map(|item| parse::<Rule>(item, OPERATION))
            .transpose()
    }

    async fn put(
        &self,
        rule: &Rule,
        if_match: Option<&str>,
        create_only: bool,
    ) -> Result<RuleWrite, StoreError> {
        const OPERATION: &str = "writing a rule";
        let item = serde_dynamo::to_item(rule).map_err(|e| StoreError::rejected(OPERATION, e))?;
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if create_only {
            request = request.condition_expression("attribute_not_exists(id)");
        } else if let Some(etag) = if_match {
            request = request
                .condition_expression("etag = :etag")
                .expression_attribute_values(":etag", s(etag));
        }
        match request.send().await {
            Ok(_) => Ok(RuleWrite::Written),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(if failed.item().is_some() { RuleWrite::EtagMismatch } else { RuleWrite::NotFound })
                }
                _ => Err(sdk_error(OPERATION)(e)),
            },
        }
    }

    async fn delete(&self, id: &str, if_match: Option<&str>) -> Result<RuleWrite, StoreError> {
        const OPERATION: &str = "deleting a rule";
        let mut request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(id))
            .condition_expression("attribute_exists(id)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(etag) = if_match {
            request = request
                .condition_expression("attribute_exists(id) AND etag = :etag")
                .expression_attribute_values(":etag", s(etag));
        }
        match request.send().await {
            Ok(_) => Ok(RuleWrite::Written),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(if failed.item().is_some() { RuleWrite::EtagMismatch } else { RuleWrite::NotFound })
                }
                _ => Err(sdk_error(OPERATION)(e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::analytics::{FieldStats, Reading};

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(ms).unwrap()
    }

    #[test]
    fn state_items_round_trip_through_dynamodb_attributes() {
        let store = DynamoDbAnalyticsStore::new(
            Client::from_conf(
                aws_sdk_dynamodb::Config::builder()
                    .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
                    .build(),
            ),
            AnalyticsTables {
                analytics: "analytics".into(),
                alerts: "alerts".into(),
            },
            Duration::from_secs(86_400),
        );
        let device = DeviceId::parse("d#1").unwrap();
        let aggregate = WindowAggregate {
            device_id: device.clone(),
            window: "1m".parse().unwrap(),
            window_start: 120_000,
            message_count: 2,
            fields: BTreeMap::from([(
                "env.t".to_owned(),
                FieldStats::new(Reading {
                    value: 1.5,
                    time: t(121_000),
                }),
            )]),
        };
        let state = DeviceState {
            device_id: device.clone(),
            message_count: 3,
            last_message_time: t(5),
            last_activity_time: t(5),
            last_message_id: "m".into(),
            last_values: BTreeMap::from([(
                "x".to_owned(),
                Reading {
                    value: -2.0,
                    time: t(5),
                },
            )]),
            recent_readings: vec![crate::domain::analytics::RecentReading {
                time: t(5),
                values: BTreeMap::from([("x".to_owned(), -2.0)]),
            }],
        };
        let mut alert = Alert::new("hot", &device, "t");
        alert.raise(t(4), 3.0);
        alert.active = true;
        alert.last_value = Some(31.0);
        for (key, item) in [
            (
                StateKey::Aggregate {
                    device: device.clone(),
                    window: aggregate.window,
                    start: 120_000,
                },
                StateItem::Aggregate(aggregate),
            ),
            (StateKey::Device(device.clone()), StateItem::Device(state)),
            (
                StateKey::Alert {
                    rule_id: "hot".into(),
                    device: device.clone(),
                },
                StateItem::Alert(alert),
            ),
        ] {
            let put = store.to_put(&item).unwrap();
            let attributes = put.item().clone();
            let (_, key_attributes) = item_key(&key);
            for (name, value) in &key_attributes {
                assert_eq!(attributes.get(name), Some(value), "{name} of {key:?}");
            }
            assert_eq!(store.parse_state(&key, attributes).unwrap(), item);
        }
    }
}
