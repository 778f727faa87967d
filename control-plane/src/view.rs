//! [`ApprovalView`]: an approval as operators, notifiers and the AI
//! reviewer see it — the request's facts and the decision trail, never the
//! broker's public key.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::approval::{Approval, Status, Tier, Via};

impl Approval {
    /// What operators and the reviewer see (never the public key).
    pub fn view(&self) -> ApprovalView {
        let r = &self.request;
        ApprovalView {
            id: self.id.clone(),
            status: self.status,
            tier: self.tier,
            escalated: self.escalation.is_some(),
            caller: self.caller.clone(),
            end_user: r.end_user.clone(),
            host: r.host.clone(),
            role: r.role.as_str().to_owned(),
            purpose: r.purpose.as_str().to_owned(),
            session_mode: r.session_mode.map(|m| m.as_str().to_owned()),
            command: r.command.clone(),
            file: r.file.as_ref().map(|f| f.describe(r.purpose)),
            sudo: r.sudo,
            sudo_user: r
                .sudo
                .then(|| r.sudo_user.clone().unwrap_or_else(|| "root".into())),
            pty: r.pty,
            dry_run: r.dry_run,
            reasons: self.reasons.clone(),
            rule: self.rule.clone(),
            created_at: rfc3339(self.created_ms),
            expires_at: rfc3339(self.expires_ms),
            decided_by: self.decided_by.as_ref().map(|d| d.id.clone()),
            decided_via: self.decided_by.as_ref().map(|d| d.via),
            decided_at: self.decided_ms.map(rfc3339),
            reason: self.reason.clone(),
            escalated_by: self.escalation.as_ref().map(|e| e.0.clone()),
            escalation_reason: self.escalation.as_ref().map(|e| e.1.clone()),
        }
    }
}

/// An approval as listed by `GET /v1/approvals` and the reviewer's tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApprovalView {
    /// Approval id.
    pub id: String,
    /// `pending`, `approved`, `issuing`, `used`, `denied` or `expired`.
    #[schemars(with = "String")]
    pub status: Status,
    /// `auto`, `ai_review` or `human`.
    #[schemars(with = "String")]
    pub tier: Tier,
    /// Moved from the AI reviewer to the human queue.
    pub escalated: bool,
    /// The broker that asked.
    pub caller: String,
    /// The human the broker acts for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<String>,
    /// Logical host.
    pub host: String,
    /// `target` or `bastion`.
    pub role: String,
    /// `oneshot` or `session`.
    pub purpose: String,
    /// Session mode, for sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_mode: Option<String>,
    /// The exact command (empty for a session certificate or a file
    /// transfer).
    pub command: String,
    /// A file transfer: `put PATH (N bytes, sha256 …, mode M)` or `get PATH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Elevated with sudo.
    pub sudo: bool,
    /// Sudo target user, when elevated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo_user: Option<String>,
    /// A PTY was asked for.
    pub pty: bool,
    /// A session command's preflight (judged, not signed).
    pub dry_run: bool,
    /// Why it is held.
    pub reasons: Vec<String>,
    /// The signer's rule that asked for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: decision deadline (pending) or collection deadline (approved).
    pub expires_at: String,
    /// Who decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// `operator`, `ai_reviewer` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub decided_via: Option<Via>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// The decider's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who escalated it to the human queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_by: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_reason: Option<String>,
}

/// Unix milliseconds as RFC 3339 UTC.
pub fn rfc3339(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}
