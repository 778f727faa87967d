//! What every request of the control plane shares: the configuration, the
//! approval store, the guardrails, the signer client, the notifier, the
//! audit log, the counters and the clock.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use infrabroker_common::audit::AuditLog;
use infrabroker_common::wire::SignRequest;
use serde_json::{Map, Value};

use crate::config::{AuditFailMode, ControlPlaneConfig};
use crate::error::{ApiError, Code};
use crate::guard::Guardrails;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::Approvals;
use crate::upstream::Upstream;

/// The time source, injected so tests can set it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Unix milliseconds.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// State shared by every request and task.
#[derive(Debug)]
pub struct Shared {
    /// The validated configuration.
    pub cfg: ControlPlaneConfig,
    /// Approvals, in the state store.
    pub store: Approvals,
    /// This process's name in store claims (random per start).
    pub replica: String,
    /// Guardrails.
    pub guard: Guardrails,
    /// The signer.
    pub upstream: Upstream,
    /// Approval announcements.
    pub notifier: Arc<Notifier>,
    /// The control plane's own audit chain.
    pub audit: AuditLog,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

impl Shared {
    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// How long an approved request waits for its broker, in milliseconds.
    pub fn collect_window_ms(&self) -> u64 {
        u64::try_from(self.cfg.approval.timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// Appends `rec` to the audit log. In `closed` mode (the default) a
    /// failed write is an error the caller must answer with, so that no
    /// step goes unrecorded; in `open` mode it is only logged.
    pub async fn record(&self, rec: Map<String, Value>) -> Result<(), ApiError> {
        match self.audit.append(rec).await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.metrics.audit_failure();
                tracing::error!(error = %e, "audit record could not be written");
                match self.cfg.audit_fail_mode {
                    AuditFailMode::Closed => Err(ApiError::new(
                        Code::AuditUnavailable,
                        "the audit log cannot be written; nothing was done",
                    )),
                    AuditFailMode::Open => Ok(()),
                }
            }
        }
    }

    /// Appends `rec` when failing is not an option any more (the step has
    /// happened); a failure is logged and counted.
    pub async fn record_anyway(&self, rec: Map<String, Value>) {
        if let Err(e) = self.audit.append(rec).await {
            self.metrics.audit_failure();
            tracing::error!(error = %e, "audit record could not be written");
        }
    }
}

/// An audit record with `outcome` set.
pub fn rec(outcome: &str) -> Map<String, Value> {
    let mut r = Map::new();
    r.insert("outcome".into(), outcome.into());
    r
}

/// The request's fields as audit members (never the public key).
pub fn request_fields(rec: &mut Map<String, Value>, req: &SignRequest) {
    rec.insert("host".into(), req.host.clone().into());
    rec.insert("role".into(), req.role.as_str().into());
    rec.insert("purpose".into(), req.purpose.as_str().into());
    if let Some(m) = req.session_mode {
        rec.insert("session_mode".into(), m.as_str().into());
    }
    if !req.command.is_empty() {
        rec.insert("command".into(), req.command.clone().into());
    }
    if req.sudo {
        let user = req.sudo_user.clone().unwrap_or_else(|| "root".into());
        rec.insert("sudo_user".into(), user.into());
    }
    if req.pty {
        rec.insert("pty".into(), true.into());
    }
    if let Some(u) = &req.end_user {
        rec.insert("end_user".into(), u.clone().into());
    }
    if req.dry_run {
        rec.insert("dry_run".into(), true.into());
    }
    if let Some(f) = &req.file {
        rec.insert("file".into(), f.describe(req.purpose).into());
    }
}
