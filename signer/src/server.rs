//! The signer's HTTPS API (SPEC §3): routes, error answers, audit records
//! and configuration reloads.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, Limited};
use infrabroker_common::tls::Peer;
use infrabroker_common::wire::{
    ErrorBody, HostInfo, HostsResponse, ReasonCode, ReloadResponse, SignRequest, SignResponse,
};
use infrabroker_store::{LiveCert, Store};
use serde_json::{Map, Value, json};

use crate::auditing::Audit;
use crate::certindex::CertIndex;
use crate::config::{AuditFailMode, SignerConfig};
use crate::freeze::{self, Freezes};
use crate::issuance::{self, Denial, Plan, Runtime};
use crate::krl::KrlPublisher;
use crate::metrics::Metrics;
use crate::names;
use crate::ratelimit::{self, RateLimiter};
use crate::serials::Serials;
use infrabroker_common::monitor;

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
    if let crate::auditing::Audit::Local(log) = shared.audit() {
        monitor::register_audit(&mut registry, log);
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

fn request_fields(rec: &mut Map<String, Value>, req: &SignRequest) {
    let mut put = |k: &str, v: Value| {
        rec.insert(k.to_owned(), v);
    };
    put("host", req.host.clone().into());
    put("role", req.role.as_str().into());
    put("purpose", req.purpose.as_str().into());
    if let Some(m) = req.session_mode {
        put("session_mode", m.as_str().into());
    }
    if !req.command.is_empty() {
        put("command", req.command.clone().into());
    }
    if req.sudo {
        put(
            "sudo_user",
            req.sudo_user
                .clone()
                .unwrap_or_else(|| "root".into())
                .into(),
        );
    }
    if req.pty {
        put("pty", true.into());
    }
    if let Some(eu) = &req.end_user {
        put("end_user", eu.clone().into());
    }
    if let Some(g) = &req.end_user_groups {
        put("end_user_groups", g.clone().into());
    }
    if let Some(b) = &req.on_behalf_of {
        put("on_behalf_of", b.clone().into());
    }
    if req.approved {
        put("approved", true.into());
    }
    if req.dry_run {
        put("dry_run", true.into());
    }
}

fn plan_fields(rec: &mut Map<String, Value>, plan: &Plan) {
    rec.insert("caller".into(), plan.caller.clone().into());
    rec.insert("addr".into(), plan.addr.clone().into());
    rec.insert("user".into(), plan.user.clone().into());
    rec.insert("principal".into(), plan.principal.clone().into());
    rec.insert("key_id".into(), plan.key_id.clone().into());
    rec.insert("ttl_seconds".into(), plan.ttl.into());
    if let Some(e) = &plan.elevation {
        rec.insert("elevation".into(), e.clone().into());
    }
    if let Some(fc) = &plan.force_command {
        rec.insert("force_command".into(), fc.clone().into());
    }
    decision_fields(rec, &plan.decision);
}

fn decision_fields(rec: &mut Map<String, Value>, d: &infrabroker_common::wire::Decision) {
    rec.insert("reason_code".into(), d.reason_code.as_str().into());
    if let Some(r) = &d.matched_rule {
        rec.insert("matched_rule".into(), r.clone().into());
    }
    if !d.warnings.is_empty() {
        rec.insert("warnings".into(), d.warnings.clone().into());
    }
}

async fn sign(
    State(s): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    req: Request<Body>,
) -> Response {
    let started = Instant::now();
    let resp = sign_inner(&s, &peer, req).await;
    s.metrics.observe(started.elapsed());
    resp
}

async fn sign_inner(s: &Shared, peer: &Peer, req: Request<Body>) -> Response {
    let mut rec = Map::new();
    rec.insert("cn".into(), peer.cn.clone().into());
    rec.insert("peer".into(), peer.addr.to_string().into());
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return deny(s, rec, e).await,
    };
    let intent: SignRequest = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => {
            let msg = format!("invalid request: {e}");
            return deny(
                s,
                rec,
                ApiError::new(StatusCode::BAD_REQUEST, ReasonCode::MalformedRequest, msg),
            )
            .await;
        }
    };
    request_fields(&mut rec, &intent);
    let rt = s.runtime();
    if let Err(resp) = ratelimit::enforce(s, &rt, &peer.cn, &intent, &rec).await {
        return resp;
    }
    let plan = match issuance::evaluate(&rt, &peer.cn, &intent) {
        Ok(p) => p,
        Err(d) => return deny_policy(s, rec, d).await,
    };
    plan_fields(&mut rec, &plan);
    // Frozen subjects get nothing, dry runs (preflights) included.
    if let Some(refused) = frozen(s, &mut rec, peer, &intent, &plan).await {
        return refused;
    }
    if intent.dry_run {
        return dry_run(s, &rt, rec, plan).await;
    }
    issue(s, &rt, rec, &intent, plan).await
}

