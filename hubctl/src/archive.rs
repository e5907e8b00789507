//! `hubctl archive replay`: archived messages back into a stream. Objects begun after the range
//! (by the minute in their names) are passed over; lines are picked by device and enqueued time.

use std::io::Read as _;

use hub_shared::aws::KinesisRecordSink;
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::ports::StreamRecord;
use hub_shared::publish::{RetryPolicy, publish_all};
use hub_shared::routing::archive::envelope_from_line;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::CliError;
use crate::cli::ArchiveCommand;
use crate::monitor::matches;
use crate::output::Printer;

/// The minute an object's name gives, when each date token is a path segment of its own.
fn object_minute(format: &str, key: &str) -> Option<OffsetDateTime> {
    let mut parts = [0i64; 5];
    let tokens = ["{YYYY}", "{MM}", "{DD}", "{HH}", "{mm}"];
    for (pattern, segment) in format.split('/').zip(key.split('/')) {
        if let Some(i) = tokens.iter().position(|t| *t == pattern) {
            parts[i] = segment.parse().ok()?;
        }
    }
    let date = time::Date::from_calendar_date(
        i32::try_from(parts[0]).ok()?,
        time::Month::try_from(u8::try_from(parts[1]).ok()?).ok()?,
        u8::try_from(parts[2]).ok()?,
    )
    .ok()?;
    let at = time::Time::from_hms(
        u8::try_from(parts[3]).ok()?,
        u8::try_from(parts[4]).ok()?,
        0,
    )
    .ok()?;
    Some(date.with_time(at).assume_utc())
}

/// What the key starts with before its first token other than `{iothub}`.
fn listing_prefix(format: &str, hub: &str) -> String {
    let fixed = format.split("{partition}").next().unwrap_or_default();
    let fixed = ["{YYYY}", "{MM}", "{DD}", "{HH}", "{mm}"]
        .iter()
        .fold(fixed.to_owned(), |text, token| {
            text.split(token).next().unwrap_or_default().to_owned()
        });
    fixed.replace("{iothub}", hub)
}

fn parse_time(text: &str, name: &str) -> Result<OffsetDateTime, CliError> {
    Timestamp::parse(text)
        .map(Timestamp::datetime)
        .map_err(|e| CliError::Usage(format!("--{name} {text}: not an RFC 3339 time ({e})")))
}

pub async fn run(command: &ArchiveCommand, printer: &Printer) -> Result<(), CliError> {
    let ArchiveCommand::Replay {
        bucket,
        hub,
        device,
        from,
        to,
        stream,
        format,
        dry_run,
    } = command;
    let (from, to) = (parse_time(from, "from")?, parse_time(to, "to")?);
    if from > to {
        return Err(CliError::Usage("--from is after --to".into()));
    }
    let sdk = hub_shared::aws::sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let failed = |what: &str, e: &dyn std::fmt::Display| CliError::Stream(format!("{what}: {e}"));
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(listing_prefix(format, hub))
        .into_paginator()
        .send();
    let (mut objects, mut records) = (0usize, Vec::new());
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| failed("listing the archive", &hub_shared::error::Chain(&e)))?;
        for object in page.contents() {
            let key = object.key().unwrap_or_default();
            // An object holds records that arrived from its minute on: one written while the
            // archiver caught up on a backlog may reach hours later, so only objects begun
            // after the range are passed over.
            if object_minute(format, key).is_some_and(|m| m > to) {
                continue;
            }
            objects += 1;
            let body = s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| failed("reading the archive", &hub_shared::error::Chain(&e)))?
                .body
                .collect()
                .await
                .map_err(|e| failed("reading the archive", &e))?
                .into_bytes();
            let mut text = String::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_string(&mut text)
                .map_err(|e| failed(key, &e))?;
            for line in text.lines() {
                let line: Value = serde_json::from_str(line).map_err(|e| failed(key, &e))?;
                let mut envelope = envelope_from_line(&line).map_err(|e| failed(key, &e))?;
                let at = envelope.enqueued_time.datetime();
                if !matches(device, envelope.device_id.as_str()) || at < from || at > to {
                    continue;
                }
                envelope
                    .properties
                    .insert("iothub-replayed".into(), "true".into());
                records.push(StreamRecord {
                    partition_key: envelope.partition_key().to_owned(),
                    data: envelope.to_json(),
                });
            }
        }
    }
    if !dry_run && !records.is_empty() {
        let sink = KinesisRecordSink::new(aws_sdk_kinesis::Client::new(&sdk), stream);
        publish_all(&sink, &records, &RetryPolicy::default())
            .await
            .map_err(|e| failed("publishing to the stream", &hub_shared::error::Chain(&e)))?;
    }
    let verb = if *dry_run { "would replay" } else { "replayed" };
    printer.line(
        &format!("{verb} {} messages from {objects} objects into {stream}", records.len()),
        &json!({ "messages": records.len(), "objects": objects, "stream": stream, "dryRun": dry_run }),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_shared::routing::archive::DEFAULT_FILE_NAME_FORMAT;

    #[test]
    fn object_names_give_their_minute_and_listing_prefix() {
        let key = "hub.example/shardId-000000000001/2026/12/04/09/01/900.json.gz";
        let minute = object_minute(DEFAULT_FILE_NAME_FORMAT, key).unwrap();
        assert_eq!(minute, time::macros::datetime!(2026-12-04 09:01 UTC));
        assert_eq!(
            listing_prefix(DEFAULT_FILE_NAME_FORMAT, "hub.example"),
            "hub.example/"
        );
        assert_eq!(
            listing_prefix("{YYYY}/{MM}/{DD}/{HH}/{mm}/{iothub}/{partition}", "h"),
            ""
        );
    }
}
