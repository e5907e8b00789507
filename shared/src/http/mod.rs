//! The HTTP side of the functions: API Gateway HTTP API (payload 2.0) requests in, responses out.

pub mod auth_context;

use std::borrow::Cow;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

use crate::authz::{Principal, check_access};
use crate::domain::device_id::DeviceId;
use crate::domain::timestamp::Timestamp;
use crate::error::{ApiError, Chain, ErrorCode};
use crate::ports::{FailureKind, StoreError};
use crate::routes::{PathParams, Route};

pub use auth_context::{AuthContext, LAST_ACTIVITY_FIELD};

/// A read-only view of an API Gateway request with the accessors handlers need.
pub struct HttpRequest<'a> {
    inner: &'a ApiGatewayV2httpRequest,
}

/// A request whose route is known and whose caller was authenticated and may use the route.
/// Handlers only ever see requests of this type, so none can skip the access check.
pub struct AuthorizedRequest<'a> {
    pub http: HttpRequest<'a>,
    pub route: &'static Route,
    pub params: PathParams,
    pub principal: Principal,
    /// The device named in the path, for routes that have one.
    pub device_id: Option<DeviceId>,
}

impl AuthorizedRequest<'_> {
    /// The device named in the path; a 400 for a route without one.
    pub fn path_device(&self) -> Result<&DeviceId, ApiError> {
        self.device_id
            .as_ref()
            .ok_or_else(|| ApiError::bad_request("the path has no device id"))
    }

    /// The answer of a function asked for a route it does not serve (a deployment mistake).
    pub fn not_served(&self, function: &str) -> ApiError {
        ApiError::new(
            ErrorCode::ServerError,
            format!("{} is not served by {function}", self.route.key),
        )
    }
}

impl<'a> HttpRequest<'a> {
    pub fn new(inner: &'a ApiGatewayV2httpRequest) -> Self {
        Self { inner }
    }

    pub fn request_id(&self) -> &str {
        self.inner
            .request_context
            .request_id
            .as_deref()
            .unwrap_or("-")
    }

    pub fn route_key(&self) -> &str {
        self.inner
            .route_key
            .as_deref()
            .or(self.inner.request_context.route_key.as_deref())
            .unwrap_or_default()
    }

    pub fn raw_path(&self) -> &str {
        self.inner.raw_path.as_deref().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.inner.headers
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.inner.query_string_parameters.first(name)
    }

    /// The body as sent, base64-decoded when API Gateway encoded it.
    pub fn body(&self) -> Result<Cow<'a, [u8]>, ApiError> {
        match (&self.inner.body, self.inner.is_base64_encoded) {
            (None, _) => Ok(Cow::Borrowed(&[])),
            (Some(text), false) => Ok(Cow::Borrowed(text.as_bytes())),
            (Some(encoded), true) => BASE64
                .decode(encoded)
                .map(Cow::Owned)
                .map_err(|_| ApiError::bad_request("the request body could not be decoded")),
        }
    }

    /// The route this request was matched to.
    pub fn route(&self) -> Option<&'static Route> {
        Route::by_key(self.route_key())
    }

    /// The device's last activity as the authorizer read it, if it passed one.
    pub fn last_activity(&self) -> Option<Timestamp> {
        let fields = &self.inner.request_context.authorizer.as_ref()?.fields;
        let millis = fields.get(LAST_ACTIVITY_FIELD)?.as_str()?.parse().ok()?;
        Timestamp::from_unix_millis(millis)
    }

    /// Finds the route, reads the authorizer's verdict and checks access again (defence in depth:
    /// the authorizer already applied the same rule).
    pub fn authorize(self) -> Result<AuthorizedRequest<'a>, ApiError> {
        let route = Route::by_key(self.route_key()).ok_or_else(|| {
            ApiError::new(
                ErrorCode::ServerError,
                format!("route {:?} is not served here", self.route_key()),
            )
        })?;
        let params = route
            .match_path(self.raw_path())
            .ok_or_else(|| ApiError::bad_request("the request path does not match its route"))?;
        let principal = AuthContext::from_request(self.inner).into_principal()?;
        let device_id = params.get("id").map(|_| params.device_id()).transpose()?;
        check_access(route.access, device_id.as_ref(), &principal)?;
        Ok(AuthorizedRequest {
            http: self,
            route,
            params,
            principal,
            device_id,
        })
    }
}

