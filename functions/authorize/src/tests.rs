use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use hub_shared::authz::Principal;
use hub_shared::domain::device::DeviceStatus;
use hub_shared::domain::policy::AccessPolicy;
use hub_shared::domain::sas::{SasToken, SymmetricKey};
use hub_shared::fakes::{InMemoryPolicies, InMemoryRegistry, built_in_policies, device};
use hub_shared::http::AuthContext;

use super::*;

const HOST: &str = "hub.example.com";
const SEND: &str = "POST /devices/{id}/messages/events";
const GET_DEVICE: &str = "GET /devices/{id}";
const PUT_DEVICE: &str = "PUT /devices/{id}";

struct Fixture {
    authorizer: Authorizer<InMemoryRegistry, InMemoryPolicies>,
    device: hub_shared::domain::device::Device,
    policies: Vec<AccessPolicy>,
}

fn fixture() -> Fixture {
    let mut disabled = device("disabled");
    disabled.status = DeviceStatus::Disabled;
    let dev = device("dev1");
    let policies = built_in_policies();
    Fixture {
        authorizer: Authorizer::new(
            InMemoryRegistry::with([dev.clone(), device("dev2"), disabled]),
            InMemoryPolicies::with(policies.clone()),
            HOST,
            Duration::from_secs(60),
        ),
        device: dev,
        policies,
    }
}

impl Fixture {
    fn policy(&self, name: &str) -> &AccessPolicy {
        self.policies.iter().find(|p| p.name == name).unwrap()
    }

    fn registry_device(&self, id: &str) -> hub_shared::domain::device::Device {
        self.authorizer
            .registry
            .snapshot()
            .into_iter()
            .find(|d| d.device_id.as_str() == id)
            .unwrap()
    }

    async fn verdict(
        &self,
        route_key: &str,
        path: &str,
        authorization: Option<&str>,
    ) -> AuthContext {
        let mut request = ApiGatewayV2CustomAuthorizerV2Request::default();
        request.route_key = Some(route_key.into());
        request.raw_path = Some(path.into());
        if let Some(value) = authorization {
            request
                .headers
                .insert("authorization", value.parse().unwrap());
        }
        let response = self.authorizer.handle(&request).await;
        assert!(
            response.is_authorized,
            "the authorizer always passes its verdict on"
        );
        AuthContext::from_fields(&response.context)
    }
}

fn in_an_hour() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600
}

fn device_token(device_id: &str, key: &SymmetricKey) -> String {
    SasToken::generate(
        &format!("{HOST}/devices/{device_id}"),
        key,
        in_an_hour(),
        None,
    )
}

