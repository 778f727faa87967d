//! The infrabroker signer: the only process that holds the SSH CA key.
//!
//! It receives *intents* (host, role, purpose, command, a fresh public key)
//! over mutual TLS, judges them against its own configuration — RBAC,
//! issuance rules, the command firewall — and answers with a short-lived
//! OpenSSH certificate whose constraints it chose itself. Every answer is
//! recorded in the signed audit chain before it leaves; if the record cannot
//! be written, nothing is issued.
//!
//! # Layout
//! - [`auditing`]: the audit sink, a local log or the replicas' global chain.
//! - [`config`]: `signer.json`, read strictly into validated types.
//! - [`names`]: character rules for every field that reaches a certificate.
//! - [`issuance`]: the rules of SPEC §3 and the certificate a plan
//!   describes, signed by the host's CA (`infrabroker-ca`).
//! - [`ratelimit`]: `sign_rate_limit_per_min` per caller / end user.
//! - [`freeze`]: the kill switch: freezes in the store, `403 frozen`.
//! - [`certindex`]: the index of live certificates in the store.
//! - [`krl`]: the OpenSSH KRL of revoked certificates, `GET /v1/krl`.
//! - [`deadline`]: the `timeout -k` bound of one-shot force-commands.
//! - [`serials`]: certificate serials from the state store, in blocks.
//! - [`server`]: HTTP routes, error answers, audit records, reload.
//! - [`metrics`]: Prometheus counters.
//! - [`run`]: start-up, signals and shutdown.

pub mod auditing;
pub mod certindex;
pub mod config;
pub mod deadline;
pub mod freeze;
pub mod issuance;
pub mod krl;
pub mod metrics;
pub mod names;
pub mod ratelimit;
pub mod serials;
pub mod server;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use infrabroker_common::audit::{self, AuditError, AuditKey, AuditLog};
use infrabroker_common::config::ConfigErrors;
use infrabroker_common::tls::{self, ServeOptions};
use serde_json::Map;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::SignerConfig;
use crate::issuance::Runtime;
use crate::server::Shared;

/// Open connections on `krl_listen` at most (one long poll per host).
pub const KRL_CONNECTIONS: usize = 4096;

/// Why the signer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid (exit 64).
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// The audit log cannot be continued (exit 65 when its last record
    /// does not verify, else 1).
    #[error("opening the audit log: {0}")]
    Audit(#[from] AuditError),
    /// Anything else at start-up (exit 1).
    #[error("{0}")]
    Other(String),
}

impl StartError {
    /// The process exit code for this start-up failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => 64,
            StartError::Audit(e) if e.is_unverified_tail() => audit::EXIT_UNVERIFIED_TAIL,
            _ => 1,
        }
    }
}

impl infrabroker_common::service::StartFailure for StartError {
    fn exit_code(&self) -> u8 {
        StartError::exit_code(self)
    }
}

/// Loads and validates a configuration file, CA keys included.
pub fn check(path: &Path) -> Result<Runtime, ConfigErrors> {
    SignerConfig::load(path).and_then(Runtime::new)
}

/// What `signer check` prints after "valid": each CA entry (where its key
/// lives, its fingerprint, the announced next key) and the CA that signs
/// for each host.
pub fn ca_report(rt: &Runtime) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for (name, slot) in rt.slots() {
        let ca = &slot.current;
        let _ = writeln!(out, "CA {name}: {} {}", ca.kind(), ca.fingerprint());
        if let Some(next) = &slot.next {
            let _ = writeln!(
                out,
                "CA {name} next: {} {}",
                next.kind(),
                next.fingerprint()
            );
        }
    }
    for (name, host) in &rt.config.hosts {
        let entry = host.ca_group.as_deref().unwrap_or("_default");
        let _ = writeln!(
            out,
            "host {name}: CA {entry} {}",
            rt.ca_for(host).fingerprint()
        );
    }
    out
}