/// Records a device's activity (with the activity the authorizer saw, which may let it stand).
pub async fn record_activity<A: crate::ports::ActivityRecorder>(
    activity: &A,
    request: &AuthorizedRequest<'_>,
    now: Timestamp,
) {
    if let Principal::Device {
        device_id,
        generation_id,
        ..
    } = &request.principal
    {
        activity
            .record(device_id, generation_id, now, request.http.last_activity())
            .await;
    }
}

/// `If-Match`: absent or `*` means any version; otherwise an etag, quoted or not.
pub fn parse_if_match(header: Option<&str>) -> crate::ports::IfMatch {
    use crate::ports::IfMatch;
    match header.map(str::trim) {
        None | Some("") | Some("*") | Some("\"*\"") => IfMatch::Any,
        Some(etag) => IfMatch::Etag(etag.trim_start_matches("W/").trim_matches('"').to_owned()),
    }
}

/// What can go wrong in a handler: an answer for the client, or a failure of a backing service.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Turns a handler's result into the response, logging backing-service failures once with
/// their cause chain. A transient failure answers 503 so the client retries; a corrupt item or a
/// refused call answers 500, because retrying would meet the same failure.
pub fn respond(
    result: Result<ApiGatewayV2httpResponse, HandlerError>,
    request_id: &str,
) -> ApiGatewayV2httpResponse {
    match result {
        Ok(response) => response,
        Err(HandlerError::Api(error)) => Response::error(&error, request_id),
        Err(HandlerError::Store(error)) => {
            tracing::error!(request_id, kind = ?error.kind, error = %Chain(&error), "backing service failed");
            Response::error(&store_failure(&error), request_id)
        }
    }
}

/// What a client is told about a backing-service failure (never its details).
pub fn store_failure(error: &StoreError) -> ApiError {
    match error.kind {
        FailureKind::Transient => {
            ApiError::unavailable("the hub is temporarily unavailable; retry later")
        }
        FailureKind::Corrupt => ApiError::new(
            ErrorCode::ServerError,
            format!(
                "{} failed: the stored data is damaged; retrying will not help (the operator has the details under this tracking id)",
                error.operation
            ),
        ),
        FailureKind::Rejected => ApiError::new(
            ErrorCode::ServerError,
            format!(
                "{} failed: the hub's deployment refused the request; retrying will not help (the operator has the details under this tracking id)",
                error.operation
            ),
        ),
    }
}

/// Builds responses in API Gateway's shape.
pub struct Response;

impl Response {
    pub fn empty(status: u16) -> ApiGatewayV2httpResponse {
        let mut response = ApiGatewayV2httpResponse::default();
        response.status_code = i64::from(status);
        response
    }

    pub fn json<T: Serialize>(status: u16, value: &T) -> ApiGatewayV2httpResponse {
        let mut response = Self::empty(status);
        // Serializing the hub's own response types cannot fail.
        response.body = Some(Body::Text(serde_json::to_string(value).unwrap_or_default()));
        response.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        response
    }

    /// A JSON document the hub already holds as text (e.g. the OpenAPI description).
    pub fn json_text(status: u16, body: &str) -> ApiGatewayV2httpResponse {
        let mut response = Self::empty(status);
        response.body = Some(Body::Text(body.to_owned()));
        response.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        response
    }

    /// A body of arbitrary bytes (API Gateway carries it base64-encoded).
    pub fn binary(
        status: u16,
        body: Vec<u8>,
        content_type: &'static str,
    ) -> ApiGatewayV2httpResponse {
        let mut response = Self::empty(status);
        response.body = Some(Body::Binary(body));
        response.is_base64_encoded = true;
        response.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        response
    }

    pub fn error(error: &ApiError, request_id: &str) -> ApiGatewayV2httpResponse {
        let mut response = Self::json(error.status(), &error.body(request_id, Timestamp::now()));
        response.headers.insert(
            HeaderName::from_static("iothub-errorcode"),
            HeaderValue::from_static(error.code.as_str()),
        );
        response
    }

    /// Sets a header; values that are not valid header text are dropped rather than panicking.
    pub fn with_header(
        mut response: ApiGatewayV2httpResponse,
        name: &'static str,
        value: &str,
    ) -> ApiGatewayV2httpResponse {
        if let Ok(value) = HeaderValue::from_str(value) {
            response
                .headers
                .insert(HeaderName::from_static(name), value);
        }
        response
    }

