//! The control plane's mTLS API: routes, caller checks and body limits.
//!
//! | Route | Who | What |
//! |---|---|---|
//! | `GET /v1/hosts` | `sign_callers` | the signer's host view for the broker |
//! | `POST /v1/sign` | `sign_callers` | forwarded, or held (`202 {approval_id}`) |
//! | `GET /v1/sign/result/{id}` | the broker that asked | `200` / `202` / `403` / `408` / `410` |
//! | `GET /v1/approvals[?status=…]` | `approval.callers` | the approvals held |
//! | `GET /v1/approvals/{id}` | `approval.callers` | one approval |
//! | `POST /v1/approvals/{id}` | `approval.callers` | `{"approve": bool, "reason": "…"}` |
//! | `GET /ui/approvals[/{id}]`, `POST /ui/approvals/{id}` | `approval.callers` | the approval web page ([`crate::ui`]) |

use infrabroker_common::monitor;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::{BodyExt, Limited};
use infrabroker_common::tls::Peer;
use serde::Deserialize;
use serde_json::json;

use crate::approval::{ApprovalView, Decider, Via, is_id};
use crate::error::{ApiError, Code};
use crate::hold::clean_reason;
use crate::sign::{self, refuse, relay};
use crate::state::{Shared, rec};

/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;
/// Time allowed to receive a request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The API routes; handlers expect a [`Peer`] from the mTLS accept loop.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/hosts", get(hosts))
        .route("/v1/sign", axum::routing::post(sign_route))
        .route("/v1/revocations", get(revocations_route))
        .route("/v1/sign/result/{id}", get(result_route))
        .route("/v1/sign/confirm/{id}", axum::routing::post(confirm_route))
        .route("/v1/approvals", get(list_route))
        .route("/v1/approvals/{id}", get(show_route).post(decide_route))
        .fallback(|| async { ApiError::new(Code::NotFound, "no such endpoint") })
        .with_state(shared.clone())
        .merge(crate::ui::router(shared))
}

/// Routes of the plain-HTTP monitor listener: `/metrics`, `/healthz`,
/// and `/readyz` (not ready while the audit log cannot be appended to, or
/// the signer or the state store does not answer).
pub fn monitor_router(shared: Arc<Shared>) -> Router {
    let mut registry = shared.metrics.registry();
    monitor::register_audit(&mut registry, &shared.audit);
    let registry = Arc::new(registry);
    // The gauges are set by the sweeper once a second (the store is async).
    let before: monitor::BeforeScrape = Arc::new(|| {});
    let ready: monitor::ReadyCheck = Arc::new(move || {
        let s = Arc::clone(&shared);
        Box::pin(async move {
            let mut problems: monitor::Problems =
                monitor::audit_problem(s.audit.path()).into_iter().collect();
            match tokio::time::timeout(monitor::READY_DEADLINE, s.upstream.healthz()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => problems.push(format!("the signer does not answer: {}", e.0)),
                Err(_) => problems.push("the signer did not answer in time".to_owned()),
            }
            match tokio::time::timeout(monitor::READY_DEADLINE, s.store.store().ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => problems.push(format!("the state store does not answer: {e}")),
                Err(_) => problems.push("the state store did not answer in time".to_owned()),
            }
            problems
        })
    });
    monitor::router(registry, before, ready)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn read_body(req: Request) -> Result<Vec<u8>, ApiError> {
    let limited = Limited::new(req.into_body(), MAX_BODY);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes().to_vec()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::new(
                Code::BodyTooLarge,
                format!("request body exceeds {MAX_BODY} bytes"),
            ))
        }
        Ok(Err(e)) => Err(ApiError::new(
            Code::MalformedRequest,
            format!("request body could not be read: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            Code::MalformedRequest,
            "request body not received in time",
        )),
    }
}

async fn hosts(State(s): State<Arc<Shared>>, Extension(peer): Extension<Peer>) -> Response {
    if !s.cfg.sign_callers.contains(&peer.cn) {
        let mut r = rec("denied");
        r.insert("caller".into(), peer.cn.clone().into());
        r.insert("route".into(), "/v1/hosts".into());
        let e = ApiError::new(
            Code::CallerUnknown,
            format!("{} is not listed in sign_callers", peer.cn),
        );
        return refuse(&s, r, e).await;
    }
    match s.upstream.hosts(&peer.cn).await {
        Ok(raw) => relay(&raw),
        Err(e) => ApiError::new(Code::SignerUnavailable, e.to_string()).into_response(),
    }
}

