//! The kill switch (issue 18 items 1–2): `POST /v1/freeze`, `GET
//! /v1/freezes`, `DELETE /v1/freeze/{id}` (upstream route names), for the
//! operators in `reload_callers`, every change audited. A frozen caller,
//! end user, host or key id gets `403 frozen` on every sign and dry run —
//! so a broker's preflight of an open session refuses too — on every
//! replica: freezes live in the state store.
//!
//! Each replica reads the active freezes from the store at most once per
//! [`REFRESH`] and after every change it makes itself; a freeze made on
//! another replica therefore applies here within that second. If the
//! store cannot be read when a refresh is due, signing is refused with
//! `store_unavailable` (a signer that cannot know whether a subject is
//! frozen issues nothing). A serial freeze matches no new request (a new
//! certificate has a new serial); it is there for the KRL.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Extension, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use infrabroker_common::names;
use infrabroker_common::tls::Peer;
use infrabroker_common::wire::{
    Freeze, FreezeRequest, ReasonCode, RevocationsResponse, SignRequest,
};
use infrabroker_store::{Entry, EntryKind, Store, StoreError};
use serde_json::{Map, Value};

use crate::ratelimit::now_ms;
use crate::server::{ApiError, Shared, read_body};

/// Longest a replica uses its cached list of freezes.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Longest `ttl_seconds` (30 days); without one a freeze stays until lifted.
pub const MAX_TTL_SECONDS: u64 = 30 * 24 * 3600;

/// Longest reason kept.
const MAX_REASON: usize = 500;

/// The freezes of one signer process.
#[derive(Debug)]
pub struct Freezes {
    store: Store,
    cache: Mutex<Option<(Instant, Arc<Vec<Freeze>>)>>,
}

fn store_down(e: &StoreError) -> ApiError {
    tracing::error!(error = %e, "freezes could not be read from the state store");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ReasonCode::StoreUnavailable,
        "the state store cannot be read, so freezes are unknown; nothing was issued",
    )
}

impl Freezes {
    /// Freezes kept in `store`.
    pub fn new(store: Store) -> Freezes {
        Freezes {
            store,
            cache: Mutex::new(None),
        }
    }

    /// The freezes in force now (cached for [`REFRESH`]).
    pub async fn active(&self) -> Result<Arc<Vec<Freeze>>, ApiError> {
        if let Some((at, list)) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            && at.elapsed() < REFRESH
        {
            return Ok(list.clone());
        }
        let now = now_ms();
        let entries = self
            .store
            .entry_active(EntryKind::Freeze, now)
            .await
            .map_err(|e| store_down(&e))?;
        let list: Vec<Freeze> = entries
            .iter()
            .filter_map(|e| serde_json::from_str(&e.body).ok())
            .collect();
        let list = Arc::new(list);
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), list.clone()));
        Ok(list)
    }

    fn invalidate(&self) {
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The freeze that stops a request of `cn` (with `intent`'s end user
    /// and host, and the certificate's `key_id`), if any. Behind a trusted
    /// forwarder the caller is the broker it names.
    pub async fn matching(
        &self,
        cn: &str,
        intent: &SignRequest,
        key_id: &str,
    ) -> Result<Option<Freeze>, ApiError> {
        let list = self.active().await?;
        let caller = intent.on_behalf_of.as_deref();
        Ok(list
            .iter()
            .find(|f| match f.kind.as_str() {
                "caller" => f.value == cn || caller == Some(f.value.as_str()),
                "end_user" => intent.end_user.as_deref() == Some(f.value.as_str()),
                "host" => f.value == intent.host,
                "key_id" => f.value == key_id,
                _ => false,
            })
            .cloned())
    }
}

/// The refusal of a frozen request.
pub fn refusal(f: &Freeze) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ReasonCode::Frozen,
        format!(
            "{} {} is frozen (freeze {}): {}",
            f.kind, f.value, f.id, f.reason
        ),
    )
}

/// The subject of a request: `(kind, value)`, exactly one.
fn subject(req: &FreezeRequest) -> Result<(&'static str, String), String> {
    let mut found = Vec::new();
    if let Some(v) = &req.caller {
        found.push(("caller", v.clone()));
    }
    if let Some(v) = &req.end_user {
        found.push(("end_user", v.clone()));
    }
    if let Some(v) = &req.host {
        found.push(("host", v.clone()));
    }
    if let Some(v) = req.serial {
        found.push(("serial", v.to_string()));
    }
    if let Some(v) = &req.key_id {
        found.push(("key_id", v.clone()));
    }
    let [(kind, value)] = found.as_slice() else {
        return Err("name exactly one of caller, end_user, host, serial, key_id".into());
    };
    let ok = match *kind {
        "caller" => names::is_identity(value),
        "end_user" => names::is_identity(value),
        "host" => names::is_name(value),
        "serial" => true,
        _ => !value.is_empty() && value.len() <= 1024 && !value.chars().any(char::is_control),
    };
    if !ok {
        return Err(format!("{kind}: not a valid value"));
    }
    Ok((kind, value.clone()))
}

