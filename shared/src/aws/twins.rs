//! Device twins in DynamoDB: one item per device id (`deviceId`), holding the device generation,
//! the twin version (for conditional writes), the twin document, and a copy of its tags.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem};

use crate::aws::registry::{Guard, outbox_item, send_guarded};
use crate::aws::{build_error, corrupt_item, sdk_error};
use crate::domain::device_id::DeviceId;
use crate::domain::registry::LifecycleEvent;
use crate::domain::tag_index;
use crate::domain::twin::Twin;
use crate::ports::{DeviceTags, IdPage, StoreError, TagReader, TwinStore, TwinWrite};

#[derive(Clone)]
pub struct DynamoDbTwinStore {
    client: Client,
    table: String,
    /// The tag index (`tagEntry`, `deviceId`), kept by every twin write when set.
    tag_index: Option<String>,
    /// The registry table, whose outbox takes twin change events in the twin write's
    /// transaction.
    outbox: Option<String>,
}

impl DynamoDbTwinStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            tag_index: None,
            outbox: None,
        }
    }

    /// Writes each change's event to the outbox of the registry `table`, atomically with it.
    pub fn with_outbox(mut self, table: impl Into<String>) -> Self {
        self.outbox = Some(table.into());
        self
    }

    /// Keeps and answers from the tag index in `table` (partition key `tagEntry`, sort key
    /// `deviceId`).
    pub fn with_tag_index(mut self, table: impl Into<String>) -> Self {
        self.tag_index = Some(table.into());
        self
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

impl TwinStore for DynamoDbTwinStore {
    async fn get_twin(&self, id: &DeviceId) -> Result<Option<Twin>, StoreError> {
        const OPERATION: &str = "reading a twin";
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("deviceId", s(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error(OPERATION))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let document = item
            .get("document")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        serde_json::from_str(&document)
            .map(Some)
            .map_err(corrupt_item(OPERATION))
    }

    async fn twins_of(
        &self,
        devices: &[(DeviceId, String)],
    ) -> Result<HashMap<DeviceId, Twin>, StoreError> {
        const OPERATION: &str = "reading twins";
        let mut found = HashMap::new();
        for (device, item) in self
            .items_of(devices, "deviceId, generationId, document", OPERATION)
            .await?
        {
            let document = item
                .get("document")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                .unwrap_or_default();
            let twin = serde_json::from_str(document).map_err(corrupt_item(OPERATION))?;
            found.insert(device, twin);
        }
        Ok(found)
    }

    async fn put_twin(
        &self,
        id: &DeviceId,
        twin: &Twin,
        previous: Option<&Twin>,
        event: Option<&LifecycleEvent>,
    ) -> Result<TwinWrite, StoreError> {
        const OPERATION: &str = "writing a twin";
        let (added, removed) = match &self.tag_index {
            Some(_) => {
                let new = tag_index::entries(&twin.tags);
                let old = previous
                    .map(|p| tag_index::entries(&p.tags))
                    .unwrap_or_default();
                (
                    new.difference(&old).cloned().collect::<Vec<_>>(),
                    old.difference(&new).cloned().collect::<Vec<_>>(),
                )
            }
            None => (Vec::new(), Vec::new()),
        };
        // Index entries go in before the twin and out after it, so the index is always a
        // superset of the twins' tags: a failure in between leaves an extra entry (which queries
        // check against the twin), never a missing one.
        for entry in &added {
            self.put_entry(id, twin, entry).await?;
        }
        let expected = previous.map(|p| (p.version, p.generation_id.as_str()));
        let document =
            serde_json::to_string(twin).map_err(|e| StoreError::rejected(OPERATION, e))?;
        let tags =
            serde_json::to_string(&twin.tags).map_err(|e| StoreError::rejected(OPERATION, e))?;
        let mut put = Put::builder()
            .table_name(&self.table)
            .item("deviceId", s(id.to_string()))
            .item("generationId", s(&twin.generation_id))
            .item("version", AttributeValue::N(twin.version.to_string()))
            .item("document", s(document))
            // Apart, so analytics reads a few bytes of tags rather than whole documents.
            .item("tags", s(tags));
        put = match expected {
            Some((version, generation)) => put
                .condition_expression("version = :version AND generationId = :gen")
                .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
                .expression_attribute_values(":gen", s(generation)),
            // No twin yet, or one left by an earlier generation of the id.
            None => put
                .condition_expression("attribute_not_exists(deviceId) OR generationId <> :gen")
                .expression_attribute_values(":gen", s(&twin.generation_id)),
        };
        let put = put.build().map_err(build_error(OPERATION))?;
        let written = match (event, &self.outbox) {
            (Some(event), Some(outbox)) => {
                let request = self
                    .client
                    .transact_write_items()
                    .set_transact_items(Some(vec![
                        TransactWriteItem::builder().put(put).build(),
                        outbox_item(outbox, event)?,
                    ]));
                send_guarded(request, Guard::First, OPERATION).await?
            }
            _ => {
                let request = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(put.item().clone()))
                    .set_condition_expression(put.condition_expression().map(str::to_owned))
                    .set_expression_attribute_values(put.expression_attribute_values().cloned());
                conditional_write!(request, OPERATION)?
            }
        };
        if !written {
            return Ok(TwinWrite::Conflict);
        }
        for entry in &removed {
            if let Err(error) = self.remove_entry(id, twin, entry).await {
                tracing::warn!(device = %id, entry, error = %crate::error::Chain(&error), "a stale tag index entry stays (queries skip it)");
            }
        }
        Ok(TwinWrite::Written)
    }

    async fn forget_tags(&self, id: &DeviceId, twin: &Twin) -> Result<(), StoreError> {
        for entry in tag_index::entries(&twin.tags) {
            self.remove_entry(id, twin, &entry).await?;
        }
        Ok(())
    }

    async fn tagged(
        &self,
        entry: &str,
        limit: usize,
        after: Option<&DeviceId>,
    ) -> Result<Option<IdPage>, StoreError> {
        const OPERATION: &str = "reading the tag index";
        let Some(table) = &self.tag_index else {
            return Ok(None);
        };
        let mut request = self
            .client
            .query()
            .table_name(table)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .projection_expression("deviceId")
            .expression_attribute_values(":entry", s(entry));
        request = match after {
            Some(after) => request
                .key_condition_expression("tagEntry = :entry AND deviceId > :after")
                .expression_attribute_values(":after", s(after.to_string())),
            None => request.key_condition_expression("tagEntry = :entry"),
        };
        let output = request.send().await.map_err(sdk_error(OPERATION))?;
        Ok(Some(Self::index_page(output, None, limit.max(1))))
    }

    async fn index_device(&self, id: &DeviceId, generation: &str) -> Result<(), StoreError> {
        const OPERATION: &str = "writing a device id index entry";
        let Some(table) = &self.tag_index else {
            return Ok(());
        };
        self.client
            .put_item()
            .table_name(table)
            .item("tagEntry", s(tag_index::id_entry(id.as_str())))
            .item("deviceId", s(id.to_string()))
            .item("generationId", s(generation))
            .item("version", AttributeValue::N("0".into()))
            .send()
            .await
            .map_err(sdk_error(OPERATION))?;
        Ok(())
    }

    async fn forget_device(&self, id: &DeviceId, generation: &str) -> Result<(), StoreError> {
        const OPERATION: &str = "removing a device id index entry";
        let Some(table) = &self.tag_index else {
            return Ok(());
        };
        let request = self
            .client
            .delete_item()
            .table_name(table)
            .key("tagEntry", s(tag_index::id_entry(id.as_str())))
            .key("deviceId", s(id.to_string()))
            .condition_expression("generationId = :gen")
            .expression_attribute_values(":gen", s(generation));
        // A newer generation of the id wrote it: it stays.
        conditional_write!(request, OPERATION).map(|_| ())
    }

    async fn ids_starting_with(
        &self,
        prefix: &str,
        limit: usize,
        after: Option<&DeviceId>,
    ) -> Result<Option<IdPage>, StoreError> {
        const OPERATION: &str = "reading the device id index";
        let Some(table) = &self.tag_index else {
            return Ok(None);
        };
        // From the prefix (or the last id served, read again and dropped: BETWEEN includes it)
        // to the last id the prefix can start.
        let low = after.map_or_else(|| prefix.to_owned(), |a| a.to_string());
        let extra = usize::from(after.is_some());
        let output = self
            .client
            .query()
            .table_name(table)
            .limit(i32::try_from(limit.max(1) + extra).unwrap_or(i32::MAX))
            .projection_expression("deviceId")
            .key_condition_expression("tagEntry = :entry AND deviceId BETWEEN :low AND :high")
            .expression_attribute_values(":entry", s(tag_index::id_entry(prefix)))
            .expression_attribute_values(":low", s(low))
            .expression_attribute_values(":high", s(format!("{prefix}{ID_CEILING}")))
            .send()
            .await
            .map_err(sdk_error(OPERATION))?;
        Ok(Some(Self::index_page(output, after, limit.max(1))))
    }
}

/// Above every character a device id may hold: `prefix` + this bounds the ids starting with
/// `prefix` (DynamoDB compares strings by their UTF-8 bytes).
const ID_CEILING: char = '\u{10FFFF}';

impl DynamoDbTwinStore {
    fn index_page(
        output: aws_sdk_dynamodb::operation::query::QueryOutput,
        skip: Option<&DeviceId>,
        limit: usize,
    ) -> IdPage {
        let mut ids: Vec<DeviceId> = output
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| item.get("deviceId").and_then(|v| v.as_s().ok()))
            .filter_map(|id| DeviceId::parse(id).ok())
            .filter(|id| Some(id) != skip)
            .collect();
        let mut more_after = output
            .last_evaluated_key
            .and_then(|key| key.get("deviceId").and_then(|v| v.as_s().ok()).cloned())
            .and_then(|id| DeviceId::parse(&id).ok());
        if ids.len() > limit {
            ids.truncate(limit);
            more_after = ids.last().cloned();
        }
        IdPage { ids, more_after }
    }

    /// Records that the twin of `id` at `twin.version` has `entry`, unless a later version
    /// already did.
    async fn put_entry(&self, id: &DeviceId, twin: &Twin, entry: &str) -> Result<(), StoreError> {
        const OPERATION: &str = "writing a tag index entry";
        let Some(table) = &self.tag_index else {
            return Ok(());
        };
        let request = self
            .client
            .put_item()
            .table_name(table)
            .item("tagEntry", s(entry))
            .item("deviceId", s(id.to_string()))
            .item("generationId", s(&twin.generation_id))
            .item("version", AttributeValue::N(twin.version.to_string()))
            .condition_expression("attribute_not_exists(tagEntry) OR version < :version")
            .expression_attribute_values(":version", AttributeValue::N(twin.version.to_string()));
        // A later version wrote it already: as good.
        conditional_write!(request, OPERATION).map(|_| ())
    }

    /// Removes `entry` of `id`, unless a writer of a later version than `twin`'s (or of another
    /// generation of the id) put it back.
    async fn remove_entry(
        &self,
        id: &DeviceId,
        twin: &Twin,
        entry: &str,
    ) -> Result<(), StoreError> {
        const OPERATION: &str = "removing a tag index entry";
        let Some(table) = &self.tag_index else {
            return Ok(());
        };
        let request = self
            .client
            .delete_item()
            .table_name(table)
            .key("tagEntry", s(entry))
            .key("deviceId", s(id.to_string()))
            .condition_expression("version <= :version AND generationId = :gen")
            .expression_attribute_values(":version", AttributeValue::N(twin.version.to_string()))
            .expression_attribute_values(":gen", s(&twin.generation_id));
        // A later version put it back: it stays.
        conditional_write!(request, OPERATION).map(|_| ())
    }
}

