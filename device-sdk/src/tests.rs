//! Wire-format tests against a stand-in HTTP server; the SDK against the real hub is tested in
//! `tests/` (integration, through the local gateway and LocalStack).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use hub_shared::domain::sas::SasToken;

use super::*;

const KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=";

/// Method, path and query, headers, body.
type SeenRequest = (String, String, HeaderMap, Vec<u8>);

#[derive(Clone, Default)]
struct Seen {
    requests: Arc<Mutex<Vec<SeenRequest>>>,
    answers: Arc<Mutex<Vec<Response>>>,
}

async fn record(State(seen): State<Seen>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap()
        .to_vec();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    seen.requests
        .lock()
        .unwrap()
        .push((parts.method.to_string(), target, parts.headers, body));
    let mut answers = seen.answers.lock().unwrap();
    if answers.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        answers.remove(0)
    }
}

async fn server(answers: Vec<Response>) -> (DeviceClient, Seen) {
    let seen = Seen {
        answers: Arc::new(Mutex::new(answers)),
        ..Default::default()
    };
    let app = Router::new().fallback(record).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = DeviceClient::builder(&format!(
        "HostName=hub.example.com;DeviceId=dev#1;SharedAccessKey={KEY}"
    ))
    .unwrap()
    .base_url(format!("http://{addr}"))
    .build()
    .unwrap();
    (client, seen)
}

#[tokio::test]
async fn sends_single_messages_with_azure_headers_and_a_device_token() {
    let (client, seen) = server(vec![]).await;
    let message = Message::new(b"{}".to_vec())
        .with_message_id("m1")
        .with_property("unit", "celsius");
    client.send_event(&message).await.unwrap();
    let requests = seen.requests.lock().unwrap();
    let (method, target, headers, body) = &requests[0];
    assert_eq!(method, "POST");
    assert_eq!(
        target,
        "/devices/dev%231/messages/events?api-version=2021-04-12"
    );
    assert_eq!(headers["iothub-messageid"], "m1");
    assert_eq!(headers["iothub-app-unit"], "celsius");
    assert_eq!(body, b"{}");
    let token = SasToken::parse(headers["authorization"].to_str().unwrap()).unwrap();
    assert!(token.verify(&SymmetricKey::from_base64(KEY).unwrap()));
    assert_eq!(token.resource(), "hub.example.com/devices/dev%231");
    assert_eq!(token.key_name(), None);
}

#[tokio::test]
async fn batches_use_the_iothub_json_format() {
    let (client, seen) = server(vec![]).await;
    client
        .send_event_batch(&[
            Message::new(b"a".to_vec()).with_property("k", "v"),
            Message::new(b"b".to_vec()),
        ])
        .await
        .unwrap();
    let requests = seen.requests.lock().unwrap();
    let (_, _, headers, body) = &requests[0];
    assert_eq!(
        headers["content-type"],
        "application/vnd.microsoft.iothub.json"
    );
    let json: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(json[0]["body"], "YQ==");
    assert_eq!(json[0]["properties"]["iothub-app-k"], "v");
    assert_eq!(json[1]["body"], "Yg==");
}

#[tokio::test]
async fn retries_sends_on_503_but_not_on_400() {
    let busy = || (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
    let (client, seen) = server(vec![busy(), busy()]).await;
    client
        .send_event(&Message::new(b"x".to_vec()))
        .await
        .unwrap();
    assert_eq!(seen.requests.lock().unwrap().len(), 3);

    let bad = (
        StatusCode::BAD_REQUEST,
        [("iothub-errorcode", "ArgumentInvalid")],
        r#"{"Message":"ErrorCode:ArgumentInvalid;nope","ExceptionMessage":""}"#,
    )
        .into_response();
    let (client, seen) = server(vec![bad]).await;
    let error = client
        .send_event(&Message::new(b"x".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(
        (error.status(), error.code()),
        (Some(400), Some("ArgumentInvalid"))
    );
    assert_eq!(seen.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn receives_messages_from_headers_and_settles_with_the_lock_token() {
    let message = (
        StatusCode::OK,
        [
            ("etag", "\"7-f0123456789abcdef0123456789abcdef\""),
            ("iothub-messageid", "c1"),
            ("iothub-sequencenumber", "7"),
            ("iothub-deliverycount", "2"),
            ("iothub-ack", "full"),
            ("iothub-app-mode", "eco"),
        ],
        Bytes::from_static(b"turn off"),
    )
        .into_response();
    let (client, seen) = server(vec![message]).await;
    let received = client
        .receive_wait(Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received.body, b"turn off");
    assert_eq!(received.lock_token, "7-f0123456789abcdef0123456789abcdef");
    assert_eq!(received.sequence_number, Some(7));
    assert_eq!(received.delivery_count, Some(2));
    assert_eq!(received.properties["mode"], "eco");
    assert_eq!(
        client.receive().await.unwrap(),
        None,
        "204 means nothing to receive"
    );

    client.complete(&received.lock_token).await.unwrap();
    client.reject(&received.lock_token).await.unwrap();
    client.abandon(&received.lock_token).await.unwrap();
    let requests = seen.requests.lock().unwrap();
    let targets: Vec<(&str, &str)> = requests
        .iter()
        .map(|(m, t, _, _)| (m.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        targets[0],
        (
            "GET",
            "/devices/dev%231/messages/deviceBound?api-version=2021-04-12&waitSeconds=5"
        )
    );
    let path = "/devices/dev%231/messages/deviceBound/7-f0123456789abcdef0123456789abcdef";
    assert_eq!(
        targets[2],
        ("DELETE", format!("{path}?api-version=2021-04-12").as_str())
    );
    assert_eq!(
        targets[3],
        (
            "DELETE",
            format!("{path}?api-version=2021-04-12&reject").as_str()
        )
    );
    assert_eq!(
        targets[4],
        (
            "POST",
            format!("{path}/abandon?api-version=2021-04-12").as_str()
        )
    );
    assert_eq!(
        requests[2].2["if-match"],
        "\"7-f0123456789abcdef0123456789abcdef\""
    );
}

#[test]
fn refuses_service_connection_strings() {
    let result = DeviceClient::builder(&format!(
        "HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
    ));
    assert!(matches!(result, Err(Error::Config(_))));
}