/// Runs the signer until SIGTERM or SIGINT.
pub async fn run(config_path: &Path) -> Result<(), StartError> {
    let runtime = check(config_path)?;
    let cfg = &runtime.config;
    let key = AuditKey::from_seed_file(&cfg.audit_key)
        .map_err(|e| ConfigErrors::single("audit_key", e.to_string()))?;
    let last_serial = audit::max_u64_field(&cfg.audit_log, "serial")?.unwrap_or(0);
    check_serial_space(last_serial).map_err(StartError::Other)?;
    let (store, log) = open_state(cfg, key).await?;
    let tls_config = tls::server_config(&cfg.server_cert, &cfg.server_key, &cfg.client_ca)
        .map_err(|e| StartError::Other(e.to_string()))?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| StartError::Other(format!("cannot listen on {}: {e}", cfg.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| StartError::Other(e.to_string()))?;
    let monitor = bind_plain(cfg.monitor_listen, "monitor_listen").await?;
    let krl = bind_plain(cfg.krl_listen, "krl_listen").await?;
    let auto_reload = cfg.auto_reload_seconds;
    let hosts = cfg.hosts.len();
    let shared = Arc::new(Shared::new(
        runtime,
        config_path.to_owned(),
        log,
        &store,
        last_serial,
    ));

    let mut start = Map::new();
    start.insert("outcome".into(), "started".into());
    start.insert("listen".into(), local.to_string().into());
    start.insert("hosts".into(), hosts.into());
    shared
        .audit()
        .append(start)
        .await
        .map_err(|e| StartError::Other(format!("the audit log is not writable: {e}")))?;

    if let Some(m) = monitor {
        let opts = ServeOptions::default();
        serve_plain(m, server::monitor_router(shared.clone()), "monitor", opts)?;
    }
    if let Some(k) = krl {
        // Every host may hold one long poll open.
        let opts = ServeOptions {
            max_connections: KRL_CONNECTIONS,
            ..ServeOptions::default()
        };
        serve_plain(k, server::krl_router(shared.clone()), "KRL", opts)?;
    }
    spawn_sighup(shared.clone())?;
    if auto_reload > 0 {
        spawn_auto_reload(shared.clone(), config_path.to_owned(), auto_reload);
    }

    let on_reject = reject_hook(shared.clone());
    tracing::info!(hosts, "signer listening on https://{local}");
    tls::serve_mtls(
        listener,
        Arc::new(tls_config),
        server::router(shared.clone()),
        ServeOptions::default(),
        on_reject,
        tls::shutdown_signal(),
    )
    .await;
    let mut stop = Map::new();
    stop.insert("outcome".into(), "stopped".into());
    let _ = shared.audit().append(stop).await;
    tracing::info!("signer stopped");
    Ok(())
}

/// Audits refused TLS handshakes, at most a few per second: an
/// unauthenticated peer must not be able to fill the audit disk.
fn reject_hook(hook_shared: Arc<Shared>) -> tls::RejectHook {
    let budget = Arc::new(tls::RejectBudget::default());
    Arc::new(move |addr, reason| {
        hook_shared.metrics.tls_reject();
        tracing::info!(%addr, %reason, "TLS handshake refused");
        let Some(suppressed) = budget.admit() else {
            return;
        };
        let mut rec = Map::new();
        rec.insert("outcome".into(), "tls_rejected".into());
        rec.insert("peer".into(), addr.to_string().into());
        rec.insert("message".into(), reason.into());
        if suppressed > 0 {
            rec.insert("suppressed_before".into(), suppressed.into());
        }
        let s = hook_shared.clone();
        tokio::spawn(async move {
            if let Err(e) = s.audit().append(rec).await {
                s.metrics.audit_failure();
                tracing::error!(error = %e, "audit record of a refused handshake could not be written");
            }
        });
    })
}

/// Binds an optional plain-HTTP listener named by config field `field`.
async fn bind_plain(
    addr: Option<std::net::SocketAddr>,
    field: &str,
) -> Result<Option<TcpListener>, StartError> {
    match addr {
        Some(addr) => TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|e| StartError::Other(format!("cannot listen on {addr} ({field}): {e}"))),
        None => Ok(None),
    }
}

