//! `POST /v1/sign` and `GET /v1/sign/result/{id}`: the control plane as a
//! policy enforcement point in front of the signer.
//!
//! A request that will run something (role `target`, not a plain dry run)
//! goes through the guardrails first. Then either it is forwarded with
//! `on_behalf_of` set to the broker's CN, or — when the signer answers
//! `needs_approval`, or a guardrail in enforce mode found a novelty — it is
//! held and the broker gets `202 {approval_id}`. Collecting an approved
//! request forwards the stored request once more with `approved: true`; the
//! signer stays authoritative on everything else.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use infrabroker_common::client::RawResponse;
use infrabroker_common::wire::{Purpose, Role, SignRequest, SignResponse};
use serde_json::{Map, Value, json};

use crate::approval::{Collect, Novelty, Tier};
use crate::config::{ApprovalConfig, GuardMode};
use crate::error::{ApiError, Code};
use crate::guard::{self, Findings};
use crate::hold::HoldSpec;
use crate::state::{Shared, rec, request_fields};

/// A request for something that will run: guardrails and holds apply.
/// Bastion certificates run nothing; a one-shot dry run only asks.
pub fn is_action(req: &SignRequest) -> bool {
    req.role == Role::Target && (!req.dry_run || req.purpose == Purpose::Session)
}

/// The tier of a policy approval. The command is split into its simple
/// commands exactly as the signer's firewall judges them, each part gets
/// the tier of the first rule whose hosts and pattern match it (else the
/// default), and the strictest part decides: `ps; systemctl stop db` cannot
/// ride on a lenient rule written for `ps`. A command the parser refuses,
/// and any elevated or PTY request, is never granted more leniently than
/// the default tier.
pub fn policy_tier(cfg: &ApprovalConfig, req: &SignRequest) -> Tier {
    let of = |text: &str| {
        cfg.tiers
            .iter()
            .find(|r| {
                (r.hosts.is_empty() || r.hosts.contains(&req.host)) && r.pattern.is_match(text)
            })
            .map_or(cfg.default_tier, |r| r.tier)
    };
    let parts = match infrabroker_firewall::parse_simple_commands(&req.command) {
        Ok(parts) if !parts.is_empty() => parts,
        _ => return cfg.default_tier.max(of(&req.command)),
    };
    let mut tier = parts
        .iter()
        .map(|argv| of(&infrabroker_firewall::render(argv)))
        .max()
        .unwrap_or(cfg.default_tier);
    if parts.len() > 1 {
        tier = tier.max(of(&req.command));
    }
    if req.sudo || req.pty {
        tier = tier.max(cfg.default_tier);
    }
    tier
}

/// Relays a signer answer unchanged.
pub fn relay(raw: &RawResponse) -> Response {
    let mut resp = Response::new(Body::from(raw.body.clone()));
    *resp.status_mut() = raw.status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(v) = raw
        .retry_after
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        resp.headers_mut().insert(hyper::header::RETRY_AFTER, v);
    }
    resp
}

/// The signer's reason code in an error answer, if any.
fn signer_code(raw: &RawResponse) -> Option<String> {
    serde_json::from_slice::<Value>(&raw.body)
        .ok()?
        .get("reason_code")?
        .as_str()
        .map(str::to_owned)
}

pub(crate) fn unreachable(e: &crate::upstream::Unreachable) -> ApiError {
    ApiError::new(Code::SignerUnavailable, e.to_string())
}

/// Audits a refusal of ours and answers it.
pub async fn refuse(s: &Shared, mut r: Map<String, Value>, err: ApiError) -> Response {
    r.insert("outcome".into(), "denied".into());
    r.insert("reason_code".into(), err.code.as_str().into());
    r.insert("err".into(), err.message.clone().into());
    s.record_anyway(r).await;
    err.into_response()
}

