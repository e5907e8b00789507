//! The IAM audit: every AWS call each function's code made during the LocalStack suites is
//! granted by its role in the applied Terraform state, and every grant was used, nothing more.
//!
//! `make test` runs the suites with `HUB_AWS_CALL_LOG` set (the local gateway then records each
//! function's calls, see `hub_local::aws_calls`) and runs this afterwards, explicitly:
//! `cargo test --test iam_audit -- --ignored`. It reads the policies and each function's
//! environment from the LocalStack apply (`localstack/terraform.sh show -json`). Statements whose
//! id starts with `Platform` are used by Lambda itself with the function's role (event source
//! mappings polling, on-failure destinations), not by the code, and `WriteOwnLogs` by the runtime;
//! the full-stack stage exercises those. A test that compared nothing fails.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use hub_local::aws_calls::{RecordedCall, read_calls};
use hub_tests::repo_root;
use serde_json::Value;

/// (function, IAM action, variable naming the resource, index).
type Grant = (String, String, String, Option<String>);

/// The IAM actions AWS checks for an API operation.
fn required_actions(action: &str) -> Vec<String> {
    match action {
        "sqs:SendMessageBatch" => vec!["sqs:SendMessage".into()],
        "sqs:DeleteMessageBatch" => vec!["sqs:DeleteMessage".into()],
        "sqs:ChangeMessageVisibilityBatch" => vec!["sqs:ChangeMessageVisibility".into()],
        other => vec![other.to_owned()],
    }
}

/// Grants that name a batch operation AWS does not know as an action: some emulators check
/// them; AWS ignores them. Used when the batch operation was called.
fn emulator_alias(action: &str) -> bool {
    matches!(
        action,
        "sqs:SendMessageBatch" | "sqs:DeleteMessageBatch" | "sqs:ChangeMessageVisibilityBatch"
    )
}

