//! Routing endpoints on AWS: SQS queues, SNS topics, Kinesis streams and EventBridge buses, each
//! sent to in its batch API (10, 10, 500 and 10 messages a call). FIFO queues and topics get the
//! device as message group and the hub message id as deduplication id.

use aws_sdk_kinesis::primitives::Blob;

use crate::aws::{Clients, build_error, sdk_error};
use crate::ports::{Delivery, Endpoint, EndpointLimits, RecordFailure, StoreError};
use crate::routing::{EndpointKind, EndpointSpec};

/// Message attributes every SQS and SNS delivery carries, so subscribers can filter without
/// parsing the body.
const DEVICE_ATTRIBUTE: &str = "iothub-connection-device-id";
const MESSAGE_ATTRIBUTE: &str = "iothub-message-id";

/// What EventBridge events of routed telemetry are called (Azure Event Grid's event type).
pub const TELEMETRY_DETAIL_TYPE: &str = crate::routing::TELEMETRY_EVENT_TYPE;

#[derive(Clone)]
pub enum AwsEndpoint {
    Sqs {
        client: aws_sdk_sqs::Client,
        url: String,
        fifo: bool,
    },
    Sns {
        client: aws_sdk_sns::Client,
        arn: String,
        fifo: bool,
    },
    Kinesis {
        client: aws_sdk_kinesis::Client,
        stream: String,
    },
    EventBridge {
        client: aws_sdk_eventbridge::Client,
        bus: String,
        source: String,
    },
}

impl AwsEndpoint {
    /// The endpoint `spec` describes; `source` names the hub in EventBridge events. `None` for
    /// the archive, which the archiver writes in batches of its own.
    pub fn new(spec: &EndpointSpec, clients: &Clients, source: &str) -> Option<Self> {
        // After the last '/' or ':' of an ARN: a stream's or bus's name.
        let name = spec
            .arn
            .rsplit(['/', ':'])
            .next()
            .unwrap_or(&spec.arn)
            .to_owned();
        Some(match spec.kind {
            EndpointKind::S3 => return None,
            EndpointKind::Sqs => AwsEndpoint::Sqs {
                client: clients.sqs.clone(),
                fifo: spec.arn.ends_with(".fifo"),
                url: spec.url.clone().unwrap_or_default(),
            },
            EndpointKind::Sns => AwsEndpoint::Sns {
                client: clients.sns.clone(),
                fifo: spec.arn.ends_with(".fifo"),
                arn: spec.arn.clone(),
            },
            EndpointKind::Kinesis => AwsEndpoint::Kinesis {
                client: clients.kinesis.clone(),
                stream: name,
            },
            EndpointKind::Eventbridge => AwsEndpoint::EventBridge {
                client: clients.eventbridge.clone(),
                bus: name,
                source: source.to_owned(),
            },
        })
    }
}

const KIB: usize = 1024;

/// Per-entry outcomes from a batch API's failed entries, by the ids we gave (their positions).
fn failures_by_id<'a>(
    count: usize,
    failed: impl Iterator<Item = (&'a str, String)>,
) -> Vec<RecordFailure> {
    let mut out = vec![None; count];
    for (id, reason) in failed {
        if let Some(slot) = id.parse::<usize>().ok().and_then(|i| out.get_mut(i)) {
            *slot = Some(reason);
        }
    }
    out
}

impl Endpoint for AwsEndpoint {
    fn limits(&self) -> EndpointLimits {
        match self {
            AwsEndpoint::Kinesis { .. } => EndpointLimits {
                messages: 500,
                bytes: 5 * KIB * KIB,
                message_bytes: KIB * KIB,
            },
            _ => EndpointLimits {
                messages: 10,
                bytes: 256 * KIB,
                message_bytes: 256 * KIB,
            },
        }
    }

