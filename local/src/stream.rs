//! Reading the telemetry stream from "now" on, across every shard: for the demo and the tests,
//! which check what landed in Kinesis.

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::ShardIteratorType;

#[derive(Debug, Clone)]
pub struct ReceivedRecord {
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("reading the telemetry stream failed: {0}")]
    Kinesis(String),
    #[error("timed out after {0:?} waiting for records on the telemetry stream ({1} seen)")]
    Timeout(Duration, usize),
}

fn kinesis_error(error: impl std::error::Error + 'static) -> TailError {
    TailError::Kinesis(hub_shared::error::Chain(&error).to_string())
}

pub struct TelemetryTail {
    client: Client,
    iterators: Vec<(String, Option<String>)>,
    received: Vec<ReceivedRecord>,
}

impl TelemetryTail {
    /// Positions after the last record of every shard: only records put later are read.
    pub async fn from_now(client: Client, stream: &str) -> Result<Self, TailError> {
        let shards = client
            .list_shards()
            .stream_name(stream)
            .send()
            .await
            .map_err(kinesis_error)?;
        let mut iterators = Vec::new();
        for shard in shards.shards() {
            let iterator = client
                .get_shard_iterator()
                .stream_name(stream)
                .shard_id(shard.shard_id())
                .shard_iterator_type(ShardIteratorType::Latest)
                .send()
                .await
                .map_err(kinesis_error)?;
            iterators.push((
                shard.shard_id().to_owned(),
                iterator.shard_iterator().map(str::to_owned),
            ));
        }
        Ok(Self {
            client,
            iterators,
            received: Vec::new(),
        })
    }

    /// Polls every shard until `done` holds for the records received so far, or `timeout` passes.
    pub async fn read_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&[ReceivedRecord]) -> bool,
    ) -> Result<&[ReceivedRecord], TailError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let before = self.received.len();
            self.poll_once().await?;
            if done(&self.received) {
                return Ok(&self.received);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(TailError::Timeout(timeout, self.received.len()));
            }
            if self.received.len() == before {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    async fn poll_once(&mut self) -> Result<(), TailError> {
        for (shard_id, iterator) in &mut self.iterators {
            let Some(current) = iterator.take() else {
                continue;
            };
            let output = self
                .client
                .get_records()
                .shard_iterator(current)
                .send()
                .await
                .map_err(kinesis_error)?;
            *iterator = output.next_shard_iterator().map(str::to_owned);
            self.received
                .extend(output.records().iter().map(|r| ReceivedRecord {
                    shard_id: shard_id.clone(),
                    sequence_number: r.sequence_number().to_owned(),
                    partition_key: r.partition_key().unwrap_or_default().to_owned(),
                    data: r.data().as_ref().to_vec(),
                }));
        }
        Ok(())
    }
}
