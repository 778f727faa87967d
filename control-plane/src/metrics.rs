//! Counters of the control plane in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters.
#[derive(Debug, Default)]
pub struct Metrics {
    forwarded: AtomicU64,
    approvals_created: AtomicU64,
    approvals_granted: AtomicU64,
    approvals_denied: AtomicU64,
    approvals_expired: AtomicU64,
    approvals_collected: AtomicU64,
    rate_limited: AtomicU64,
    anomalies: AtomicU64,
    notify_failures: AtomicU64,
    audit_failures: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// A request relayed to the signer.
    pub fn forwarded(&self) {
        inc(&self.forwarded);
    }
    /// An approval was created.
    pub fn created(&self) {
        inc(&self.approvals_created);
    }
    /// An approval was granted.
    pub fn granted(&self) {
        inc(&self.approvals_granted);
    }
    /// An approval was denied.
    pub fn denied(&self) {
        inc(&self.approvals_denied);
    }
    /// An approval expired.
    pub fn expired(&self) {
        inc(&self.approvals_expired);
    }
    /// An approval was collected.
    pub fn collected(&self) {
        inc(&self.approvals_collected);
    }
    /// A request was refused for its rate.
    pub fn rate_limited(&self) {
        inc(&self.rate_limited);
    }
    /// A guardrail finding was recorded.
    pub fn anomaly(&self) {
        inc(&self.anomalies);
    }
    /// A notification could not be delivered.
    pub fn notify_failure(&self) {
        inc(&self.notify_failures);
    }
    /// An audit record could not be written.
    pub fn audit_failure(&self) {
        inc(&self.audit_failures);
    }

    /// The exposition text, with the current pending count and subjects.
    pub fn render(&self, pending: usize, subjects: usize) -> String {
        let mut out = String::new();
        let counters = [
            (
                "forwarded_total",
                "Requests relayed to the signer.",
                &self.forwarded,
            ),
            (
                "approvals_created_total",
                "Approvals created.",
                &self.approvals_created,
            ),
            (
                "approvals_granted_total",
                "Approvals granted.",
                &self.approvals_granted,
            ),
            (
                "approvals_denied_total",
                "Approvals denied.",
                &self.approvals_denied,
            ),
            (
                "approvals_expired_total",
                "Approvals expired.",
                &self.approvals_expired,
            ),
            (
                "approvals_collected_total",
                "Approvals collected by their broker.",
                &self.approvals_collected,
            ),
            (
                "rate_limited_total",
                "Requests refused for their rate.",
                &self.rate_limited,
            ),
            (
                "anomalies_total",
                "Guardrail findings recorded.",
                &self.anomalies,
            ),
            (
                "notify_failures_total",
                "Notifications given up on.",
                &self.notify_failures,
            ),
            (
                "audit_failures_total",
                "Audit records that could not be written.",
                &self.audit_failures,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP infrabroker_cp_{name} {help}\n# TYPE infrabroker_cp_{name} counter\ninfrabroker_cp_{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP infrabroker_cp_approvals_held Approvals currently held (any state).\n# TYPE infrabroker_cp_approvals_held gauge\ninfrabroker_cp_approvals_held {pending}"
        );
        let _ = writeln!(
            out,
            "# HELP infrabroker_cp_subjects Guardrail subjects tracked.\n# TYPE infrabroker_cp_subjects gauge\ninfrabroker_cp_subjects {subjects}"
        );
        out
    }
}
