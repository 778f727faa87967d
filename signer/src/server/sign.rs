//! `POST /v1/sign`: a request judged, frozen or rate-limited subjects
//! refused, a serial taken, the certificate signed by the host's CA,
//! indexed and audited before it leaves; every refusal audited.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use infrabroker_common::tls::Peer;
use infrabroker_common::wire::{ReasonCode, SignRequest, SignResponse};
use infrabroker_store::LiveCert;
use serde_json::{Map, Value};

use super::{ApiError, Shared, now_unix, read_body, status_of};
use crate::config::AuditFailMode;
use crate::freeze;
use crate::issuance::{self, Denial, Plan, Runtime};
use crate::ratelimit;

fn request_fields(rec: &mut Map<String, Value>, req: &SignRequest) {
    let mut put = |k: &str, v: Value| {
        rec.insert(k.to_owned(), v);
    };
    put("host", req.host.clone().into());
    put("role", req.role.as_str().into());
    put("purpose", req.purpose.as_str().into());
    if let Some(m) = req.session_mode {
        put("session_mode", m.as_str().into());
    }
    if !req.command.is_empty() {
        put("command", req.command.clone().into());
    }
    if req.sudo {
        put(
            "sudo_user",
            req.sudo_user
                .clone()
                .unwrap_or_else(|| "root".into())
                .into(),
        );
    }
    if req.pty {
        put("pty", true.into());
    }
    if let Some(f) = &req.file {
        // What moves, never the body: the broker sends that to the host.
        put("path", f.path.clone().into());
        if req.purpose == infrabroker_common::wire::Purpose::FilePut {
            put("size", f.size.into());
            put("sha256", f.sha256.clone().into());
            if let Some(m) = &f.mode {
                put("mode", m.clone().into());
            }
            put("overwrite", f.overwrite.into());
        } else if let Some(m) = f.max_bytes {
            put("max_bytes", m.into());
        }
    }
    if let Some(eu) = &req.end_user {
        put("end_user", eu.clone().into());
    }
    if let Some(g) = &req.end_user_groups {
        put("end_user_groups", g.clone().into());
    }
    if let Some(b) = &req.on_behalf_of {
        put("on_behalf_of", b.clone().into());
    }
    if req.approved {
        put("approved", true.into());
    }
    if req.dry_run {
        put("dry_run", true.into());
    }
}

fn plan_fields(rec: &mut Map<String, Value>, plan: &Plan) {
    rec.insert("caller".into(), plan.caller.clone().into());
    rec.insert("addr".into(), plan.addr.clone().into());
    rec.insert("user".into(), plan.user.clone().into());
    rec.insert("principal".into(), plan.principal.clone().into());
    rec.insert("key_id".into(), plan.key_id.clone().into());
    rec.insert("ttl_seconds".into(), plan.ttl.into());
    if let Some(e) = &plan.elevation {
        rec.insert("elevation".into(), e.clone().into());
    }
    if let Some(fc) = &plan.force_command {
        rec.insert("force_command".into(), fc.clone().into());
    }
    decision_fields(rec, &plan.decision);
}

fn decision_fields(rec: &mut Map<String, Value>, d: &infrabroker_common::wire::Decision) {
    rec.insert("reason_code".into(), d.reason_code.as_str().into());
    if let Some(r) = &d.matched_rule {
        rec.insert("matched_rule".into(), r.clone().into());
    }
    if !d.warnings.is_empty() {
        rec.insert("warnings".into(), d.warnings.clone().into());
    }
}

pub(super) async fn sign(
    State(s): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    req: Request<Body>,
) -> Response {
    let started = Instant::now();
    let resp = sign_inner(&s, &peer, req).await;
    s.metrics.observe(started.elapsed());
    resp
}

async fn sign_inner(s: &Shared, peer: &Peer, req: Request<Body>) -> Response {
    let mut rec = Map::new();
    rec.insert("cn".into(), peer.cn.clone().into());
    rec.insert("peer".into(), peer.addr.to_string().into());
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return deny(s, rec, e).await,
    };
    let intent: SignRequest = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => {
            let msg = format!("invalid request: {e}");
            return deny(
                s,
                rec,
                ApiError::new(StatusCode::BAD_REQUEST, ReasonCode::MalformedRequest, msg),
            )
            .await;
        }
    };
    request_fields(&mut rec, &intent);
    let rt = s.runtime();
    if let Err(resp) = ratelimit::enforce(s, &rt, &peer.cn, &intent, &rec).await {
        return resp;
    }
    let plan = match issuance::evaluate(&rt, &peer.cn, &intent) {
        Ok(p) => p,
        Err(d) => return deny_policy(s, rec, d).await,
    };
    plan_fields(&mut rec, &plan);
    // Frozen subjects get nothing, dry runs (preflights) included.
    if let Some(refused) = frozen(s, &mut rec, peer, &intent, &plan).await {
        return refused;
    }
    if intent.dry_run {
        return dry_run(s, &rt, rec, &intent, plan).await;
    }
    issue(s, &rt, rec, &intent, plan).await
}

