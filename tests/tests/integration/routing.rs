//! Message routing against LocalStack: the router, built as its `main` builds it, delivers a
//! Kinesis batch to a real queue, topic, event bus and stream, each receiving exactly the
//! messages its routes match (enriched), and dead-letters what a deleted queue cannot take
//! without holding back the others.

use std::time::Duration;

use aws_lambda_events::kinesis::KinesisEvent;
use hub_shared::aws::Clients;
use hub_shared::config::Env;
use hub_shared::domain::envelope::{
    AuthMethod, DeviceMessage, Properties, Sender, SystemProperties, TelemetryEnvelope,
};
use hub_shared::domain::timestamp::Timestamp;
use hub_shared::lambda::Function;
use hub_tests::{fresh_queue, load_environment, receive_until, sqs, unique};
use serde_json::{Value, json};

async fn queue_arn(url: &str) -> String {
    sqs()
        .await
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap_or_else(|e| panic!("queue attributes: {e:?}"))
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .unwrap_or_else(|| panic!("no queue arn"))
}

fn message(device: &str, level: &str, temperature: f64) -> TelemetryEnvelope {
    let sender = Sender {
        device_id: hub_shared::DeviceId::parse(device).unwrap(),
        generation_id: "638000000000000000".into(),
        auth_method: AuthMethod::device_key(),
    };
    TelemetryEnvelope::stamp(
        DeviceMessage {
            body: json!({ "temperature": temperature })
                .to_string()
                .into_bytes(),
            properties: Properties::from([("level".into(), level.into())]),
            system: SystemProperties {
                content_type: Some("application/json".into()),
                content_encoding: Some("utf-8".into()),
                ..Default::default()
            },
        },
        &sender,
        Timestamp::now(),
    )
}

fn kinesis_event(envelopes: &[TelemetryEnvelope]) -> Value {
    hub_shared::fakes::kinesis_event("routing-test", &unique("shardId-routing"), 500, envelopes)
}

