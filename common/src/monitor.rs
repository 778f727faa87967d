//! The plain-HTTP monitor listener of every service (`monitor_listen`):
//! `/metrics` in the OpenMetrics text format (prometheus-client, which
//! Prometheus and its parsers read), `/healthz` (the process answers) and
//! `/readyz` (it can do its job right now: 200, or 503 with the reasons).
//!
//! Each service builds a [`Registry`] with its own metrics and a
//! [`ReadyCheck`] that lists what stops it from serving; this module only
//! serves them, so the three routes behave the same everywhere.

use std::fs::OpenOptions;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::text::encode;
pub use prometheus_client::registry::Registry;
use serde_json::json;

/// What keeps a service from being ready; empty when ready.
pub type Problems = Vec<String>;

/// The readiness question, asked on every `/readyz`.
pub type ReadyCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Problems> + Send>> + Send + Sync>;

/// Called before each scrape to bring gauges up to date (e.g. open
/// sessions); may do nothing.
pub type BeforeScrape = Arc<dyn Fn() + Send + Sync>;

/// How long a readiness check waits for an upstream service before it
/// counts it as down (scrapers time out after a few seconds).
pub const READY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// The content type of the OpenMetrics text format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `/metrics`, `/healthz` and `/readyz`.
pub fn router(registry: Arc<Registry>, before: BeforeScrape, ready: ReadyCheck) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = Arc::clone(&registry);
                let before = Arc::clone(&before);
                async move { scrape(&registry, &before) }
            }),
        )
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = Arc::clone(&ready);
                async move { readyz(ready().await) }
            }),
        )
}

fn scrape(registry: &Registry, before: &BeforeScrape) -> Response {
    before();
    let mut text = String::new();
    match encode(&mut text, registry) {
        Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn readyz(problems: Problems) -> Response {
    if problems.is_empty() {
        axum::Json(json!({"ready": true})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"ready": false, "problems": problems})),
        )
            .into_response()
    }
}

/// Registers the audit log's own metrics (syslog drops, witness
/// submissions) in a service's
/// `/metrics`.
pub fn register_audit(registry: &mut Registry, log: &crate::audit::AuditLog) {
    registry.register(
        "infrabroker_audit_syslog_dropped",
        "Audit records audit_syslog forwarding dropped (queue full or receiver unreachable)",
        log.syslog_dropped(),
    );
    if let Some(w) = log.witness_stats() {
        w.register(registry);
    }
}

/// A problem if the audit log at `path` cannot be opened for appending
/// now (gone, permissions, read-only file system); the writer itself
/// reports failed writes through the service's metrics and refusals.
pub fn audit_problem(path: &Path) -> Option<String> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .err()
        .map(|e| format!("audit log {} is not writable: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn scrape_is_openmetrics_with_the_registered_metrics() {
        let mut registry = Registry::default();
        let c: Counter = Counter::default();
        registry.register("infrabroker_test_things", "Things.", c.clone());
        c.inc();
        let r = scrape(&registry, &(Arc::new(|| {}) as BeforeScrape));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], OPENMETRICS);
    }

    #[test]
    fn readiness_is_503_with_the_reasons() {
        assert_eq!(readyz(Vec::new()).status(), StatusCode::OK);
        let r = readyz(vec!["signer unreachable".into()]);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn an_audit_log_in_a_missing_directory_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        assert!(audit_problem(&dir.path().join("nope/audit.log")).is_some());
        let ok = dir.path().join("audit.log");
        std::fs::write(&ok, b"").unwrap();
        assert!(audit_problem(&ok).is_none());
    }
}
