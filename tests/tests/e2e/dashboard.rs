//! What the dashboard stands on, from outside: its files on `/ui` (no token, gzip, strict
//! policy, Azure-style 404s), `GET /session`, and the fleet list a page per request.

use hub_tests::{gateway, status_and_code, unique};

#[tokio::test]
async fn the_dashboard_is_served_on_the_apis_own_origin_without_a_token() {
    let client = gateway().http();
    let page = client
        .request(reqwest::Method::GET, "/ui", None)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert_eq!(page.headers()["content-type"], "text/html");
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    let html = page.text().await.unwrap();
    let script = html
        .split('"')
        .find(|s| s.starts_with("/ui/") && s.ends_with(".js"))
        .unwrap_or_else(|| panic!("no script in {html}"))
        .to_owned();

    let gzipped = client
        .request(reqwest::Method::GET, &script, None)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.status().as_u16(), 200);
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert!(
        gzipped.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let bytes = gzipped.bytes().await.unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "a gzip stream");
    let plain = client
        .request(reqwest::Method::GET, &script, None)
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert!(plain.bytes().await.unwrap().len() > bytes.len());

    let missing = client
        .request(reqwest::Method::GET, "/ui/nothing-here.js", None)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(missing).await,
        (404, Some("NotFound".into()))
    );
}

#[tokio::test]
async fn a_session_names_the_policy_and_its_rights_and_refuses_devices() {
    let gateway = gateway();
    let client = gateway.http();
    let owner: serde_json::Value = client
        .get_json("/session", &gateway.owner_token().await)
        .await;
    assert_eq!(owner["policy"], "iothubowner");
    assert_eq!(owner["rights"].as_array().unwrap().len(), 4, "{owner}");
    let reader: serde_json::Value = client
        .get_json("/session", &gateway.policy_token("registryRead").await)
        .await;
    assert_eq!(reader["rights"], serde_json::json!(["RegistryRead"]));
    let device = gateway.register(&unique("e2e-session")).await;
    let refused = client
        .get("/session", &device.token())
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(refused).await,
        (401, Some("IotHubUnauthorizedAccess".into()))
    );
}

#[tokio::test]
async fn the_fleet_is_listed_a_page_per_request_with_what_twins_report() {
    let gateway = gateway();
    let client = gateway.http();
    let owner = gateway.owner_token().await;
    let device = gateway.register(&unique("e2e-fleet")).await;
    let patched = client
        .request(
            reqwest::Method::PATCH,
            &format!("/twins/{}", device.id),
            Some(&owner),
        )
        .json(&serde_json::json!({"tags": {"site": "north"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status().as_u16(), 200);
    let reported = client
        .request(
            reqwest::Method::PATCH,
            &format!("/devices/{}/twin/properties/reported", device.id),
            Some(&device.token()),
        )
        .json(&serde_json::json!({"type": "Chiller", "model": "chiller", "firmware": {"version": "1.2.3", "status": "current"}}))
        .send()
        .await
        .unwrap();
    assert!(reported.status().is_success(), "{}", reported.status());

    // Every page, following continuations, until the device turns up.
    let mut continuation: Option<String> = None;
    let mut pages = 0;
    let found = loop {
        let mut request = client.get("/fleet/devices?top=50", &owner);
        if let Some(token) = &continuation {
            request = request.header("x-ms-continuation", token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        continuation = response
            .headers()
            .get("x-ms-continuation")
            .map(|v| v.to_str().unwrap().to_owned());
        let page: serde_json::Value = response.json().await.unwrap();
        let devices = page["devices"].as_array().unwrap();
        assert!(devices.len() <= 50);
        pages += 1;
        if let Some(row) = devices.iter().find(|d| d["deviceId"] == device.id.as_str()) {
            break row.clone();
        }
        assert!(continuation.is_some(), "{} is in no page", device.id);
        assert!(pages < 1000);
    };
    assert_eq!(found["status"], "enabled");
    assert_eq!(found["type"], "Chiller");
    assert_eq!(found["model"], "chiller");
    assert_eq!(found["firmware"], "1.2.3");
    assert_eq!(found["tags"]["site"], "north");

    let too_big = client
        .get("/fleet/devices?top=1000", &owner)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(too_big).await,
        (400, Some("ArgumentInvalid".into()))
    );
}
