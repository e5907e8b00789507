use serde_json::{Value, json};

use super::*;

fn twin() -> Value {
    json!({
        "deviceId": "pump-1",
        "status": "enabled",
        "lastActivityTime": "2026-12-01T10:00:00.000Z",
        "version": 7,
        "tags": { "location": { "region": "US", "plant": "Redmond43" }, "floor": 3, "line": "a" },
        "properties": {
            "desired": { "telemetryConfig": { "sendFrequencyInSecs": 300 }, "$version": 4 },
            "reported": {
                "connectivity": { "type": "cellular" },
                "readings": [1, 2, 3],
                "firmware": null,
                "$version": 7
            }
        }
    })
}

fn matches(condition: &str) -> bool {
    let query = parse_query(&format!("SELECT * FROM devices WHERE {condition}"))
        .unwrap_or_else(|e| panic!("{condition}: {e}"));
    holds(query.filter.as_ref().expect("a filter"), &twin())
}

#[test]
fn conditions_follow_the_languages_rules() {
    for (condition, expected) in [
        ("tags.location.region = 'US'", true),
        ("tags.location.region = \"US\"", true),
        ("tags.location.region != 'US'", false),
        ("tags.location.region <> 'EU'", true),
        ("tags.floor > 2 AND tags.floor <= 3", true),
        ("tags.floor >= 4 OR tags.line = 'a'", true),
        ("NOT tags.floor = 3", false),
        ("tags.floor = 3.0", true),
        ("tags.floor * 2 + 1 = 7", true),
        ("tags.floor % 2 = 1", true),
        ("-tags.floor = -3", true),
        ("tags.floor / 0 = 1", false),
        (
            "properties.reported.connectivity.type IN ['wired', 'cellular']",
            true,
        ),
        (
            "properties.reported.connectivity.type NIN ['wired', 'cellular']",
            false,
        ),
        (
            "properties.reported.connectivity.type NOT IN ['wired']",
            true,
        ),
        ("properties.reported.readings[1] = 2", true),
        ("tags['line'] = 'a'", true),
        ("properties.desired.$version = 4", true),
        ("$version = 7", false),
        ("version = 7", true),
        ("DeviceID = 'pump-1'", true),
        ("STARTSWITH(deviceId, 'pump')", true),
        ("ENDSWITH(deviceId, '-2')", false),
        ("CONTAINS(tags.location.plant, 'mond')", true),
        ("LOWER(tags.location.region) = 'us'", true),
        ("LENGTH(deviceId) = 6", true),
        ("IS_DEFINED(tags.location)", true),
        ("IS_DEFINED(tags.building)", false),
        ("NOT IS_DEFINED(tags.building)", true),
        ("IS_NULL(properties.reported.firmware)", true),
        ("IS_NULL(tags.building)", false),
        (
            "IS_STRING(tags.line) AND IS_NUMBER(tags.floor) AND IS_OBJECT(tags.location)",
            true,
        ),
        (
            "IS_ARRAY(properties.reported.readings) AND IS_PRIMITIVE(tags.floor)",
            true,
        ),
        ("IS_BOOL(tags.floor)", false),
        ("lastActivityTime > '2026-12-01T09:00:00Z'", true),
        // Undefined is neither true nor false: neither a comparison nor its negation holds.
        ("tags.building = 'b1'", false),
        ("tags.building != 'b1'", false),
        ("NOT (tags.building = 'b1')", false),
        ("tags.building = 'b1' OR tags.line = 'a'", true),
        // Different types never compare.
        ("tags.floor = '3'", false),
        ("tags.floor != '3'", false),
        ("tags.line > 1", false),
        ("properties.reported.firmware = null", true),
        ("tags.select = 1", false),
        ("tags.from = 1 or TRUE", true),
    ] {
        assert_eq!(matches(condition), expected, "{condition}");
    }
}