fn state() -> Value {
    let state = repo_root().join(".local/terraform/local.tfstate");
    let output = Command::new(repo_root().join("localstack/terraform.sh"))
        .args(["show", "-json", &state.display().to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run terraform: {e}"));
    assert!(
        output.status.success(),
        "terraform show: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("state JSON: {e}"))
}

fn list(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => vec![],
    }
}

/// The variable (and index) of a function's environment an ARN stands for: a table or stream
/// by its name, a queue by its URL's last segment.
fn resource_of(
    arn: &str,
    environment: &BTreeMap<String, String>,
) -> Option<(String, Option<String>)> {
    let mut parts = arn.splitn(6, ':');
    let service = parts.nth(2)?;
    let rest = parts.nth(2)?;
    let (name, index, is_url) = match service {
        "dynamodb" => {
            let table = rest.strip_prefix("table/")?;
            match table.split_once("/index/") {
                Some((name, index)) => (name, Some(index.to_owned()), false),
                None => (table, None, false),
            }
        }
        "kinesis" => (rest.strip_prefix("stream/")?, None, false),
        // arn:aws:s3:::<bucket>/<key pattern>: the bucket.
        "s3" => (rest.split('/').next()?, None, false),
        "sqs" => (rest, None, true),
        _ => return None,
    };
    environment
        .iter()
        .find(|(_, value)| {
            if is_url {
                value.contains("://") && value.ends_with(&format!("/{name}"))
            } else {
                value.as_str() == name
            }
        })
        .map(|(variable, _)| (variable.clone(), index))
}

#[test]
#[ignore = "run by `make test` after the suites that record the calls"]
fn every_call_is_granted_and_every_grant_is_used() {
    let log = std::env::var_os("HUB_AWS_CALL_LOG").unwrap_or_else(|| {
        panic!("HUB_AWS_CALL_LOG is not set: run this after the suites recorded calls (`make test` does)")
    });
    let calls: BTreeSet<RecordedCall> = read_calls(std::path::Path::new(&log))
        .unwrap_or_else(|e| panic!("reading the call log: {e}"));
    let state = state();
    let functions = &state["values"]["outputs"]["local_emulation"]["value"]["functions"];
    let modules = state["values"]["root_module"]["child_modules"]
        .as_array()
        .cloned()
        .unwrap_or_default();

    let mut grants: BTreeSet<Grant> = BTreeSet::new();
    let mut unmapped = Vec::new();
    let mut statements = 0;
    // A function that made no call ran nowhere in the suites (the router has no mapping while
    // no route delivers beyond the stream and the archive): nothing to compare it with.
    let ran: BTreeSet<&str> = calls.iter().map(|c| c.function.as_str()).collect();
    for (function, settings) in functions.as_object().into_iter().flatten() {
        if !ran.contains(function.as_str()) {
            println!("IAM audit: {function} made no AWS call here; its grants are not compared");
            continue;
        }
        let environment: BTreeMap<String, String> =
            serde_json::from_value(settings["environment"].clone()).unwrap_or_default();
        let module = modules
            .iter()
            .find(|m| m["address"] == format!("module.{function}"))
            .unwrap_or_else(|| panic!("module.{function} is not in the state"));
        let policy = module["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["type"] == "aws_iam_role_policy")
            .and_then(|r| r["values"]["policy"].as_str())
            .unwrap_or_else(|| panic!("module.{function} has no role policy in the state"));
        let document: Value = serde_json::from_str(policy).unwrap();
        for statement in document["Statement"].as_array().into_iter().flatten() {
            let sid = statement["Sid"].as_str().unwrap_or_default();
            if sid == "WriteOwnLogs" || sid.starts_with("Platform") {
                continue;
            }
            statements += 1;
            for resource in list(&statement["Resource"]) {
                let Some((variable, index)) = resource_of(&resource, &environment) else {
                    unmapped.push(format!(
                        "{function}/{sid}: {resource} is not named by any variable of the function"
                    ));
                    continue;
                };
                for action in list(&statement["Action"]) {
                    grants.insert((function.clone(), action, variable.clone(), index.clone()));
                }
            }
        }
    }
    assert!(
        unmapped.is_empty(),
        "grants on resources the function does not know: {unmapped:#?}"
    );

    let mut ungranted = Vec::new();
    let mut used: BTreeSet<Grant> = BTreeSet::new();
    for call in &calls {
        let Some(variable) = &call.variable else {
            ungranted.push(format!(
                "{} called {} on {}, which none of its variables names",
                call.function, call.action, call.resource
            ));
            continue;
        };
        for action in required_actions(&call.action) {
            let grant = (
                call.function.clone(),
                action,
                variable.clone(),
                call.index.clone(),
            );
            if grants.contains(&grant) {
                used.insert(grant);
            } else {
                ungranted.push(format!("{grant:?} (called as {})", call.action));
            }
        }
        if emulator_alias(&call.action) {
            used.insert((
                call.function.clone(),
                call.action.clone(),
                variable.clone(),
                call.index.clone(),
            ));
        }
    }
    let unused: Vec<&Grant> = grants.difference(&used).collect();

    println!(
        "IAM audit: {} distinct calls recorded, {} grants in {} statements of {} functions; {} used",
        calls.len(),
        grants.len(),
        statements,
        functions.as_object().map_or(0, |f| f.len()),
        used.len()
    );
    for grant in &grants {
        println!(
            "  {} {grant:?}",
            if used.contains(grant) {
                "used  "
            } else {
                "UNUSED"
            }
        );
    }
    assert!(
        !calls.is_empty() && !grants.is_empty() && statements > 0,
        "nothing was compared: {} calls, {} grants",
        calls.len(),
        grants.len()
    );
    assert!(
        ungranted.is_empty(),
        "calls the functions' roles do not grant: {ungranted:#?}"
    );
    assert!(
        unused.is_empty(),
        "grants no call used (remove them, or test the code path that needs them): {unused:#?}"
    );
}
