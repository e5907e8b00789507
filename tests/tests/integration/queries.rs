//! Twin queries (`POST /devices/query`) and service statistics against DynamoDB on LocalStack,
//! on a registry, twins table and tag index of the test's own, so counts are exact: each query
//! form, paging with continuation, GROUP BY counts equal to the registry's statistics, the tag
//! index following tag changes and deletions, and bad queries refused with where they go wrong.

use std::collections::BTreeSet;

use hub_shared::config::vars;
use hub_tests::{
    Client, CustomGateway, clone_table, dynamodb, gateway, register_on, status_and_code,
};
use serde_json::{Value, json};

/// Results of every page of `query`, `page` at a time, with the number of requests it took.
async fn run(client: &Client, owner: &str, query: &str, page: usize) -> (Vec<Value>, usize) {
    client.query_all(owner, query, page).await
}

fn ids(items: &[Value]) -> BTreeSet<String> {
    items
        .iter()
        .map(|t| t["deviceId"].as_str().unwrap().to_owned())
        .collect()
}

fn names(range: impl Iterator<Item = usize>) -> BTreeSet<String> {
    range.map(|i| format!("q-{i:02}")).collect()
}

/// A gateway whose registry, twins and tag index are empty tables of its own.
async fn own_registry() -> (CustomGateway, String) {
    let registry = clone_table(vars::REGISTRY_TABLE, false).await;
    let twins = clone_table(vars::TWINS_TABLE, false).await;
    let tags = clone_table(vars::TWIN_TAGS_TABLE, false).await;
    let gateway = CustomGateway::start(&[
        (vars::REGISTRY_TABLE, &registry),
        (vars::TWINS_TABLE, &twins),
        (vars::TWIN_TAGS_TABLE, &tags),
    ])
    .await;
    (gateway, tags)
}

