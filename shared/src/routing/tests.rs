use serde_json::json;

use super::*;
use crate::domain::device_id::DeviceId;
use crate::domain::envelope::{AuthMethod, SystemProperties};
use crate::domain::timestamp::Timestamp;

fn envelope(body: &str, json: bool) -> TelemetryEnvelope {
    TelemetryEnvelope {
        v: 1,
        hub_message_id: "m-hub".into(),
        device_id: DeviceId::parse("pump-1").unwrap(),
        device_generation_id: "638000000000000000".into(),
        enqueued_time: Timestamp::parse("2026-12-04T10:00:00Z").unwrap(),
        auth_method: AuthMethod::device_key(),
        system_properties: SystemProperties {
            message_id: Some("m-1".into()),
            correlation_id: None,
            content_type: json.then(|| "application/json".into()),
            content_encoding: json.then(|| "UTF-8".into()),
        },
        properties: Properties::from([
            ("processingPath".into(), "hot".into()),
            ("verbose".into(), "true".into()),
            ("severity".into(), "3".into()),
        ]),
        body: body.as_bytes().to_vec(),
    }
}

fn weather() -> TelemetryEnvelope {
    envelope(
        r#"{"Weather":{"Temperature":50,"Time":"2017-03-09T00:00:00.000Z","PrevTemperatures":[20,30,40],"IsEnabled":true,"Location":{"Street":"One Microsoft Way","City":"Redmond","State":"WA"},"HistoricalData":[{"Month":"Feb","Temperature":40},{"Month":"Jan","Temperature":30}]}}"#,
        true,
    )
}

fn twin() -> Value {
    json!({
        "tags": { "deploymentLocation": { "building": "43", "floor": "1" }, "site": "dublin" },
        "properties": {
            "desired": { "telemetryConfig": { "sendFrequency": "5m" }, "$version": 3 },
            "reported": { "telemetryConfig": { "sendFrequency": "5m", "status": "success" }, "$version": 4 }
        }
    })
}

fn matches(condition: &str, envelope: &TelemetryEnvelope) -> bool {
    let twin = twin();
    let view = MessageView::new(envelope, Some(&twin), true);
    let expr = parse_condition(condition).unwrap_or_else(|e| panic!("{condition}: {e}"));
    holds(&expr, &view)
}

