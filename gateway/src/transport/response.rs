//! HTTP responses the router and the REST API both build.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

pub(crate) type Body = Full<Bytes>;

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `{"error": {"code", "message"}}` with `status`. A 429 or 503 says when to try again
/// (`Retry-After`, seconds): the rate limits refill within a second, and a node that is
/// draining or lost its storage is not worth retrying sooner.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    let mut resp = json(status, body.to_string());
    let retry = match status {
        StatusCode::TOO_MANY_REQUESTS => Some("1"),
        StatusCode::SERVICE_UNAVAILABLE => Some("5"),
        _ => None,
    };
    if let Some(seconds) = retry {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    }
    resp
}
