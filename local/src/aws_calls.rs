//! Recording which AWS calls each function makes, on which of its resources, for the IAM audit
//! (`tests/tests/iam_audit.rs`): every action a function's code calls must be granted to its
//! role, and every grant must be used. An SDK interceptor on each function's clients reads the
//! operation (`X-Amz-Target`) and the resources in the request body, and names each resource by
//! the variable of the function's environment that holds it (`HUB_REGISTRY_TABLE`), so the audit
//! can match it to Terraform's policy whatever the resource is called in a given environment.
//!
//! Recording is on when `HUB_AWS_CALL_LOG` names a directory: each process appends the calls it
//! has not seen before to `<dir>/<pid>.jsonl`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use serde::{Deserialize, Serialize};

/// One kind of call: a function, an API operation, and the resource it named.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordedCall {
    pub function: String,
    /// `service:Operation` as the API names it (`dynamodb:TransactWriteItems` is recorded per
    /// item, as IAM authorizes it: `dynamodb:PutItem`, `dynamodb:UpdateItem`, ...).
    pub action: String,
    /// The variable of the function's environment whose value names the resource; `None` if no
    /// variable does (the audit fails on it: the code reached something Terraform did not give).
    pub variable: Option<String>,
    /// The resource as named in the request, for messages.
    pub resource: String,
    /// A DynamoDB index, when the call used one.
    pub index: Option<String>,
}

/// Where call records go, shared by the interceptors of one process.
#[derive(Debug)]
struct Log {
    file: Mutex<Option<std::fs::File>>,
    seen: Mutex<BTreeSet<RecordedCall>>,
}

