//! The dashboard function: serves the web dashboard's built files (`dashboard/dist`, embedded at
//! compile time) on `GET /ui` and `GET /ui/{file}`, from the same origin as the API, so the page
//! needs no CORS and works offline. It reads nothing at run time and needs no AWS permissions.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use hub_shared::error::{ApiError, ErrorCode};
use hub_shared::http::{HttpRequest, Response};
use hub_shared::lambda::{Function, InvocationError};
use hub_shared::routes::Operation;
use include_dir::{Dir, include_dir};
use serde_json::Value;

static ASSETS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../dashboard/dist");

const INDEX: &str = "index.html";

/// What the page may load and call: only this origin. Styles may be inline (the chart library
/// sizes its elements with style attributes); scripts may not.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub type Handler = DashboardHandler;

/// The files it serves, by name.
pub struct DashboardHandler {
    assets: &'static Dir<'static>,
}

pub fn build() -> Handler {
    DashboardHandler { assets: &ASSETS }
}

impl DashboardHandler {
    pub fn handle_http(&self, event: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let request = HttpRequest::new(event);
        let params = request
            .route()
            .and_then(|route| Some((route.operation, route.match_path(request.raw_path())?)));
        let name = match &params {
            Some((Operation::DashboardIndex, _)) => INDEX,
            Some((Operation::DashboardAsset, params)) => params.get("file").unwrap_or_default(),
            _ => return self.not_found(&request, "the dashboard serves only /ui"),
        };
        // Compressed copies are served, never named.
        let file = (!name.ends_with(".gz"))
            .then(|| self.assets.get_file(name))
            .flatten();
        let Some(file) = file else {
            return self.not_found(
                &request,
                &format!("/ui/{name} is not part of the dashboard"),
            );
        };
        let accepts_gzip = request
            .header("accept-encoding")
            .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
        let compressed = accepts_gzip
            .then(|| self.assets.get_file(format!("{name}.gz")))
            .flatten();
        let content_type = mime_guess::from_path(name)
            .first_raw()
            .unwrap_or("application/octet-stream");
        let body = compressed.unwrap_or(file).contents().to_vec();
        let mut response = Response::binary(200, body, content_type);
        if compressed.is_some() {
            response = Response::with_header(response, "content-encoding", "gzip");
        }
        // Built files carry a content hash in their names; only the page itself may change.
        let cache = if name == INDEX {
            "no-cache"
        } else {
            "public, max-age=31536000, immutable"
        };
        response = Response::with_header(response, "cache-control", cache);
        response = Response::with_header(response, "vary", "accept-encoding");
        response = Response::with_header(response, "x-content-type-options", "nosniff");
        Response::with_header(response, "content-security-policy", CONTENT_SECURITY_POLICY)
    }

    fn not_found(&self, request: &HttpRequest<'_>, message: &str) -> ApiGatewayV2httpResponse {
        Response::error(
            &ApiError::new(ErrorCode::NotFound, message),
            request.request_id(),
        )
    }
}

impl Function for DashboardHandler {
    async fn invoke(&self, event: Value) -> Result<Value, InvocationError> {
        let request: ApiGatewayV2httpRequest = hub_shared::lambda::event(event)?;
        hub_shared::lambda::response(&self.handle_http(&request))
    }
}

#[cfg(test)]
mod tests;
