//! Request limits shared by both frontends: the whole body is read under a
//! size cap and a deadline before any handler sees it (a slow or huge
//! upload costs a bounded amount), and only so many requests run at once.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use serde_json::json;
use tokio::sync::Semaphore;

/// Size cap and deadline of a request body.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// A JSON error body `{reason_code, message}` with `status`.
pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"reason_code": code, "message": message});
    (status, axum::Json(body)).into_response()
}

/// Reads the body under [`BodyLimits`]: `413` past the cap, `408` past the
/// deadline.
pub(super) async fn read_body(
    State(limits): State<BodyLimits>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let read = Limited::new(body, limits.max_bytes).collect();
    let bytes = match tokio::time::timeout(limits.timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                &format!("the request body exceeds {} bytes", limits.max_bytes),
            );
        }
        Ok(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "malformed_request",
                "the request body could not be read",
            );
        }
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                &format!(
                    "the request body did not arrive within {} s",
                    limits.timeout.as_secs()
                ),
            );
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Admits a request if a slot is free, else answers `503` at once.
pub(super) async fn concurrency(
    State(slots): State<Arc<Semaphore>>,
    req: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = slots.try_acquire_owned() else {
        let mut resp = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many requests in progress; retry shortly",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    };
    // The permit is held until the response head is produced; a streamed
    // body (SSE) is bounded by the connection limits instead.
    next.run(req).await
}