#[tokio::test]
async fn queries_filter_project_group_and_page_over_twins() {
    let (custom, tags_table) = own_registry().await;
    let client = custom.client();
    let owner = gateway().owner_token().await;
    let mut devices = Vec::new();
    for i in 0..25 {
        let device = register_on(&client, &owner, &format!("q-{i:02}")).await;
        let site = ["a", "b", "c"][i % 3];
        let response = client
            .patch(&format!("/twins/{}", device.id), &owner)
            .json(&json!({ "tags": {
                "site": site,
                "floor": i,
                "location": { "building": format!("b{}", i % 2) },
            }}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        devices.push(device);
    }
    // Five devices report a firmware version (and so count as active).
    for device in &devices[..5] {
        let response = client
            .patch(
                &format!("/devices/{}/twin/properties/reported", device.id),
                &device.token(),
            )
            .json(&json!({ "firmware": "2.0", "type": "chiller" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }

    // A tag equality (the tag index), paged 4 at a time: every match once, nothing else.
    let (site_a, requests) = run(
        &client,
        &owner,
        "SELECT * FROM devices WHERE tags.site = 'a'",
        4,
    )
    .await;
    assert_eq!(ids(&site_a), names((0..25).step_by(3)));
    assert_eq!(site_a.len(), 9, "no device twice");
    assert_eq!(requests, 3);
    assert_eq!(site_a[0]["properties"]["desired"]["$version"], 1);
    assert!(site_a[0]["etag"].is_string());

    // Conditions the index cannot serve read the registry, with the same answers.
    for (query, expected) in [
        ("SELECT * FROM devices WHERE tags.floor > 20", names(21..25)),
        (
            "SELECT * FROM devices WHERE tags.floor >= 3 AND tags.floor < 6 OR deviceId = 'q-20'",
            names([3, 4, 5, 20].into_iter()),
        ),
        (
            "SELECT * FROM devices WHERE tags.location.building = 'b1' AND tags.site = 'b'",
            names([1, 7, 13, 19].into_iter()),
        ),
        (
            "SELECT * FROM devices WHERE properties.reported.firmware = '2.0'",
            names(0..5),
        ),
        (
            "SELECT * FROM devices WHERE IS_DEFINED(properties.reported.type) AND tags.site IN ['a', 'b']",
            names([0, 1, 3, 4].into_iter()),
        ),
        (
            "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'q-2') AND tags.site NIN ['a']",
            names([20, 22, 23].into_iter()),
        ),
        (
            "SELECT * FROM devices WHERE status = 'enabled' AND tags.floor = 7",
            names(7..8),
        ),
        (
            "SELECT * FROM devices WHERE connectionState = 'Connected'",
            names(0..5),
        ),
        (
            "SELECT * FROM devices WHERE tags.missing = 1",
            BTreeSet::new(),
        ),
    ] {
        let (found, _) = run(&client, &owner, query, 3).await;
        assert_eq!(ids(&found), expected, "{query}");
        assert_eq!(found.len(), expected.len(), "{query}: no device twice");
    }

    // Projections, TOP, and the item type Azure's SDKs read.
    let response = client
        .post("/devices/query", &owner)
        .json(&json!({ "query": "SELECT deviceId, tags.site, tags.location.building AS b FROM devices WHERE deviceId = 'q-04'" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-ms-item-type"], "Raw");
    let projected: Value = response.json().await.unwrap();
    assert_eq!(
        projected,
        json!([{ "deviceId": "q-04", "site": "b", "b": "b0" }])
    );
    let (top, requests) = run(&client, &owner, "SELECT TOP 5 * FROM devices", 2).await;
    assert_eq!((top.len(), requests), (5, 3));

    // GROUP BY counts add up to the registry's own statistics.
    let (groups, _) = run(
        &client,
        &owner,
        "SELECT tags.site AS site, COUNT() AS devices FROM devices GROUP BY tags.site",
        2,
    )
    .await;
    assert_eq!(
        groups,
        vec![
            json!({ "site": "a", "devices": 9 }),
            json!({ "site": "b", "devices": 8 }),
            json!({ "site": "c", "devices": 8 }),
        ]
    );
    let statistics: Value = client.get_json("/statistics/devices", &owner).await;
    let (total, _) = run(&client, &owner, "SELECT COUNT() AS total FROM devices", 10).await;
    assert_eq!(
        total,
        vec![json!({ "total": statistics["totalDeviceCount"] })]
    );
    assert_eq!(statistics["totalDeviceCount"], 25);

    // Connected means active within the window: the five that reported.
    let service: Value = client.get_json("/statistics/service", &owner).await;
    assert_eq!(service, json!({ "connectedDeviceCount": 5 }));

    // The index follows changes: a device moved to another site, a tag removed, a device deleted.
    let moved = client
        .patch("/twins/q-00", &owner)
        .json(&json!({ "tags": { "site": "z" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status().as_u16(), 200);
    let deleted = client
        .delete("/devices/q-03", &owner)
        .header("if-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    let (site_a, _) = run(
        &client,
        &owner,
        "SELECT * FROM devices WHERE tags.site = 'a'",
        100,
    )
    .await;
    assert_eq!(ids(&site_a), names((6..25).step_by(3)));
    let (site_z, _) = run(
        &client,
        &owner,
        "SELECT * FROM devices WHERE tags.site = 'z'",
        100,
    )
    .await;
    assert_eq!(ids(&site_z), names(0..1));
    let cleared = client
        .patch("/twins/q-00", &owner)
        .json(&json!({ "tags": { "site": null } }))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status().as_u16(), 200);
    let (site_z, _) = run(
        &client,
        &owner,
        "SELECT * FROM devices WHERE tags.site = 'z'",
        100,
    )
    .await;
    assert!(site_z.is_empty());
    let left = dynamodb()
        .await
        .query()
        .table_name(&tags_table)
        .key_condition_expression("tagEntry = :e")
        .expression_attribute_values(
            ":e",
            aws_sdk_dynamodb::types::AttributeValue::S("site=\"z\"".into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(left.count, 0, "the removed tag's index entry is gone");
    let deleted_entries = dynamodb()
        .await
        .query()
        .table_name(&tags_table)
        .key_condition_expression("tagEntry = :e AND deviceId = :d")
        .expression_attribute_values(
            ":e",
            aws_sdk_dynamodb::types::AttributeValue::S("site=\"a\"".into()),
        )
        .expression_attribute_values(
            ":d",
            aws_sdk_dynamodb::types::AttributeValue::S("q-03".into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        deleted_entries.count, 0,
        "a deleted device's entries go with it"
    );

    // A search by id prefix reads the devices it names (the id index), not the registry, and
    // follows a deletion.
    let (search, _) = run(
        &client,
        &owner,
        "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'q-0')",
        4,
    )
    .await;
    assert_eq!(
        ids(&search),
        names((0..10).filter(|&i| i != 3)),
        "q-03 was deleted"
    );
    let response = client
        .post("/devices/query", &owner)
        .json(&json!({ "query": "SELECT deviceId FROM devices WHERE STARTSWITH(deviceId, 'q-1')" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["x-hub-devices-read"],
        "10",
        "only the ten devices named q-1…"
    );
    let found: Vec<Value> = response.json().await.unwrap();
    assert_eq!(ids(&found), names(10..20));
}

#[tokio::test]
async fn bad_queries_are_refused_with_where_they_go_wrong() {
    let gateway = gateway();
    let client = gateway.http();
    let owner = gateway.owner_token().await;
    let post = |body: Value| client.post("/devices/query", &owner).json(&body);
    for (body, mentions) in [
        (
            json!({ "query": "SELECT * FROM devices WHERE" }),
            "line 1, column 28",
        ),
        (
            json!({ "query": "SELECT * FROM devices WHERE tags.x = 'a" }),
            "never closed",
        ),
        (
            json!({ "query": "SELECT * FROM devices.jobs" }),
            "devices.jobs",
        ),
        (json!({ "query": "" }), "with a query"),
        (json!({ "sql": "SELECT * FROM devices" }), "with a query"),
    ] {
        let response = post(body.clone()).send().await.unwrap();
        let status = response.status().as_u16();
        let code = response
            .headers()
            .get("iothub-errorcode")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        assert_eq!(status, 400, "{body}: {text}");
        assert_eq!(code.as_deref(), Some("ArgumentInvalid"), "{body}");
        assert!(text.contains(mentions), "{body}: {text}");
    }
    let response = post(json!({ "query": "SELECT * FROM devices" }))
        .header("x-ms-max-item-count", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(response).await.0, 400);
    let response = post(json!({ "query": "SELECT * FROM devices" }))
        .header("x-ms-continuation", "not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(response).await.0, 400);

    // A continuation of one query does not continue another.
    let response = post(json!({ "query": "SELECT * FROM devices" }))
        .header("x-ms-max-item-count", "1")
        .send()
        .await
        .unwrap();
    let token = response.headers()["x-ms-continuation"]
        .to_str()
        .unwrap()
        .to_owned();
    let response = post(json!({ "query": "SELECT deviceId FROM devices" }))
        .header("x-ms-continuation", token)
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(response).await.0, 400);

    // Querying needs RegistryRead; a device token is refused.
    let device = gateway.register(&hub_tests::unique("q-auth")).await;
    let response = client
        .post("/devices/query", &device.token())
        .json(&json!({ "query": "SELECT * FROM devices" }))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(response).await.0, 401);
}