/// `POST /v1/sign` from broker `cn` with `body`.
pub async fn sign(s: &Shared, cn: &str, body: &[u8]) -> Response {
    let mut r = rec("forwarded");
    r.insert("caller".into(), cn.into());
    if !s.cfg.sign_callers.contains(cn) {
        let e = ApiError::new(
            Code::CallerUnknown,
            format!("{cn} is not listed in sign_callers"),
        );
        return refuse(s, r, e).await;
    }
    let req: SignRequest = match serde_json::from_slice(body) {
        Ok(q) => q,
        Err(e) => {
            let e = ApiError::new(Code::MalformedRequest, format!("invalid request: {e}"));
            return refuse(s, r, e).await;
        }
    };
    request_fields(&mut r, &req);
    if req.on_behalf_of.is_some() || req.approved {
        let e = ApiError::new(
            Code::ForwarderUntrusted,
            "on_behalf_of and approved are set by the control plane, never by a broker",
        );
        return refuse(s, r, e).await;
    }
    let subject = guard::subject(
        cn,
        req.end_user.as_deref(),
        s.cfg.trusted_forwarders.contains(cn),
    );
    r.insert("subject".into(), subject.clone().into());
    let mut fwd = req.clone();
    fwd.on_behalf_of = Some(cn.to_owned());
    if !is_action(&req) {
        return forward(s, r, &fwd, &subject, &[]).await;
    }
    let now = s.now_ms();
    let findings = match s.guard.check(&subject, &req.host, &req.command, now).await {
        Ok(f) => f,
        Err(e) => return refuse(s, r, e).await,
    };
    let mode = s.guard.mode();
    if let Err(resp) = audit_findings(s, &r, &findings, mode).await {
        return resp;
    }
    if mode == GuardMode::Enforce
        && let Some(wait) = findings.rate_exceeded
    {
        return rate_limited(s, &r, &subject, wait).await;
    }
    if mode == GuardMode::Enforce && !findings.novelties.is_empty() {
        return hold_novelty(s, r, cn, &subject, &req, &fwd, findings).await;
    }
    if let Err(e) = s.guard.touch(&subject, &req.host, &req.command, now).await {
        return refuse(s, r, e).await;
    }
    let raw = match s.upstream.sign(&fwd).await {
        Ok(raw) => raw,
        Err(e) => return refuse(s, r, unreachable(&e)).await,
    };
    // A preflight (dry run) that needs an approval is held like the sign
    // it stands for, so the approved preflight lets the command run.
    if let Some(named) = crate::collect::policy_wants_approval(&raw, signer_code(&raw).as_deref()) {
        let spec = policy_hold(s, &req, &fwd, named, findings.novelties).await;
        return hold(s, r, cn, &subject, &req, spec).await;
    }
    finish_forward(s, r, &raw, &subject, &findings.novelties).await
}

/// `429` for a subject over the guardrails' rate in enforce mode, audited
/// as `rate-limited`.
async fn rate_limited(
    s: &Shared,
    r: &Map<String, Value>,
    subject: &str,
    wait: std::time::Duration,
) -> Response {
    s.metrics.rate_limited();
    let mut e = ApiError::new(
        Code::RateLimited,
        format!(
            "{subject} exceeded {} sign requests per minute; retry after {} s",
            s.cfg.behavior.rate_limit_per_min,
            wait.as_secs()
        ),
    );
    e.retry_after = Some(wait.as_secs());
    let mut rl = r.clone();
    rl.insert("outcome".into(), "rate-limited".into());
    rl.insert("reason_code".into(), e.code.as_str().into());
    s.record_anyway(rl).await;
    e.into_response()
}

/// How a request the signer's policy holds for approval is held: its
/// tier, and the rule that asked (`named`, else found with a dry run).
async fn policy_hold(
    s: &Shared,
    req: &SignRequest,
    fwd: &SignRequest,
    named: Option<String>,
    learn: Vec<Novelty>,
) -> HoldSpec {
    let rule = match named {
        Some(rule) => Some(rule),
        None => match dry_run(s, fwd).await {
            Ok(Ok(resp)) => resp.decision.matched_rule,
            _ => None,
        },
    };
    HoldSpec {
        tier: policy_tier(&s.cfg.approval, req),
        reasons: vec![format!(
            "policy requires approval ({})",
            rule.as_deref().unwrap_or("require_approval")
        )],
        rule,
        learn,
    }
}

/// Records guardrail findings: `anomaly` in observe and enforce modes (a
/// rate excess in enforce mode is recorded as `rate-limited` instead).
async fn audit_findings(
    s: &Shared,
    base: &Map<String, Value>,
    findings: &Findings,
    mode: GuardMode,
) -> Result<(), Response> {
    let mut found = Findings {
        rate_exceeded: findings.rate_exceeded,
        novelties: findings.novelties.clone(),
    };
    if mode == GuardMode::Enforce {
        found.rate_exceeded = None;
    }
    if found.is_clean() {
        return Ok(());
    }
    s.metrics.anomaly();
    let mut r = base.clone();
    r.insert("outcome".into(), "anomaly".into());
    r.insert("anomaly".into(), found.describe().into());
    r.insert(
        "mode".into(),
        match mode {
            GuardMode::Enforce => "enforce",
            _ => "observe",
        }
        .into(),
    );
    s.record(r).await.map_err(IntoResponse::into_response)
}

