//! BatchGetItem run to completion: DynamoDB may leave keys unprocessed (throttling, 16 MB
//! answers), and those must be asked for again, with backoff, before the answer is whole.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use crate::aws::sdk_error;
use crate::ports::StoreError;
use crate::publish::RetryPolicy;

pub type Item = HashMap<String, AttributeValue>;

const UNPROCESSED_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 8,
    base_delay: Duration::from_millis(20),
    max_delay: Duration::from_secs(1),
};

/// Every item found for `request` (table name → keys), as `(table, item)`.
pub async fn batch_get_all(
    client: &Client,
    mut request: HashMap<String, KeysAndAttributes>,
    operation: &'static str,
) -> Result<Vec<(String, Item)>, StoreError> {
    let mut found = Vec::new();
    let mut attempt = 0;
    while !request.is_empty() {
        if attempt >= UNPROCESSED_RETRY.max_attempts {
            // Unprocessed keys are DynamoDB's way of throttling a batch.
            return Err(StoreError::transient(
                operation,
                std::io::Error::other("DynamoDB left keys unprocessed on every attempt"),
            ));
        }
        if attempt > 0 {
            tokio::time::sleep(UNPROCESSED_RETRY.delay(attempt)).await;
        }
        attempt += 1;
        let output = client
            .batch_get_item()
            .set_request_items(Some(request))
            .send()
            .await
            .map_err(sdk_error(operation))?;
        for (table, items) in output.responses.unwrap_or_default() {
            found.extend(items.into_iter().map(|item| (table.clone(), item)));
        }
        request = output.unprocessed_keys.unwrap_or_default();
    }
    Ok(found)
}
