//! The infrabroker control plane: a policy enforcement point between
//! brokers and the signer. It holds no CA key.
//!
//! Brokers point their `signer.url` at it. It relays `GET /v1/hosts` and
//! `POST /v1/sign` to the signer with `on_behalf_of` set to the broker's
//! CN (the signer honours that only from its `trusted_forwarders`). A sign
//! that needs an approval — because the signer's policy says
//! `require_approval`, or because a behaviour guardrail in enforce mode saw
//! something new — is held: the broker gets `202 {approval_id}` and polls
//! `GET /v1/sign/result/{id}`. Operators decide with `broker-ctl approval`;
//! an AI reviewer decides `ai_review` requests over MCP. An approval binds
//! the exact request and is consumed once; everything is audited in the
//! control plane's own signed chain.
//!
//! # Layout
//! - [`config`]: `control-plane.json`, read strictly.
//! - [`approval`]: the approval record, tiers and its state machine.
//! - [`view`]: an approval as operators and the reviewer see it.
//! - [`store`]: [`store::Approvals`], approvals in the state store
//!   (SQLite by default, PostgreSQL for replicas).
//! - [`identity`]: the identity map behind requester ≠ approver.
//! - [`guard`]: behaviour guardrails per subject (rate, novelty).
//! - [`hold`]: create / decide / escalate / collect / sweep, audited.
//! - [`collect`]: an approved request judged again and issued once.
//! - [`sign`]: the forwarding and holding logic of `/v1/sign`.
//! - [`server`]: the mTLS routes and the monitor routes.
//! - [`reviewer`]: the AI reviewer's MCP endpoint.
//! - [`notify`]: log, webhook, Slack and Teams announcements.
//! - [`upstream`]: the mTLS client toward the signer.
//! - [`state`], [`metrics`], [`error`]: shared state, counters, errors.

pub mod approval;
pub mod collect;
pub mod config;
pub mod error;
pub mod guard;
pub mod hold;
pub mod identity;
pub mod metrics;
pub mod notify;
pub mod reviewer;
pub mod server;
pub mod sign;
pub mod state;
pub mod store;
pub mod ui;
pub mod upstream;
pub mod view;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use infrabroker_common::audit::{AuditKey, AuditLog};
use infrabroker_common::config::ConfigErrors;
use infrabroker_common::tls::{self, ServeOptions};
use tokio::net::TcpListener;

pub use crate::config::ControlPlaneConfig;
pub use crate::error::StartError;
use crate::guard::Guardrails;
use crate::notify::Notifier;
use crate::reviewer::Token;
use crate::state::{Shared, SystemClock, rec};
use crate::store::Approvals;
use crate::upstream::Upstream;

/// How often deadlines are applied and old decisions purged.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Loads and validates a configuration file.
pub fn check(path: &Path) -> Result<ControlPlaneConfig, ConfigErrors> {
    ControlPlaneConfig::load(path)
}

fn other(e: impl std::fmt::Display) -> StartError {
    StartError::Other(e.to_string())
}

/// Opens the state store: approvals and the guardrails' memory in it.
async fn open_state(cfg: &ControlPlaneConfig) -> Result<(Approvals, Guardrails), StartError> {
    let store = infrabroker_store::Store::open(&cfg.store)
        .await
        .map_err(|e| StartError::Other(format!("state store ({}): {e}", cfg.store.describe())))?;
    tracing::info!(store = %cfg.store.describe(), "state store open");
    let guard = Guardrails::new(cfg.behavior.clone(), store.clone());
    Ok((Approvals::new(store, cfg.approval.purge_after), guard))
}

/// The audit log with everything `cfg`'s `audit_*` and `redact` ask.
async fn open_audit(cfg: &ControlPlaneConfig) -> Result<AuditLog, StartError> {
    let key = AuditKey::from_seed_file(&cfg.audit_key)
        .map_err(|e| ConfigErrors::single("audit_key", e.to_string()))?;
    let path = cfg.audit_log.clone();
    let opts = infrabroker_common::audit::ServiceAudit {
        checkpoints: cfg.audit_checkpoint.clone(),
        redact: cfg.redact.clone(),
        syslog: cfg.audit_syslog.clone(),
        app: "infrabroker-control-plane",
    };
    tokio::task::spawn_blocking(move || AuditLog::open_service(path, key, opts))
        .await
        .map_err(other)?
        .map_err(StartError::Audit)
}

