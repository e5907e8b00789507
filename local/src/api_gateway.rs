//! API Gateway HTTP API behaviour, emulated: route matching, the Lambda REQUEST authorizer step,
//! payload format 2.0 events, and turning a function's response back into HTTP. Where API Gateway
//! answers by itself (no route, no identity source, denied, function error, payload too large),
//! this answers the same status and `{"message": ...}` body.

use std::net::SocketAddr;
use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body as LambdaBody;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hub_shared::routes::{Access, PathParams, Route, match_request};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::hub::Hub;

/// HTTP APIs accept request payloads up to 10 MB.
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
/// Synchronous Lambda invocations accept events up to 6 MB.
const MAX_EVENT_BYTES: usize = 6 * 1024 * 1024;
const ACCOUNT_ID: &str = "000000000000";
const API_ID: &str = "local";
const STAGE: &str = "$default";

/// One incoming HTTP request, as the gateway received it.
pub struct IncomingRequest {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub source: Option<SocketAddr>,
    pub protocol: &'static str,
}

fn gateway_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

/// Serves one request the way API Gateway and Lambda would.
pub async fn serve(hub: &Arc<Hub>, request: IncomingRequest) -> Response {
    let path = request.uri.path();
    let Some((route, params)) = match_request(request.method.as_str(), path) else {
        return gateway_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let base = base_event(&request, route, &params, &request_id);
    let mut context = serde_json::Map::new();
    if route.access != Access::Public {
        // The identity source: without it API Gateway answers 401 without calling the authorizer.
        let Some(authorization) = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
        else {
            return gateway_error(StatusCode::UNAUTHORIZED, "Unauthorized");
        };
        let mut authorizer_event = base.clone();
        authorizer_event.insert("type".into(), json!("REQUEST"));
        authorizer_event.insert(
            "routeArn".into(),
            json!(format!(
                "arn:aws:execute-api:local:{ACCOUNT_ID}:{API_ID}/{STAGE}/{}{}",
                request.method, path
            )),
        );
        authorizer_event.insert("identitySource".into(), json!([authorization]));
        let verdict = match hub.authorize(Value::Object(authorizer_event)).await {
            Ok(verdict) => verdict,
            Err(error) => {
                tracing::error!(%error, "authorizer failed");
                return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            }
        };
        if !verdict.is_authorized {
            return gateway_error(StatusCode::FORBIDDEN, "Forbidden");
        }
        context = verdict.context.into_iter().collect();
    }

    let mut event = base;
    let (body, is_base64) = encode_body(&request.headers, &request.body);
    if let Some(body) = body {
        event.insert("body".into(), json!(body));
    }
    event.insert("isBase64Encoded".into(), json!(is_base64));
    if let (Some(Value::Object(request_context)), false) =
        (event.get_mut("requestContext"), context.is_empty())
    {
        request_context.insert("authorizer".into(), json!({ "lambda": context }));
    }
    let event = Value::Object(event);
    if serde_json::to_vec(&event).map_or(0, |bytes| bytes.len()) > MAX_EVENT_BYTES {
        return gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    }
    let response = hub
        .invoke(route.function.into(), event)
        .await
        .and_then(|value| Ok(serde_json::from_value::<ApiGatewayV2httpResponse>(value)?));
    match response {
        Ok(response) => into_http(response),
        Err(error) => {
            tracing::error!(%error, function = route.function.name(), "function failed");
            gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// The fields the authorizer event and the route event share (payload format 2.0).
fn base_event(
    request: &IncomingRequest,
    route: &Route,
    params: &PathParams,
    request_id: &str,
) -> Map<String, Value> {
    let mut headers = Map::new();
    for name in request.headers.keys() {
        let values: Vec<&str> = request
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        headers.insert(name.as_str().to_owned(), json!(values.join(",")));
    }
    let raw_query = request.uri.query().unwrap_or_default();
    let mut query = Map::new();
    for (name, value) in form_urlencoded::parse(raw_query.as_bytes()) {
        match query.get_mut(name.as_ref()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                query.insert(name.into_owned(), json!(value));
            }
        }
    }
    let path_parameters: Map<String, Value> = params
        .iter()
        .map(|(name, raw)| {
            (
                name.to_owned(),
                json!(hub_shared::routes::decode_segment(raw).unwrap_or(raw.into())),
            )
        })
        .collect();
    let host = request
        .headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let domain = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let now = OffsetDateTime::now_utc();

    let mut event = Map::new();
    event.insert("version".into(), json!("2.0"));
    event.insert("routeKey".into(), json!(route.key));
    event.insert("rawPath".into(), json!(request.uri.path()));
    event.insert("rawQueryString".into(), json!(raw_query));
    event.insert("headers".into(), Value::Object(headers));
    if !query.is_empty() {
        event.insert("queryStringParameters".into(), Value::Object(query));
    }
    event.insert("pathParameters".into(), Value::Object(path_parameters));
    event.insert(
        "requestContext".into(),
        json!({
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": domain,
            "domainPrefix": domain.split('.').next().unwrap_or(domain),
            "http": {
                "method": request.method.as_str(),
                "path": request.uri.path(),
                "protocol": request.protocol,
                "sourceIp": request.source.map(|a| a.ip().to_string()).unwrap_or_default(),
                "userAgent": request.headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default(),
            },
            "requestId": request_id,
            "routeKey": route.key,
            "stage": STAGE,
            "time": now.to_string(),
            "timeEpoch": now.unix_timestamp() * 1000 + i64::from(now.millisecond()),
        }),
    );
    event
}

/// Text bodies pass as they are; anything else is base64-encoded, as API Gateway does.
fn encode_body(headers: &HeaderMap, body: &Bytes) -> (Option<String>, bool) {
    if body.is_empty() {
        return (None, false);
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let textual = content_type.starts_with("text/")
        || ["json", "xml", "javascript", "x-www-form-urlencoded"]
            .iter()
            .any(|kind| content_type.contains(kind));
    match std::str::from_utf8(body) {
        Ok(text) if textual => (Some(text.to_owned()), false),
        _ => (Some(BASE64.encode(body)), true),
    }
}

/// A function's response (payload format 2.0) as the HTTP response API Gateway sends.
fn into_http(response: ApiGatewayV2httpResponse) -> Response {
    let status = u16::try_from(response.status_code)
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match response.body {
        None | Some(LambdaBody::Empty) => Vec::new(),
        Some(LambdaBody::Text(text)) if response.is_base64_encoded => {
            BASE64.decode(text).unwrap_or_default()
        }
        Some(LambdaBody::Text(text)) => text.into_bytes(),
        Some(LambdaBody::Binary(bytes)) => bytes,
        #[allow(unreachable_patterns)]
        Some(_) => Vec::new(),
    };
    let mut http = Response::new(Body::from(body));
    *http.status_mut() = status;
    for (name, value) in response
        .headers
        .iter()
        .chain(response.multi_value_headers.iter())
    {
        http.headers_mut().append(name, value.clone());
    }
    for cookie in response.cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            http.headers_mut().append("set-cookie", value);
        }
    }
    http
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_bodies_pass_through_and_binary_is_base64() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        assert_eq!(
            encode_body(&headers, &Bytes::from_static(b"{}")),
            (Some("{}".into()), false)
        );
        assert_eq!(
            encode_body(&headers, &Bytes::from_static(&[0xff])),
            (Some("/w==".into()), true)
        );
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/octet-stream"),
        );
        assert_eq!(
            encode_body(&headers, &Bytes::from_static(b"ab")),
            (Some("YWI=".into()), true)
        );
        assert_eq!(encode_body(&headers, &Bytes::new()), (None, false));
    }

    #[test]
    fn responses_keep_status_headers_and_body() {
        let mut response = ApiGatewayV2httpResponse::default();
        response.status_code = 412;
        response
            .headers
            .insert("etag", HeaderValue::from_static("\"x\""));
        response.body = Some(LambdaBody::Text("e30=".into()));
        response.is_base64_encoded = true;
        let http = into_http(response);
        assert_eq!(http.status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(http.headers()["etag"], "\"x\"");
    }
}