/// Keys per BatchGetItem request (DynamoDB's limit).
const BATCH_GET_KEYS: usize = 100;

impl DynamoDbTwinStore {
    /// The items of each `(device, generation)` whose twin is of that generation, with the
    /// attributes `projection` names (which must include `deviceId` and `generationId`).
    /// Eventually consistent (half the price): these reads feed rules and lists, where a change
    /// a second old is fine.
    async fn items_of(
        &self,
        devices: &[(DeviceId, String)],
        projection: &str,
        operation: &'static str,
    ) -> Result<Vec<(DeviceId, super::batch_get::Item)>, StoreError> {
        let generations: HashMap<&str, &str> = devices
            .iter()
            .map(|(device, generation)| (device.as_str(), generation.as_str()))
            .collect();
        let mut found = Vec::new();
        for chunk in devices.chunks(BATCH_GET_KEYS) {
            let keys = chunk
                .iter()
                .map(|(device, _)| HashMap::from([("deviceId".to_owned(), s(device.to_string()))]))
                .collect();
            let keys = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .projection_expression(projection)
                .build()
                .map_err(build_error(operation))?;
            let request = HashMap::from([(self.table.clone(), keys)]);
            for (_, item) in
                super::batch_get::batch_get_all(&self.client, request, operation).await?
            {
                let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
                let (Some(device), Some(generation)) = (text("deviceId"), text("generationId"))
                else {
                    continue;
                };
                if generations.get(device.as_str()) != Some(&generation.as_str()) {
                    continue;
                }
                let Ok(device) = DeviceId::parse(device) else {
                    continue;
                };
                found.push((device, item));
            }
        }
        Ok(found)
    }
}

impl TagReader for DynamoDbTwinStore {
    async fn tags_of(&self, devices: &[(DeviceId, String)]) -> Result<DeviceTags, StoreError> {
        const OPERATION: &str = "reading twin tags";
        let mut found = DeviceTags::new();
        for (device, item) in self
            .items_of(devices, "deviceId, generationId, tags", OPERATION)
            .await?
        {
            let tags = match item.get("tags").and_then(|v| v.as_s().ok()) {
                Some(json) => serde_json::from_str(json).map_err(corrupt_item(OPERATION))?,
                None => serde_json::Map::new(),
            };
            found.insert(device, tags);
        }
        Ok(found)
    }
}
