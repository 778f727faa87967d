//! The signer's HTTPS API (SPEC §3): routes, error answers, audit records
//! and configuration reloads. `POST /v1/sign` itself — judging, refusing,
//! signing, indexing and recording — is in `sign`.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, Limited};
use infrabroker_common::tls::Peer;
use infrabroker_common::wire::{ErrorBody, HostInfo, HostsResponse, ReasonCode, ReloadResponse};
use infrabroker_store::Store;
use serde_json::{Map, json};

use crate::auditing::Audit;
use crate::certindex::CertIndex;
use crate::config::SignerConfig;
use crate::freeze::{self, Freezes};
use crate::issuance::Runtime;
use crate::krl::KrlPublisher;
use crate::metrics::Metrics;
use crate::names;
use crate::ratelimit::RateLimiter;
use crate::serials::Serials;
use infrabroker_common::monitor;

mod sign;

use sign::{deny, sign};

/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;
/// Time allowed to receive a request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// State shared by all requests.
#[derive(Debug)]
pub struct Shared {
    runtime: RwLock<Arc<Runtime>>,
    config_path: PathBuf,
    audit: Audit,
    serials: Serials,
    freezes: Freezes,
    certs: CertIndex,
    krl: KrlPublisher,
    limiter: RateLimiter,
    reload_lock: tokio::sync::Mutex<()>,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
}

/// Settings read only at start-up (listeners, TLS, audit): a reload that
/// changes them is refused rather than reported as applied.
fn restart_only_changes(old: &SignerConfig, new: &SignerConfig) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, same: bool| {
        if !same {
            out.push(format!(
                "{name}: changed; restart the signer to apply it (the running value stays)"
            ));
        }
    };
    check("listen", old.listen == new.listen);
    check("server_cert", old.server_cert == new.server_cert);
    check("server_key", old.server_key == new.server_key);
    check("client_ca", old.client_ca == new.client_ca);
    check("audit_log", old.audit_log == new.audit_log);
    check("audit_key", old.audit_key == new.audit_key);
    check(
        "audit_fail_mode",
        old.audit_fail_mode == new.audit_fail_mode,
    );
    check("monitor_listen", old.monitor_listen == new.monitor_listen);
    check("krl_listen", old.krl_listen == new.krl_listen);
    check("store", old.store == new.store);
    check(
        "auto_reload_seconds",
        old.auto_reload_seconds == new.auto_reload_seconds,
    );
    out
}

impl Shared {
    /// State for a loaded runtime over the state `store`: serials (all
    /// above `last_serial`, see [`crate::serials`]), freezes, the index of
    /// live certificates (its writer task starts here) and the KRL.
    pub fn new(
        runtime: Runtime,
        config_path: PathBuf,
        audit: Audit,
        store: &Store,
        last_serial: u64,
    ) -> Self {
        Shared {
            runtime: RwLock::new(Arc::new(runtime)),
            config_path,
            audit,
            serials: Serials::new(store.clone(), last_serial),
            freezes: Freezes::new(store.clone()),
            certs: CertIndex::start(store.clone()),
            krl: KrlPublisher::new(store.clone()),
            limiter: RateLimiter::default(),
            reload_lock: tokio::sync::Mutex::new(()),
            metrics: Metrics::default(),
        }
    }