/// Lets the operators in `reload_callers` through; audits and refuses
/// anyone else.
pub(crate) async fn operator(s: &Shared, peer: &Peer, what: &str) -> Result<(), Response> {
    if s.runtime().config.reload_callers.contains(&peer.cn) {
        return Ok(());
    }
    let mut rec = Map::new();
    rec.insert("outcome".into(), "denied".into());
    rec.insert("cn".into(), peer.cn.clone().into());
    rec.insert(
        "reason_code".into(),
        ReasonCode::FreezeForbidden.as_str().into(),
    );
    rec.insert("route".into(), what.into());
    let _ = s.audit().append(rec).await;
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        ReasonCode::FreezeForbidden,
        format!("{} is not in reload_callers", peer.cn),
    )
    .into_response())
}

fn bad(msg: impl Into<String>) -> Response {
    ApiError::new(StatusCode::BAD_REQUEST, ReasonCode::MalformedRequest, msg).into_response()
}

/// The freeze a `POST /v1/freeze` body asks for, made by `by` at `now`.
fn parse(body: &[u8], by: &str, now: u64) -> Result<Freeze, String> {
    let req: FreezeRequest =
        serde_json::from_slice(body).map_err(|e| format!("invalid freeze: {e}"))?;
    let (kind, value) = subject(&req)?;
    let reason: String = req
        .reason
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON)
        .collect();
    if reason.trim().is_empty() {
        return Err("a freeze needs a reason".into());
    }
    if req
        .ttl_seconds
        .is_some_and(|t| t == 0 || t > MAX_TTL_SECONDS)
    {
        return Err(format!(
            "ttl_seconds must be between 1 and {MAX_TTL_SECONDS}"
        ));
    }
    Ok(Freeze {
        id: rand::random::<[u8; 8]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        kind: kind.into(),
        value,
        reason: reason.trim().to_owned(),
        by: by.to_owned(),
        created_ms: now,
        expires_ms: req
            .ttl_seconds
            .map(|t| now.saturating_add(t.saturating_mul(1000))),
    })
}

/// `POST /v1/freeze`: audited first (no freeze without its record), then
/// stored.
pub async fn add(
    State(s): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    req: Request,
) -> Response {
    if let Err(resp) = operator(&s, &peer, "POST /v1/freeze").await {
        return resp;
    }
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let now = now_ms();
    let f = match parse(&body, &peer.cn, now) {
        Ok(f) => f,
        Err(why) => return bad(why),
    };
    let mut rec = record("freeze", &f);
    if let Err(e) = s.audit().append(rec.clone()).await {
        tracing::error!(error = %e, "audit record of a freeze could not be written");
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ReasonCode::AuditUnavailable,
            "the audit log cannot be written; the freeze was not made",
        )
        .into_response();
    }
    let entry = Entry {
        id: f.id.clone(),
        created_ms: now,
        expires_ms: f.expires_ms,
        ended_ms: None,
        body: serde_json::to_string(&f).unwrap_or_default(),
    };
    if !matches!(
        s.freezes()
            .store
            .entry_insert(EntryKind::Freeze, &entry)
            .await,
        Ok(true)
    ) {
        rec.insert("outcome".into(), "freeze-failed".into());
        let _ = s.audit().append(rec).await;
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ReasonCode::StoreUnavailable,
            "the freeze could not be stored; retry",
        )
        .into_response();
    }
    s.freezes().invalidate();
    // The KRL build applies a young freeze again, so a failure here only
    // delays the revocation to the next build.
    let revoked = crate::krl::revoke_covered(&s.freezes().store, &f, now).await;
    if let Err(e) = &revoked {
        tracing::warn!(error = %e, id = %f.id, "live certificates not yet revoked; the KRL build retries");
    }
    s.krl().invalidate().await;
    let revoked = revoked.unwrap_or(0);
    tracing::warn!(id = %f.id, kind = %f.kind, value = %f.value, by = %f.by, revoked, "frozen");
    (StatusCode::CREATED, axum::Json(f)).into_response()
}