fn ids(bodies: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = bodies
        .iter()
        .map(|b| b["hubMessageId"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(envelopes: &[&TelemetryEnvelope]) -> Vec<String> {
    let mut ids: Vec<String> = envelopes.iter().map(|e| e.hub_message_id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn each_endpoint_type_receives_exactly_its_routes_messages_and_a_deleted_queue_dead_letters()
{
    load_environment();
    let clients = Clients::load().await;
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    let account = "000000000000";

    // A queue for critical messages.
    let critical = fresh_queue("route-critical").await;
    // A topic, read through a queue subscribed to it (raw delivery: the body is the message).
    let topic = clients
        .sns
        .create_topic()
        .name(unique("route-topic"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create topic: {e:?}"))
        .topic_arn
        .unwrap();
    let topic_reader = fresh_queue("route-topic-reader").await;
    clients
        .sns
        .subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(queue_arn(&topic_reader).await)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e:?}"));
    // An event bus, read through a rule that targets a queue.
    let bus = unique("route-bus");
    let bus_arn = clients
        .eventbridge
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bus: {e:?}"))
        .event_bus_arn
        .unwrap();
    let bus_reader = fresh_queue("route-bus-reader").await;
    let hub_name = unique("hub");
    clients
        .eventbridge
        .put_rule()
        .name("telemetry")
        .event_bus_name(&bus)
        .event_pattern(json!({ "source": [hub_name], "detail-type": [hub_shared::aws::endpoints::TELEMETRY_DETAIL_TYPE] }).to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("put rule: {e:?}"));
    clients
        .eventbridge
        .put_targets()
        .rule("telemetry")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("reader")
                .arn(queue_arn(&bus_reader).await)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("put targets: {e:?}"));
    // A stream.
    let stream = hub_tests::fresh_stream("route-copy").await;
    // A queue that is gone by the time the router sends to it.
    let gone = fresh_queue("route-gone").await;
    let gone_arn = queue_arn(&gone).await;
    sqs()
        .await
        .delete_queue()
        .queue_url(&gone)
        .send()
        .await
        .unwrap();
    let dead_letters = fresh_queue("route-dead-letters").await;

    let routing = json!({
        "hubName": hub_name,
        "endpoints": {
            "critical": { "type": "sqs", "arn": queue_arn(&critical).await, "url": critical },
            "topic": { "type": "sns", "arn": topic },
            "bus": { "type": "eventbridge", "arn": bus_arn },
            "copy": { "type": "kinesis", "arn": format!("arn:aws:kinesis:{region}:{account}:stream/{stream}") },
            "gone": { "type": "sqs", "arn": gone_arn, "url": gone },
        },
        "routes": [
            { "name": "critical", "condition": "level = 'critical'", "endpoint": "critical" },
            { "name": "hot", "condition": "$body.temperature > 90", "endpoint": "topic" },
            { "name": "warm", "condition": "$body.temperature > 50 AND $body.temperature <= 90", "endpoint": "bus" },
            { "name": "all-critical-copies", "condition": "level = 'critical'", "endpoint": "copy" },
            { "name": "to-nowhere", "condition": "level = 'critical' AND $body.temperature > 90", "endpoint": "gone" },
        ],
        "enrichments": [{ "key": "hub", "value": "$iothubname", "endpoints": ["critical", "bus"] }],
    })
    .to_string();
    let env = {
        let routing = routing.clone();
        let dead_letters = dead_letters.clone();
        Env::from_fn(move |name: &str| match name {
            "HUB_ROUTING" => Some(routing.clone()),
            "HUB_TWINS_TABLE" => std::env::var("HUB_TWINS_TABLE").ok(),
            "HUB_ROUTING_DLQ_URL" => Some(dead_letters.clone()),
            "HUB_ROUTING_MAX_ATTEMPTS" => Some("2".into()),
            _ => None,
        })
    };
    let config = hub_router::RouterConfig::from_env(&env).unwrap_or_else(|e| panic!("{e}"));
    let router = hub_router::build(&config, &clients);

    let mut tail = hub_local::stream::TelemetryTail::from_now(clients.kinesis.clone(), &stream)
        .await
        .unwrap_or_else(|e| panic!("tail: {e}"));
    let device = unique("routed");
    let hot_critical = message(&device, "critical", 95.0);
    let warm_critical = message(&device, "critical", 60.0);
    let hot_info = message(&device, "info", 99.0);
    let warm_info = message(&device, "info", 70.0);
    let cold_info = message(&device, "info", 10.0);
    let all = [
        &hot_critical,
        &warm_critical,
        &hot_info,
        &warm_info,
        &cold_info,
    ];
    let envelopes: Vec<TelemetryEnvelope> = all.iter().map(|e| (*e).clone()).collect();
    let response = router
        .invoke(kinesis_event(&envelopes))
        .await
        .unwrap_or_else(|e| panic!("router: {e}"));
    let event: KinesisEvent = serde_json::from_value(kinesis_event(&envelopes)).unwrap();
    assert_eq!(event.records.len(), 5);
    assert_eq!(response["batchItemFailures"], json!([]), "{response}");

    let within = Duration::from_secs(20);
    let got = receive_until(&critical, within, |seen| seen.len() >= 2).await;
    assert_eq!(ids(&got), sorted(&[&hot_critical, &warm_critical]));
    assert!(
        got.iter()
            .all(|b| b["properties"]["hub"] == json!(hub_name))
    );

    let got = receive_until(&topic_reader, within, |seen| seen.len() >= 2).await;
    assert_eq!(ids(&got), sorted(&[&hot_critical, &hot_info]));
    assert!(
        got.iter().all(|b| b["properties"].get("hub").is_none()),
        "not enriched for the topic"
    );

    let got = receive_until(&bus_reader, within, |seen| seen.len() >= 2).await;
    let details: Vec<Value> = got.iter().map(|e| e["detail"].clone()).collect();
    assert_eq!(ids(&details), sorted(&[&warm_critical, &warm_info]));
    assert!(got.iter().all(|e| e["source"] == json!(hub_name)));
    assert!(
        details
            .iter()
            .all(|d| d["properties"]["hub"] == json!(hub_name))
    );

    let copies: Vec<Value> = tail
        .read_until(within, |records| records.len() >= 2)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|r| serde_json::from_slice(&r.data).unwrap())
        .collect();
    assert_eq!(ids(&copies), sorted(&[&hot_critical, &warm_critical]));

    let letters = receive_until(&dead_letters, within, |seen| !seen.is_empty()).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["endpoint"], "gone");
    assert_eq!(
        letters[0]["hubMessageId"],
        json!(hot_critical.hub_message_id)
    );
    assert!(letters[0]["reason"].as_str().is_some_and(|r| !r.is_empty()));
}

#[tokio::test]
async fn twin_change_and_lifecycle_events_are_routed_through_the_router_s_copy_of_the_events_queue()
{
    use hub_shared::config::vars;
    load_environment();
    let integration = fresh_queue("route-events-integration").await;
    let copy = fresh_queue("route-events-copy").await;
    let ops = fresh_queue("route-events-ops").await;
    let dead_letters = fresh_queue("route-events-dead-letters").await;
    let routing = json!({
        "hubName": hub_tests::gateway().host_name,
        "endpoints": { "ops": { "type": "sqs", "arn": queue_arn(&ops).await, "url": ops } },
        "routes": [
            { "name": "eco", "source": "TwinChangeEvents",
              "condition": "$body.properties.desired.mode = 'eco'", "endpoint": "ops" },
            { "name": "created", "source": "DeviceLifecycleEvents",
              "condition": "opType = 'createDeviceIdentity'", "endpoint": "ops" },
        ],
        "enrichments": [{ "key": "site", "value": "$twin.tags.site", "endpoints": ["ops"] }],
    })
    .to_string();
    // The environment Terraform gives the functions when a route reads events: the publishers
    // copy them to the router's queue. (The local environment routes no events, so the IAM
    // audit has no grants to compare these calls with; the plan test checks the wiring.)
    let mut settings = hub_tests::settings();
    settings.not_deployed = true;
    let mut set = |function: &str, name: &str, value: &str| {
        settings
            .functions
            .get_mut(function)
            .unwrap_or_else(|| panic!("no {function}"))
            .environment
            .insert(name.to_owned(), value.to_owned());
    };
    for function in ["registry", "ingest", "commands"] {
        set(function, vars::ROUTING_EVENTS_QUEUE_URL, &copy);
    }
    set("router", vars::ROUTING, &routing);
    set("router", vars::ROUTING_DLQ_URL, &dead_letters);
    let custom = hub_tests::CustomGateway::with_settings(
        settings,
        &[(vars::REGISTRY_EVENTS_QUEUE_URL, &integration)],
    )
    .await;
    // The router's SQS mapping on the copy, as the local gateway runs it.
    let mapping = tokio::spawn(hub_local::event_sources::poll_queue(
        std::sync::Arc::clone(&custom.hub),
        hub_local::event_sources::SqsMappingOptions {
            function: hub_local::hub::FunctionName::Router,
            queue_url: copy.clone(),
            batch_size: 10,
            batching_window: Duration::from_secs(1),
        },
    ));

    let client = custom.client();
    let owner = hub_tests::gateway().owner_token().await;
    let id = unique("routed-events");
    hub_tests::register_on(&client, &owner, &id).await;
    for patch in [
        json!({ "tags": { "site": "dublin" }, "properties": { "desired": { "mode": "eco" } } }),
        json!({ "properties": { "desired": { "mode": "boost" } } }),
    ] {
        let patched = client
            .patch(&format!("/twins/{id}"), &owner)
            .json(&patch)
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status().as_u16(), 200);
    }

    // Back ends still read every event from the integration queue.
    let events = receive_until(&integration, Duration::from_secs(30), |seen| {
        seen.len() >= 3
    })
    .await;
    let mut operations: Vec<&str> = events
        .iter()
        .map(|e| e["opType"].as_str().unwrap())
        .collect();
    operations.sort();
    assert_eq!(
        operations,
        ["createDeviceIdentity", "updateTwin", "updateTwin"]
    );

    // The ops queue gets the creation and the eco patch, as routed envelopes.
    let routed = receive_until(&ops, Duration::from_secs(30), |seen| seen.len() >= 2).await;
    let mut sources: Vec<(&str, &str)> = routed
        .iter()
        .map(|r| {
            (
                r["messageSource"].as_str().unwrap_or_default(),
                r["properties"]["opType"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    sources.sort();
    assert_eq!(
        sources,
        [
            ("deviceLifecycleEvents", "createDeviceIdentity"),
            ("twinChangeEvents", "updateTwin")
        ]
    );
    let event_ids: std::collections::BTreeSet<&str> = events
        .iter()
        .map(|e| e["eventId"].as_str().unwrap())
        .collect();
    for message in &routed {
        assert_eq!(message["deviceId"], id.as_str());
        assert!(
            event_ids.contains(message["hubMessageId"].as_str().unwrap()),
            "the event's id, to deduplicate by: {message}"
        );
    }
    let eco = routed
        .iter()
        .find(|r| r["messageSource"] == "twinChangeEvents")
        .unwrap();
    assert_eq!(eco["properties"]["site"], "dublin", "enriched: {eco}");
    // Nothing more, once the mapping has taken every copied event: the boost patch matched no
    // route, and nothing was dead-lettered.
    let sqs = sqs().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        use aws_sdk_sqs::types::QueueAttributeName as Name;
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&copy)
            .attribute_names(Name::ApproximateNumberOfMessages)
            .attribute_names(Name::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap_or_else(|e| panic!("queue attributes: {e:?}"))
            .attributes
            .unwrap_or_default();
        let waiting = |name: Name| attributes.get(&name).is_none_or(|n| n != "0");
        if !waiting(Name::ApproximateNumberOfMessages)
            && !waiting(Name::ApproximateNumberOfMessagesNotVisible)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the router's mapping did not take every event: {attributes:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for queue in [&ops, &dead_letters] {
        let extra = sqs
            .receive_message()
            .queue_url(queue)
            .wait_time_seconds(2)
            .send()
            .await
            .unwrap_or_else(|e| panic!("receive: {e:?}"));
        assert!(
            extra.messages().is_empty(),
            "{queue}: {:?}",
            extra.messages()
        );
    }
    mapping.abort();
}
