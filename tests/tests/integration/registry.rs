use hub_shared::domain::device::DeviceDescription;
use hub_tests::{gateway, status_and_code, unique};

#[tokio::test]
async fn create_get_delete_over_http_and_https() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    for client in [gateway.http(), gateway.https()] {
        let id = unique("reg");
        let path = format!("/devices/{id}");
        let created = client
            .put(&path, &owner)
            .json(&serde_json::json!({ "deviceId": id }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status().as_u16(), 200);
        let etag_header = created.headers()["etag"].to_str().unwrap().to_owned();
        let created: DeviceDescription = created.json().await.unwrap();
        assert_eq!(
            created.device_id.as_ref().map(|d| d.as_str()),
            Some(id.as_str())
        );
        assert_eq!(
            etag_header,
            format!("\"{}\"", created.etag.clone().unwrap())
        );

        let fetched: DeviceDescription = client
            .get(&path, &owner)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(fetched, created, "GET returns what PUT stored");

        let deleted = client
            .delete(&path, &owner)
            .header("if-match", "*")
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status().as_u16(), 204);
        assert_eq!(
            status_and_code(client.get(&path, &owner).send().await.unwrap()).await,
            (404, Some("DeviceNotFound".into()))
        );
    }
}

#[tokio::test]
async fn duplicate_create_conflicts_and_stale_etag_delete_fails() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    let device = gateway.register(&unique("dup")).await;
    let client = gateway.http();
    let path = format!("/devices/{}", device.id);
    let again = client
        .put(&path, &owner)
        .json(&serde_json::json!({ "deviceId": device.id }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(again).await,
        (409, Some("DeviceAlreadyExists".into()))
    );

    let stale = client
        .delete(&path, &owner)
        .header("if-match", "\"not-the-etag\"")
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(stale).await,
        (412, Some("PreconditionFailed".into()))
    );
    let current = client
        .delete(&path, &owner)
        .header("if-match", format!("\"{}\"", device.etag))
        .send()
        .await
        .unwrap();
    assert_eq!(current.status().as_u16(), 204);
}

#[tokio::test]
async fn reusing_a_device_id_gives_a_new_generation_and_keys() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    let id = unique("gen");
    let first = gateway.register(&id).await;
    let client = gateway.http();
    let path = format!("/devices/{id}");
    let first_generation: DeviceDescription = client
        .get(&path, &owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        client
            .delete(&path, &owner)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    let second = gateway.register(&id).await;
    let second_generation: DeviceDescription = client
        .get(&path, &owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(
        first_generation.generation_id,
        second_generation.generation_id
    );
    assert_ne!(first.primary_key, second.primary_key);
}

#[tokio::test]
async fn read_only_policy_can_read_but_not_write() {
    let gateway = gateway();
    let reader = gateway.policy_token("registryRead").await;
    let device = gateway.register(&unique("ro")).await;
    let client = gateway.http();
    assert_eq!(
        client
            .get(&format!("/devices/{}", device.id), &reader)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    let new_id = unique("ro-new");
    let put = client
        .put(&format!("/devices/{new_id}"), &reader)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(put).await,
        (401, Some("IotHubUnauthorizedAccess".into()))
    );
    let owner = gateway.owner_token().await;
    let after = client
        .get(&format!("/devices/{new_id}"), &owner)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(after).await,
        (404, Some("DeviceNotFound".into())),
        "nothing was written"
    );

    let delete = client
        .delete(&format!("/devices/{}", device.id), &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(delete).await.0, 401);
    assert_eq!(
        client
            .get(&format!("/devices/{}", device.id), &owner)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test]
async fn device_ids_with_special_characters_round_trip() {
    let gateway = gateway();
    let owner = gateway.owner_token().await;
    let id = format!("{}:a.b+c%d_e#f*g?h!(i),j=k@l;m$n'o", unique("sp"));
    let encoded: String = hub_shared::domain::sas::url_encode(&id);
    let client = gateway.http();
    let created = client
        .put(&format!("/devices/{encoded}"), &owner)
        .json(&serde_json::json!({ "deviceId": id }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 200);
    let fetched: DeviceDescription = client
        .get(&format!("/devices/{encoded}"), &owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched.device_id.map(|d| d.to_string()), Some(id));
}
