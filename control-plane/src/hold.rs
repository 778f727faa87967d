//! The approval operations on [`Shared`]: create, decide, escalate, collect
//! and sweep. Each state change is one compare-and-set in the state store
//! ([`Approvals::update`](crate::store::Approvals::update)) and is audited
//! right after; refused attempts are audited too.

use infrabroker_common::wire::SignRequest;
use serde_json::{Map, Value};

use crate::approval::{
    Approval, ApprovalView, Collect, Decider, Novelty, Refusal, Status, Tier, Via, new_id,
};
use crate::error::{ApiError, Code};
use crate::state::{Shared, rec, request_fields};

/// Longest reason kept; longer ones are cut.
pub const MAX_REASON: usize = 1000;

/// What a new hold carries besides the request.
#[derive(Debug, Clone)]
pub struct HoldSpec {
    /// Who may approve.
    pub tier: Tier,
    /// Why it is held.
    pub reasons: Vec<String>,
    /// The signer's matched rule, if the policy asked.
    pub rule: Option<String>,
    /// Learned once collected.
    pub learn: Vec<Novelty>,
}

/// A reason as stored: control characters become spaces, trimmed, capped.
pub fn clean_reason(reason: &str) -> String {
    let cleaned: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON)
        .collect();
    cleaned.trim().to_owned()
}

fn approval_fields(r: &mut Map<String, Value>, a: &Approval) {
    r.insert("approval_id".into(), a.id.clone().into());
    r.insert("caller".into(), a.caller.clone().into());
    r.insert("subject".into(), a.subject.clone().into());
    r.insert("tier".into(), a.tier.as_str().into());
    request_fields(r, &a.request);
}

impl Shared {
    /// Holds `req` (as received from `caller`) for approval: audits it,
    /// stores it and announces it. Returns the new approval.
    pub async fn create_approval(
        &self,
        caller: &str,
        subject: &str,
        req: &SignRequest,
        spec: HoldSpec,
    ) -> Result<Approval, ApiError> {
        self.check_pending_cap(caller, req).await?;
        let now = self.now_ms();
        let a = Approval {
            id: new_id(),
            caller: caller.to_owned(),
            subject: subject.to_owned(),
            request: req.clone(),
            tier: spec.tier,
            reasons: spec.reasons,
            rule: spec.rule,
            learn: spec.learn,
            status: Status::Pending,
            created_ms: now,
            expires_ms: now.saturating_add(self.collect_window_ms()),
            decided_by: None,
            decided_ms: None,
            reason: None,
            escalation: None,
        };
        let mut r = rec("approval-required");
        approval_fields(&mut r, &a);
        r.insert("reasons".into(), a.reasons.clone().into());
        if let Some(rule) = &a.rule {
            r.insert("policy_rule".into(), rule.clone().into());
        }
        // Recorded before it exists: an approval nobody can trace is worse
        // than a request refused for a broken log.
        self.record(r).await?;
        if !self.store.insert(&a).await? {
            return Err(ApiError::new(
                Code::AuditUnavailable,
                "approval id collision; retry",
            ));
        }
        self.metrics.created();
        self.announce(a.view());
        Ok(a)
    }

    /// One broker cannot hold more than `approval.max_pending_per_caller`
    /// open approvals (each up to a request body, each announced).
    async fn check_pending_cap(&self, caller: &str, req: &SignRequest) -> Result<(), ApiError> {
        let cap = self.cfg.approval.max_pending_per_caller;
        let open = self.store.open_count(caller).await?;
        if open < u64::try_from(cap).unwrap_or(u64::MAX) {
            return Ok(());
        }
        let e = ApiError::new(
            Code::TooManyPending,
            format!(
                "{caller} already has {open} open approvals (limit {cap}); wait for them to be decided or to expire"
            ),
        );
        let mut r = rec("denied");
        r.insert("caller".into(), caller.into());
        request_fields(&mut r, req);
        r.insert("reason_code".into(), e.code.as_str().into());
        r.insert("err".into(), e.message.clone().into());
        self.record_anyway(r).await;
        Err(e)
    }

    fn announce(&self, view: ApprovalView) {
        if !self.notifier.enabled() {
            return;
        }
        let notifier = self.notifier.clone();
        let audit = self.audit.clone();
        let metrics = self.metrics.clone();
        let (store, replica, now) = (self.store.clone(), self.replica.clone(), self.now_ms());
        tokio::spawn(async move {
            // One announcement per request across every replica.
            match store.claim_announcement(&view.id, &replica, now).await {
                Ok(true) => {}
                Ok(false) | Err(_) => return,
            }
            if let Err(why) = notifier.deliver(&view).await {
                metrics.notify_failure();
                tracing::warn!(approval_id = %view.id, error = %why, "approval notification given up");
                let mut r = rec("notify-failed");
                r.insert("approval_id".into(), view.id.clone().into());
                r.insert("err".into(), why.into());
                if let Err(e) = audit.append(r).await {
                    tracing::error!(error = %e, "audit record of a failed notification could not be written");
                }
            }
        });
    }

