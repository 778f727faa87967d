//! Prometheus counters of the signer, rendered as text on `monitor_listen`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency buckets in seconds.
const BUCKETS: [f64; 10] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0];

/// All signer metrics. Cheap to update from many tasks.
#[derive(Debug, Default)]
pub struct Metrics {
    issued: AtomicU64,
    dry_runs: AtomicU64,
    denied: Mutex<BTreeMap<&'static str, u64>>,
    audit_failures: AtomicU64,
    tls_rejects: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    latency: [AtomicU64; 10],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    /// A certificate was issued.
    pub fn issued(&self) {
        self.issued.fetch_add(1, Ordering::Relaxed);
    }
    /// A dry run was answered.
    pub fn dry_run(&self) {
        self.dry_runs.fetch_add(1, Ordering::Relaxed);
    }
    /// A request was refused for `code`.
    pub fn denied(&self, code: &'static str) {
        if let Ok(mut m) = self.denied.lock() {
            *m.entry(code).or_default() += 1;
        }
    }
    /// An audit record could not be written.
    pub fn audit_failure(&self) {
        self.audit_failures.fetch_add(1, Ordering::Relaxed);
    }
    /// A TLS handshake failed.
    pub fn tls_reject(&self) {
        self.tls_rejects.fetch_add(1, Ordering::Relaxed);
    }
    /// A reload finished.
    pub fn reload(&self, ok: bool) {
        let c = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
    /// Time spent answering one sign request.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.latency[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(
            d.as_micros().try_into().unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Prometheus text exposition.
    pub fn render(&self, hosts: usize) -> String {
        let mut s = String::new();
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "# HELP infrabroker_signer_certificates_issued_total Certificates issued."
        );
        let _ = writeln!(
            s,
            "# TYPE infrabroker_signer_certificates_issued_total counter"
        );
        let _ = writeln!(
            s,
            "infrabroker_signer_certificates_issued_total {}",
            g(&self.issued)
        );
        let _ = writeln!(
            s,
            "# HELP infrabroker_signer_dry_runs_total Dry-run decisions answered."
        );
        let _ = writeln!(s, "# TYPE infrabroker_signer_dry_runs_total counter");
        let _ = writeln!(s, "infrabroker_signer_dry_runs_total {}", g(&self.dry_runs));
        let _ = writeln!(
            s,
            "# HELP infrabroker_signer_denied_total Requests refused, by reason code."
        );
        let _ = writeln!(s, "# TYPE infrabroker_signer_denied_total counter");
        if let Ok(m) = self.denied.lock() {
            for (code, n) in m.iter() {
                let _ = writeln!(
                    s,
                    "infrabroker_signer_denied_total{{reason_code=\"{code}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP infrabroker_signer_audit_failures_total Audit records that could not be written."
        );
        let _ = writeln!(s, "# TYPE infrabroker_signer_audit_failures_total counter");
        let _ = writeln!(
            s,
            "infrabroker_signer_audit_failures_total {}",
            g(&self.audit_failures)
        );
        let _ = writeln!(
            s,
            "# HELP infrabroker_signer_tls_handshake_failures_total Connections refused during the TLS handshake."
        );
        let _ = writeln!(
            s,
            "# TYPE infrabroker_signer_tls_handshake_failures_total counter"
        );
        let _ = writeln!(
            s,
            "infrabroker_signer_tls_handshake_failures_total {}",
            g(&self.tls_rejects)
        );
        let _ = writeln!(
            s,
            "# HELP infrabroker_signer_reloads_total Configuration reloads, by result."
        );
        let _ = writeln!(s, "# TYPE infrabroker_signer_reloads_total counter");
        let _ = writeln!(
            s,
            "infrabroker_signer_reloads_total{{result=\"ok\"}} {}",
            g(&self.reloads_ok)
        );
        let _ = writeln!(
            s,
            "infrabroker_signer_reloads_total{{result=\"failed\"}} {}",
            g(&self.reloads_failed)
        );
        let _ = writeln!(
            s,
            "# HELP infrabroker_signer_hosts Hosts in the running configuration."
        );
        let _ = writeln!(s, "# TYPE infrabroker_signer_hosts gauge");
        let _ = writeln!(s, "infrabroker_signer_hosts {hosts}");
        let _ = writeln!(
            s,
            "# HELP infrabroker_signer_sign_seconds Time to answer POST /v1/sign."
        );
        let _ = writeln!(s, "# TYPE infrabroker_signer_sign_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "infrabroker_signer_sign_seconds_bucket{{le=\"{b}\"}} {}",
                g(&self.latency[i])
            );
        }
        let count = g(&self.latency_count);
        let _ = writeln!(
            s,
            "infrabroker_signer_sign_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            s,
            "infrabroker_signer_sign_seconds_sum {}",
            g(&self.latency_sum_us) as f64 / 1e6
        );
        let _ = writeln!(s, "infrabroker_signer_sign_seconds_count {count}");
        s
    }
}