    /// Sets a header whose name is only known at run time (e.g. `iothub-app-<property>`).
    pub fn with_dynamic_header(
        mut response: ApiGatewayV2httpResponse,
        name: &str,
        value: &str,
    ) -> ApiGatewayV2httpResponse {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
            response.headers.insert(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::{Permission, Rights};

    fn request(route_key: &str, path: &str, context: AuthContext) -> ApiGatewayV2httpRequest {
        let mut request = ApiGatewayV2httpRequest::default();
        request.route_key = Some(route_key.into());
        request.raw_path = Some(path.into());
        let mut authorizer = aws_lambda_events::apigw::ApiGatewayRequestAuthorizer::default();
        authorizer.fields = context.to_fields();
        request.request_context.authorizer = Some(authorizer);
        request
    }

    fn device(id: &str) -> AuthContext {
        AuthContext::Allow(Principal::Device {
            device_id: DeviceId::parse(id).unwrap(),
            generation_id: "1".into(),
            via_policy: None,
        })
    }

    #[test]
    fn authorize_accepts_the_right_device() {
        let req = request(
            "POST /devices/{id}/messages/events",
            "/devices/d1/messages/events",
            device("d1"),
        );
        let authorized = HttpRequest::new(&req).authorize().unwrap();
        assert_eq!(authorized.device_id.unwrap().as_str(), "d1");
    }

    #[test]
    fn authorize_rejects_denials_other_devices_and_missing_context() {
        let other = request(
            "POST /devices/{id}/messages/events",
            "/devices/d2/messages/events",
            device("d1"),
        );
        assert_eq!(
            HttpRequest::new(&other).authorize().err().unwrap().status(),
            401
        );

        let denied = request(
            "GET /devices/{id}",
            "/devices/d1",
            AuthContext::Deny {
                reason: "expired".into(),
            },
        );
        let error = HttpRequest::new(&denied).authorize().err().unwrap();
        assert_eq!((error.status(), error.message.as_str()), (401, "expired"));

        let mut missing = request("GET /devices/{id}", "/devices/d1", device("d1"));
        missing.request_context.authorizer = None;
        assert_eq!(
            HttpRequest::new(&missing)
                .authorize()
                .err()
                .unwrap()
                .status(),
            401
        );
    }

    #[test]
    fn authorize_checks_policy_rights() {
        let reader = AuthContext::Allow(Principal::Service {
            policy: "registryRead".into(),
            rights: Rights::of(&[Permission::RegistryRead]),
        });
        let get = request("GET /devices/{id}", "/devices/d1", reader.clone());
        assert!(HttpRequest::new(&get).authorize().is_ok());
        let put = request("PUT /devices/{id}", "/devices/d1", reader);
        assert_eq!(
            HttpRequest::new(&put).authorize().err().unwrap().status(),
            401
        );
    }

    #[test]
    fn if_match_accepts_quoted_unquoted_and_star() {
        use crate::ports::IfMatch;
        assert_eq!(parse_if_match(None), IfMatch::Any);
        assert_eq!(parse_if_match(Some("*")), IfMatch::Any);
        assert_eq!(parse_if_match(Some("\"abc\"")), IfMatch::Etag("abc".into()));
        assert_eq!(parse_if_match(Some("abc")), IfMatch::Etag("abc".into()));
        assert_eq!(
            parse_if_match(Some("W/\"abc\"")),
            IfMatch::Etag("abc".into())
        );
    }

    #[test]
    fn decodes_base64_bodies() {
        let mut req = ApiGatewayV2httpRequest::default();
        req.body = Some(BASE64.encode([0u8, 159, 146, 150]));
        req.is_base64_encoded = true;
        assert_eq!(
            HttpRequest::new(&req).body().unwrap().as_ref(),
            &[0u8, 159, 146, 150]
        );
        req.body = Some("not base64!".into());
        assert_eq!(HttpRequest::new(&req).body().unwrap_err().status(), 400);
    }

    #[test]
    fn error_responses_carry_code_header_and_body() {
        let response = Response::error(&ApiError::unauthorized("nope"), "r-1");
        assert_eq!(response.status_code, 401);
        assert_eq!(
            response.headers["iothub-errorcode"],
            "IotHubUnauthorizedAccess"
        );
        let Some(Body::Text(body)) = response.body else {
            panic!("no body")
        };
        assert!(
            body.contains("ErrorCode:IotHubUnauthorizedAccess;nope"),
            "{body}"
        );
    }
}
