//! `hubctl monitor events`: tails the telemetry stream, every shard, as `az iot hub
//! monitor-events` tails Azure's built-in endpoint. It reads Kinesis directly with the AWS
//! credentials of the environment (`AWS_PROFILE`, `AWS_ENDPOINT_URL` for an emulator).

use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::ShardIteratorType;
use hub_shared::domain::envelope::TelemetryEnvelope;
use serde_json::{Value, json};

use crate::CliError;
use crate::cli::MonitorCommand;
use crate::output::Printer;

/// `*` matches any run of characters; everything else itself.
pub fn matches(pattern: &str, id: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == id;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !id.starts_with(first) || !id[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &id[first.len()..id.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// An event as printed: the device, when the hub took it, its body (as JSON when it is JSON),
/// and with `properties` the system and application properties.
pub fn event_json(envelope: &TelemetryEnvelope, properties: bool) -> Value {
    let body = serde_json::from_slice::<Value>(&envelope.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&envelope.body).into_owned()));
    let mut event = json!({
        "deviceId": envelope.device_id.as_str(),
        "enqueuedTime": envelope.enqueued_time.to_string(),
        "body": body,
    });
    if properties {
        event["systemProperties"] =
            serde_json::to_value(&envelope.system_properties).unwrap_or_default();
        event["properties"] = serde_json::to_value(&envelope.properties).unwrap_or_default();
        event["hubMessageId"] = json!(envelope.hub_message_id);
    }
    event
}

pub async fn run(command: &MonitorCommand, printer: &Printer) -> Result<(), CliError> {
    let MonitorCommand::Events {
        device,
        properties,
        timeout,
        count,
        stream,
        from_start,
    } = command;
    let stream_error = |e: &dyn std::fmt::Display| CliError::Stream(e.to_string());
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let shards = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .map_err(|e| stream_error(&hub_shared::error::Chain(&e)))?
        .shards
        .unwrap_or_default();
    let mut iterators = Vec::new();
    for shard in &shards {
        let kind = if *from_start {
            ShardIteratorType::TrimHorizon
        } else {
            ShardIteratorType::Latest
        };
        let iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(kind)
            .send()
            .await
            .map_err(|e| stream_error(&hub_shared::error::Chain(&e)))?
            .shard_iterator;
        iterators.push(iterator);
    }
    if !printer.json() {
        eprintln!(
            "monitoring {} shard(s) of {stream}{}; Ctrl-C stops",
            shards.len(),
            device
                .as_deref()
                .map(|d| format!(" for {d}"))
                .unwrap_or_default()
        );
    }
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t));
    let mut seen = 0usize;
    loop {
        let mut idle = true;
        for iterator in &mut iterators {
            let Some(current) = iterator.take() else {
                continue;
            };
            let output = kinesis
                .get_records()
                .shard_iterator(current)
                .limit(1000)
                .send()
                .await
                .map_err(|e| stream_error(&hub_shared::error::Chain(&e)))?;
            *iterator = output.next_shard_iterator;
            for record in output.records {
                idle = false;
                let Ok(envelope) = TelemetryEnvelope::from_json(record.data().as_ref()) else {
                    continue;
                };
                if device
                    .as_deref()
                    .is_some_and(|pattern| !matches(pattern, envelope.device_id.as_str()))
                {
                    continue;
                }
                let event = event_json(&envelope, *properties);
                if printer.json() {
                    println!("{event}");
                } else {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&event).unwrap_or_default()
                    );
                }
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    return Ok(());
                }
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards_match_runs_of_characters() {
        assert!(matches("sim-chiller-*", "sim-chiller-1"));
        assert!(matches("*-faulty-*", "sim-chiller-faulty-2"));
        assert!(matches("d1", "d1"));
        assert!(!matches("d1", "d12"));
        assert!(!matches("sim-*-1", "sim-chiller-2"));
        assert!(matches("*", "anything"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXcYYb"));
    }
}