    async fn deliver(&self, batch: &[&Delivery]) -> Result<Vec<RecordFailure>, StoreError> {
        match self {
            AwsEndpoint::Sqs { client, url, fifo } => {
                const OPERATION: &str = "delivering routed messages to an SQS queue";
                let attribute = |value: &str| {
                    aws_sdk_sqs::types::MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(value)
                        .build()
                        .map_err(build_error(OPERATION))
                };
                let mut entries = Vec::with_capacity(batch.len());
                for (i, delivery) in batch.iter().enumerate() {
                    let mut entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&delivery.body)
                        .message_attributes(DEVICE_ATTRIBUTE, attribute(&delivery.device_id)?)
                        .message_attributes(MESSAGE_ATTRIBUTE, attribute(&delivery.id)?);
                    if *fifo {
                        entry = entry
                            .message_group_id(&delivery.device_id)
                            .message_deduplication_id(&delivery.id);
                    }
                    entries.push(entry.build().map_err(build_error(OPERATION))?);
                }
                let output = client
                    .send_message_batch()
                    .queue_url(url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(sdk_error(OPERATION))?;
                Ok(failures_by_id(
                    batch.len(),
                    output.failed().iter().map(|f| {
                        (
                            f.id(),
                            format!("{}: {}", f.code(), f.message().unwrap_or_default()),
                        )
                    }),
                ))
            }
            AwsEndpoint::Sns { client, arn, fifo } => {
                const OPERATION: &str = "delivering routed messages to an SNS topic";
                let attribute = |value: &str| {
                    aws_sdk_sns::types::MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(value)
                        .build()
                        .map_err(build_error(OPERATION))
                };
                let mut entries = Vec::with_capacity(batch.len());
                for (i, delivery) in batch.iter().enumerate() {
                    let mut entry = aws_sdk_sns::types::PublishBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message(&delivery.body)
                        .message_attributes(DEVICE_ATTRIBUTE, attribute(&delivery.device_id)?)
                        .message_attributes(MESSAGE_ATTRIBUTE, attribute(&delivery.id)?);
                    if *fifo {
                        entry = entry
                            .message_group_id(&delivery.device_id)
                            .message_deduplication_id(&delivery.id);
                    }
                    entries.push(entry.build().map_err(build_error(OPERATION))?);
                }
                let output = client
                    .publish_batch()
                    .topic_arn(arn)
                    .set_publish_batch_request_entries(Some(entries))
                    .send()
                    .await
                    .map_err(sdk_error(OPERATION))?;
                Ok(failures_by_id(
                    batch.len(),
                    output.failed().iter().map(|f| {
                        (
                            f.id(),
                            format!("{}: {}", f.code(), f.message().unwrap_or_default()),
                        )
                    }),
                ))
            }
            AwsEndpoint::Kinesis { client, stream } => {
                const OPERATION: &str = "delivering routed messages to a Kinesis stream";
                let entries = batch
                    .iter()
                    .map(|d| {
                        aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                            .partition_key(&d.device_id)
                            .data(Blob::new(d.body.as_bytes()))
                            .build()
                            .map_err(build_error(OPERATION))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let output = client
                    .put_records()
                    .stream_name(stream)
                    .set_records(Some(entries))
                    .send()
                    .await
                    .map_err(sdk_error(OPERATION))?;
                let mut results: Vec<RecordFailure> = output
                    .records()
                    .iter()
                    .map(|r| {
                        r.error_code().map(|code| {
                            format!("{code}: {}", r.error_message().unwrap_or_default())
                        })
                    })
                    .collect();
                results.resize(
                    batch.len(),
                    Some("the stream answered fewer results than records".into()),
                );
                Ok(results)
            }
            AwsEndpoint::EventBridge {
                client,
                bus,
                source,
            } => {
                const OPERATION: &str = "delivering routed messages to an EventBridge bus";
                let entries = batch
                    .iter()
                    .map(|d| {
                        aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                            .event_bus_name(bus)
                            .source(source)
                            .detail_type(d.event_type)
                            .detail(&d.body)
                            .build()
                    })
                    .collect::<Vec<_>>();
                let output = client
                    .put_events()
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(sdk_error(OPERATION))?;
                let mut results: Vec<RecordFailure> = output
                    .entries()
                    .iter()
                    .map(|e| {
                        e.error_code().map(|code| {
                            format!("{code}: {}", e.error_message().unwrap_or_default())
                        })
                    })
                    .collect();
                results.resize(
                    batch.len(),
                    Some("the bus answered fewer results than events".into()),
                );
                Ok(results)
            }
        }
    }
}
