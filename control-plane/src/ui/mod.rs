//! The approval web page, `/ui/approvals`, on the control plane's mTLS
//! listener: the same operator identity as `broker-ctl approval` (a client
//! certificate from `client_ca` whose CN is in `approval.callers`), the same
//! decision code (so requester ≠ approver holds exactly as for the CLI).
//!
//! No JavaScript at all: the list refreshes itself with `<meta refresh>`
//! every few seconds, the detail view has a plain form. Forms carry a
//! per-session token (the session is an `HttpOnly; Secure; SameSite=Strict`
//! cookie bound to the operator's CN); a POST without the session's token is
//! refused with `csrf_invalid`. Every page is sent with a strict
//! Content-Security-Policy (`default-src 'none'`, the stylesheet from
//! `'self'`, forms only to `'self'`, no framing).

mod page;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use infrabroker_common::tls::Peer;
use serde::Deserialize;

use crate::approval::{Decider, Via, is_id};
use crate::error::{ApiError, Code};
use crate::hold::clean_reason;
use crate::state::Shared;

use self::session::Sessions;

/// The list's refresh interval in seconds.
const REFRESH_SECONDS: u32 = 3;

struct Ui {
    shared: Arc<Shared>,
    sessions: Sessions,
}

/// The `/ui` routes, to merge into the mTLS API router.
pub fn router(shared: Arc<Shared>) -> Router {
    let ui = Arc::new(Ui {
        shared,
        sessions: Sessions::default(),
    });
    Router::new()
        .route("/ui/approvals", get(list))
        .route("/ui/approvals/{id}", get(detail).post(decide))
        .route("/ui/style.css", get(style))
        .with_state(ui)
}

/// Headers every page gets.
fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let csp = "default-src 'none'; style-src 'self'; form-action 'self'; \
               frame-ancestors 'none'; base-uri 'none'";
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn html(status: StatusCode, body: String, cookie: Option<String>) -> Response {
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    secure(resp)
}

fn error_page(e: &ApiError) -> Response {
    html(
        e.code.status(),
        page::error(e.code.as_str(), &e.message),
        None,
    )
}

/// Only operators in `approval.callers`; others get the error page (and
/// the refusal is audited like the API's).
async fn operator(ui: &Ui, peer: &Peer) -> Result<(), Response> {
    if ui.shared.cfg.approval.callers.contains(&peer.cn) {
        return Ok(());
    }
    let e = ApiError::new(
        Code::ApproverForbidden,
        format!("{} is not listed in approval.callers", peer.cn),
    );
    let mut r = crate::state::rec("denied");
    r.insert("caller".into(), peer.cn.clone().into());
    r.insert("route".into(), "/ui/approvals".into());
    let _ = crate::sign::refuse(&ui.shared, r, e.clone()).await;
    Err(error_page(&e))
}

async fn list(
    State(ui): State<Arc<Ui>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    if let Err(resp) = operator(&ui, &peer).await {
        return resp;
    }
    let (_, cookie) = ui.sessions.for_request(&headers, &peer.cn);
    let mut all = match ui.shared.approvals().await {
        Ok(all) => all,
        Err(e) => return e.into_response(),
    };
    all.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    html(StatusCode::OK, page::list(&all, REFRESH_SECONDS), cookie)
}

async fn detail(
    State(ui): State<Arc<Ui>>,
    Extension(peer): Extension<Peer>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(resp) = operator(&ui, &peer).await {
        return resp;
    }
    if !is_id(&id) {
        return error_page(&ApiError::new(
            Code::ApprovalUnknown,
            "malformed approval id",
        ));
    }
    let (token, cookie) = ui.sessions.for_request(&headers, &peer.cn);
    match ui.shared.approval(&id).await {
        Ok(view) => html(
            StatusCode::OK,
            page::detail(&view, &peer.cn, &token),
            cookie,
        ),
        Err(e) => error_page(&e),
    }
}

/// The detail view's form.
#[derive(Debug, Deserialize)]
struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    reason: String,
}

async fn decide(
    State(ui): State<Arc<Ui>>,
    Extension(peer): Extension<Peer>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<DecideForm>,
) -> Response {
    if let Err(resp) = operator(&ui, &peer).await {
        return resp;
    }
    if !ui.sessions.check(&headers, &peer.cn, &form.csrf) {
        let e = ApiError::new(
            Code::CsrfInvalid,
            "the form did not come from this operator's approval page; reload it and try again",
        );
        return error_page(&e);
    }
    if !is_id(&id) {
        return error_page(&ApiError::new(
            Code::ApprovalUnknown,
            "malformed approval id",
        ));
    }
    let approve = match form.decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => {
            return error_page(&ApiError::new(
                Code::MalformedRequest,
                "decision must be approve or deny",
            ));
        }
    };
    let reason = clean_reason(&form.reason);
    if reason.is_empty() {
        return error_page(&ApiError::new(
            Code::ReasonRequired,
            "a decision needs a reason",
        ));
    }
    let who = Decider {
        id: peer.cn.clone(),
        via: Via::Web,
    };
    match ui.shared.decide(&id, &who, approve, &reason).await {
        Ok(_) => secure(Redirect::to(&format!("/ui/approvals/{id}")).into_response()),
        Err(e) => error_page(&e),
    }
}

async fn style() -> Response {
    secure(
        (
            [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
            page::STYLE,
        )
            .into_response(),
    )
}