/// Serves `app` over plain HTTP on `listener` in the background.
fn serve_plain(
    listener: TcpListener,
    app: axum::Router,
    what: &str,
    opts: ServeOptions,
) -> Result<(), StartError> {
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Other(e.to_string()))?;
    tracing::info!("{what} listening on http://{addr}");
    tokio::spawn(tls::serve_plain(listener, app, opts));
    Ok(())
}

/// Opens the state store and the audit sink it implies: with PostgreSQL
/// (HA mode) the replicas' global chain, else the local `audit_log`.
async fn open_state(
    cfg: &config::SignerConfig,
    key: AuditKey,
) -> Result<(infrabroker_store::Store, auditing::Audit), StartError> {
    let store = infrabroker_store::Store::open(&cfg.store)
        .await
        .map_err(|e| StartError::Other(format!("state store ({}): {e}", cfg.store.describe())))?;
    tracing::info!(store = %cfg.store.describe(), "state store open");
    let audit = match &cfg.store {
        infrabroker_store::StoreConfig::Postgres(_) => {
            tracing::warn!(
                audit_log = %cfg.audit_log.display(),
                "HA mode: audit records go to the global chain in PostgreSQL; audit_log is not written"
            );
            let chain = auditing::GlobalChain::start(
                store.clone(),
                key,
                cfg.redact.clone(),
                cfg.audit_checkpoint.clone(),
            )
            .await
            .map_err(|e| match e {
                auditing::ChainStartError::Audit(e) => StartError::Audit(e),
                e => StartError::Other(e.to_string()),
            })?;
            auditing::Audit::Global(chain)
        }
        infrabroker_store::StoreConfig::Sqlite(_) => {
            let opts = infrabroker_common::audit::ServiceAudit {
                checkpoints: cfg.audit_checkpoint.clone(),
                redact: cfg.redact.clone(),
                syslog: cfg.audit_syslog.clone(),
                app: "infrabroker-signer",
            };
            auditing::Audit::Local(AuditLog::open_service(&cfg.audit_log, key, opts)?)
        }
    };
    Ok((store, audit))
}

/// Refuses to start above a restored log whose largest serial leaves no
/// room: the next serial would wrap to 0 and repeat earlier ones (a
/// repeated serial breaks revocation by serial and the audit join). The
/// store keeps serials as signed 64-bit integers, so the space ends one
/// block below `i64::MAX`.
fn check_serial_space(last_serial: u64) -> Result<(), String> {
    let top = (i64::MAX as u64).saturating_sub(serials::BLOCK);
    if last_serial >= top {
        return Err(format!(
            "the audit log's largest serial is {last_serial}: no unused serial is left above \
             it, and serials never wrap. Start with a new audit log (keep the old one for \
             verification) or investigate how that record got there."
        ));
    }
    Ok(())
}

fn spawn_sighup(shared: Arc<Shared>) -> Result<(), StartError> {
    let mut hup = signal(SignalKind::hangup())
        .map_err(|e| StartError::Other(format!("cannot watch SIGHUP: {e}")))?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let _ = shared.reload("sighup").await;
        }
    });
    Ok(())
}

fn spawn_auto_reload(shared: Arc<Shared>, path: std::path::PathBuf, every: u64) {
    tokio::spawn(async move {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut last: Option<SystemTime> = mtime(&path);
        let mut tick = tokio::time::interval(Duration::from_secs(every));
        loop {
            tick.tick().await;
            let now = mtime(&path);
            if now.is_some() && now != last {
                last = now;
                let _ = shared.reload("auto_reload").await;
            }
        }
    });
}