#[test]
fn azure_documented_conditions_and_every_operator_and_function() {
    let message = weather();
    let cases = [
        // Application and system properties (Azure's examples).
        ("processingPath = 'hot'", true),
        ("PROCESSINGPATH = 'hot'", true),
        ("processingPath = 'hot' AND verbose = 'true'", true),
        ("processingPath = 'cold' OR verbose = 'true'", true),
        ("NOT (processingPath = 'cold')", true),
        ("$contentEncoding = 'UTF-8'", true),
        ("$contentType = 'application/json'", true),
        ("$messageId = 'm-1'", true),
        ("$correlationId = 'c'", false),
        ("IS_DEFINED($correlationId)", false),
        ("$connectionDeviceId = 'pump-1'", true),
        ("$iothub-connection-device-id = 'pump-1'", true),
        ("$iothub-enqueuedtime > '2026-12-04'", true),
        ("$iothub-message-source = 'Telemetry'", true),
        ("CONTAINS($iothub-connection-auth-method, 'device')", true),
        ("$connectionModuleId = 'x'", false),
        // Application property values are strings: a number compares as undefined, so false.
        ("severity = 3", false),
        ("severity = '3'", true),
        // Body.
        ("$body.Weather.HistoricalData[0].Month = 'Feb'", true),
        (
            "$body.Weather.Temperature = 50 AND $body.Weather.IsEnabled",
            true,
        ),
        ("length($body.Weather.Location.State) = 2", true),
        (
            "$body.Weather.Temperature = 50 AND processingPath = 'hot'",
            true,
        ),
        ("$body.Weather.PrevTemperatures[2] >= 40", true),
        ("$body.Weather.Temperature <> 50", false),
        ("$body.Weather.Temperature != 49", true),
        (
            "$body.Weather.Temperature < 51 AND $body.Weather.Temperature <= 50",
            true,
        ),
        (
            "$body.Weather.Temperature > 49 AND $body.Weather.Temperature >= 50",
            true,
        ),
        ("$body.Weather.Temperature + 10 = 60", true),
        ("$body.Weather.Temperature - 10 = 40", true),
        ("$body.Weather.Temperature * 2 = 100", true),
        ("$body.Weather.Temperature / 2 = 25", true),
        ("$body.Weather.Temperature % 7 = 1", true),
        ("-$body.Weather.Temperature = -50", true),
        ("$body.Weather.Temperature IN [40, 50]", true),
        ("$body.Weather.Temperature NIN [40, 50]", false),
        ("$body.missing = 1", false),
        ("$body.missing = null", false),
        ("NOT $body.missing = 1", false),
        // Twin.
        (
            "$twin.properties.desired.telemetryConfig.sendFrequency = '5m'",
            true,
        ),
        (
            "$twin.properties.reported.telemetryConfig.status = 'success'",
            true,
        ),
        ("$twin.tags.deploymentLocation.floor = '1'", true),
        ("$twin.tags.site = 'cork'", false),
        // Type checks.
        ("IS_DEFINED($body.Weather)", true),
        ("IS_NULL($body.Weather)", false),
        ("IS_BOOL($body.Weather.IsEnabled)", true),
        ("IS_NUMBER($body.Weather.Temperature)", true),
        ("IS_STRING($body.Weather.Time)", true),
        ("IS_OBJECT($body.Weather.Location)", true),
        ("IS_ARRAY($body.Weather.PrevTemperatures)", true),
        ("IS_PRIMITIVE($body.Weather.Location)", false),
        // Strings.
        ("STARTS_WITH($body.Weather.Location.City, 'Red')", true),
        ("STARTSWITH($connectionDeviceId, 'pump')", true),
        ("ENDS_WITH($body.Weather.Location.City, 'mond')", true),
        ("ENDSWITH($body.Weather.Location.City, 'x')", false),
        ("CONTAINS($body.Weather.Location.Street, 'Microsoft')", true),
        ("LOWER($body.Weather.Location.State) = 'wa'", true),
        ("UPPER($body.Weather.Location.City) = 'REDMOND'", true),
        (
            "CONCAT($body.Weather.Location.City, ', ', $body.Weather.Location.State) = 'Redmond, WA'",
            true,
        ),
        ("SUBSTRING($body.Weather.Location.City, 0, 3) = 'Red'", true),
        ("INDEX_OF($body.Weather.Location.City, 'mond') = 3", true),
        // Maths.
        ("ABS(-$body.Weather.Temperature) = 50", true),
        ("CEILING(4.2) = 5 AND FLOOR(4.8) = 4", true),
        ("SIGN(-3) = -1", true),
        ("SQRT(16) = 4 AND SQUARE(3) = 9", true),
        ("POWER(2, 10) = 1024", true),
        ("EXP(0) = 1", true),
        ("true", true),
        ("false", false),
    ];
    for (condition, expected) in cases {
        assert_eq!(matches(condition, &message), expected, "{condition}");
    }
}