/// Asks the signer to judge `fwd` without signing.
pub(crate) async fn dry_run(
    s: &Shared,
    fwd: &SignRequest,
) -> Result<Result<SignResponse, RawResponse>, ApiError> {
    let mut dry = fwd.clone();
    dry.dry_run = true;
    let raw = s.upstream.sign(&dry).await.map_err(|e| unreachable(&e))?;
    if !raw.status.is_success() {
        return Ok(Err(raw));
    }
    serde_json::from_slice::<SignResponse>(&raw.body)
        .map(Ok)
        .map_err(|e| {
            ApiError::new(
                Code::SignerUnavailable,
                format!("unreadable answer from the signer: {e}"),
            )
        })
}

/// Enforce mode found something new: hold it if the signer would allow it
/// (with or without its own approval), refuse it as the signer would if not.
async fn hold_novelty(
    s: &Shared,
    r: Map<String, Value>,
    cn: &str,
    subject: &str,
    req: &SignRequest,
    fwd: &SignRequest,
    findings: Findings,
) -> Response {
    let judged = match dry_run(s, fwd).await {
        Ok(j) => j,
        Err(e) => return refuse(s, r, e).await,
    };
    let decision = match judged {
        Ok(resp) => resp.decision,
        Err(raw) => return finish_forward(s, r, &raw, subject, &[]).await,
    };
    if !decision.allowed && !decision.require_approval {
        let body = json!({"reason_code": decision.reason_code, "message": decision.message});
        let raw = RawResponse {
            status: StatusCode::FORBIDDEN,
            body: serde_json::to_vec(&body).unwrap_or_default().into(),
            ..RawResponse::default()
        };
        return finish_forward(s, r, &raw, subject, &[]).await;
    }
    let mut tier = s.cfg.behavior.novelty_tier;
    let mut reasons: Vec<String> = findings
        .novelties
        .iter()
        .map(|n| format!("{} for {subject} (guardrail)", n.describe()))
        .collect();
    if decision.require_approval {
        tier = tier.max(policy_tier(&s.cfg.approval, req));
        reasons.push(format!(
            "policy requires approval ({})",
            decision
                .matched_rule
                .as_deref()
                .unwrap_or("require_approval")
        ));
    }
    let spec = HoldSpec {
        tier,
        reasons,
        rule: decision.matched_rule,
        learn: findings.novelties,
    };
    hold(s, r, cn, subject, req, spec).await
}