/// Appends the record of `what` before its answer leaves; the refusal to
/// send instead when it cannot be written and the mode is closed (the
/// global chain never fails open: in HA mode nothing leaves without its
/// committed record).
async fn record(
    s: &Shared,
    rt: &Runtime,
    rec: Map<String, Value>,
    what: &str,
) -> Result<(), Response> {
    let Err(e) = s.audit.append(rec).await else {
        return Ok(());
    };
    s.metrics.audit_failure();
    tracing::error!(error = %e, "audit record of {what} could not be written");
    if rt.config.audit_fail_mode == AuditFailMode::Closed || e.store {
        return Err(audit_down(s, e.store));
    }
    Ok(())
}

/// Answers a dry run: its decision, no certificate (for an allowed session
/// command on a sealed host, its envelope); audited.
async fn dry_run(
    s: &Shared,
    rt: &Runtime,
    mut rec: Map<String, Value>,
    intent: &SignRequest,
    plan: Plan,
) -> Response {
    rec.insert("outcome".into(), "dry_run".into());
    let envelope = issuance::envelope::mint(rt, intent, &plan).map(|(line, nonce)| {
        rec.insert("envelope_nonce".into(), nonce.into());
        line
    });
    s.metrics.dry_run();
    if let Err(refused) = record(s, rt, rec, "a dry run").await {
        return refused;
    }
    axum::Json(SignResponse {
        certificate: None,
        serial: None,
        valid_before: None,
        elevation_prefix: plan.elevation_prefix,
        envelope,
        decision: plan.decision,
    })
    .into_response()
}

/// Signs a certificate the plan allows, indexes it and records it; it
/// leaves only after both.
async fn issue(
    s: &Shared,
    rt: &Runtime,
    mut rec: Map<String, Value>,
    intent: &SignRequest,
    plan: Plan,
) -> Response {
    let pubkey = match issuance::parse_pubkey(&intent.pubkey) {
        Ok(k) => k,
        Err(d) => return deny_policy(s, rec, d).await,
    };
    let serial = match s.serials.next().await {
        Ok(serial) => serial,
        Err(e) => return no_serial(s, rec, &e).await,
    };
    let issued = match signed(rt, &plan, &pubkey, serial).await {
        Ok(i) => i,
        Err(d) => return deny_policy(s, rec, d).await,
    };
    rec.insert("outcome".into(), "issued".into());
    rec.insert("serial".into(), issued.serial.into());
    rec.insert("valid_after".into(), issued.valid_after.into());
    rec.insert("valid_before".into(), issued.valid_before.into());
    let fingerprint = pubkey.fingerprint(ssh_key::HashAlg::Sha256).to_string();
    rec.insert("pubkey_fingerprint".into(), fingerprint.into());
    if let Err(refused) = index(s, &mut rec, &plan, intent, &issued).await {
        return refused;
    }
    let what = format!("an issuance (serial {serial})");
    if let Err(refused) = record(s, rt, rec, &what).await {
        return refused;
    }
    s.metrics.issued();
    axum::Json(SignResponse {
        certificate: Some(issued.certificate),
        serial: Some(issued.serial),
        valid_before: Some(issued.valid_before),
        elevation_prefix: plan.elevation_prefix,
        envelope: None,
        decision: plan.decision,
    })
    .into_response()
}

/// The certificate signed by the host's CA: a key in memory signs here, a
/// token or agent off the runtime's threads (it waits on a device or a
/// socket).
async fn signed(
    rt: &Runtime,
    plan: &Plan,
    pubkey: &ssh_key::PublicKey,
    serial: u64,
) -> Result<issuance::Issued, issuance::Denial> {
    let draft = issuance::draft(rt, plan, pubkey, serial, now_unix())?;
    if !draft.ca.blocks() {
        return draft.sign();
    }
    let signing = tokio::task::spawn_blocking(move || draft.sign());
    match tokio::time::timeout(REMOTE_SIGN_DEADLINE, signing).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(issuance::Denial::new(
            ReasonCode::Internal,
            "the signing task failed; nothing was issued",
        )),
        // The device or agent hangs: the caller is answered; a certificate
        // the task may still finish is dropped, never sent.
        Err(_) => {
            tracing::warn!(
                seconds = REMOTE_SIGN_DEADLINE.as_secs(),
                "the CA token or agent did not answer in time"
            );
            Err(issuance::Denial::new(
                ReasonCode::CaUnavailable,
                format!(
                    "the CA did not sign within {} s; nothing was issued",
                    REMOTE_SIGN_DEADLINE.as_secs()
                ),
            ))
        }
    }
}