impl Log {
    fn global() -> Option<Arc<Log>> {
        static LOG: std::sync::OnceLock<Option<Arc<Log>>> = std::sync::OnceLock::new();
        LOG.get_or_init(|| {
            let dir = PathBuf::from(std::env::var_os("HUB_AWS_CALL_LOG")?);
            let opened = std::fs::create_dir_all(&dir).and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("{}.jsonl", std::process::id())))
            });
            match opened {
                Ok(file) => Some(Arc::new(Log {
                    file: Mutex::new(Some(file)),
                    seen: Mutex::new(BTreeSet::new()),
                })),
                Err(error) => {
                    tracing::error!(%error, dir = %dir.display(), "cannot record AWS calls");
                    None
                }
            }
        })
        .clone()
    }

    fn record(&self, call: RecordedCall) {
        if !self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(call.clone())
        {
            return;
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(file), Ok(line)) = (file.as_mut(), serde_json::to_string(&call)) {
            // One write per line, opened for appending: lines of several processes never mix.
            let _ = file.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// The interceptor for one function's clients.
#[derive(Debug, Clone)]
pub struct CallRecorder {
    function: String,
    /// Resource name (table, queue URL, stream) -> the variable that holds it.
    variables: BTreeMap<String, String>,
    log: Arc<Log>,
}

impl CallRecorder {
    /// A recorder for `function`, if recording is on.
    pub fn for_function(function: &str, environment: &BTreeMap<String, String>) -> Option<Self> {
        let log = Log::global()?;
        let variables = environment
            .iter()
            .map(|(name, value)| (value.clone(), name.clone()))
            .collect();
        Some(Self {
            function: function.to_owned(),
            variables,
            log,
        })
    }

    fn call(&self, action: String, resource: &str, index: Option<&str>) -> RecordedCall {
        RecordedCall {
            function: self.function.clone(),
            action,
            variable: self.variables.get(resource).cloned(),
            resource: resource.to_owned(),
            index: index.map(str::to_owned),
        }
    }
}

/// The calls one request makes, from its `X-Amz-Target` and JSON body.
pub fn calls_of(target: &str, body: &serde_json::Value) -> Vec<(String, String, Option<String>)> {
    let (prefix, operation) = target.split_once('.').unwrap_or(("", target));
    let service = if prefix.starts_with("DynamoDB") {
        "dynamodb"
    } else if prefix.starts_with("Kinesis") {
        "kinesis"
    } else if prefix.starts_with("AmazonSQS") {
        "sqs"
    } else {
        "unknown"
    };
    let text = |value: &serde_json::Value| value.as_str().map(str::to_owned);
    let index = text(&body["IndexName"]);
    let mut calls = Vec::new();
    match (service, operation) {
        ("dynamodb", "TransactWriteItems" | "TransactGetItems") => {
            for item in body["TransactItems"].as_array().into_iter().flatten() {
                for (kind, action) in [
                    ("Put", "PutItem"),
                    ("Update", "UpdateItem"),
                    ("Delete", "DeleteItem"),
                    ("ConditionCheck", "ConditionCheckItem"),
                    ("Get", "GetItem"),
                ] {
                    if let Some(table) = text(&item[kind]["TableName"]) {
                        calls.push((format!("dynamodb:{action}"), table, None));
                    }
                }
            }
        }
        ("dynamodb", "BatchGetItem" | "BatchWriteItem") => {
            for table in body["RequestItems"].as_object().into_iter().flatten() {
                calls.push((format!("dynamodb:{operation}"), table.0.clone(), None));
            }
        }
        ("dynamodb", _) => {
            if let Some(table) = text(&body["TableName"]) {
                calls.push((format!("dynamodb:{operation}"), table, index));
            }
        }
        ("kinesis", _) => {
            let stream = text(&body["StreamName"]).or_else(|| {
                text(&body["StreamARN"]).map(|arn| arn.rsplit('/').next().unwrap_or("").to_owned())
            });
            if let Some(stream) = stream {
                calls.push((format!("kinesis:{operation}"), stream, None));
            }
        }
        ("sqs", _) => {
            if let Some(queue) = text(&body["QueueUrl"]) {
                calls.push((format!("sqs:{operation}"), queue, None));
            }
        }
        _ => calls.push((format!("{service}:{operation}"), String::new(), None)),
    }
    calls
}

impl Intercept for CallRecorder {
    fn name(&self) -> &'static str {
        "CallRecorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        // S3 speaks REST (the operation is the method and path), the others JSON with a target.
        if request.headers().get("x-amz-target").is_none()
            && let Some((action, bucket)) = s3_call(request.method(), request.uri())
        {
            self.log.record(self.call(action, &bucket, None));
            return Ok(());
        }
        let target = request.headers().get("x-amz-target").unwrap_or("unknown");
        let body: serde_json::Value = request
            .body()
            .bytes()
            .and_then(|bytes| serde_json::from_slice(bytes).ok())
            .unwrap_or_default();
        for (action, resource, index) in calls_of(target, &body) {
            self.log
                .record(self.call(action, &resource, index.as_deref()));
        }
        Ok(())
    }
}

/// An S3 object call of a path-style request (`PUT /bucket/key`): its action and bucket.
pub fn s3_call(method: &str, uri: &str) -> Option<(String, String)> {
    let path = uri
        .split("://")
        .nth(1)
        .map_or(uri, |rest| rest.find('/').map_or("", |at| &rest[at..]));
    let path = path.split('?').next().unwrap_or_default();
    let (bucket, key) = path.trim_start_matches('/').split_once('/')?;
    if bucket.is_empty() || key.is_empty() {
        return None;
    }
    let action = match method {
        "PUT" => "s3:PutObject",
        "GET" | "HEAD" => "s3:GetObject",
        "DELETE" => "s3:DeleteObject",
        _ => return None,
    };
    Some((action.to_owned(), bucket.to_owned()))
}

/// Reads every call recorded under `dir`.
pub fn read_calls(dir: &std::path::Path) -> std::io::Result<BTreeSet<RecordedCall>> {
    let mut calls = BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            for line in std::fs::read_to_string(&path)?.lines() {
                if let Ok(call) = serde_json::from_str(line) {
                    calls.insert(call);
                }
            }
        }
    }
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn s3_object_calls_are_read_from_method_and_path() {
        assert_eq!(
            s3_call(
                "PUT",
                "http://127.0.0.1:4566/archive-bucket/hub/shard/2026/1.json.gz?x-id=PutObject"
            ),
            Some(("s3:PutObject".into(), "archive-bucket".into()))
        );
        assert_eq!(s3_call("PUT", "/bucket-only"), None);
        assert_eq!(s3_call("POST", "http://h/b/k"), None);
    }

    #[test]
    fn transactions_are_recorded_per_item_as_iam_authorizes_them() {
        let body = json!({"TransactItems": [
            {"Put": {"TableName": "registry"}},
            {"Update": {"TableName": "registry"}},
            {"ConditionCheck": {"TableName": "twins"}},
            {"Delete": {"TableName": "twins"}},
        ]});
        let actions: Vec<(String, String)> =
            calls_of("DynamoDB_20120810.TransactWriteItems", &body)
                .into_iter()
                .map(|(a, r, _)| (a, r))
                .collect();
        assert_eq!(
            actions,
            [
                ("dynamodb:PutItem".to_owned(), "registry".to_owned()),
                ("dynamodb:UpdateItem".into(), "registry".into()),
                ("dynamodb:ConditionCheckItem".into(), "twins".into()),
                ("dynamodb:DeleteItem".into(), "twins".into()),
            ]
        );
    }

    #[test]
    fn queues_streams_tables_and_indexes_are_named_as_the_request_names_them() {
        assert_eq!(
            calls_of(
                "DynamoDB_20120810.Query",
                &json!({"TableName": "t", "IndexName": "outbox"})
            ),
            [("dynamodb:Query".into(), "t".into(), Some("outbox".into()))]
        );
        assert_eq!(
            calls_of(
                "DynamoDB_20120810.BatchGetItem",
                &json!({"RequestItems": {"a": {}, "b": {}}})
            )
            .len(),
            2
        );
        assert_eq!(
            calls_of(
                "Kinesis_20131202.PutRecords",
                &json!({"StreamName": "telemetry"})
            ),
            [("kinesis:PutRecords".into(), "telemetry".into(), None)]
        );
        assert_eq!(
            calls_of(
                "AmazonSQS.SendMessageBatch",
                &json!({"QueueUrl": "http://q/1/events"})
            ),
            [(
                "sqs:SendMessageBatch".into(),
                "http://q/1/events".into(),
                None
            )]
        );
    }
}
