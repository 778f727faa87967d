//! The signer's Prometheus metrics (prometheus-client), served with
//! `/healthz` and `/readyz` on `monitor_listen` by
//! [`infrabroker_common::monitor`].

use std::time::Duration;

use infrabroker_common::monitor::Registry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// Latency buckets in seconds.
const BUCKETS: [f64; 10] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0];

type Labels = Vec<(&'static str, &'static str)>;

/// All signer metrics. Cheap to update from many tasks.
#[derive(Debug, Clone)]
pub struct Metrics {
    issued: Counter,
    dry_runs: Counter,
    denied: Family<Labels, Counter>,
    audit_failures: Counter,
    tls_rejects: Counter,
    reloads: Family<Labels, Counter>,
    hosts: Gauge,
    latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            issued: Counter::default(),
            dry_runs: Counter::default(),
            denied: Family::default(),
            audit_failures: Counter::default(),
            tls_rejects: Counter::default(),
            reloads: Family::default(),
            hosts: Gauge::default(),
            latency: Histogram::new(BUCKETS),
        }
    }
}

impl Metrics {
    /// A registry holding these metrics, for the monitor listener.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::default();
        r.register(
            "infrabroker_signer_certificates_issued",
            "Certificates issued",
            self.issued.clone(),
        );
        r.register(
            "infrabroker_signer_dry_runs",
            "Dry-run decisions answered",
            self.dry_runs.clone(),
        );
        r.register(
            "infrabroker_signer_denied",
            "Requests refused, by reason code",
            self.denied.clone(),
        );
        r.register(
            "infrabroker_signer_audit_failures",
            "Audit records that could not be written",
            self.audit_failures.clone(),
        );
        r.register(
            "infrabroker_signer_tls_handshake_failures",
            "Connections refused during the TLS handshake",
            self.tls_rejects.clone(),
        );
        r.register(
            "infrabroker_signer_reloads",
            "Configuration reloads, by result",
            self.reloads.clone(),
        );
        r.register(
            "infrabroker_signer_hosts",
            "Hosts in the running configuration",
            self.hosts.clone(),
        );
        r.register(
            "infrabroker_signer_sign_seconds",
            "Time to answer POST /v1/sign",
            self.latency.clone(),
        );
        r
    }

    /// A certificate was issued.
    pub fn issued(&self) {
        self.issued.inc();
    }
    /// A dry run was answered.
    pub fn dry_run(&self) {
        self.dry_runs.inc();
    }
    /// A request was refused for `code`.
    pub fn denied(&self, code: &'static str) {
        self.denied
            .get_or_create(&vec![("reason_code", code)])
            .inc();
    }
    /// An audit record could not be written.
    pub fn audit_failure(&self) {
        self.audit_failures.inc();
    }
    /// A TLS handshake failed.
    pub fn tls_reject(&self) {
        self.tls_rejects.inc();
    }
    /// A reload finished.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&vec![("result", result)]).inc();
    }
    /// Hosts in the running configuration (set before each scrape).
    pub fn set_hosts(&self, n: usize) {
        self.hosts.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    /// Time spent answering one sign request.
    pub fn observe(&self, d: Duration) {
        self.latency.observe(d.as_secs_f64());
    }
}
