//! Device twins: the back end sets desired properties and tags, the device reads them and
//! reports back, the back end sees the report.

use hub_tests::{gateway, unique};

#[tokio::test]
async fn desired_properties_reach_the_device_and_reports_come_back() {
    let gateway = gateway();
    let device = gateway.register(&unique("e2e-twin")).await;
    let service = gateway.policy_token("service").await;
    let client = gateway.http();
    let twin_path = format!("/twins/{}", device.id);
    let patched: serde_json::Value = client
        .patch(&twin_path, &service)
        .json(&serde_json::json!({"tags": {"site": "lab"}, "properties": {"desired": {"telemetryInterval": 5}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["tags"]["site"], "lab");
    let desired_version = patched["properties"]["desired"]["$version"]
        .as_u64()
        .unwrap();

    let desired: serde_json::Value = client
        .get_json(
            &format!(
                "/devices/{}/twin/properties/desired?sinceVersion={}&waitSeconds=5",
                device.id,
                desired_version - 1
            ),
            &device.token(),
        )
        .await;
    assert_eq!(desired["telemetryInterval"], 5, "{desired}");

    let reported = client
        .patch(
            &format!("/devices/{}/twin/properties/reported", device.id),
            &device.token(),
        )
        .json(&serde_json::json!({"telemetryInterval": 5, "firmware": "1.4.2"}))
        .send()
        .await
        .unwrap();
    assert!(reported.status().is_success(), "{}", reported.status());
    let twin: serde_json::Value = client.get_json(&twin_path, &service).await;
    assert_eq!(
        twin["properties"]["reported"]["firmware"], "1.4.2",
        "{twin}"
    );
    assert_eq!(twin["properties"]["desired"]["telemetryInterval"], 5);
}