    /// The running configuration.
    pub fn runtime(&self) -> Arc<Runtime> {
        match self.runtime.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The audit log.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Re-reads the configuration file; on success swaps it in whole, on
    /// failure keeps the running one. Audited either way.
    pub async fn reload(&self, by: &str) -> Result<usize, Vec<String>> {
        // One reload at a time, so an older file can never win a race.
        let _serial = self.reload_lock.lock().await;
        let path = self.config_path.clone();
        let running = self.runtime();
        let loaded =
            tokio::task::spawn_blocking(move || SignerConfig::load(&path).and_then(Runtime::new))
                .await
                .map_err(|e| vec![format!("reload task failed: {e}")])
                .and_then(|r| r.map_err(|e| e.0.iter().map(ToString::to_string).collect()))
                .and_then(|rt| {
                    let fixed = restart_only_changes(&running.config, &rt.config);
                    if fixed.is_empty() { Ok(rt) } else { Err(fixed) }
                });
        let mut rec = Map::new();
        rec.insert("by".into(), by.into());
        let result = match loaded {
            Ok(rt) => {
                let hosts = rt.config.hosts.len();
                match self.runtime.write() {
                    Ok(mut g) => *g = Arc::new(rt),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(rt),
                }
                rec.insert("outcome".into(), "reloaded".into());
                rec.insert("hosts".into(), hosts.into());
                Ok(hosts)
            }
            Err(errors) => {
                rec.insert("outcome".into(), "reload_failed".into());
                rec.insert("errors".into(), errors.clone().into());
                Err(errors)
            }
        };
        self.metrics.reload(result.is_ok());
        if let Err(e) = self.audit.append(rec).await {
            self.metrics.audit_failure();
            tracing::error!(error = %e, "audit record of a reload could not be written");
        }
        match &result {
            Ok(n) => tracing::info!(hosts = n, by, "configuration reloaded"),
            Err(errs) => {
                tracing::warn!(by, errors = ?errs, "reload refused; the running configuration stays")
            }
        }
        result
    }

    /// The per-subject sign counters.
    pub(crate) fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The freezes (kill switch).
    pub(crate) fn freezes(&self) -> &Freezes {
        &self.freezes
    }

    /// The state store.
    pub(crate) fn store(&self) -> &Store {
        self.serials.store()
    }

    /// The KRL publisher.
    pub(crate) fn krl(&self) -> &KrlPublisher {
        &self.krl
    }

    /// The serial allocator (its store answers `/readyz`).
    pub(crate) fn serials(&self) -> &Serials {
        &self.serials
    }
}

/// An error answer: status, stable code, one sentence.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: ReasonCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                reason_code: code,
                message: message.into(),
                errors: Vec::new(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

fn status_of(code: ReasonCode) -> StatusCode {
    use ReasonCode as R;
    match code {
        R::MalformedRequest
        | R::PubkeyInvalid
        | R::CommandInvalid
        | R::InvalidRequest
        | R::EndUserInvalid
        | R::SudoUserInvalid => StatusCode::BAD_REQUEST,
        R::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        R::HostUnknown | R::NotFound => StatusCode::NOT_FOUND,
        R::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        R::AuditUnavailable | R::StoreUnavailable | R::CaUnavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        R::Internal | R::SigningFailed | R::ReloadFailed => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::FORBIDDEN,
    }
}

/// The API routes. Handlers expect a [`Peer`] extension from the mTLS
/// accept loop.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/hosts", get(hosts))
        .route("/v1/sign", post(sign))
        .route("/v1/reload", post(reload))
        .route("/v1/freeze", post(freeze::add))
        .route("/v1/freezes", get(freeze::list))
        .route("/v1/revocations", get(freeze::revocations))
        .route("/v1/freeze/{id}", axum::routing::delete(freeze::lift))
        .route("/v1/krl", get(krl))
        .route("/v1/certificates", get(crate::certindex::list))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ReasonCode::NotFound,
                "no such endpoint",
            )
        })
        .with_state(shared)
}

/// Routes of the plain-HTTP monitor listener: `/metrics`, `/healthz`,
/// and `/readyz` (not ready while the audit log cannot be appended to).
pub fn monitor_router(shared: Arc<Shared>) -> Router {
    let mut registry = shared.metrics.registry();
    match shared.audit() {
        crate::auditing::Audit::Local(log) => monitor::register_audit(&mut registry, log),
        crate::auditing::Audit::Global(chain) => {
            if let Some(w) = chain.witness_stats() {
                w.register(&mut registry);
            }
        }
    }
    let registry = Arc::new(registry);
    let scrape = Arc::clone(&shared);
    let before: monitor::BeforeScrape = Arc::new(move || {
        scrape
            .metrics
            .set_hosts(scrape.runtime().config.hosts.len());
    });
    let ready: monitor::ReadyCheck = Arc::new(move || {
        let s = Arc::clone(&shared);
        Box::pin(async move {
            let mut problems: monitor::Problems = s.audit().problem().into_iter().collect();
            match tokio::time::timeout(monitor::READY_DEADLINE, s.serials().store().ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => problems.push(format!("the state store does not answer: {e}")),
                Err(_) => problems.push("the state store did not answer in time".to_owned()),
            }
            problems
        })
    });
    monitor::router(registry, before, ready)
}