/// A listener on `addr` when one is configured (`what` names the setting
/// in the error).
async fn bind_optional(
    addr: Option<std::net::SocketAddr>,
    what: &str,
) -> Result<Option<TcpListener>, StartError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|e| StartError::Other(format!("cannot listen on {addr} ({what}): {e}")))
}

/// Applies held requests' deadlines and purges old ones (and idle
/// guardrail subjects) every [`SWEEP_EVERY`].
fn spawn_sweeper(sweeper: Arc<Shared>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            sweeper.sweep().await;
        }
    });
}

/// Audits refused TLS handshakes within the signer's budget: a handshake
/// flood writes a bounded number of records, so it cannot fill the disk
/// and refuse every sign.
fn reject_hook(hook: Arc<Shared>) -> tls::RejectHook {
    let budget = Arc::new(tls::RejectBudget::default());
    Arc::new(move |addr, reason| {
        tracing::info!(%addr, %reason, "TLS handshake refused");
        let Some(suppressed) = budget.admit() else {
            return;
        };
        let mut r = rec("tls_rejected");
        r.insert("peer".into(), addr.to_string().into());
        r.insert("err".into(), reason.into());
        if suppressed > 0 {
            r.insert("suppressed_before".into(), suppressed.into());
        }
        let s = hook.clone();
        tokio::spawn(async move { s.record_anyway(r).await });
    })
}

/// Runs the control plane until SIGTERM or SIGINT.
pub async fn run(config_path: &Path) -> Result<(), StartError> {
    let cfg = check(config_path)?;
    let audit = open_audit(&cfg).await?;
    let tls_config =
        tls::server_config(&cfg.server_cert, &cfg.server_key, &cfg.client_ca).map_err(other)?;
    let (store, guard) = open_state(&cfg).await?;
    let upstream = Upstream::new(&cfg.signer)?;
    let notifier = Notifier::new(&cfg.approval, cfg.redact.clone())?;
    let reviewer = match &cfg.approval.reviewer {
        Some(r) => Some((r.clone(), Token::load(&r.token_file)?)),
        None => None,
    };
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| StartError::Other(format!("cannot listen on {}: {e}", cfg.listen)))?;
    let local = listener.local_addr().map_err(other)?;
    let monitor = bind_optional(cfg.monitor_listen, "monitor_listen").await?;
    let reviewer_addr = reviewer.as_ref().map(|(r, _)| r.listen);
    let reviewer_listener = bind_optional(reviewer_addr, "approval.reviewer.listen").await?;
    let shared = Arc::new(Shared {
        guard,
        cfg,
        store,
        replica: approval::new_id(),
        upstream,
        notifier,
        audit,
        metrics: Arc::default(),
        clock: Arc::new(SystemClock),
    });

    let mut start = rec("started");
    start.insert("listen".into(), local.to_string().into());
    shared
        .record(start)
        .await
        .map_err(|_| StartError::Other("the audit log is not writable".into()))?;

    if let Some(m) = monitor {
        let addr = m.local_addr().map_err(other)?;
        tracing::info!("monitor listening on http://{addr}");
        let app = server::monitor_router(shared.clone());
        tokio::spawn(tls::serve_plain(m, app, ServeOptions::default()));
    }
    if let (Some(l), Some((r, token))) = (reviewer_listener, reviewer) {
        let addr = l.local_addr().map_err(other)?;
        tracing::info!("reviewer MCP endpoint on http://{addr}/mcp");
        let app = reviewer::router(shared.clone(), r.name, token);
        // The reviewer's MCP event streams are requests in flight; the
        // idle timeout only closes connections with none.
        tokio::spawn(tls::serve_plain(l, app, ServeOptions::default()));
    }
    spawn_sweeper(shared.clone());
    let on_reject = reject_hook(shared.clone());
    tracing::info!("control plane listening on https://{local}");
    tls::serve_mtls(
        listener,
        Arc::new(tls_config),
        server::router(shared.clone()),
        ServeOptions::default(),
        on_reject,
        tls::shutdown_signal(),
    )
    .await;
    shared.record_anyway(rec("stopped")).await;
    tracing::info!("control plane stopped");
    Ok(())
}
