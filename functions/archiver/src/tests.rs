use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use hub_shared::domain::envelope::{AuthMethod, DeviceMessage, Properties, Sender};
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::fakes::InMemoryTwins;
use serde_json::json;

use super::*;

#[derive(Default)]
struct Objects(Mutex<BTreeMap<String, Vec<u8>>>);

impl ObjectStore for Objects {
    async fn put_object(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.0.lock().unwrap().insert(key.to_owned(), body);
        Ok(())
    }
}

/// Checkpoints that can lose the next advance, as a function killed after its put would.
#[derive(Default)]
struct Checkpoints {
    stored: Mutex<BTreeMap<String, String>>,
    crash_next: AtomicBool,
}

impl ArchiveCheckpoints for Checkpoints {
    async fn checkpoint(&self, shard: &str) -> Result<Option<String>, StoreError> {
        Ok(self.stored.lock().unwrap().get(shard).cloned())
    }

    async fn advance(&self, shard: &str, from: Option<&str>, to: &str) -> Result<bool, StoreError> {
        if self.crash_next.swap(false, Ordering::SeqCst) {
            return Err(StoreError::transient(
                "fake checkpoints",
                std::io::Error::other("killed"),
            ));
        }
        let mut stored = self.stored.lock().unwrap();
        if stored.get(shard).map(String::as_str) != from {
            return Ok(false);
        }
        stored.insert(shard.to_owned(), to.to_owned());
        Ok(true)
    }
}

fn archiver() -> ArchiverHandler<Objects, Checkpoints, InMemoryTwins> {
    let table = RouteTable::from_json(
        &json!({
            "hubName": "hub.example",
            "endpoints": { "archive": { "type": "s3", "arn": "arn:aws:s3:::archive" } },
            "routes": [{ "name": "cold", "condition": "NOT (kind = 'debug')", "endpoint": "archive" }],
            "enrichments": [{ "key": "hub", "value": "$iothubname", "endpoints": ["archive"] }]
        })
        .to_string(),
    )
    .unwrap();
    ArchiverHandler {
        table,
        objects: Objects::default(),
        checkpoints: Checkpoints::default(),
        twins: InMemoryTwins::default(),
    }
}