/// Routes of the plain-HTTP `krl_listen` listener: `GET /v1/krl` only
/// (the KRL names no secret; hosts fetch it without a client certificate).
pub fn krl_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/krl", get(krl))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ReasonCode::NotFound,
                "this listener serves only GET /v1/krl",
            )
        })
        .with_state(shared)
}

/// `GET /v1/krl` for any client the TLS layer admitted (see [`crate::krl`]).
async fn krl(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<crate::krl::KrlQuery>, QueryRejection>,
) -> Response {
    match query {
        Ok(q) => crate::krl::serve(&s, &headers, &q).await,
        Err(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            ReasonCode::MalformedRequest,
            format!("invalid query: {e} (wait is whole seconds)"),
        )
        .into_response(),
    }
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn hosts(
    State(s): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Result<axum::Json<HostsResponse>, ApiError> {
    let rt = s.runtime();
    let cfg = &rt.config;
    let forwarded = headers
        .get("x-on-behalf-of")
        .map(|v| v.to_str().map(str::to_owned).unwrap_or_default());
    let caller = match forwarded {
        Some(_) if !cfg.trusted_forwarders.contains(&peer.cn) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ReasonCode::ForwarderUntrusted,
                format!("{} is not a trusted forwarder", peer.cn),
            ));
        }
        Some(b) if names::is_name(&b) => b,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ReasonCode::CallerInvalid,
                "X-On-Behalf-Of has characters outside [A-Za-z0-9._-]",
            ));
        }
        None => peer.cn.clone(),
    };
    let Some(policy) = cfg.callers.get(&caller) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ReasonCode::CallerUnknown,
            format!("caller {caller} is not listed in callers"),
        ));
    };
    let out = cfg
        .hosts
        .values()
        .filter(|h| h.allowed_callers.is_empty() || h.allowed_callers.contains(&caller))
        .filter(|h| h.groups.iter().any(|g| policy.allowed_groups.contains(g)))
        .map(|h| {
            (
                h.name.clone(),
                HostInfo {
                    addr: h.addr.clone(),
                    user: h.user.clone(),
                    host_key: h.host_key.clone(),
                    jump: h.jump.clone(),
                    allow_sudo: h.allow_sudo,
                    allow_pty: h.allow_pty,
                    groups: h.groups.iter().cloned().collect(),
                },
            )
        })
        .collect();
    Ok(axum::Json(out))
}

pub(crate) async fn read_body(req: Request) -> Result<Vec<u8>, ApiError> {
    let limited = Limited::new(req.into_body(), MAX_BODY);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes().to_vec()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ReasonCode::BodyTooLarge,
                format!("request body exceeds {MAX_BODY} bytes"),
            ))
        }
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ReasonCode::MalformedRequest,
            format!("request body could not be read: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ReasonCode::MalformedRequest,
            "request body not received in time",
        )),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn reload(State(s): State<Arc<Shared>>, Extension(peer): Extension<Peer>) -> Response {
    let rt = s.runtime();
    if !rt.config.reload_callers.contains(&peer.cn) {
        let mut rec = Map::new();
        rec.insert("cn".into(), peer.cn.clone().into());
        let err = ApiError::new(
            StatusCode::FORBIDDEN,
            ReasonCode::ReloadForbidden,
            format!("{} is not in reload_callers", peer.cn),
        );
        return deny(&s, rec, err).await;
    }
    match s.reload(&format!("api:{}", peer.cn)).await {
        Ok(hosts) => axum::Json(ReloadResponse {
            status: "ok".into(),
            hosts,
        })
        .into_response(),
        Err(errors) => {
            let mut e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ReasonCode::ReloadFailed,
                "the new configuration is invalid; the running one was kept",
            );
            e.body.errors = errors;
            e.into_response()
        }
    }
}