/// How long a token or agent may take for one certificate, waiting for a
/// pooled session included (the pool gives up after 5 s, the agent's reads
/// after their own timeout): past it the request is `ca_unavailable`.
const REMOTE_SIGN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

/// The refusal of a request a freeze covers (audited with the freeze id),
/// or of any request while the freezes cannot be read.
async fn frozen(
    s: &Shared,
    rec: &mut Map<String, Value>,
    peer: &Peer,
    intent: &SignRequest,
    plan: &Plan,
) -> Option<Response> {
    match s.freezes.matching(&peer.cn, intent, &plan.key_id).await {
        Ok(None) => None,
        Ok(Some(f)) => {
            rec.insert("freeze_id".into(), f.id.clone().into());
            Some(deny(s, rec.clone(), freeze::refusal(&f)).await)
        }
        Err(e) => Some(deny(s, rec.clone(), e).await),
    }
}

/// Records an issued certificate in the index of live certificates, so a
/// freeze can revoke it; when that fails the certificate is withheld (the
/// refusal's record carries the serial that was never handed out).
async fn index(
    s: &Shared,
    rec: &mut Map<String, Value>,
    plan: &Plan,
    intent: &SignRequest,
    issued: &issuance::Issued,
) -> Result<(), Response> {
    let row = LiveCert {
        serial: issued.serial,
        ca: issued.ca.clone(),
        key_id: plan.key_id.clone(),
        caller: plan.caller.clone(),
        forwarder: plan.forwarder.clone().unwrap_or_default(),
        end_user: intent.end_user.clone().unwrap_or_default(),
        host: plan.host.clone(),
        valid_before_ms: issued.valid_before.saturating_mul(1000),
        revoked_by: None,
    };
    let Err(e) = s.certs.record(row).await else {
        return Ok(());
    };
    tracing::error!(error = %e, serial = issued.serial, "certificate not indexed; withheld");
    let msg = "the state store cannot record the certificate for revocation; nothing was issued";
    let err = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ReasonCode::StoreUnavailable,
        msg,
    );
    Err(deny(s, rec.clone(), err).await)
}

/// The refusal when the store hands out no serial: nothing is issued.
async fn no_serial(
    s: &Shared,
    rec: Map<String, Value>,
    e: &infrabroker_store::StoreError,
) -> Response {
    tracing::error!(error = %e, "no serial from the state store");
    let msg = format!("the state store cannot allocate a serial ({e}); nothing was issued");
    let err = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ReasonCode::StoreUnavailable,
        msg,
    );
    deny(s, rec, err).await
}

fn audit_down(s: &Shared, store: bool) -> Response {
    let (code, msg) = if store {
        (
            ReasonCode::StoreUnavailable,
            "the global audit chain in the state store cannot be written; nothing was issued",
        )
    } else {
        (
            ReasonCode::AuditUnavailable,
            "the audit log cannot be written; nothing was issued",
        )
    };
    s.metrics.denied(code.as_str());
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, msg).into_response()
}

async fn deny_policy(s: &Shared, mut rec: Map<String, Value>, d: Denial) -> Response {
    if let Some(dec) = &d.decision {
        decision_fields(&mut rec, dec);
    }
    deny(s, rec, ApiError::new(status_of(d.code), d.code, d.message)).await
}

/// Audits a refusal and answers it. A refusal is answered even when its
/// record cannot be written: refusing is already the closed outcome.
pub(super) async fn deny(s: &Shared, mut rec: Map<String, Value>, err: ApiError) -> Response {
    rec.insert("outcome".into(), "denied".into());
    rec.insert("reason_code".into(), err.body.reason_code.as_str().into());
    rec.insert("message".into(), err.body.message.clone().into());
    s.metrics.denied(err.body.reason_code.as_str());
    if let Err(e) = s.audit.append(rec).await {
        s.metrics.audit_failure();
        tracing::error!(error = %e, "audit record of a refusal could not be written");
    }
    err.into_response()
}
