//! Shared access policies on LocalStack: Azure's built-in set, and key rotation without downtime.
//! The test works on a copy of the policies table, so rotating keys does not disturb the tests
//! running beside it.

use hub_shared::config::vars;
use hub_shared::domain::sas::{SasToken, SymmetricKey};
use hub_tests::{Client, CustomGateway, clone_table, gateway, in_an_hour, status_and_code};
use serde_json::Value;

fn token(key: &str, policy: &str) -> String {
    SasToken::generate(
        &gateway().host_name,
        &SymmetricKey::from_base64(key).unwrap(),
        in_an_hour(),
        Some(policy),
    )
}

async fn policies(client: &Client, owner: &str) -> Vec<Value> {
    let response = client.get("/policies", owner).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    body["value"].as_array().unwrap().clone()
}

fn find<'a>(policies: &'a [Value], name: &str) -> &'a Value {
    policies
        .iter()
        .find(|p| p["keyName"] == name)
        .unwrap_or_else(|| panic!("no policy {name}"))
}

async fn status(client: &Client, token: &str) -> u16 {
    // `GET /rules` needs ServiceConnect and no device.
    client
        .get("/rules", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn built_in_policies_carry_azure_rights_and_rotate_without_downtime() {
    let table = clone_table(vars::POLICIES_TABLE, true).await;
    let custom = CustomGateway::start(&[(vars::POLICIES_TABLE, &table)]).await;
    let client = custom.client();
    let owner = gateway().owner_token().await;

    let before = policies(&client, &owner).await;
    let rights = |name: &str| find(&before, name)["rights"].as_str().unwrap().to_owned();
    assert_eq!(
        rights("iothubowner"),
        "RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect"
    );
    assert_eq!(rights("service"), "ServiceConnect");
    assert_eq!(rights("device"), "DeviceConnect");
    assert_eq!(rights("registryRead"), "RegistryRead");
    assert_eq!(rights("registryReadWrite"), "RegistryRead, RegistryWrite");

    let service = find(&before, "service");
    let old_primary = token(service["primaryKey"].as_str().unwrap(), "service");
    let old_secondary = token(service["secondaryKey"].as_str().unwrap(), "service");
    assert_eq!(status(&client, &old_primary).await, 200);
    assert_eq!(status(&client, &old_secondary).await, 200);

    let regenerate = |slot: &str| {
        client
            .post(&format!("/policies/service/keys/{slot}/regenerate"), &owner)
            .send()
    };
    // Rotate the secondary first: clients on the primary never notice.
    let rotated = regenerate("secondary").await.unwrap();
    assert_eq!(rotated.status().as_u16(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    assert_eq!(rotated["primaryKey"], service["primaryKey"]);
    assert_ne!(rotated["secondaryKey"], service["secondaryKey"]);
    assert_eq!(
        status_and_code(client.get("/rules", &old_secondary).send().await.unwrap()).await,
        (401, Some("IotHubUnauthorizedAccess".into())),
        "the replaced key is refused at once"
    );
    assert_eq!(status(&client, &old_primary).await, 200);
    let new_secondary = token(rotated["secondaryKey"].as_str().unwrap(), "service");
    assert_eq!(status(&client, &new_secondary).await, 200);

    // Clients move to the new secondary; then the primary is rotated.
    let rotated = regenerate("primary").await.unwrap();
    let rotated: Value = rotated.json().await.unwrap();
    assert_eq!(status(&client, &old_primary).await, 401);
    assert_eq!(status(&client, &new_secondary).await, 200);
    let new_primary = token(rotated["primaryKey"].as_str().unwrap(), "service");
    assert_eq!(status(&client, &new_primary).await, 200);
    let after = policies(&client, &owner).await;
    assert_eq!(find(&after, "service")["primaryKey"], rotated["primaryKey"]);

    // Only the owner sees or rotates keys.
    let read_write = gateway().policy_token("registryReadWrite").await;
    for response in [
        client.get("/policies", &read_write).send().await.unwrap(),
        client
            .post("/policies/service/keys/primary/regenerate", &new_primary)
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(
            status_and_code(response).await,
            (401, Some("IotHubUnauthorizedAccess".into()))
        );
    }
    let unknown = client
        .post("/policies/nobody/keys/primary/regenerate", &owner)
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(unknown).await.0, 404);
    let bad_slot = client
        .post("/policies/service/keys/tertiary/regenerate", &owner)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(bad_slot).await,
        (400, Some("ArgumentInvalid".into()))
    );
}
