//! The full Terraform configuration (functions, HTTP API, authorizer, permissions) validates and
//! plans cleanly against LocalStack, and its IAM is least-privilege.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use hub_tests::{load_environment, repo_root};
use serde_json::Value;

fn terraform(args: &[&str], state: &Path) -> std::process::Output {
    Command::new(repo_root().join("localstack/terraform.sh"))
        .args(args)
        .env("TF_STATE_FILE", state)
        .output()
        .unwrap_or_else(|e| panic!("cannot run terraform: {e}"))
}

/// An empty but valid zip archive: the plan only hashes the function packages.
fn write_placeholder_zips(dir: &Path) {
    let route_functions = hub_shared::routes::Function::ALL.map(|f| f.name());
    for function in ["authorize", "router", "archiver"]
        .into_iter()
        .chain(route_functions)
    {
        let folder = dir.join(function);
        std::fs::create_dir_all(&folder).unwrap();
        let mut empty_zip = b"PK\x05\x06".to_vec();
        empty_zip.extend([0u8; 18]);
        std::fs::write(folder.join("bootstrap.zip"), empty_zip).unwrap();
    }
}

fn resources<'a>(plan: &'a Value, kind: &str) -> Vec<&'a Value> {
    plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == kind)
        .map(|r| &r["change"]["after"])
        .collect()
}

