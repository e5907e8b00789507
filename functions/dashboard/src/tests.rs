use hub_shared::fakes::{RequestBuilder, error_code};
use hub_shared::http::AuthContext;

use super::*;

/// Public routes reach the function without an authorizer verdict worth reading.
fn public() -> AuthContext {
    AuthContext::Deny {
        reason: "public route".into(),
    }
}

fn get(route_key: &str, path: &str, gzip: bool) -> ApiGatewayV2httpResponse {
    let mut request = RequestBuilder::new(route_key, path, &public());
    if gzip {
        request = request.header("accept-encoding", "gzip, deflate, br");
    }
    build().handle_http(&request.build())
}

fn header<'a>(response: &'a ApiGatewayV2httpResponse, name: &str) -> Option<&'a str> {
    response.headers.get(name).and_then(|v| v.to_str().ok())
}

fn body(response: &ApiGatewayV2httpResponse) -> Vec<u8> {
    match &response.body {
        Some(aws_lambda_events::encodings::Body::Binary(bytes)) => bytes.clone(),
        other => panic!("expected a binary body, got {other:?}"),
    }
}

/// The built script's name (it carries a content hash).
fn script_name() -> String {
    ASSETS
        .files()
        .filter_map(|f| f.path().to_str())
        .find(|name| name.ends_with(".js"))
        .expect("the build has a script")
        .to_owned()
}

#[test]
fn the_page_is_served_uncached_with_a_strict_policy() {
    let response = get("GET /ui", "/ui", false);
    assert_eq!(response.status_code, 200);
    assert_eq!(header(&response, "content-type"), Some("text/html"));
    assert_eq!(header(&response, "cache-control"), Some("no-cache"));
    assert!(
        header(&response, "content-security-policy")
            .is_some_and(|p| p.contains("script-src 'self'"))
    );
    let page = String::from_utf8(body(&response)).unwrap();
    assert!(page.contains(&format!("/ui/{}", script_name())), "{page}");
}

#[test]
fn assets_are_gzipped_for_browsers_that_accept_it_and_cached_for_good() {
    let name = script_name();
    let plain = get("GET /ui/{file}", &format!("/ui/{name}"), false);
    let gzipped = get("GET /ui/{file}", &format!("/ui/{name}"), true);
    assert_eq!(header(&plain, "content-type"), Some("text/javascript"));
    assert_eq!(header(&plain, "content-encoding"), None);
    assert_eq!(header(&gzipped, "content-encoding"), Some("gzip"));
    assert!(body(&gzipped).len() < body(&plain).len() / 2);
    assert!(header(&gzipped, "cache-control").is_some_and(|c| c.contains("immutable")));
    assert_eq!(header(&gzipped, "vary"), Some("accept-encoding"));
}

#[test]
fn unknown_files_and_compressed_copies_are_not_found_in_azure_style() {
    let name = script_name();
    for path in ["/ui/nothing.js".to_owned(), format!("/ui/{name}.gz")] {
        let response = get("GET /ui/{file}", &path, true);
        assert_eq!(response.status_code, 404, "{path}");
        assert_eq!(error_code(&response).as_deref(), Some("NotFound"), "{path}");
        assert_eq!(header(&response, "iothub-errorcode"), Some("NotFound"));
    }
}