#[test]
fn a_body_that_is_not_declared_json_utf8_is_not_queried() {
    let raw = envelope(r#"{"Weather":{"Temperature":50}}"#, false);
    assert!(!matches("$body.Weather.Temperature = 50", &raw));
    assert!(matches("processingPath = 'hot'", &raw));
    let broken = envelope("not json", true);
    assert!(!matches("IS_DEFINED($body)", &broken));
}

fn config(value: Value) -> RoutingConfig {
    serde_json::from_value(value).expect("a configuration")
}

fn endpoints() -> Value {
    json!({
        "critical": { "type": "sqs", "arn": "arn:aws:sqs:eu-west-1:000000000000:critical", "url": "http://q/critical" },
        "alerts": { "type": "sns", "arn": "arn:aws:sns:eu-west-1:000000000000:alerts" },
        "bus": { "type": "eventbridge", "arn": "arn:aws:events:eu-west-1:000000000000:event-bus/b" },
        "copy": { "type": "kinesis", "arn": "arn:aws:kinesis:eu-west-1:000000000000:stream/copy" }
    })
}

#[test]
fn a_message_goes_to_each_chosen_endpoint_once_and_unmatched_ones_fall_back() {
    let table = RouteTable::compile(&config(json!({
        "hubName": "hub-1",
        "endpoints": endpoints(),
        "routes": [
            { "name": "hot", "condition": "processingPath = 'hot'", "endpoint": "critical" },
            { "name": "hot-again", "condition": "$body.Weather.Temperature > 40", "endpoint": "critical" },
            { "name": "all-to-bus", "endpoint": "bus" },
            { "name": "off", "condition": "true", "endpoint": "alerts", "enabled": false },
            { "name": "cold", "condition": "processingPath = 'cold'", "endpoint": "events" }
        ]
    })))
    .unwrap();
    let message = weather();
    let decision = table.decide(&MessageView::new(&message, None, table.reads_body()));
    let names: Vec<&str> = table.names_of(&decision).collect();
    assert_eq!(names, ["hot", "hot-again", "all-to-bus"]);
    let endpoints: Vec<&str> = decision
        .endpoints
        .iter()
        .map(|i| table.endpoint(*i).unwrap().0)
        .collect();
    assert_eq!(endpoints, ["bus", "critical"]);
    assert!(!decision.built_in && !decision.fallback);

    let only_events = RouteTable::compile(&config(json!({
        "endpoints": self::endpoints(),
        "routes": [{ "name": "never", "condition": "false", "endpoint": "critical" }]
    })))
    .unwrap();
    let decision = only_events.decide(&MessageView::new(&message, None, false));
    assert!(decision.built_in && decision.fallback && decision.endpoints.is_empty());

    let no_fallback = RouteTable::compile(&config(json!({
        "endpoints": self::endpoints(),
        "fallback": false,
        "routes": [{ "name": "never", "condition": "false", "endpoint": "critical" }]
    })))
    .unwrap();
    let decision = no_fallback.decide(&MessageView::new(&message, None, false));
    assert_eq!(decision, Decision::default());
}

#[test]
fn enrichments_stamp_static_values_the_hub_name_and_twin_values_per_endpoint() {
    let table = RouteTable::compile(&config(json!({
        "hubName": "hub-1",
        "endpoints": endpoints(),
        "routes": [{ "name": "all", "endpoint": "critical" }],
        "enrichments": [
            { "key": "hub", "value": "$iothubname", "endpoints": ["critical", "bus"] },
            { "key": "site", "value": "$twin.tags.site", "endpoints": ["critical"] },
            { "key": "floor", "value": "$twin.tags.deploymentLocation.floor", "endpoints": ["critical"] },
            { "key": "missing", "value": "$twin.tags.nothing", "endpoints": ["critical"] },
            { "key": "processingPath", "value": "cold", "endpoints": ["critical"] },
            { "key": "team", "value": "ops", "endpoints": ["bus"] },
            { "key": "site-again", "value": "$Twin.tags.site", "endpoints": ["critical"] }
        ]
    })))
    .unwrap();
    assert!(table.reads_twin());
    let message = weather();
    let twin = twin();
    let critical = table
        .endpoint_names()
        .iter()
        .position(|n| n == "critical")
        .unwrap();
    let properties = table.enriched(&message, Some(&twin), critical);
    assert_eq!(properties["hub"], "hub-1");
    assert_eq!(properties["site"], "dublin");
    assert_eq!(
        properties["site-again"], "dublin",
        "$twin is read without regard to case"
    );
    assert_eq!(properties["floor"], "1");
    assert_eq!(properties["missing"], "$twin.tags.nothing");
    assert_eq!(
        properties["processingPath"], "cold",
        "an enrichment overwrites"
    );
    assert!(!properties.contains_key("team"));
    assert_eq!(properties["verbose"], "true");
}

#[test]
fn bad_configurations_are_refused_with_where_and_why() {
    let refused = |value: Value| match RouteTable::compile(&config(value)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted"),
    };
    let parse = refused(json!({
        "endpoints": endpoints(),
        "routes": [{ "name": "bad", "condition": "temperature >\n AND x", "endpoint": "critical" }]
    }));
    assert!(
        parse.contains("route bad") && parse.contains("line 2, column 2"),
        "{parse}"
    );
    for (value, why) in [
        (
            json!({ "routes": [{ "name": "r", "endpoint": "nowhere" }] }),
            "no endpoint is named",
        ),
        (
            json!({ "endpoints": endpoints(), "routes": [{ "name": "r", "endpoint": "critical" }, { "name": "r", "endpoint": "critical" }] }),
            "unique",
        ),
        (
            json!({ "routes": [{ "name": "r", "source": "TwinChangeEvents", "endpoint": "events" }] }),
            "hold device messages",
        ),
        (
            json!({ "endpoints": { "archive": { "type": "s3", "arn": "arn:aws:s3:::b" } },
                    "routes": [{ "name": "r", "source": "DeviceLifecycleEvents", "endpoint": "archive" }] }),
            "hold device messages",
        ),
        (
            json!({ "endpoints": { "events": { "type": "sns", "arn": "arn:aws:sns:r:1:t" } } }),
            "not \"events\"",
        ),
        (
            json!({ "endpoints": { "q": { "type": "sqs", "arn": "arn:aws:sqs:r:1:q" } } }),
            "needs its url",
        ),
        (
            json!({ "endpoints": { "q": { "type": "sns", "arn": "arn:aws:sqs:r:1:q" } } }),
            "not an ARN of its type",
        ),
        (
            json!({ "endpoints": endpoints(), "enrichments": [{ "key": "k", "value": "v", "endpoints": ["events"] }] }),
            "cannot be enriched",
        ),
        (
            json!({ "endpoints": endpoints(), "enrichments": [{ "key": "k", "value": "v", "endpoints": ["x"] }] }),
            "no endpoint is named",
        ),
    ] {
        let message = refused(value);
        assert!(message.contains(why), "{message} should say {why}");
    }
    let shape =
        RouteTable::from_json(r#"{"routes": [{"name": "r", "endpoint": "events", "extra": 1}]}"#)
            .err()
            .unwrap()
            .to_string();
    assert!(shape.contains("extra"), "{shape}");
    let many: Vec<Value> = (0..=MAX_ROUTES)
        .map(|i| json!({ "name": format!("r{i}"), "endpoint": "events" }))
        .collect();
    assert!(refused(json!({ "routes": many })).contains("at most 100 routes"));
}

#[test]
fn registry_events_take_only_their_source_s_routes_and_never_fall_back() {
    use crate::domain::registry::{LifecycleEvent, LifecycleOperation};
    let table = RouteTable::compile(&config(json!({
        "hubName": "hub-1",
        "endpoints": endpoints(),
        "routes": [
            { "name": "twins", "source": "TwinChangeEvents",
              "condition": "$iothub-message-source = 'twinChangeEvents' AND $iothub-message-schema = 'twinChangeNotification' AND $body.properties.reported.firmware = '2.0'",
              "endpoint": "critical" },
            { "name": "lifecycle", "source": "DeviceLifecycleEvents", "condition": "opType = 'createDeviceIdentity'", "endpoint": "alerts" },
            { "name": "connections", "source": "DeviceConnectionStateEvents", "condition": "hubName = 'hub-1' AND IS_DEFINED($body.sequenceNumber)", "endpoint": "bus" },
            { "name": "telemetry", "endpoint": "copy" }
        ]
    })))
    .unwrap();
    let event = |op_type, body: Option<Value>| LifecycleEvent {
        event_id: "e-1".into(),
        op_type,
        hub_name: "hub-1".into(),
        device_id: DeviceId::parse("pump-1").unwrap(),
        generation_id: "638000000000000000".into(),
        etag: "AAAAAAAAAAE=".into(),
        status: crate::domain::device::DeviceStatus::Enabled,
        operation_timestamp: Timestamp::parse("2026-12-04T10:00:00Z").unwrap(),
        body,
    };
    let routed = |event: &LifecycleEvent| {
        let (source, envelope) = event_message(event);
        let decision = table.decide(&MessageView::new(&envelope, None, true).of_source(source));
        assert!(
            !decision.built_in && !decision.fallback,
            "events never fall back"
        );
        table
            .names_of(&decision)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let reported = json!({"version": 4, "properties": {"reported": {"firmware": "2.0"}}});
    assert_eq!(
        routed(&event(LifecycleOperation::UpdateTwin, Some(reported))),
        ["twins"]
    );
    let other = json!({"version": 5, "properties": {"reported": {"firmware": "1.0"}}});
    assert!(routed(&event(LifecycleOperation::UpdateTwin, Some(other))).is_empty());
    assert_eq!(
        routed(&event(LifecycleOperation::CreateDeviceIdentity, None)),
        ["lifecycle"]
    );
    assert!(routed(&event(LifecycleOperation::DeleteDeviceIdentity, None)).is_empty());
    let sequence = json!({"sequenceNumber": "000000000000000000000000000000010000000000000000000001931E6A4A00"});
    assert_eq!(
        routed(&event(
            LifecycleOperation::DeviceDisconnected,
            Some(sequence)
        )),
        ["connections"]
    );

    // What a route reads of an event: Azure's properties, the identity for lifecycle events.
    let (source, envelope) = event_message(&event(LifecycleOperation::CreateDeviceIdentity, None));
    assert_eq!(source, RouteSource::DeviceLifecycleEvents);
    assert_eq!(envelope.hub_message_id, "e-1");
    assert_eq!(envelope.properties["opType"], "createDeviceIdentity");
    assert_eq!(
        envelope.properties["operationTimestamp"],
        "2026-12-04T10:00:00Z"
    );
    assert_eq!(
        envelope.properties["iothub-message-schema"],
        "deviceLifecycleNotification"
    );
    let body: Value = serde_json::from_slice(&envelope.body).unwrap();
    assert_eq!(body["deviceId"], "pump-1");
    assert_eq!(body["status"], "enabled");
    let view = MessageView::new(&envelope, None, true).of_source(source);
    assert!(!matches_view(
        "IS_DEFINED($iothub-connection-auth-method)",
        &view
    ));
    assert!(matches_view("$connectionDeviceId = 'pump-1'", &view));
    // A device cannot pass its message off as an event.
    let mut forged = weather();
    forged.properties.insert(
        "iothub-message-schema".into(),
        "twinChangeNotification".into(),
    );
    let view = MessageView::new(&forged, None, true);
    assert!(!matches_view("IS_DEFINED($iothub-message-schema)", &view));

    // A device message does not take event routes.
    let message = weather();
    let decision = table.decide(&MessageView::new(&message, None, true));
    assert_eq!(table.names_of(&decision).collect::<Vec<_>>(), ["telemetry"]);

    let unknown = RouteTable::from_json(
        r#"{"routes": [{ "name": "r", "source": "SomethingElse", "endpoint": "events" }]}"#,
    );
    assert!(
        unknown.is_err_and(|e| e.to_string().contains("documented shape")),
        "an unknown source is refused"
    );
}

fn matches_view(condition: &str, view: &MessageView<'_>) -> bool {
    holds(&parse_condition(condition).unwrap(), view)
}