#[test]
fn full_configuration_validates_and_plans_with_least_privilege() {
    load_environment();
    let work = std::env::temp_dir().join(format!("hub-plan-{}", uuid::Uuid::new_v4()));
    let artifacts = work.join("lambda");
    write_placeholder_zips(&artifacts);
    let state = work.join("fresh.tfstate");

    let validate = terraform(&["validate", "-no-color"], &state);
    assert!(
        validate.status.success(),
        "terraform validate: {}",
        String::from_utf8_lossy(&validate.stderr)
    );

    // Routes to one endpoint of each type, so the router's mapping and grants are planned.
    let routing_vars = work.join("routing.tfvars.json");
    std::fs::write(
        &routing_vars,
        serde_json::json!({
            "routing_endpoints": {
                "critical": { "type": "sqs", "arn": "arn:aws:sqs:us-east-1:000000000000:critical", "url": "http://sqs.local/000000000000/critical" },
                "alerts": { "type": "sns", "arn": "arn:aws:sns:us-east-1:000000000000:alerts" },
                "copy": { "type": "kinesis", "arn": "arn:aws:kinesis:us-east-1:000000000000:stream/copy" },
                "bus": { "type": "eventbridge", "arn": "arn:aws:events:us-east-1:000000000000:event-bus/hub" }
            },
            "routes": [
                { "name": "critical", "condition": "level = 'critical'", "endpoint": "critical" },
                { "name": "everything", "endpoint": "bus" },
                { "name": "cold", "endpoint": "archive" },
                { "name": "twin-changes", "source": "TwinChangeEvents", "condition": "opType = 'updateTwin'", "endpoint": "critical" }
            ],
            "routing_enrichments": [{ "key": "site", "value": "$twin.tags.site", "endpoints": ["critical"] }],
            "archive": { "enabled": true }
        })
        .to_string(),
    )
    .unwrap();
    let plan_file = work.join("plan.bin");
    let plan = terraform(
        &[
            "plan",
            "-no-color",
            "-detailed-exitcode",
            "-var",
            "deploy_compute=true",
            "-var",
            &format!("lambda_artifacts_dir={}", artifacts.display()),
            "-var-file",
            &routing_vars.display().to_string(),
            &format!("-out={}", plan_file.display()),
        ],
        &state,
    );
    let output = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(
        plan.status.code(),
        Some(2),
        "plan should succeed with changes:\n{output}\n{}",
        String::from_utf8_lossy(&plan.stderr)
    );

    let shown = terraform(&["show", "-json", &plan_file.display().to_string()], &state);
    assert!(
        shown.status.success(),
        "terraform show: {}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let plan: Value = serde_json::from_slice(&shown.stdout).unwrap();

    let functions = resources(&plan, "aws_lambda_function");
    // The HTTP functions, the authorizer, the router and the archiver.
    assert_eq!(functions.len(), 3 + hub_shared::routes::Function::ALL.len());
    for function in &functions {
        assert_eq!(function["runtime"], "provided.al2023");
        assert_eq!(function["logging_config"][0]["log_format"], "JSON");
    }
    // Long polls (C2D receive, desired properties) wait up to 20 s inside one invocation.
    for long_poller in ["registry", "commands"] {
        let function = functions
            .iter()
            .find(|f| {
                f["function_name"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("-{long_poller}"))
            })
            .unwrap();
        assert!(
            function["timeout"].as_u64().unwrap() > 20,
            "{long_poller} must outlive a 20 s long poll"
        );
    }

    let routes: BTreeSet<String> = resources(&plan, "aws_apigatewayv2_route")
        .iter()
        .map(|r| r["route_key"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = hub_shared::routes::ROUTES
        .iter()
        .map(|r| r.key.to_owned())
        .collect();
    assert_eq!(routes, expected);
    for route in resources(&plan, "aws_apigatewayv2_route") {
        let key = route["route_key"].as_str().unwrap();
        let public = hub_shared::routes::Route::by_key(key)
            .is_some_and(|r| r.access == hub_shared::routes::Access::Public);
        let expected = if public { "NONE" } else { "CUSTOM" };
        assert_eq!(
            route["authorization_type"], expected,
            "{key}: every non-public route goes through the authorizer"
        );
    }
    let [authorizer] = resources(&plan, "aws_apigatewayv2_authorizer")
        .try_into()
        .unwrap();
    assert_eq!(authorizer["authorizer_type"], "REQUEST");
    assert_eq!(authorizer["enable_simple_responses"], true);
    assert_eq!(
        authorizer["identity_sources"],
        serde_json::json!(["$request.header.Authorization"])
    );

    assert!(
        resources(&plan, "aws_iam_role_policy_attachment").is_empty(),
        "no managed policies are attached"
    );

    let mappings = resources(&plan, "aws_lambda_event_source_mapping");
    assert_eq!(
        mappings.len(),
        6,
        "command requests, job work and the router's copy of the registry events (SQS), telemetry to analytics, the router and the archiver (Kinesis)"
    );
    let archive_mapping = mappings
        .iter()
        .find(|m| m["maximum_batching_window_in_seconds"] == 300)
        .expect("the archive's mapping gathers records for five minutes");
    assert_eq!(archive_mapping["bisect_batch_on_function_error"], true);
    assert_eq!(archive_mapping["batch_size"], 10000);
    for mapping in mappings
        .iter()
        .filter(|m| m["maximum_batching_window_in_seconds"] != 300)
    {
        assert_eq!(
            mapping["function_response_types"],
            serde_json::json!(["ReportBatchItemFailures"])
        );
    }
    let kinesis_mappings: Vec<&&Value> = mappings
        .iter()
        .filter(|m| m["starting_position"] == "TRIM_HORIZON")
        .collect();
    assert_eq!(kinesis_mappings.len(), 3);
    for kinesis in kinesis_mappings {
        assert_eq!(kinesis["bisect_batch_on_function_error"], true);
        assert!(
            kinesis["maximum_retry_attempts"]
                .as_i64()
                .is_some_and(|n| n > 0)
        );
        assert!(kinesis["maximum_record_age_in_seconds"].as_i64().is_some());
        assert!(
            kinesis["batch_size"].as_i64().is_some()
                && kinesis["maximum_batching_window_in_seconds"]
                    .as_i64()
                    .is_some()
        );
        assert_eq!(
            kinesis["destination_config"][0]["on_failure"]
                .as_array()
                .map(Vec::len),
            Some(1),
            "an on-failure destination"
        );
    }
    assert_eq!(
        resources(&plan, "aws_cloudwatch_event_rule")[0]["schedule_expression"],
        "rate(1 minute)"
    );
    let targets = resources(&plan, "aws_cloudwatch_event_target");
    assert_eq!(
        targets.len(),
        2,
        "the sweep runs the commands and registry functions"
    );
    for target in &targets {
        assert_eq!(
            target["retry_policy"][0]["maximum_retry_attempts"], 3,
            "{target}"
        );
        assert_eq!(
            target["dead_letter_config"].as_array().map(Vec::len),
            Some(1),
            "undeliverable schedule events are kept"
        );
    }
    let invoke_configs = resources(&plan, "aws_lambda_function_event_invoke_config");
    assert_eq!(
        invoke_configs.len(),
        2,
        "failed sweeps are retried, then recorded"
    );
    for config in &invoke_configs {
        assert_eq!(
            config["destination_config"][0]["on_failure"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
    }
    // The functions publishing registry events copy them to the router's queue: their
    // environments take the variable naming it (unknown until apply, so read from the
    // configuration), under the name the functions read.
    for publisher in ["registry", "ingest", "commands"] {
        let references = &plan["configuration"]["root_module"]["module_calls"][publisher]["expressions"]
            ["environment"]["references"];
        assert!(
            references
                .as_array()
                .is_some_and(|r| r.contains(&serde_json::json!("local.routing_events_environment"))),
            "{publisher}: {references}"
        );
    }
    let routing_tf =
        std::fs::read_to_string(hub_tests::repo_root().join("infra/routing.tf")).unwrap();
    assert!(routing_tf.contains(&format!(
        "{} = module.routing_events[0].url",
        hub_shared::config::vars::ROUTING_EVENTS_QUEUE_URL
    )));
    let queues = resources(&plan, "aws_sqs_queue");
    assert_eq!(
        queues.len(),
        16,
        "with the router's copy of the registry events and its dead-letter queue"
    );
    let buckets = resources(&plan, "aws_s3_bucket");
    assert_eq!(buckets.len(), 1, "the archive");
    let [table] = resources(&plan, "aws_glue_catalog_table")[..] else {
        panic!("one Athena table over the archive")
    };
    assert_eq!(table["parameters"]["projection.enabled"], "true");
    assert_eq!(
        table["parameters"]["projection.dt.format"],
        "yyyy/MM/dd/HH/mm"
    );
    let tables: BTreeSet<String> = resources(&plan, "aws_dynamodb_table")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .map(|n| {
            n.rsplit_once('-')
                .map_or(n, |(_, suffix)| suffix)
                .to_owned()
        })
        .collect();
    for table in ["registry", "twins", "tags", "calls", "jobs"] {
        assert!(tables.contains(table), "{table} missing: {tables:?}");
    }
    assert!(
        queues.iter().all(|q| q["sqs_managed_sse_enabled"] == true),
        "queues are encrypted"
    );
    let redriven = queues
        .iter()
        .filter(|q| {
            q["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-command-requests"))
        })
        .count();
    assert_eq!(redriven, 1);
    let job_mapping = resources(&plan, "aws_lambda_event_source_mapping")
        .into_iter()
        .find(|m| m["batch_size"] == 1)
        .expect("the job-work mapping");
    assert_eq!(
        job_mapping["scaling_config"][0]["maximum_concurrency"], 2,
        "jobs run with bounded concurrency"
    );
    for permission in resources(&plan, "aws_lambda_permission") {
        if let Some(source) = permission["source_arn"].as_str() {
            assert!(
                !source.ends_with("/*/*"),
                "invoke permissions are per route: {source}"
            );
        }
    }

    // Alarms: every dead-letter queue, every function's errors and throttles, the mapping's
    // iterator age, the API's 5xx, every table's throttles, the queues only others drain.
    let alarms = resources(&plan, "aws_cloudwatch_metric_alarm");
    let names: BTreeSet<String> = alarms
        .iter()
        .filter_map(|a| a["alarm_name"].as_str().map(str::to_owned))
        .collect();
    for expected in [
        "iothub-command-requests-dlq-has-messages",
        "iothub-c2d-dead-letter-has-messages",
        "iothub-analytics-dead-letter-has-messages",
        "iothub-analytics-failed-batches-has-messages",
        "iothub-sweep-failures-has-messages",
        "iothub-c2d-feedback-unread",
        "iothub-alerts-unread",
        "iothub-registry-events-unread",
        "iothub-analytics-behind",
        "iothub-api-5xx",
        "iothub-registry-throttled",
        "iothub-commands-throttled",
        "iothub-twin-tags-throttled",
        "iothub-method-calls-throttled",
        "iothub-jobs-throttled",
        "iothub-job-work-dlq-has-messages",
        "iothub-routing-dead-letter-has-messages",
        "iothub-routing-failed-batches-has-messages",
        "iothub-routing-behind",
        "iothub-routing-events-behind",
        "iothub-routing-events-dlq-has-messages",
        "iothub-archive-failed-batches-has-messages",
    ] {
        assert!(
            names.contains(expected),
            "alarm {expected} missing: {names:?}"
        );
    }
    for function in [
        "authorize",
        "registry",
        "ingest",
        "commands",
        "analytics",
        "dashboard",
        "router",
        "archiver",
    ] {
        for kind in ["errors", "throttles"] {
            let name = format!("iothub-{function}-{kind}");
            assert!(names.contains(&name), "alarm {name} missing");
        }
    }
    // Dead-letter queues (the routed events' among them), undrained queues, errors and
    // throttles of 8 functions, the two prompt mappings' iterator age, the routed events' age,
    // the API's 5xx, the tables' throttles.
    assert_eq!(alarms.len(), 10 + 3 + 16 + 2 + 1 + 1 + 10);
    let topics = resources(&plan, "aws_sns_topic");
    assert_eq!(topics.len(), 1, "an alarm topic when none is given");

    std::fs::remove_dir_all(&work).ok();
}

#[test]
fn routes_terraform_cannot_deliver_are_refused_at_plan_time() {
    load_environment();
    let work = std::env::temp_dir().join(format!("hub-plan-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&work).unwrap();
    let state = work.join("fresh.tfstate");
    for (routes, why) in [
        (
            serde_json::json!([{ "name": "twins", "source": "TwinChangeEvents", "endpoint": "events" }]),
            "Routes of twin change, lifecycle and connection-state events go to custom endpoints",
        ),
        (
            serde_json::json!([{ "name": "x", "source": "Telemetry", "endpoint": "events" }]),
            "A route's source is DeviceMessages, TwinChangeEvents",
        ),
    ] {
        let vars = work.join("routes.tfvars.json");
        std::fs::write(&vars, serde_json::json!({ "routes": routes }).to_string()).unwrap();
        let plan = terraform(
            &[
                "plan",
                "-no-color",
                "-var-file",
                &vars.display().to_string(),
            ],
            &state,
        );
        let stderr = String::from_utf8_lossy(&plan.stderr);
        assert!(!plan.status.success(), "{routes} was planned");
        // Terraform wraps long messages: compare without the line breaks.
        let flat = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(why), "{routes}: {stderr}");
    }
    std::fs::remove_dir_all(&work).ok();
}

/// The policies as applied to LocalStack (every document known): no wildcard actions, no
/// unscoped resources. Which actions are granted, and that each is used, is the IAM audit's
/// (`tests/tests/iam_audit.rs`).
#[test]
fn applied_policies_name_exact_actions_and_resources() {
    load_environment();
    let state_file = repo_root().join(".local/terraform/local.tfstate");
    let shown = terraform(
        &["show", "-json", &state_file.display().to_string()],
        &state_file,
    );
    assert!(
        shown.status.success(),
        "terraform show: {}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let state: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let mut checked = 0;
    for module in state["values"]["root_module"]["child_modules"]
        .as_array()
        .unwrap()
    {
        for resource in module["resources"].as_array().into_iter().flatten() {
            if resource["type"] != "aws_iam_role_policy" {
                continue;
            }
            let document: Value =
                serde_json::from_str(resource["values"]["policy"].as_str().unwrap()).unwrap();
            for statement in document["Statement"].as_array().unwrap() {
                let list = |v: &Value| match v {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_owned()).collect(),
                    _ => vec![],
                };
                assert_eq!(statement["Effect"], "Allow");
                for action in list(&statement["Action"]) {
                    assert!(!action.contains('*'), "wildcard action {action}");
                    checked += 1;
                }
                for resource in list(&statement["Resource"]) {
                    assert_ne!(resource, "*", "unscoped resource in {statement}");
                    // S3 grants objects by key pattern: the archive's objects are its keys.
                    let archive_objects = resource.starts_with("arn:aws:s3:::iothub-archive-")
                        && resource.ends_with("/*")
                        && resource.matches('*').count() == 1;
                    assert!(
                        !resource.contains('*')
                            || resource.ends_with(":log-stream:*")
                            || archive_objects,
                        "wildcard resource {resource}"
                    );
                    // S3 ARNs have no account field; the archive's bucket name carries it.
                    assert!(
                        resource.contains(":000000000000:")
                            || (archive_objects && resource.contains("-000000000000-")),
                        "ARNs carry the account: {resource}"
                    );
                }
            }
        }
    }
    assert!(checked >= 40, "only {checked} actions were checked");
}
