//! Collecting an approved request: judged again before it is forwarded,
//! and never left half-done.
//!
//! - The signer may have been reloaded since the hold: a rule that now
//!   routes the request to a stricter tier than the one that decided it
//!   (an AI reviewer's approval, a `require_approval` rule that now wants a
//!   human) makes the approval unusable; it is spent and refused.
//! - The broker may go away while the signer is asked (its timeout equal to
//!   ours, or the agent cancelling): an [`Issuing`] guard then ends the
//!   approval as spent and audits it, instead of leaving it `issuing`
//!   forever with no record in the chain.

use std::sync::Arc;

use axum::response::Response;
use infrabroker_common::client::RawResponse;
use infrabroker_common::wire::{SignRequest, SignResponse};
use serde_json::{Map, Value};

use crate::approval::{Approval, Tier, Via};
use crate::config::GuardMode;
use crate::error::{ApiError, Code};
use crate::sign::{dry_run, finish_forward, policy_tier, refuse, unreachable};
use crate::state::{Clock, Shared};
use crate::store::Approvals;

/// The signer's answer asks for an approval: `403 needs_approval`, or —
/// for a preflight, which is a dry run — a `200` whose decision requires
/// one. `Some(rule)` with the matched rule when the answer names it.
pub fn policy_wants_approval(raw: &RawResponse, code: Option<&str>) -> Option<Option<String>> {
    if raw.status == hyper::StatusCode::FORBIDDEN && code == Some("needs_approval") {
        return Some(None);
    }
    if !raw.status.is_success() {
        return None;
    }
    let d = serde_json::from_slice::<SignResponse>(&raw.body)
        .ok()?
        .decision;
    (!d.allowed && d.require_approval).then_some(d.matched_rule)
}

/// The tier the decider stands for.
fn decided_tier(a: &Approval) -> Tier {
    match a.decided_by.as_ref().map(|d| d.via) {
        Some(Via::Operator | Via::Web) => Tier::Human,
        Some(Via::AiReviewer) => Tier::AiReview,
        Some(Via::UserConfirm) => Tier::UserConfirm,
        Some(Via::Auto) | None => Tier::Auto,
    }
}

/// Ends the issuing step of an approval when dropped before
/// [`Issuing::answered`]: spent (a certificate may have been issued) and
/// audited as `approval-abandoned`.
pub struct Issuing {
    store: Approvals,
    clock: Arc<dyn Clock>,
    audit: infrabroker_common::audit::AuditLog,
    id: String,
    record: Option<Map<String, Value>>,
}

impl std::fmt::Debug for Issuing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuing").field("id", &self.id).finish()
    }
}

impl Issuing {
    fn new(s: &Shared, id: &str, record: &Map<String, Value>) -> Issuing {
        Issuing {
            store: s.store.clone(),
            clock: s.clock.clone(),
            audit: s.audit.clone(),
            id: id.to_owned(),
            record: Some(record.clone()),
        }
    }

    /// Ends the step: spent when `spent`, else back to approved. A store
    /// that fails here leaves the step `issuing` until its deadline passes
    /// (then it expires, spent): never a second issuance.
    async fn end(&mut self, spent: bool) {
        self.record = None;
        let now = self.clock.now_ms();
        let _ = self
            .store
            .update(&self.id, |a| a.finish_issuing(spent, now))
            .await;
    }
}

impl Drop for Issuing {
    fn drop(&mut self) {
        let Some(mut r) = self.record.take() else {
            return;
        };
        let now = self.clock.now_ms();
        let (store, id) = (self.store.clone(), self.id.clone());
        r.insert("outcome".into(), "approval-abandoned".into());
        r.insert(
            "err".into(),
            "the collection was cancelled before the signer answered; the approval is spent".into(),
        );
        let audit = self.audit.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = store.update(&id, |a| a.finish_issuing(true, now)).await;
                if let Err(e) = audit.append(r).await {
                    tracing::error!(error = %e, "audit record of an abandoned collection could not be written");
                }
            });
        }
    }
}

/// Forwards the approved `a` for broker `cn` once, after judging it again.
pub async fn issue(s: &Shared, r: Map<String, Value>, cn: &str, a: &Approval) -> Response {
    let mut step = Issuing::new(s, &a.id, &r);
    let mut fwd = a.request.clone();
    fwd.on_behalf_of = Some(cn.to_owned());
    match rejudge(s, a, &fwd).await {
        Ok(None) => {}
        Ok(Some(raw)) => {
            step.end(true).await;
            return finish_forward(s, r, &raw, &a.subject, &[]).await;
        }
        Err((e, spent)) => {
            step.end(spent).await;
            return refuse(s, r, e).await;
        }
    }
    fwd.approved = true;
    let raw = match s.upstream.sign(&fwd).await {
        Ok(raw) => raw,
        Err(e) => {
            // The signer may have issued before the answer was lost: the
            // approval is spent either way, so a second certificate can
            // never come out of one approval.
            step.end(true).await;
            return refuse(s, r, unreachable(&e)).await;
        }
    };
    step.end(true).await;
    finish_forward(s, r, &raw, &a.subject, &a.learn).await
}

/// Asks the signer about `fwd` as it stands now. `Ok(Some(raw))`: the
/// signer refuses it outright (relay that). `Err((e, spent))`: refused
/// here; `spent` unless the signer could not be asked.
async fn rejudge(
    s: &Shared,
    a: &Approval,
    fwd: &SignRequest,
) -> Result<Option<RawResponse>, (ApiError, bool)> {
    let decision = match dry_run(s, fwd).await {
        Ok(Ok(resp)) => resp.decision,
        Ok(Err(raw)) => return Ok(Some(raw)),
        Err(e) => return Err((e, false)),
    };
    let mut needed = Tier::Auto;
    if decision.require_approval && !decision.allowed {
        needed = needed.max(policy_tier(&s.cfg.approval, &a.request));
    }
    if !a.learn.is_empty() && s.guard.mode() == GuardMode::Enforce {
        needed = needed.max(s.cfg.behavior.novelty_tier);
    }
    let decided = decided_tier(a);
    if needed > decided {
        let e = ApiError::new(
            Code::TierRaised,
            format!(
                "approval {} was decided at tier {}, but the request now needs {} (the signer's policy changed); a new request needs a new approval",
                a.id,
                decided.as_str(),
                needed.as_str()
            ),
        );
        return Err((e, true));
    }
    Ok(None)
}
