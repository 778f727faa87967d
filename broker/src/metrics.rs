//! The broker's Prometheus metrics (prometheus-client), served with
//! `/healthz` and `/readyz` on `monitor_listen` in every mode (stdio,
//! `serve`, `mcp-http`) by [`infrabroker_common::monitor`].

use std::sync::Arc;

use infrabroker_common::monitor::{self, Registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::api::Timings;
use crate::engine::Engine;

/// Stage buckets in seconds (a signer answer is a few ms, an SSH
/// handshake tens, a command anything).
const BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0, 30.0,
];

type Labels = Vec<(&'static str, String)>;

fn stage_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Counters, stage histograms and the open-session gauge.
#[derive(Debug, Clone)]
pub struct Metrics {
    calls: Family<Labels, Counter>,
    stages: Family<Labels, Histogram, fn() -> Histogram>,
    sessions: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            calls: Family::default(),
            stages: Family::new_with_constructor(stage_histogram),
            sessions: Gauge::default(),
        }
    }
}

fn secs(ms: u64) -> f64 {
    // Milliseconds fit an f64 exactly far beyond any call's length.
    #[allow(clippy::cast_precision_loss, reason = "exact below 2^53 ms")]
    let s = ms as f64 / 1e3;
    s
}

impl Metrics {
    /// A registry holding these metrics.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::default();
        r.register(
            "infrabroker_broker_calls",
            "Commands run, by kind (oneshot, session) and outcome (ok or a reason code)",
            self.calls.clone(),
        );
        r.register(
            "infrabroker_broker_stage_seconds",
            "Time per stage of a command (plan, sign, connect, auth, exec, total)",
            self.stages.clone(),
        );
        r.register(
            "infrabroker_broker_sessions_open",
            "Open sessions",
            self.sessions.clone(),
        );
        r
    }

    /// One finished command: its outcome and, stage by stage, its time
    /// (a hop's sign, connect and auth are observed per hop).
    pub fn command(&self, kind: &'static str, outcome: &str, t: &Timings, total_ms: u64) {
        // Reason codes are snake_case words; anything else (a signer that
        // answers nonsense) is not allowed to grow the label set.
        let outcome = if !outcome.is_empty()
            && outcome.len() <= 40
            && outcome.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            outcome
        } else {
            "other"
        };
        self.calls
            .get_or_create(&vec![
                ("kind", kind.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
        let observe = |stage: &'static str, ms: u64| {
            self.stages
                .get_or_create(&vec![
                    ("kind", kind.to_owned()),
                    ("stage", stage.to_owned()),
                ])
                .observe(secs(ms));
        };
        observe("plan", t.plan_ms);
        for h in &t.hops {
            observe("sign", h.sign_ms);
            observe("connect", h.connect_ms);
            observe("auth", h.auth_ms);
        }
        observe("exec", t.exec_ms);
        observe("total", total_ms);
    }

    /// Open sessions now (set before each scrape).
    pub fn set_sessions(&self, n: usize) {
        self.sessions.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// `/metrics`, `/healthz` and `/readyz` for `engine`: ready while the
/// audit log can be appended to and the signer answers a host-view fetch.
pub fn monitor_router(engine: &Arc<Engine>) -> axum::Router {
    let mut registry = engine.metrics().registry();
    monitor::register_audit(&mut registry, engine.audit());
    let registry = Arc::new(registry);
    let weak = Arc::downgrade(engine);
    let before: monitor::BeforeScrape = Arc::new(move || {
        if let Some(e) = weak.upgrade() {
            e.metrics().set_sessions(e.sessions().count());
        }
    });
    let weak = Arc::downgrade(engine);
    let ready: monitor::ReadyCheck = Arc::new(move || {
        let weak = weak.clone();
        Box::pin(async move {
            let Some(e) = weak.upgrade() else {
                return vec!["the broker is shutting down".to_owned()];
            };
            let mut problems: monitor::Problems = monitor::audit_problem(e.audit().path())
                .into_iter()
                .collect();
            match tokio::time::timeout(monitor::READY_DEADLINE, e.hosts_cache().refresh()).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => {
                    problems.push(format!("the signer's host view cannot be fetched: {err}"));
                }
                Err(_) => problems.push("the signer did not answer in time".to_owned()),
            }
            problems
        })
    });
    monitor::router(registry, before, ready)
}