fn envelope(i: usize, kind: &str) -> TelemetryEnvelope {
    let sender = Sender {
        device_id: DeviceId::parse("d1").unwrap(),
        generation_id: "1".into(),
        auth_method: AuthMethod::device_key(),
    };
    TelemetryEnvelope::stamp(
        DeviceMessage {
            body: format!(r#"{{"n":{i}}}"#).into_bytes(),
            properties: Properties::from([("kind".into(), kind.into())]),
            system: hub_shared::domain::envelope::SystemProperties {
                content_type: Some("application/json".into()),
                content_encoding: Some("utf-8".into()),
                ..Default::default()
            },
        },
        &sender,
        Timestamp::from_unix_millis(1_796_374_865_000).unwrap(),
    )
}

fn batch(envelopes: &[TelemetryEnvelope], from: usize, to: usize) -> KinesisEvent {
    let records: Vec<Value> = (from..to)
        .map(|i| {
            hub_shared::fakes::kinesis_record(
                "telemetry",
                "shardId-000000000001",
                &(900 + i).to_string(),
                "d1",
                &envelopes[i].to_json(),
                // Arrival a minute apart per record.
                1_796_374_865.0 + 60.0 * i as f64,
            )
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn lines(body: &[u8]) -> Vec<Value> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn archived_ids(archiver: &ArchiverHandler<Objects, Checkpoints, InMemoryTwins>) -> Vec<String> {
    let mut ids: Vec<String> = archiver
        .objects
        .0
        .lock()
        .unwrap()
        .values()
        .flat_map(|body| lines(body))
        .map(|l| l["hubMessageId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_batch_becomes_one_object_of_its_archived_messages_in_azures_json_encoding() {
    let archiver = archiver();
    let envelopes: Vec<_> = (0..4)
        .map(|i| envelope(i, if i == 2 { "debug" } else { "reading" }))
        .collect();
    let archived = archiver
        .handle_kinesis(&batch(&envelopes, 0, 4))
        .await
        .unwrap();
    assert_eq!(
        archived.objects,
        [(
            "hub.example/shardId-000000000001/2026/12/04/09/01/900.json.gz".to_owned(),
            3
        )]
    );
    let objects = archiver.objects.0.lock().unwrap().clone();
    let written = lines(objects.values().next().unwrap());
    assert_eq!(
        written.len(),
        3,
        "the debug message is not routed to the archive"
    );
    let first = &written[0];
    assert_eq!(first["Body"], json!({ "n": 0 }));
    assert_eq!(first["Properties"]["hub"], "hub.example");
    assert_eq!(first["Properties"]["kind"], "reading");
    assert_eq!(first["SystemProperties"]["connectionDeviceId"], "d1");
    assert_eq!(first["SystemProperties"]["contentType"], "application/json");
    assert_eq!(
        first["EnqueuedTimeUtc"],
        json!(envelopes[0].enqueued_time.to_string())
    );
    assert_eq!(first["hubMessageId"], json!(envelopes[0].hub_message_id));
    assert_eq!(first["sequenceNumber"], "900");

    // Delivered again: nothing new, nothing rewritten.
    let again = archiver
        .handle_kinesis(&batch(&envelopes, 0, 4))
        .await
        .unwrap();
    assert!(again.objects.is_empty());
    assert_eq!(again.already, 4);
    assert_eq!(archiver.objects.0.lock().unwrap().clone(), objects);
}

#[tokio::test]
async fn a_batch_killed_after_its_write_and_bisected_on_retry_is_archived_exactly_once() {
    let archiver = archiver();
    let envelopes: Vec<_> = (0..6).map(|i| envelope(i, "reading")).collect();
    archiver
        .checkpoints
        .crash_next
        .store(true, Ordering::SeqCst);
    assert!(
        archiver
            .handle_kinesis(&batch(&envelopes, 0, 6))
            .await
            .is_err()
    );
    assert_eq!(
        archiver.objects.0.lock().unwrap().len(),
        1,
        "written before the kill"
    );

    // Lambda bisects the failed batch; the halves come again, the first half twice.
    archiver
        .handle_kinesis(&batch(&envelopes, 0, 3))
        .await
        .unwrap();
    archiver
        .handle_kinesis(&batch(&envelopes, 0, 3))
        .await
        .unwrap();
    archiver
        .handle_kinesis(&batch(&envelopes, 3, 6))
        .await
        .unwrap();
    // And a later redelivery overlapping both.
    archiver
        .handle_kinesis(&batch(&envelopes, 2, 6))
        .await
        .unwrap();

    let mut expected: Vec<String> = envelopes.iter().map(|e| e.hub_message_id.clone()).collect();
    expected.sort();
    assert_eq!(archived_ids(&archiver), expected);
    let keys: Vec<String> = archiver.objects.0.lock().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "hub.example/shardId-000000000001/2026/12/04/09/01/900.json.gz",
            "hub.example/shardId-000000000001/2026/12/04/09/04/903.json.gz",
        ]
    );
}

#[tokio::test]
async fn a_retried_half_with_nothing_to_archive_leaves_no_second_copy() {
    let archiver = archiver();
    let envelopes: Vec<_> = (0..6)
        .map(|i| envelope(i, if i < 3 { "debug" } else { "reading" }))
        .collect();
    archiver
        .checkpoints
        .crash_next
        .store(true, Ordering::SeqCst);
    assert!(
        archiver
            .handle_kinesis(&batch(&envelopes, 0, 6))
            .await
            .is_err()
    );
    // Bisected: the first half archives nothing, the second writes its records again.
    archiver
        .handle_kinesis(&batch(&envelopes, 0, 3))
        .await
        .unwrap();
    archiver
        .handle_kinesis(&batch(&envelopes, 3, 6))
        .await
        .unwrap();
    let mut expected: Vec<String> = envelopes[3..]
        .iter()
        .map(|e| e.hub_message_id.clone())
        .collect();
    expected.sort();
    assert_eq!(archived_ids(&archiver), expected);
}

#[tokio::test]
async fn the_same_records_always_make_the_same_bytes() {
    let envelopes: Vec<_> = (0..3).map(|i| envelope(i, "reading")).collect();
    let (a, b) = (archiver(), archiver());
    a.handle_kinesis(&batch(&envelopes, 0, 3)).await.unwrap();
    b.handle_kinesis(&batch(&envelopes, 0, 3)).await.unwrap();
    assert_eq!(
        a.objects.0.lock().unwrap().clone(),
        b.objects.0.lock().unwrap().clone()
    );
}

#[test]
fn the_configuration_needs_an_archive_endpoint() {
    let env = |routing: &'static str| {
        Env::from_fn(move |name: &str| match name {
            "HUB_ROUTING" => Some(routing.to_owned()),
            "HUB_ARCHIVE_BUCKET" => Some("b".into()),
            "HUB_ARCHIVE_CHECKPOINTS_TABLE" => Some("t".into()),
            "HUB_TWINS_TABLE" => Some("twins".into()),
            _ => None,
        })
    };
    assert!(ArchiverConfig::from_env(&env("{}")).is_err());
    let config = ArchiverConfig::from_env(&env(
        r#"{"endpoints":{"archive":{"type":"s3","arn":"arn:aws:s3:::b","fileNameFormat":"{YYYY}/{MM}/{DD}/{HH}/{mm}/{iothub}/{partition}"}},"routes":[{"name":"all","endpoint":"archive"}]}"#,
    ))
    .unwrap();
    assert_eq!(config.bucket, "b");
}
