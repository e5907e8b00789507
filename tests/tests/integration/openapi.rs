//! The OpenAPI document in `docs/openapi.json` describes exactly the routes the gateway serves, and
//! the gateway serves it at `/openapi.json` without a token.

use std::collections::BTreeSet;

use hub_shared::routes::ROUTES;
use hub_tests::{gateway, repo_root};
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

fn operations(document: &Value) -> BTreeSet<String> {
    document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect()
}

#[tokio::test]
async fn the_document_and_the_gateway_agree_route_for_route() {
    let gateway = gateway();
    let client = gateway.http();
    let served = client
        .request(reqwest::Method::GET, "/openapi.json", None)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status().as_u16(), 200);
    let served: Value = served.json().await.unwrap();
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("docs/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(served, file, "the gateway serves the document in the repo");
    assert!(file["openapi"].as_str().unwrap().starts_with("3."));

    let documented = operations(&file);
    let routed: BTreeSet<String> = ROUTES.iter().map(|r| r.key.to_owned()).collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "served but not documented: {undocumented:?}; documented but not served: {unrouted:?}"
    );

    // And the gateway really routes each documented operation: without a token, protected
    // routes answer 401 (the route exists), never 404 (no such route).
    for operation in &documented {
        let (method, template) = operation.split_once(' ').unwrap();
        let path = template
            .split('/')
            .map(|s| if s.starts_with('{') { "x1" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let response = client
            .request(method.parse().unwrap(), &path, None)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        // The dashboard's files are public: its page answers, a file that is not one of them
        // is the function's 404 (an error body), not the gateway's.
        let public = match path.as_str() {
            "/openapi.json" | "/ui" => status == 200,
            "/ui/x1" => status == 404 && response.headers().contains_key("iothub-errorcode"),
            _ => false,
        };
        assert!(status == 401 || public, "{method} {path}: {status}");
    }
    let unknown = client
        .request(reqwest::Method::GET, "/not-a-route", None)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);

    // Every documented operation names its permission, responses and Azure error shape.
    for (path, item) in file["paths"].as_object().unwrap() {
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            let operation = &item[*method];
            assert!(
                operation["operationId"].is_string(),
                "{method} {path} has an operationId"
            );
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path} lists its responses"
            );
        }
    }
}