#[test]
fn errors_say_where_the_query_goes_wrong() {
    for (text, line, column, mentions) in [
        ("SELECT * FROM devices WHERE", 1, 28, "expected a value"),
        ("SELECT * FORM devices", 1, 10, "expected FROM"),
        (
            "SELECT * FROM devices WHERE tags.x = 'open",
            1,
            38,
            "never closed",
        ),
        (
            "SELECT * FROM devices WHERE tags.x == 1",
            1,
            37,
            "expected a value",
        ),
        (
            "SELECT * FROM devices WHERE tags.x = 1 tags",
            1,
            40,
            "end of the query",
        ),
        (
            "SELECT * FROM devices\nWHERE STARTSWITH(deviceId)",
            2,
            7,
            "takes 2",
        ),
        (
            "SELECT * FROM devices WHERE NOPE(deviceId)",
            1,
            29,
            "no function",
        ),
        ("SELECT * FROM devices WHERE tags.x IN ('a')", 1, 39, "'['"),
        (
            "SELECT * FROM devices WHERE tags.x # 1",
            1,
            36,
            "unexpected character",
        ),
        ("SELECT TOP 0 * FROM devices", 1, 12, "TOP"),
        ("SELECT deviceId, COUNT() FROM devices", 1, 1, "GROUP BY"),
        (
            "SELECT * FROM devices GROUP BY tags.site",
            1,
            1,
            "cannot be grouped",
        ),
    ] {
        let error = parse_query(text).expect_err(text);
        let located = error.located(text);
        assert!(
            located.starts_with(&format!("line {line}, column {column}:")),
            "{text}: {located}"
        );
        assert!(located.contains(mentions), "{text}: {located}");
    }
}

#[test]
fn hostile_texts_are_refused_not_overflowed() {
    let deep = format!(
        "SELECT * FROM devices WHERE {}1{}",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    assert!(parse_query(&deep).is_err());
    let long = format!(
        "SELECT * FROM devices WHERE tags.x = '{}'",
        "a".repeat(9000)
    );
    assert!(parse_query(&long).is_err());
    assert!(parse_query("").is_err());
    assert!(parse_condition("'\\").is_err());
}

#[test]
fn projections_take_the_last_name_or_the_alias() {
    let query = parse_query(
        "SELECT deviceId, tags.location.region, properties.reported.connectivity.type AS link, \
         tags.missing FROM devices",
    )
    .expect("parses");
    assert_eq!(
        project(&query, &twin()),
        json!({ "deviceId": "pump-1", "region": "US", "link": "cellular" })
    );
    let all = parse_query("select * from devices").expect("parses");
    assert_eq!(project(&all, &twin()), twin());
}

#[test]
fn groups_count_and_aggregate() {
    let query = parse_query(
        "SELECT tags.site AS site, COUNT() AS devices, AVG(tags.floor) AS floor, MAX(tags.floor) \
         FROM devices GROUP BY tags.site",
    )
    .expect("parses");
    assert!(query.aggregates());
    let mut groups = Groups::new();
    for (site, floor) in [("b", 1), ("a", 2), ("b", 3), ("a", 4), ("b", 5)] {
        groups.add(&query, &json!({ "tags": { "site": site, "floor": floor } }));
    }
    groups.add(&query, &json!({ "tags": {} }));
    assert_eq!(
        groups.rows(&query),
        vec![
            json!({ "site": "a", "devices": 2, "floor": 3, "$4": 4 }),
            json!({ "site": "b", "devices": 3, "floor": 3, "$4": 5 }),
            json!({ "devices": 1 }),
        ]
    );
    let count = parse_query("SELECT COUNT() AS total FROM devices WHERE tags.x = 1").expect("ok");
    assert_eq!(Groups::new().rows(&count), vec![json!({ "total": 0 })]);
}

#[test]
fn routing_conditions_parse_alone() {
    let condition =
        parse_condition("$body.temperature > 30 AND $connectionDeviceId = 'a'").expect("parses");
    let message = json!({ "$body": { "temperature": 31 }, "$connectionDeviceId": "a" });
    assert!(holds(&condition, &message));
    assert_eq!(condition.conjuncts().len(), 2);
    assert_eq!(condition.paths().len(), 2);
}

#[test]
fn long_operator_chains_are_refused_before_they_can_overflow_a_stack() {
    let chain = |n: usize| vec!["1"; n + 1].join(" + ");
    let ok = parse_condition(&format!("{} > 0", chain(256))).expect("256 operators parse");
    assert!(holds(&ok, &json!({})));
    let refused = parse_condition(&format!("{} > 0", chain(300))).unwrap_err();
    assert!(
        refused.to_string().contains("more than 256 operators"),
        "{refused}"
    );
    // The input the fuzzer found: 4,089 characters, mostly subtractions.
    let found = format!("0{}", "-0".repeat(2000));
    assert!(parse_condition(&found).is_err());
}
