//! Publishing records to the telemetry stream: batched to the stream's request limits, failed
//! entries retried with capped exponential backoff and full jitter. Success means every record
//! was stored; anything less is an error so the device is told to retry.

use std::time::Duration;

use crate::ports::{FailureKind, RecordSink, StoreError, StreamRecord};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(25),
            max_delay: Duration::from_millis(400),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before attempt `attempt + 1`: capped exponential, full jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1 << attempt.min(16))
            .min(self.max_delay);
        ceiling.mul_f64(rand::random::<f64>())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(
        "{failed} of {total} records were not stored after {attempts} attempts (last reason: {reason})"
    )]
    Incomplete {
        failed: usize,
        total: usize,
        attempts: u32,
        reason: String,
    },
    /// The stream refused a request in a way no retry fixes (a missing stream, no permission).
    #[error("the stream refused the records")]
    Refused(#[source] StoreError),
}

/// Stores every record or fails. Returns the number of stream requests made.
pub async fn publish_all<S: RecordSink>(
    sink: &S,
    records: &[StreamRecord],
    retry: &RetryPolicy,
) -> Result<usize, PublishError> {
    let mut pending: Vec<&StreamRecord> = records.iter().collect();
    let mut requests = 0;
    let mut reason = String::new();
    for attempt in 0..retry.max_attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(retry.delay(attempt)).await;
        }
        let mut failed = Vec::new();
        for batch in batches::<S>(&pending) {
            requests += 1;
            let owned: Vec<StreamRecord> = batch.iter().map(|r| (*r).clone()).collect();
            match sink.put_records(&owned).await {
                Ok(results) => {
                    for (record, result) in
                        batch
                            .iter()
                            .zip(results.iter().chain(std::iter::repeat(&Some(
                                "the stream answered fewer results than records".to_owned(),
                            ))))
                    {
                        if let Some(why) = result {
                            reason.clone_from(why);
                            failed.push(*record);
                        }
                    }
                }
                Err(error) if !error.is_transient() => return Err(PublishError::Refused(error)),
                Err(error) => {
                    reason = crate::error::Chain(&error).to_string();
                    failed.extend(batch.iter().copied());
                }
            }
        }
        if failed.is_empty() {
            return Ok(requests);
        }
        pending = failed;
    }
    Err(PublishError::Incomplete {
        failed: pending.len(),
        total: records.len(),
        attempts: retry.max_attempts.max(1),
        reason,
    })
}

/// Splits records into as few requests as the stream's limits allow, keeping their order.
fn batches<'a, S: RecordSink>(records: &[&'a StreamRecord]) -> Vec<Vec<&'a StreamRecord>> {
    let mut out: Vec<Vec<&StreamRecord>> = Vec::new();
    let mut bytes = 0;
    for record in records {
        let fits = out.last().is_some_and(|batch| {
            batch.len() < S::MAX_RECORDS && bytes + record.size() <= S::MAX_BYTES
        });
        if !fits {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += record.size();
        if let Some(batch) = out.last_mut() {
            batch.push(record);
        }
    }
    out
}

