//! Damaged stored items against DynamoDB on LocalStack: a failure no retry can fix is told apart
//! from an outage. Callers get 500 (not a 503 they would retry forever), and the telemetry records
//! that depend on a damaged analytics item go to the dead-letter queue with the reason while the
//! rest of the stream goes on.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use hub_shared::config::vars;
use hub_tests::{
    CustomGateway, clone_table, dynamodb, gateway, register_on, status_and_code, take_matching,
    unique, wait_for_telemetry,
};

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

#[tokio::test]
async fn a_damaged_device_item_answers_500_on_service_and_device_routes() {
    // A registry of the test's own: a damaged item fails listings too, for everyone.
    let table = clone_table(vars::REGISTRY_TABLE, false).await;
    let custom = CustomGateway::start(&[(vars::REGISTRY_TABLE, &table)]).await;
    let owner = gateway().owner_token().await;
    let device = register_on(&custom.client(), &owner, &unique("damaged")).await;
    dynamodb()
        .await
        .update_item()
        .table_name(&table)
        .key("deviceId", s(&device.id))
        .update_expression("SET primaryKey = :garbage")
        .expression_attribute_values(":garbage", s("not base64 at all!"))
        .send()
        .await
        .unwrap();
    let client = custom.client();
    let read = client
        .get(&format!("/devices/{}", device.id), &owner)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(read).await,
        (500, Some("ServerError".into())),
        "the registry function cannot read it"
    );
    let listing = client.get("/devices", &owner).send().await.unwrap();
    assert_eq!(
        status_and_code(listing).await,
        (500, Some("ServerError".into())),
        "a listing that would have to skip it says so rather than leave a device out"
    );
    let sent = client
        .post(&device.events_path(), &device.token())
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(sent).await,
        (500, Some("ServerError".into())),
        "the authorizer cannot read it either"
    );
}

#[tokio::test]
async fn telemetry_for_a_damaged_analytics_state_is_dead_lettered_and_the_rest_goes_on() {
    let gateway = gateway();
    let broken = gateway.register(&unique("damaged-state")).await;
    let healthy = gateway.register(&unique("healthy-state")).await;
    dynamodb()
        .await
        .put_item()
        .table_name(std::env::var(vars::ANALYTICS_TABLE).unwrap())
        .item("pk", s(&format!("state#{}", broken.id)))
        .item("sk", s("-"))
        .item("messageCount", s("not a number"))
        .send()
        .await
        .unwrap();
    let marker = unique("damaged-msg");
    for (device, id) in [(&broken, marker.as_str()), (&healthy, "fine")] {
        let sent = gateway
            .http()
            .post(&device.events_path(), &device.token())
            .header("iothub-messageid", id)
            .body(r#"{"t":1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status().as_u16(), 204);
    }
    wait_for_telemetry(&healthy.id, "window=1m&field=t", |body| {
        body["points"].as_array().is_some_and(|p| !p.is_empty())
    })
    .await;
    let queue = std::env::var(vars::ANALYTICS_DLQ_URL).unwrap();
    let mine = take_matching(&queue, Duration::from_secs(60), |d| {
        d["partitionKey"] == broken.id.as_str()
    })
    .await;
    assert!(
        mine["reason"].as_str().unwrap().contains("cannot be read"),
        "{mine}"
    );
    assert!(
        mine["data"].as_str().is_some(),
        "the record is kept for replay"
    );
}
