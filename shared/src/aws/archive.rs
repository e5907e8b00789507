//! The archive on AWS: objects in an S3 bucket, each shard's progress in a DynamoDB table
//! (`shard` → `sequence`, written conditionally on the previous value).

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::primitives::ByteStream;

use crate::aws::sdk_error;
use crate::ports::{ArchiveCheckpoints, ObjectStore, StoreError};

#[derive(Clone)]
pub struct S3Archive {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Archive {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

impl ObjectStore for S3Archive {
    async fn put_object(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/x-ndjson")
            .content_encoding("gzip")
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error("writing an archive object"))
    }
}

#[derive(Clone)]
pub struct DynamoDbArchiveCheckpoints {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDbArchiveCheckpoints {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl ArchiveCheckpoints for DynamoDbArchiveCheckpoints {
    async fn checkpoint(&self, shard: &str) -> Result<Option<String>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("shard", AttributeValue::S(shard.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error("reading an archive checkpoint"))?;
        Ok(output
            .item
            .and_then(|item| item.get("sequence").and_then(|v| v.as_s().ok()).cloned()))
    }

    async fn advance(&self, shard: &str, from: Option<&str>, to: &str) -> Result<bool, StoreError> {
        const OPERATION: &str = "advancing an archive checkpoint";
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("shard", AttributeValue::S(shard.to_owned()))
            .item("sequence", AttributeValue::S(to.to_owned()));
        request = match from {
            Some(previous) => request
                .condition_expression("#s = :previous")
                .expression_attribute_names("#s", "sequence")
                .expression_attribute_values(":previous", AttributeValue::S(previous.to_owned())),
            None => request
                .condition_expression("attribute_not_exists(#s)")
                .expression_attribute_names("#s", "sequence"),
        };
        conditional_write!(request, OPERATION)
    }
}
