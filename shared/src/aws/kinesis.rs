//! The telemetry stream in Kinesis: one `PutRecords` call per `put_records`.

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use crate::aws::{build_error, sdk_error};
use crate::ports::{RecordFailure, RecordSink, StoreError, StreamRecord};

#[derive(Clone)]
pub struct KinesisRecordSink {
    client: Client,
    stream: String,
}

impl KinesisRecordSink {
    pub fn new(client: Client, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
        }
    }
}

impl RecordSink for KinesisRecordSink {
    async fn put_records(
        &self,
        records: &[StreamRecord],
    ) -> Result<Vec<RecordFailure>, StoreError> {
        const OPERATION: &str = "putting records on the telemetry stream";
        let entries = records
            .iter()
            .map(|r| {
                PutRecordsRequestEntry::builder()
                    .partition_key(&r.partition_key)
                    .data(Blob::new(r.data.clone()))
                    .build()
                    .map_err(build_error(OPERATION))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(sdk_error(OPERATION))?;
        Ok(output
            .records()
            .iter()
            .map(|entry| {
                entry.error_code().map(|code| match entry.error_message() {
                    Some(message) => format!("{code}: {message}"),
                    None => code.to_owned(),
                })
            })
            .collect())
    }
}
