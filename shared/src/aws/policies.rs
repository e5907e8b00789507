//! Shared access policies in DynamoDB: one item per policy, keyed by `keyName`. Terraform creates
//! the built-in policies with fresh keys at deploy time.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Deserialize;

use crate::aws::{corrupt_item, sdk_error};
use crate::domain::policy::AccessPolicy;
use crate::domain::sas::SymmetricKey;
use crate::ports::{KeySlot, PolicyStore, StoreError};

#[derive(Clone)]
pub struct DynamoDbPolicyStore {
    client: Client,
    table: String,
}

impl DynamoDbPolicyStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyItem {
    key_name: String,
    rights: String,
    primary_key: String,
    secondary_key: String,
}

#[derive(Debug, thiserror::Error)]
#[error("stored policy {policy} has an invalid {field}")]
struct InvalidPolicy {
    policy: String,
    field: &'static str,
}

fn parse_policy(
    item: std::collections::HashMap<String, AttributeValue>,
    operation: &'static str,
) -> Result<AccessPolicy, StoreError> {
    let item: PolicyItem = serde_dynamo::from_item(item).map_err(corrupt_item(operation))?;
    let invalid = |field| {
        StoreError::corrupt(
            operation,
            InvalidPolicy {
                policy: item.key_name.clone(),
                field,
            },
        )
    };
    Ok(AccessPolicy {
        rights: item.rights.parse().map_err(|_| invalid("rights"))?,
        primary_key: SymmetricKey::from_base64(&item.primary_key)
            .map_err(|_| invalid("primaryKey"))?,
        secondary_key: SymmetricKey::from_base64(&item.secondary_key)
            .map_err(|_| invalid("secondaryKey"))?,
        name: item.key_name,
    })
}

impl PolicyStore for DynamoDbPolicyStore {
    async fn get_policy(&self, name: &str) -> Result<Option<AccessPolicy>, StoreError> {
        const OPERATION: &str = "reading a shared access policy";
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("keyName", AttributeValue::S(name.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error(OPERATION))?;
        output
            .item
            .map(|item| parse_policy(item, OPERATION))
            .transpose()
    }

    async fn list_policies(&self) -> Result<Vec<AccessPolicy>, StoreError> {
        const OPERATION: &str = "listing shared access policies";
        let output = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error(OPERATION))?;
        let mut policies = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| parse_policy(item, OPERATION))
            .collect::<Result<Vec<_>, _>>()?;
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(policies)
    }

    async fn set_key(
        &self,
        name: &str,
        slot: KeySlot,
        key: &SymmetricKey,
    ) -> Result<bool, StoreError> {
        let attribute = match slot {
            KeySlot::Primary => "primaryKey",
            KeySlot::Secondary => "secondaryKey",
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("keyName", AttributeValue::S(name.to_owned()))
            .update_expression("SET #key = :key")
            .condition_expression("attribute_exists(keyName)")
            .expression_attribute_names("#key", attribute)
            .expression_attribute_values(":key", AttributeValue::S(key.to_base64()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error("rotating a shared access policy key")(e)),
        }
    }
}