/// Holds `req`: the `auto` tier is granted on the spot, any other tier
/// becomes a pending approval and the broker gets `202`.
async fn hold(
    s: &Shared,
    r: Map<String, Value>,
    cn: &str,
    subject: &str,
    req: &SignRequest,
    spec: HoldSpec,
) -> Response {
    if spec.tier == Tier::Auto {
        let mut g = r.clone();
        g.insert("outcome".into(), "approval-granted".into());
        g.insert("approved_by".into(), "auto".into());
        g.insert("approved_via".into(), "auto".into());
        g.insert("tier".into(), "auto".into());
        g.insert("reasons".into(), spec.reasons.clone().into());
        if let Err(e) = s.record(g).await {
            return e.into_response();
        }
        s.metrics.granted();
        let mut fwd = req.clone();
        fwd.on_behalf_of = Some(cn.to_owned());
        fwd.approved = true;
        return forward(s, r, &fwd, subject, &spec.learn).await;
    }
    match s.create_approval(cn, subject, req, spec).await {
        Ok(a) => {
            let body = json!({
                "approval_id": a.id,
                "status": "pending",
                "tier": a.tier.as_str(),
                "expires_at": crate::approval::rfc3339(a.expires_ms),
                // Relative, for a broker whose clock may differ from ours.
                "expires_in_seconds": a.expires_ms.saturating_sub(a.created_ms) / 1000,
            });
            (StatusCode::ACCEPTED, axum::Json(body)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Forwards `fwd` and relays the answer.
async fn forward(
    s: &Shared,
    r: Map<String, Value>,
    fwd: &SignRequest,
    subject: &str,
    learn: &[crate::approval::Novelty],
) -> Response {
    match s.upstream.sign(fwd).await {
        Ok(raw) => finish_forward(s, r, &raw, subject, learn).await,
        Err(e) => refuse(s, r, unreachable(&e)).await,
    }
}

/// Audits and relays a signer answer; on success learns `learn` for the
/// subject. Nothing is relayed unaudited in `closed` mode.
pub(crate) async fn finish_forward(
    s: &Shared,
    mut r: Map<String, Value>,
    raw: &RawResponse,
    subject: &str,
    learn: &[crate::approval::Novelty],
) -> Response {
    r.insert("status".into(), raw.status.as_u16().into());
    if raw.status.is_success() {
        s.metrics.forwarded();
        if let Some(serial) = serde_json::from_slice::<SignResponse>(&raw.body)
            .ok()
            .and_then(|x| x.serial)
        {
            r.insert("serial".into(), serial.into());
        }
        // The certificate is out: a history that cannot be written now
        // only makes the next request look new again (logged).
        let _ = s.guard.learn(subject, learn, s.now_ms()).await;
    } else {
        r.insert("outcome".into(), "denied".into());
        if let Some(code) = signer_code(raw) {
            r.insert("reason_code".into(), code.into());
        }
    }
    if let Err(e) = s.record(r).await {
        return e.into_response();
    }
    relay(raw)
}

/// `GET /v1/sign/result/{id}` from broker `cn`.
pub async fn result(s: &Shared, cn: &str, id: &str) -> Response {
    let mut r = rec("approval-collected");
    r.insert("caller".into(), cn.into());
    r.insert("approval_id".into(), id.into());
    if let Err(resp) = caller_and_id(s, cn, id, r.clone()).await {
        return resp;
    }
    let found = match s.collect(cn, id).await {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    match found {
        Collect::Wait(status) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"approval_id": id, "status": status.as_str()})),
        )
            .into_response(),
        Collect::Denied { by, reason } => ApiError::new(
            Code::ApprovalDenied,
            format!("approval {id} was denied by {by}: {reason}"),
        )
        .into_response(),
        Collect::Expired => ApiError::new(
            Code::ApprovalExpired,
            format!("approval {id} expired before it was decided or collected"),
        )
        .into_response(),
        Collect::Used => ApiError::new(
            Code::ApprovalUsed,
            format!("approval {id} was already used; a new request needs a new approval"),
        )
        .into_response(),
        Collect::Issue(a) => {
            s.metrics.collected();
            request_fields(&mut r, &a.request);
            r.insert("subject".into(), a.subject.clone().into());
            r.insert("tier".into(), a.tier.as_str().into());
            if let Some(d) = &a.decided_by {
                r.insert("approved_by".into(), d.id.clone().into());
                r.insert("approved_via".into(), d.via.as_str().into());
            }
            crate::collect::issue(s, r, cn, &a).await
        }
    }
}

/// Refuses (audited) a caller outside `sign_callers`, and a malformed id.
async fn caller_and_id(
    s: &Shared,
    cn: &str,
    id: &str,
    r: Map<String, Value>,
) -> Result<(), Response> {
    if !s.cfg.sign_callers.contains(cn) {
        let e = ApiError::new(
            Code::CallerUnknown,
            format!("{cn} is not listed in sign_callers"),
        );
        return Err(refuse(s, r, e).await);
    }
    if !crate::approval::is_id(id) {
        return Err(ApiError::new(Code::ApprovalUnknown, "malformed approval id").into_response());
    }
    Ok(())
}

/// `POST /v1/sign/confirm/{id}` body: what the person using the MCP
/// client answered when the broker asked.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    answer: UserAnswer,
}

#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum UserAnswer {
    Accept,
    Decline,
    Cancel,
}

/// The broker `cn` relays the user's answer to its own `user_confirm`
/// request `id`. Audited as a grant or denial via `user_confirm`.
pub async fn confirm(s: &Shared, cn: &str, id: &str, body: &[u8]) -> Response {
    let mut r = rec("approval-refused");
    r.insert("caller".into(), cn.into());
    r.insert("approval_id".into(), id.into());
    if let Err(resp) = caller_and_id(s, cn, id, r.clone()).await {
        return resp;
    }
    let answer = match serde_json::from_slice::<ConfirmBody>(body) {
        Ok(b) => b.answer,
        Err(e) => {
            let e = ApiError::new(
                Code::MalformedRequest,
                format!(
                    "invalid answer (want {{\"answer\": \"accept\"|\"decline\"|\"cancel\"}}): {e}"
                ),
            );
            return refuse(s, r, e).await;
        }
    };
    let (accept, reason) = match answer {
        UserAnswer::Accept => (true, "confirmed by the user in the conversation"),
        UserAnswer::Decline => (false, "declined by the user in the conversation"),
        UserAnswer::Cancel => (false, "cancelled by the user in the conversation"),
    };
    match s.confirm(cn, id, accept, reason).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests;