/// `GET /v1/freezes`.
pub async fn list(State(s): State<Arc<Shared>>, Extension(peer): Extension<Peer>) -> Response {
    if let Err(resp) = operator(&s, &peer, "GET /v1/freezes").await {
        return resp;
    }
    s.freezes().invalidate();
    match s.freezes().active().await {
        Ok(list) => axum::Json(list.as_ref().clone()).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /v1/freeze/{id}`.
pub async fn lift(
    State(s): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    Path(id): Path<String>,
) -> Response {
    if let Err(resp) = operator(&s, &peer, "DELETE /v1/freeze").await {
        return resp;
    }
    if let Err(e) = revoke_before_lifting(&s, &id).await {
        return store_down(&e).into_response();
    }
    let ended = match s
        .freezes()
        .store
        .entry_end(EntryKind::Freeze, &id, now_ms())
        .await
    {
        Ok(ended) => ended,
        Err(e) => return store_down(&e).into_response(),
    };
    if !ended {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            ReasonCode::NotFound,
            format!("no freeze {id} in force (unknown, lifted or expired)"),
        )
        .into_response();
    }
    s.freezes().invalidate();
    s.krl().invalidate().await;
    let mut rec = Map::new();
    rec.insert("outcome".into(), "freeze-lifted".into());
    rec.insert("freeze_id".into(), id.clone().into());
    rec.insert("by".into(), peer.cn.clone().into());
    if let Err(e) = s.audit().append(rec).await {
        tracing::error!(error = %e, "audit record of a lifted freeze could not be written");
    }
    axum::Json(serde_json::json!({"lifted": id})).into_response()
}

/// Revokes what freeze `id` covers once more before it ends: a
/// certificate another replica issued in the second before it saw the
/// freeze stays revoked after the lift.
async fn revoke_before_lifting(s: &Shared, id: &str) -> Result<(), StoreError> {
    s.freezes().invalidate();
    let Ok(active) = s.freezes().active().await else {
        return Err(StoreError::Unavailable("freezes cannot be read".into()));
    };
    match active.iter().find(|f| f.id == id) {
        Some(f) => crate::krl::revoke_covered(&s.freezes().store, f, now_ms())
            .await
            .map(|_| ()),
        None => Ok(()),
    }
}

/// `GET /v1/revocations` (upstream name): the freezes in force, for any
/// caller the signer knows (brokers poll it to close what they hold of a
/// frozen subject).
pub async fn revocations(
    State(s): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
) -> Response {
    let rt = s.runtime();
    let known = rt.config.callers.contains_key(&peer.cn)
        || rt.config.trusted_forwarders.contains(&peer.cn)
        || rt.config.reload_callers.contains(&peer.cn);
    if !known {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            ReasonCode::CallerUnknown,
            format!("{} is not a known caller", peer.cn),
        )
        .into_response();
    }
    match s.freezes().active().await {
        Ok(list) => axum::Json(RevocationsResponse {
            caller: peer.cn.clone(),
            freezes: list.as_ref().clone(),
        })
        .into_response(),
        Err(e) => e.into_response(),
    }
}

fn record(outcome: &str, f: &Freeze) -> Map<String, Value> {
    let mut rec = Map::new();
    rec.insert("outcome".into(), outcome.into());
    rec.insert("freeze_id".into(), f.id.clone().into());
    rec.insert("freeze_kind".into(), f.kind.clone().into());
    rec.insert("freeze_value".into(), f.value.clone().into());
    rec.insert("reason".into(), f.reason.clone().into());
    rec.insert("by".into(), f.by.clone().into());
    if let Some(e) = f.expires_ms {
        rec.insert("expires_ms".into(), e.into());
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_valid_subject() {
        let ok = FreezeRequest {
            caller: Some("broker-1".into()),
            reason: "r".into(),
            ..FreezeRequest::default()
        };
        assert_eq!(subject(&ok), Ok(("caller", "broker-1".to_owned())));
        let two = FreezeRequest {
            host: Some("web".into()),
            ..ok.clone()
        };
        assert!(subject(&two).is_err());
        assert!(subject(&FreezeRequest::default()).is_err());
        let bad = FreezeRequest {
            caller: Some("a b".into()),
            ..FreezeRequest::default()
        };
        assert!(subject(&bad).is_err());
        let serial = FreezeRequest {
            serial: Some(7),
            ..FreezeRequest::default()
        };
        assert_eq!(subject(&serial), Ok(("serial", "7".to_owned())));
    }
}
