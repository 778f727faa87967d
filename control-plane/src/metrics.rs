//! The control plane's Prometheus metrics (prometheus-client), served with
//! `/healthz` and `/readyz` on `monitor_listen` by
//! [`infrabroker_common::monitor`].

use infrabroker_common::monitor::Registry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// Counters and gauges; cheap to update from many tasks.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    forwarded: Counter,
    approvals_created: Counter,
    approvals_granted: Counter,
    approvals_denied: Counter,
    approvals_expired: Counter,
    approvals_collected: Counter,
    rate_limited: Counter,
    anomalies: Counter,
    notify_failures: Counter,
    audit_failures: Counter,
    held: Gauge,
    subjects: Gauge,
}

impl Metrics {
    /// A registry holding these metrics, for the monitor listener.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::default();
        let counters = [
            (
                "forwarded",
                "Requests relayed to the signer",
                &self.forwarded,
            ),
            (
                "approvals_created",
                "Approvals created",
                &self.approvals_created,
            ),
            (
                "approvals_granted",
                "Approvals granted",
                &self.approvals_granted,
            ),
            (
                "approvals_denied",
                "Approvals denied",
                &self.approvals_denied,
            ),
            (
                "approvals_expired",
                "Approvals that expired",
                &self.approvals_expired,
            ),
            (
                "approvals_collected",
                "Approved requests collected by their broker",
                &self.approvals_collected,
            ),
            (
                "rate_limited",
                "Requests refused for their rate",
                &self.rate_limited,
            ),
            ("anomalies", "Guardrail findings recorded", &self.anomalies),
            (
                "notify_failures",
                "Notifications given up on",
                &self.notify_failures,
            ),
            (
                "audit_failures",
                "Audit records that could not be written",
                &self.audit_failures,
            ),
        ];
        for (name, help, c) in counters {
            r.register(format!("infrabroker_cp_{name}"), help, c.clone());
        }
        r.register(
            "infrabroker_cp_approvals_held",
            "Approvals currently held (any state)",
            self.held.clone(),
        );
        r.register(
            "infrabroker_cp_subjects",
            "Guardrail subjects tracked",
            self.subjects.clone(),
        );
        r
    }

    /// A request relayed to the signer.
    pub fn forwarded(&self) {
        self.forwarded.inc();
    }
    /// An approval was created.
    pub fn created(&self) {
        self.approvals_created.inc();
    }
    /// An approval was granted.
    pub fn granted(&self) {
        self.approvals_granted.inc();
    }
    /// An approval was denied.
    pub fn denied(&self) {
        self.approvals_denied.inc();
    }
    /// An approval expired.
    pub fn expired(&self) {
        self.approvals_expired.inc();
    }
    /// An approval was collected.
    pub fn collected(&self) {
        self.approvals_collected.inc();
    }
    /// A request was refused for its rate.
    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }
    /// A guardrail finding was recorded.
    pub fn anomaly(&self) {
        self.anomalies.inc();
    }
    /// A notification could not be delivered.
    pub fn notify_failure(&self) {
        self.notify_failures.inc();
    }
    /// An audit record could not be written.
    pub fn audit_failure(&self) {
        self.audit_failures.inc();
    }
    /// Sets the guardrail-subjects gauge (from the sweeper, once a second).
    pub fn set_subjects(&self, subjects: u64) {
        self.subjects
            .set(i64::try_from(subjects).unwrap_or(i64::MAX));
    }

    /// Sets the approvals-held gauge (from the sweeper, which counts them
    /// in the store once a second).
    pub fn set_held(&self, held: u64) {
        self.held.set(i64::try_from(held).unwrap_or(i64::MAX));
    }
}