impl From<PublishError> for StoreError {
    fn from(error: PublishError) -> Self {
        let kind = match &error {
            PublishError::Incomplete { .. } => FailureKind::Transient,
            PublishError::Refused(cause) => cause.kind,
        };
        StoreError::new("publishing telemetry", kind, error)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Fails the records whose data is listed in `fail`, `times` times each.
    #[derive(Default)]
    struct FlakySink {
        fail: Vec<(Vec<u8>, usize)>,
        error_calls: usize,
        calls: Mutex<Vec<usize>>,
        stored: Mutex<Vec<Vec<u8>>>,
    }

    impl RecordSink for FlakySink {
        async fn put_records(
            &self,
            records: &[StreamRecord],
        ) -> Result<Vec<Option<String>>, StoreError> {
            let call = {
                let mut calls = self.calls.lock().unwrap();
                calls.push(records.len());
                calls.len()
            };
            if call <= self.error_calls {
                return Err(StoreError::transient(
                    "put",
                    std::io::Error::other("throttled"),
                ));
            }
            let mut stored = self.stored.lock().unwrap();
            Ok(records
                .iter()
                .map(|r| {
                    let failures_before = self.calls.lock().unwrap().len() - 1;
                    match self.fail.iter().find(|(d, _)| *d == r.data) {
                        Some((_, times)) if failures_before < *times => {
                            Some("ProvisionedThroughputExceeded".into())
                        }
                        _ => {
                            stored.push(r.data.clone());
                            None
                        }
                    }
                })
                .collect())
        }
    }

    fn record(i: usize, size: usize) -> StreamRecord {
        let mut data = i.to_string().into_bytes();
        data.resize(size.max(data.len()), b'x');
        StreamRecord {
            partition_key: "d".into(),
            data,
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn uses_as_few_requests_as_the_limits_allow() {
        let sink = FlakySink::default();
        let records: Vec<_> = (0..1200).map(|i| record(i, 10)).collect();
        assert_eq!(publish_all(&sink, &records, &fast()).await.unwrap(), 3);
        assert_eq!(*sink.calls.lock().unwrap(), vec![500, 500, 200]);

        let sink = FlakySink::default();
        let big: Vec<_> = (0..12).map(|i| record(i, 1_200_000)).collect();
        publish_all(&sink, &big, &fast()).await.unwrap();
        assert_eq!(*sink.calls.lock().unwrap(), vec![4, 4, 4]);
    }

    #[tokio::test]
    async fn retries_only_the_failed_entries() {
        let records: Vec<_> = (0..5).map(|i| record(i, 1)).collect();
        let sink = FlakySink {
            fail: vec![(records[3].data.clone(), 2)],
            ..Default::default()
        };
        assert_eq!(publish_all(&sink, &records, &fast()).await.unwrap(), 3);
        assert_eq!(*sink.calls.lock().unwrap(), vec![5, 1, 1]);
        assert_eq!(sink.stored.lock().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn retries_whole_requests_that_error() {
        let records: Vec<_> = (0..3).map(|i| record(i, 1)).collect();
        let sink = FlakySink {
            error_calls: 2,
            ..Default::default()
        };
        publish_all(&sink, &records, &fast()).await.unwrap();
        assert_eq!(sink.stored.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn gives_up_after_the_last_attempt_and_says_why() {
        let records: Vec<_> = (0..3).map(|i| record(i, 1)).collect();
        let sink = FlakySink {
            fail: vec![(records[1].data.clone(), 99)],
            ..Default::default()
        };
        let error = publish_all(&sink, &records, &fast()).await.unwrap_err();
        let PublishError::Incomplete {
            failed,
            total,
            attempts,
            reason,
        } = error
        else {
            panic!("expected Incomplete, got {error:?}")
        };
        assert_eq!((failed, total, attempts), (1, 3, 4));
        assert_eq!(reason, "ProvisionedThroughputExceeded");
    }

    /// A sink that refuses every request as a missing stream would.
    struct MissingStream {
        calls: Mutex<usize>,
    }

    impl RecordSink for MissingStream {
        async fn put_records(
            &self,
            _records: &[StreamRecord],
        ) -> Result<Vec<Option<String>>, StoreError> {
            *self.calls.lock().unwrap() += 1;
            Err(StoreError::rejected(
                "put",
                std::io::Error::other("ResourceNotFoundException"),
            ))
        }
    }

    #[tokio::test]
    async fn stops_at_once_when_the_stream_refuses_for_good() {
        let sink = MissingStream {
            calls: Mutex::new(0),
        };
        let error = publish_all(&sink, &[record(0, 1)], &fast())
            .await
            .unwrap_err();
        assert!(matches!(error, PublishError::Refused(_)), "{error:?}");
        assert_eq!(*sink.calls.lock().unwrap(), 1, "no pointless retries");
        assert_eq!(StoreError::from(error).kind, FailureKind::Rejected);
    }
}
