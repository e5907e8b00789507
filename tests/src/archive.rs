//! Reading the S3 archive back (the cold path), for the integration and end-to-end tests.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::time::Duration;

use serde_json::Value;

pub async fn s3() -> aws_sdk_s3::Client {
    let sdk = hub_shared::aws::sdk_config().await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    )
}

pub fn bucket() -> String {
    std::env::var("HUB_ARCHIVE_BUCKET")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| panic!("HUB_ARCHIVE_BUCKET is not set: the local environment enables the archive (infra/environments/local.tfvars)"))
}

/// Every archived line of `device` in objects written since `since` (a moment before the
/// device first sent), with the object it is in. Older objects are not read: the bucket holds
/// every message of every test.
pub async fn archived_lines(device: &str, since: std::time::SystemTime) -> Vec<(String, Value)> {
    ArchiveReader::default()
        .lines(&|d: &str| d == device, since)
        .await
}

/// Reads the archive until `device` has `count` lines (or more), or panics after `within`.
pub async fn wait_for_archive(
    device: &str,
    since: std::time::SystemTime,
    count: usize,
    within: Duration,
) -> Vec<(String, Value)> {
    wait_for_archive_of(|d| d == device, since, count, within).await
}

/// Reads the archive until the devices `of` accepts have `count` lines (or more), or panics
/// after `within`.
pub async fn wait_for_archive_of(
    of: impl Fn(&str) -> bool,
    since: std::time::SystemTime,
    count: usize,
    within: Duration,
) -> Vec<(String, Value)> {
    let deadline = tokio::time::Instant::now() + within;
    let mut reader = ArchiveReader::default();
    loop {
        let lines = reader.lines(&of, since).await;
        if lines.len() >= count {
            return lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {count} messages archived within {within:?}",
            lines.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Reads archive objects, each version once: the emulator's S3 serves every other test too, and
/// a waiting test that fetched every recent object twice a second slowed them all.
#[derive(Default)]
struct ArchiveReader {
    /// Lines of every device, by object key and entity tag.
    objects: std::collections::HashMap<(String, String), Vec<Value>>,
}

impl ArchiveReader {
    /// The lines of the devices `of` accepts.
    async fn lines(
        &mut self,
        of: &impl Fn(&str) -> bool,
        since: std::time::SystemTime,
    ) -> Vec<(String, Value)> {
        let since = aws_sdk_s3::primitives::DateTime::from(since - Duration::from_secs(5));
        let client = s3().await;
        let bucket = bucket();
        let mut lines = Vec::new();
        let mut pages = client
            .list_objects_v2()
            .bucket(&bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.unwrap_or_else(|e| panic!("list archive: {e:?}"));
            for object in page.contents() {
                if object.last_modified().is_some_and(|m| *m < since) {
                    continue;
                }
                let key = object.key().unwrap_or_default().to_owned();
                let version = (key.clone(), object.e_tag().unwrap_or_default().to_owned());
                if !self.objects.contains_key(&version) {
                    let read = read_object(&client, &bucket, &key).await;
                    self.objects.insert(version.clone(), read);
                }
                let device_lines = self.objects[&version].iter().filter(|line| {
                    line["SystemProperties"]["connectionDeviceId"]
                        .as_str()
                        .is_some_and(of)
                });
                lines.extend(device_lines.map(|line| (key.clone(), line.clone())));
            }
        }
        lines
    }
}

async fn read_object(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<Value> {
    let body = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap_or_else(|e| panic!("read {key}: {e:?}"))
        .into_bytes();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{key} is not gzip: {e}"));
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{key}: {e}")))
        .collect()
}

pub fn message_counts(lines: &[(String, Value)]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (_, line) in lines {
        let id = line["SystemProperties"]["messageId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *counts.entry(id).or_default() += 1;
    }
    counts
}
