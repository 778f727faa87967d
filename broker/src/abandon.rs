//! The `abandoned` record of a call that was dropped (its client cancelled
//! or went away) before it recorded how it ended.

use infrabroker_common::audit::AuditLog;
use serde_json::{Map, Value};

/// Writes an `abandoned` record if a call is dropped (its client cancelled
/// or went away) before it recorded how it ended, so a command that may
/// have run never goes unaudited.
pub(crate) struct AbandonGuard {
    audit: AuditLog,
    record: Option<Map<String, Value>>,
}

impl AbandonGuard {
    /// Arms the guard with the call's record so far.
    pub(crate) fn new(audit: AuditLog, record: Map<String, Value>) -> Self {
        AbandonGuard {
            audit,
            record: Some(record),
        }
    }

    /// The call finished and records its own outcome.
    pub(crate) fn disarm(&mut self) {
        self.record = None;
    }

    /// The command was sent: a cancellation from now on also stops it, as
    /// `stop` describes (recorded with the `abandoned` outcome).
    pub(crate) fn started(&mut self, stop: &str) {
        if let Some(r) = &mut self.record {
            r.insert("stop".into(), stop.into());
        }
    }

    /// Still waiting for the call to finish.
    pub(crate) fn armed(&self) -> bool {
        self.record.is_some()
    }
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        let Some(mut rec) = self.record.take() else {
            return;
        };
        rec.insert("outcome".into(), "abandoned".into());
        rec.insert("reason_code".into(), "cancelled".into());
        let audit = self.audit.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = audit.append(rec).await {
                    tracing::error!(error = %e, "audit record of an abandoned call could not be written");
                }
            });
        }
    }
}