    /// An approval's current view (expiring it first if due).
    pub async fn approval(&self, id: &str) -> Result<ApprovalView, ApiError> {
        let now = self.now_ms();
        let mut expired = false;
        let a = self
            .store
            .update(id, |a| expired = a.expire_if_due(now))
            .await?
            .ok_or_else(|| unknown(id))?;
        if expired {
            self.audit_timeout(&a).await;
        }
        Ok(a.view())
    }

    /// Every approval held, deadlines applied.
    pub async fn approvals(&self) -> Result<Vec<ApprovalView>, ApiError> {
        self.sweep().await;
        Ok(self
            .store
            .list()
            .await?
            .iter()
            .map(Approval::view)
            .collect())
    }

    /// Approves or denies `id` as `who`.
    pub async fn decide(
        &self,
        id: &str,
        who: &Decider,
        approve: bool,
        reason: &str,
    ) -> Result<ApprovalView, ApiError> {
        let now = self.now_ms();
        let window = self.collect_window_ms();
        let mut expired = false;
        let mut outcome = Ok(());
        let a = self
            .store
            .update(id, |a| {
                expired = a.expire_if_due(now);
                outcome = a
                    .refuse_tied(who, &self.cfg.identities)
                    .and_then(|()| a.decide(who, approve, reason, now, window));
            })
            .await?
            .ok_or_else(|| unknown(id))?;
        if expired {
            self.audit_timeout(&a).await;
        }
        let mut r = rec(if approve {
            "approval-granted"
        } else {
            "approval-denied"
        });
        approval_fields(&mut r, &a);
        r.insert("approved_by".into(), who.id.clone().into());
        r.insert("approved_via".into(), who.via.as_str().into());
        r.insert("reason".into(), reason.into());
        if let Err(refusal) = outcome {
            return Err(self.refused(r, refusal).await);
        }
        if approve {
            self.metrics.granted();
        } else {
            self.metrics.denied();
        }
        // The decision stands even if its record fails (it is logged); the
        // issuance it allows is recorded again, fail-closed, on collection.
        self.record_anyway(r).await;
        Ok(a.view())
    }

    /// The user's answer to a `user_confirm` request, relayed by the broker
    /// `caller` that asked; another caller learns nothing (`unknown`).
    pub async fn confirm(
        &self,
        caller: &str,
        id: &str,
        accept: bool,
        reason: &str,
    ) -> Result<ApprovalView, ApiError> {
        let now = self.now_ms();
        let window = self.collect_window_ms();
        let mut expired = false;
        let mut outcome = None;
        let a = self
            .store
            .update(id, |a| {
                if a.caller == caller {
                    expired = a.expire_if_due(now);
                    outcome = Some(a.confirm(accept, reason, now, window));
                }
            })
            .await?
            .ok_or_else(|| unknown(id))?;
        if expired {
            self.audit_timeout(&a).await;
        }
        let Some(outcome) = outcome else {
            return Err(unknown(id));
        };
        let mut r = rec(if accept {
            "approval-granted"
        } else {
            "approval-denied"
        });
        approval_fields(&mut r, &a);
        r.insert("approved_via".into(), Via::UserConfirm.as_str().into());
        r.insert("reason".into(), reason.into());
        let who = match outcome {
            Ok(who) => who,
            Err(refusal) => {
                r.insert("approved_by".into(), caller.into());
                return Err(self.refused(r, refusal).await);
            }
        };
        r.insert("approved_by".into(), who.id.into());
        if accept {
            self.metrics.granted();
        } else {
            self.metrics.denied();
        }
        self.record_anyway(r).await;
        Ok(a.view())
    }

    /// Moves an `ai_review` request to the human queue.
    pub async fn escalate(
        &self,
        id: &str,
        who: &Decider,
        reason: &str,
    ) -> Result<ApprovalView, ApiError> {
        let now = self.now_ms();
        let mut expired = false;
        let mut outcome = Ok(());
        let a = self
            .store
            .update(id, |a| {
                expired = a.expire_if_due(now);
                outcome = a.escalate(who, reason);
            })
            .await?
            .ok_or_else(|| unknown(id))?;
        if expired {
            self.audit_timeout(&a).await;
        }
        let mut r = rec("approval-escalated");
        approval_fields(&mut r, &a);
        r.insert("escalated_by".into(), who.id.clone().into());
        r.insert("approved_via".into(), who.via.as_str().into());
        r.insert("reason".into(), reason.into());
        if let Err(refusal) = outcome {
            return Err(self.refused(r, refusal).await);
        }
        self.record_anyway(r).await;
        Ok(a.view())
    }