/// Answers a dry run: its decision, no certificate; audited.
async fn dry_run(s: &Shared, rt: &Runtime, mut rec: Map<String, Value>, plan: Plan) -> Response {
    rec.insert("outcome".into(), "dry_run".into());
    s.metrics.dry_run();
    if let Err(e) = s.audit.append(rec).await {
        s.metrics.audit_failure();
        tracing::error!(error = %e, "audit record of a dry run could not be written");
        // The global chain never fails open: in HA mode no certificate
        // leaves without its committed record.
        if rt.config.audit_fail_mode == AuditFailMode::Closed || e.store {
            return audit_down(s, e.store);
        }
    }
    axum::Json(SignResponse {
        certificate: None,
        serial: None,
        valid_before: None,
        elevation_prefix: plan.elevation_prefix,
        decision: plan.decision,
    })
    .into_response()
}

/// Signs a certificate the plan allows, indexes it and records it; it
/// leaves only after both.
async fn issue(
    s: &Shared,
    rt: &Runtime,
    mut rec: Map<String, Value>,
    intent: &SignRequest,
    plan: Plan,
) -> Response {
    let pubkey = match issuance::parse_pubkey(&intent.pubkey) {
        Ok(k) => k,
        Err(d) => return deny_policy(s, rec, d).await,
    };
    let serial = match s.serials.next().await {
        Ok(serial) => serial,
        Err(e) => return no_serial(s, rec, &e).await,
    };
    let issued = match signed(rt, &plan, &pubkey, serial).await {
        Ok(i) => i,
        Err(d) => return deny_policy(s, rec, d).await,
    };
    rec.insert("outcome".into(), "issued".into());
    rec.insert("serial".into(), issued.serial.into());
    rec.insert("valid_after".into(), issued.valid_after.into());
    rec.insert("valid_before".into(), issued.valid_before.into());
    let fingerprint = pubkey.fingerprint(ssh_key::HashAlg::Sha256).to_string();
    rec.insert("pubkey_fingerprint".into(), fingerprint.into());
    if let Err(refused) = index(s, &mut rec, &plan, intent, &issued).await {
        return refused;
    }
    if let Err(e) = s.audit.append(rec).await {
        s.metrics.audit_failure();
        tracing::error!(error = %e, serial, "audit record of an issuance could not be written");
        // The global chain never fails open: in HA mode no certificate
        // leaves without its committed record.
        if rt.config.audit_fail_mode == AuditFailMode::Closed || e.store {
            return audit_down(s, e.store);
        }
    }
    s.metrics.issued();
    axum::Json(SignResponse {
        certificate: Some(issued.certificate),
        serial: Some(issued.serial),
        valid_before: Some(issued.valid_before),
        elevation_prefix: plan.elevation_prefix,
        decision: plan.decision,
    })
    .into_response()
}

/// The certificate signed by the host's CA: a key in memory signs here, a
/// token or agent off the runtime's threads (it waits on a device or a
/// socket).
async fn signed(
    rt: &Runtime,
    plan: &Plan,
    pubkey: &ssh_key::PublicKey,
    serial: u64,
) -> Result<issuance::Issued, issuance::Denial> {
    let draft = issuance::draft(rt, plan, pubkey, serial, now_unix())?;
    if !draft.ca.blocks() {
        return draft.sign();
    }
    tokio::task::spawn_blocking(move || draft.sign())
        .await
        .unwrap_or_else(|_| {
            Err(issuance::Denial::new(
                ReasonCode::Internal,
                "the signing task failed; nothing was issued",
            ))
        })
}

