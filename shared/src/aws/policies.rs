//! Shared access policies in DynamoDB: one item per policy, keyed by `keyName`. Terraform creates
//! the built-in policies with fresh keys at deploy time.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Deserialize;

use crate::domain::policy::AccessPolicy;
use crate::domain::sas::SymmetricKey;
use crate::ports::{PolicyStore, StoreError};

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
            .map_err(|e| StoreError::new(OPERATION, e))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let item: PolicyItem =
            serde_dynamo::from_item(item).map_err(|e| StoreError::new(OPERATION, e))?;
        let invalid = |field| {
            StoreError::new(
                OPERATION,
                InvalidPolicy {
                    policy: item.key_name.clone(),
                    field,
                },
            )
        };
        Ok(Some(AccessPolicy {
            rights: item.rights.parse().map_err(|_| invalid("rights"))?,
            primary_key: SymmetricKey::from_base64(&item.primary_key)
                .map_err(|_| invalid("primaryKey"))?,
            secondary_key: SymmetricKey::from_base64(&item.secondary_key)
                .map_err(|_| invalid("secondaryKey"))?,
            name: item.key_name,
        }))
    }
}
