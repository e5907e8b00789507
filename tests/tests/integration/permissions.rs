//! Every route checks the permission it needs: without a token the gateway answers 401; with a
//! shared access policy that lacks the permission, or as another device, the hub answers 401
//! `IotHubUnauthorizedAccess` (as Azure does); and nothing changes.

use hub_shared::domain::policy::Permission;
use hub_shared::routes::{Access, ROUTES};
use hub_tests::{gateway, status_and_code, unique};

/// A policy whose rights do not include what `access` needs.
fn policy_without(access: Access) -> &'static str {
    match access {
        Access::Service(Permission::RegistryRead) => "service",
        Access::Service(Permission::RegistryWrite) => "registryRead",
        Access::Service(Permission::ServiceConnect | Permission::DeviceConnect) => {
            "registryReadWrite"
        }
        Access::Owner | Access::Device => "service",
        Access::AnyPolicy => unreachable!("every policy may call it"),
        Access::Public => unreachable!("public routes need nothing"),
    }
}

fn concrete_path(template: &str, device_id: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{id}" => device_id,
            "{name}" => "service",
            "{slot}" => "primary",
            s if s.starts_with('{') => "placeholder",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_route_refuses_callers_without_its_permission() {
    let gateway = gateway();
    let target = gateway.register(&unique("perm-target")).await;
    let other = gateway.register(&unique("perm-other")).await;
    let client = gateway.http();
    let mut checked = 0;
    for route in ROUTES.iter().filter(|r| r.access != Access::Public) {
        let path = concrete_path(route.template(), &target.id);
        let method: reqwest::Method = route.method().parse().unwrap();
        // Without a token API Gateway itself answers, before the authorizer.
        let anonymous = client
            .request(method.clone(), &path, None)
            .json(&serde_json::json!({"tags": {"x": 1}}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            anonymous.status().as_u16(),
            401,
            "{} {path}",
            route.method()
        );
        let mut callers = if route.access == Access::AnyPolicy {
            vec![("a device", target.token())]
        } else {
            vec![(
                "a policy without the permission",
                gateway.policy_token(policy_without(route.access)).await,
            )]
        };
        if route.access == Access::Device {
            callers.push(("another device", other.token()));
        }
        for (who, token) in callers {
            let response = client
                .request(method.clone(), &path, Some(&token))
                .json(&serde_json::json!({"tags": {"x": 1}}))
                .send()
                .await
                .unwrap();
            assert_eq!(
                status_and_code(response).await,
                (401, Some("IotHubUnauthorizedAccess".into())),
                "{} {path} as {who}",
                route.method()
            );
            checked += 1;
        }
    }
    let public = ROUTES.iter().filter(|r| r.access == Access::Public).count();
    assert!(checked >= ROUTES.len() - public, "{checked} cases");

    let owner = gateway.owner_token().await;
    let still_there = client
        .get(&format!("/devices/{}", target.id), &owner)
        .send()
        .await
        .unwrap();
    assert_eq!(still_there.status().as_u16(), 200, "nothing was deleted");
    let twin: serde_json::Value = client
        .get_json(&format!("/twins/{}", target.id), &owner)
        .await;
    assert_eq!(twin["version"], 1, "nothing was written");
}