/// The refusal of a request a freeze covers (audited with the freeze id),
/// or of any request while the freezes cannot be read.
async fn frozen(
    s: &Shared,
    rec: &mut Map<String, Value>,
    peer: &Peer,
    intent: &SignRequest,
    plan: &Plan,
) -> Option<Response> {
    match s.freezes.matching(&peer.cn, intent, &plan.key_id).await {
        Ok(None) => None,
        Ok(Some(f)) => {
            rec.insert("freeze_id".into(), f.id.clone().into());
            Some(deny(s, rec.clone(), freeze::refusal(&f)).await)
        }
        Err(e) => Some(deny(s, rec.clone(), e).await),
    }
}

/// Records an issued certificate in the index of live certificates, so a
/// freeze can revoke it; when that fails the certificate is withheld (the
/// refusal's record carries the serial that was never handed out).
async fn index(
    s: &Shared,
    rec: &mut Map<String, Value>,
    plan: &Plan,
    intent: &SignRequest,
    issued: &issuance::Issued,
) -> Result<(), Response> {
    let row = LiveCert {
        serial: issued.serial,
        ca: issued.ca.clone(),
        key_id: plan.key_id.clone(),
        caller: plan.caller.clone(),
        forwarder: plan.forwarder.clone().unwrap_or_default(),
        end_user: intent.end_user.clone().unwrap_or_default(),
        host: plan.host.clone(),
        valid_before_ms: issued.valid_before.saturating_mul(1000),
        revoked_by: None,
    };
    let Err(e) = s.certs.record(row).await else {
        return Ok(());
    };
    tracing::error!(error = %e, serial = issued.serial, "certificate not indexed; withheld");
    let msg = "the state store cannot record the certificate for revocation; nothing was issued";
    let err = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ReasonCode::StoreUnavailable,
        msg,
    );
    Err(deny(s, rec.clone(), err).await)
}

/// The refusal when the store hands out no serial: nothing is issued.
async fn no_serial(
    s: &Shared,
    rec: Map<String, Value>,
    e: &infrabroker_store::StoreError,
) -> Response {
    tracing::error!(error = %e, "no serial from the state store");
    let msg = format!("the state store cannot allocate a serial ({e}); nothing was issued");
    let err = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ReasonCode::StoreUnavailable,
        msg,
    );
    deny(s, rec, err).await
}

fn audit_down(s: &Shared, store: bool) -> Response {
    let (code, msg) = if store {
        (
            ReasonCode::StoreUnavailable,
            "the global audit chain in the state store cannot be written; nothing was issued",
        )
    } else {
        (
            ReasonCode::AuditUnavailable,
            "the audit log cannot be written; nothing was issued",
        )
    };
    s.metrics.denied(code.as_str());
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, msg).into_response()
}

async fn deny_policy(s: &Shared, mut rec: Map<String, Value>, d: Denial) -> Response {
    if let Some(dec) = &d.decision {
        decision_fields(&mut rec, dec);
    }
    deny(s, rec, ApiError::new(status_of(d.code), d.code, d.message)).await
}

/// Audits a refusal and answers it. A refusal is answered even when its
/// record cannot be written: refusing is already the closed outcome.
async fn deny(s: &Shared, mut rec: Map<String, Value>, err: ApiError) -> Response {
    rec.insert("outcome".into(), "denied".into());
    rec.insert("reason_code".into(), err.body.reason_code.as_str().into());
    rec.insert("message".into(), err.body.message.clone().into());
    s.metrics.denied(err.body.reason_code.as_str());
    if let Err(e) = s.audit.append(rec).await {
        s.metrics.audit_failure();
        tracing::error!(error = %e, "audit record of a refusal could not be written");
    }
    err.into_response()
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