    async fn refused(&self, mut r: Map<String, Value>, refusal: Refusal) -> ApiError {
        let code = match &refusal {
            Refusal::NotPending {
                status: Status::Expired,
                ..
            } => Code::ApprovalExpired,
            Refusal::NotPending { .. } | Refusal::AlreadyHuman { .. } => Code::ApprovalDecided,
            Refusal::SelfApproval { .. } | Refusal::TiedIdentity { .. } => Code::SelfApproval,
            Refusal::TierForbidden { .. } | Refusal::NotUserConfirm { .. } => Code::TierForbidden,
        };
        let attempted = r
            .get("outcome")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        r.insert("outcome".into(), "approval-refused".into());
        r.insert("attempted".into(), attempted.into());
        r.insert("reason_code".into(), code.as_str().into());
        r.insert("err".into(), refusal.to_string().into());
        self.record_anyway(r).await;
        ApiError::new(code, refusal.to_string())
    }

    /// The broker `caller` polls `id`. On [`Collect::Issue`] the caller
    /// owns the issuing step ([`crate::collect::issue`] ends it).
    pub async fn collect(&self, caller: &str, id: &str) -> Result<Collect, ApiError> {
        let now = self.now_ms();
        let mut expired = false;
        let mut found = None;
        let a = self
            .store
            .update(id, |a| {
                if a.caller == caller {
                    expired = a.expire_if_due(now);
                    found = Some(a.collect());
                }
            })
            .await?
            .ok_or_else(|| unknown(id))?;
        if expired {
            self.audit_timeout(&a).await;
        }
        let Some(found) = found else {
            let mut r = rec("denied");
            r.insert("caller".into(), caller.into());
            r.insert("approval_id".into(), id.into());
            r.insert("reason_code".into(), Code::ApprovalUnknown.as_str().into());
            r.insert("err".into(), "poll of another caller's approval".into());
            self.record_anyway(r).await;
            return Err(unknown(id));
        };
        if found == Collect::Used {
            let mut r = rec("approval-replayed");
            approval_fields(&mut r, &a);
            r.insert("reason_code".into(), Code::ApprovalUsed.as_str().into());
            self.record_anyway(r).await;
        }
        Ok(found)
    }

    /// Ends an issuing step begun by [`Shared::collect`].
    pub async fn end_issuing(&self, id: &str, answered: bool) -> Result<(), ApiError> {
        let now = self.now_ms();
        self.store
            .update(id, |a| a.finish_issuing(answered, now))
            .await
            .map(|_| ())
    }

    /// Applies deadlines (auditing each timeout, once across replicas: only
    /// the compare-and-set that expires a request audits it) and forgets
    /// decided requests older than `purge_after_seconds`. A store failure
    /// is logged and retried on the next sweep.
    pub async fn sweep(&self) {
        let now = self.now_ms();
        if let Ok(due) = self.store.due(now).await {
            for a in due {
                let mut expired = false;
                if let Ok(Some(a)) = self
                    .store
                    .update(&a.id, |a| expired = a.expire_if_due(now))
                    .await
                    && expired
                {
                    self.audit_timeout(&a).await;
                }
            }
        }
        let _ = self.store.purge(now).await;
        if let Ok(n) = self.store.count().await {
            self.metrics.set_held(n);
        }
        self.guard.sweep(now).await;
        self.metrics.set_subjects(self.guard.subjects().await);
    }

    async fn audit_timeout(&self, a: &Approval) {
        self.metrics.expired();
        let mut r = rec("approval-timeout");
        approval_fields(&mut r, a);
        let was = if a.decided_by.is_some() {
            "approved, never collected"
        } else {
            "no decision"
        };
        r.insert("err".into(), was.into());
        self.record_anyway(r).await;
    }
}

fn unknown(id: &str) -> ApiError {
    ApiError::new(
        Code::ApprovalUnknown,
        format!("no approval {id} (unknown, purged, or not yours)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_single_line_and_bounded() {
        assert_eq!(clean_reason("  ok\nthen\u{7}x "), "ok then x");
        assert_eq!(clean_reason(&"a".repeat(5000)).len(), MAX_REASON);
    }
}
