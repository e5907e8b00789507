//! `hubctl c2d ...` and `hubctl feedback ...`: cloud-to-device messages and their feedback.

use std::time::{Duration, Instant};

use hub_service_sdk::{C2dMessage, ServiceClient};
use serde_json::{Value, json};

use crate::CliError;
use crate::cli::{C2dCommand, FeedbackCommand};
use crate::output::Printer;

const FEEDBACK_COLUMNS: &[(&str, &str)] = &[
    ("device", "deviceId"),
    ("message", "originalMessageId"),
    ("status", "statusCode"),
    ("description", "description"),
    ("enqueued", "enqueuedTimeUtc"),
];

pub async fn c2d(
    hub: &ServiceClient,
    command: &C2dCommand,
    printer: &Printer,
) -> Result<(), CliError> {
    match command {
        C2dCommand::Send {
            id,
            body,
            properties,
            ack,
            message_id,
            ttl,
            wait,
            timeout,
        } => {
            // The message id identifies its feedback; make one when waiting for it.
            let message_id = message_id.clone().or_else(|| {
                wait.then(|| {
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or_default();
                    format!("hubctl-{nanos}")
                })
            });
            let message = C2dMessage {
                body: body.clone().into_bytes(),
                message_id: message_id.clone(),
                ack: ack.map(|a| a.as_str().to_owned()),
                ttl_seconds: *ttl,
                properties: properties.iter().cloned().collect(),
                ..Default::default()
            };
            hub.send_c2d(id, &message).await?;
            if !wait {
                printer.line(
                    &format!("sent to {id}"),
                    &json!({"sent": id, "messageId": message_id}),
                );
                return Ok(());
            }
            let message_id = message_id.unwrap_or_default();
            let record =
                wait_for_feedback(hub, id, &message_id, Duration::from_secs(*timeout)).await?;
            let status = record["statusCode"].as_str().unwrap_or_default().to_owned();
            printer.line(&format!("{id}: {status}"), &record);
            if status == "Success" {
                Ok(())
            } else {
                Err(CliError::Refused(format!(
                    "the device did not complete the message: {status}"
                )))
            }
        }
        C2dCommand::Purge { id } => {
            let result = hub.purge_c2d(id).await?;
            printer.line(&format!("purged {id}: {result}"), &result);
            Ok(())
        }
    }
}

/// Reads feedback until the record of `message_id` for `device` comes; every batch is
/// completed except one holding records of other messages, which is given back for their
/// readers.
async fn wait_for_feedback(
    hub: &ServiceClient,
    device: &str,
    message_id: &str,
    timeout: Duration,
) -> Result<Value, CliError> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let Some(batch) = hub.receive_feedback().await? else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let found = batch
            .records
            .iter()
            .find(|r| r.device_id == device && r.original_message_id == message_id)
            .cloned();
        let others = batch
            .records
            .iter()
            .any(|r| !(r.device_id == device && r.original_message_id == message_id));
        if others {
            hub.abandon_feedback(&batch.lock_token).await?;
        } else {
            hub.complete_feedback(&batch.lock_token).await?;
        }
        if let Some(record) = found {
            return Ok(serde_json::to_value(record).unwrap_or_default());
        }
        if others {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Err(CliError::TimedOut(format!(
        "no feedback for message {message_id} within {} s",
        timeout.as_secs()
    )))
}

pub async fn feedback(
    hub: &ServiceClient,
    command: &FeedbackCommand,
    printer: &Printer,
) -> Result<(), CliError> {
    let FeedbackCommand::Monitor { timeout, count } = command;
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t));
    let mut seen = 0usize;
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) || count.is_some_and(|c| seen >= c) {
            return Ok(());
        }
        let Some(batch) = hub.receive_feedback().await? else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let rows: Vec<Value> = batch
            .records
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .collect();
        seen += rows.len();
        if printer.json() {
            for row in &rows {
                println!("{row}");
            }
        } else {
            printer.table(FEEDBACK_COLUMNS, &rows);
        }
        hub.complete_feedback(&batch.lock_token).await?;
    }
}