fn assert_denied(verdict: AuthContext, fragment: &str) {
    match verdict {
        AuthContext::Deny { reason } => assert!(
            reason.contains(fragment),
            "reason {reason:?} lacks {fragment:?}"
        ),
        other => panic!("expected a denial containing {fragment:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn device_key_tokens_allow_the_device_on_its_own_routes() {
    let f = fixture();
    for key in [&f.device.primary_key, &f.device.secondary_key] {
        let verdict = f
            .verdict(
                SEND,
                "/devices/dev1/messages/events",
                Some(&device_token("dev1", key)),
            )
            .await;
        assert_eq!(
            verdict,
            AuthContext::Allow(Principal::Device {
                device_id: f.device.device_id.clone(),
                generation_id: f.device.generation_id.clone(),
                via_policy: None
            })
        );
    }
    // `sr` may be a prefix of the resource by whole segments.
    let host_only = SasToken::generate(HOST, &f.device.primary_key, in_an_hour(), None);
    assert!(matches!(
        f.verdict(SEND, "/devices/dev1/messages/events", Some(&host_only))
            .await,
        AuthContext::Allow(_)
    ));
}

#[tokio::test]
async fn the_device_auth_matrix_is_denied() {
    let f = fixture();
    let path = "/devices/dev1/messages/events";
    let key = &f.device.primary_key;
    let past = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 120;
    let dev2_key = f.registry_device("dev2").primary_key;
    let disabled_key = f.registry_device("disabled").primary_key;

    assert_denied(f.verdict(SEND, path, None).await, "no Authorization header");
    assert_denied(
        f.verdict(SEND, path, Some("SharedAccessSignature garbage"))
            .await,
        "malformed",
    );
    assert_denied(
        f.verdict(SEND, path, Some("Basic dXNlcjpwYXNz")).await,
        "not a SharedAccessSignature",
    );
    let tampered = device_token("dev1", key).replace("&se=", "&se=1");
    assert_denied(
        f.verdict(SEND, path, Some(&tampered)).await,
        "not valid for device dev1",
    );
    let wrong_key = device_token("dev1", &SymmetricKey::generate());
    assert_denied(
        f.verdict(SEND, path, Some(&wrong_key)).await,
        "not valid for device dev1",
    );
    let expired = SasToken::generate(&format!("{HOST}/devices/dev1"), key, past, None);
    assert_denied(f.verdict(SEND, path, Some(&expired)).await, "expired");
    let other_device = device_token("dev2", &dev2_key);
    assert_denied(
        f.verdict(SEND, path, Some(&other_device)).await,
        "does not cover",
    );
    let wrong_host = SasToken::generate("evil.example.com/devices/dev1", key, in_an_hour(), None);
    assert_denied(
        f.verdict(SEND, path, Some(&wrong_host)).await,
        "does not cover",
    );
    let disabled = device_token("disabled", &disabled_key);
    assert_denied(
        f.verdict(SEND, "/devices/disabled/messages/events", Some(&disabled))
            .await,
        "disabled",
    );
    let unknown = device_token("ghost", key);
    assert_denied(
        f.verdict(SEND, "/devices/ghost/messages/events", Some(&unknown))
            .await,
        "not valid for device ghost",
    );
}

#[tokio::test]
async fn expiry_tolerates_the_configured_skew() {
    let f = fixture();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let just_expired = SasToken::generate(
        &format!("{HOST}/devices/dev1"),
        &f.device.primary_key,
        now - 30,
        None,
    );
    assert!(matches!(
        f.verdict(SEND, "/devices/dev1/messages/events", Some(&just_expired))
            .await,
        AuthContext::Allow(_)
    ));
}

#[tokio::test]
async fn device_tokens_are_refused_on_service_routes_and_vice_versa() {
    let f = fixture();
    let device = device_token("dev1", &f.device.primary_key);
    assert_denied(
        f.verdict(GET_DEVICE, "/devices/dev1", Some(&device)).await,
        "device tokens are not accepted",
    );

    let service = f.policy("service");
    let token = SasToken::generate(HOST, &service.primary_key, in_an_hour(), Some("service"));
    assert_denied(
        f.verdict(SEND, "/devices/dev1/messages/events", Some(&token))
            .await,
        "DeviceConnect",
    );
}

#[tokio::test]
async fn policies_need_the_route_permission_and_a_valid_key() {
    let f = fixture();
    let token =
        |name: &str, key: &SymmetricKey| SasToken::generate(HOST, key, in_an_hour(), Some(name));
    let read = f.policy("registryRead");
    assert!(matches!(
        f.verdict(
            GET_DEVICE,
            "/devices/dev1",
            Some(&token("registryRead", &read.secondary_key))
        )
        .await,
        AuthContext::Allow(Principal::Service { .. })
    ));
    assert_denied(
        f.verdict(
            PUT_DEVICE,
            "/devices/dev1",
            Some(&token("registryRead", &read.primary_key)),
        )
        .await,
        "RegistryWrite",
    );
    assert_denied(
        f.verdict(
            GET_DEVICE,
            "/devices/dev1",
            Some(&token("registryRead", &SymmetricKey::generate())),
        )
        .await,
        "not valid for policy registryRead",
    );
    assert_denied(
        f.verdict(
            GET_DEVICE,
            "/devices/dev1",
            Some(&token("nobody", &read.primary_key)),
        )
        .await,
        "not valid for policy nobody",
    );
}

#[tokio::test]
async fn owner_policy_may_act_as_an_enabled_device() {
    let f = fixture();
    let owner = f.policy("iothubowner");
    let token = SasToken::generate(HOST, &owner.primary_key, in_an_hour(), Some("iothubowner"));
    assert_eq!(
        f.verdict(SEND, "/devices/dev1/messages/events", Some(&token))
            .await,
        AuthContext::Allow(Principal::Device {
            device_id: f.device.device_id.clone(),
            generation_id: f.device.generation_id.clone(),
            via_policy: Some("iothubowner".into())
        })
    );
    assert_denied(
        f.verdict(SEND, "/devices/disabled/messages/events", Some(&token))
            .await,
        "disabled",
    );
    assert_denied(
        f.verdict(SEND, "/devices/ghost/messages/events", Some(&token))
            .await,
        "not registered",
    );
}

#[tokio::test]
async fn an_unavailable_registry_is_not_a_denial() {
    let f = fixture();
    f.authorizer
        .registry
        .unavailable
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let verdict = f
        .verdict(
            SEND,
            "/devices/dev1/messages/events",
            Some(&device_token("dev1", &f.device.primary_key)),
        )
        .await;
    assert_eq!(verdict, AuthContext::Unavailable);
}

#[tokio::test]
async fn invalid_ids_on_service_routes_are_left_to_the_handler() {
    let f = fixture();
    let owner = f.policy("iothubowner");
    let token = SasToken::generate(HOST, &owner.primary_key, in_an_hour(), Some("iothubowner"));
    assert!(matches!(
        f.verdict(GET_DEVICE, "/devices/bad%20id", Some(&token))
            .await,
        AuthContext::Allow(_)
    ));
    let device = device_token("bad id", &f.device.primary_key);
    assert_denied(
        f.verdict(SEND, "/devices/bad%20id/messages/events", Some(&device))
            .await,
        "invalid device id",
    );
}