/// `GET /v1/revocations` for a broker: the signer's freezes, with
/// `caller` set to the broker's CN (the signer sees the control plane; a
/// `caller` freeze names the broker the control plane forwards for).
async fn revocations_route(
    State(s): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
) -> Response {
    if !s.cfg.sign_callers.contains(&peer.cn) {
        let e = ApiError::new(
            Code::CallerUnknown,
            format!("{} is not listed in sign_callers", peer.cn),
        );
        return e.into_response();
    }
    let raw = match s.upstream.revocations().await {
        Ok(raw) => raw,
        Err(e) => return ApiError::new(Code::SignerUnavailable, e.to_string()).into_response(),
    };
    if !raw.status.is_success() {
        return relay(&raw);
    }
    match serde_json::from_slice::<infrabroker_common::wire::RevocationsResponse>(&raw.body) {
        Ok(mut r) => {
            r.caller = peer.cn.clone();
            axum::Json(r).into_response()
        }
        Err(e) => ApiError::new(
            Code::SignerUnavailable,
            format!("the signer's revocations did not parse: {e}"),
        )
        .into_response(),
    }
}

async fn sign_route(
    State(s): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    req: Request<Body>,
) -> Response {
    match read_body(req).await {
        Ok(body) => sign::sign(&s, &peer.cn, &body).await,
        Err(e) => {
            let mut r = rec("denied");
            r.insert("caller".into(), peer.cn.clone().into());
            refuse(&s, r, e).await
        }
    }
}

async fn result_route(
    State(s): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    Path(id): Path<String>,
) -> Response {
    sign::result(&s, &peer.cn, &id).await
}

async fn confirm_route(
    State(s): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    Path(id): Path<String>,
    req: Request<Body>,
) -> Response {
    match read_body(req).await {
        Ok(body) => sign::confirm(&s, &peer.cn, &id, &body).await,
        Err(e) => e.into_response(),
    }
}

/// Refuses callers outside `approval.callers` (audited).
async fn approver(s: &Shared, peer: &Peer, route: &str) -> Result<(), Response> {
    if s.cfg.approval.callers.contains(&peer.cn) {
        return Ok(());
    }
    let mut r = rec("denied");
    r.insert("caller".into(), peer.cn.clone().into());
    r.insert("route".into(), route.into());
    let e = ApiError::new(
        Code::ApproverForbidden,
        format!("{} is not listed in approval.callers", peer.cn),
    );
    Err(refuse(s, r, e).await)
}

/// `?status=pending` (the only filter); anything else is refused.
fn status_filter(query: Option<&str>) -> Result<Option<String>, ApiError> {
    match query.filter(|q| !q.is_empty()) {
        None => Ok(None),
        Some(q) => match q.strip_prefix("status=") {
            Some(st) if !st.contains('&') => Ok(Some(st.to_owned())),
            _ => Err(ApiError::new(
                Code::MalformedRequest,
                "the only query parameter is status=<state>",
            )),
        },
    }
}

async fn list_route(
    State(s): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(resp) = approver(&s, &peer, "/v1/approvals").await {
        return resp;
    }
    let status = match status_filter(query.as_deref()) {
        Ok(st) => st,
        Err(e) => return e.into_response(),
    };
    let all = match s.approvals().await {
        Ok(all) => all,
        Err(e) => return e.into_response(),
    };
    let all: Vec<ApprovalView> = all
        .into_iter()
        .filter(|a| status.as_deref().is_none_or(|st| a.status.as_str() == st))
        .collect();
    axum::Json(all).into_response()
}

async fn show_route(
    State(s): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    Path(id): Path<String>,
) -> Response {
    if let Err(resp) = approver(&s, &peer, "/v1/approvals/{id}").await {
        return resp;
    }
    match s.approval(&id).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/approvals/{id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    approve: bool,
    #[serde(default)]
    reason: Option<String>,
}

async fn decide_route(
    State(s): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    Path(id): Path<String>,
    headers: HeaderMap,
    req: Request<Body>,
) -> Response {
    if let Err(resp) = approver(&s, &peer, "/v1/approvals/{id}").await {
        return resp;
    }
    let json_body = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body {
        return ApiError::new(
            Code::MalformedRequest,
            "Content-Type must be application/json",
        )
        .into_response();
    }
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let body: DecideBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return ApiError::new(Code::MalformedRequest, format!("invalid decision: {e}"))
                .into_response();
        }
    };
    if !is_id(&id) {
        return ApiError::new(Code::ApprovalUnknown, "malformed approval id").into_response();
    }
    let reason = clean_reason(body.reason.as_deref().unwrap_or_default());
    let reason = match (reason.is_empty(), body.approve) {
        (false, _) => reason,
        (true, true) => "approved by an operator".to_owned(),
        (true, false) => {
            return ApiError::new(Code::ReasonRequired, "a denial needs a reason").into_response();
        }
    };
    let who = Decider {
        id: peer.cn.clone(),
        via: Via::Operator,
    };
    match s.decide(&id, &who, body.approve, &reason).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}
