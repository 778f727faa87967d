//! The engine: turns one tool call into signed hops, an SSH chain and one
//! audited command. Transport-free; every frontend shares it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use infrabroker_common::audit::{AuditKey, AuditLog};
use infrabroker_common::wire::{Decision, HostInfo, HostsResponse, Purpose, Role, SignRequest};
use russh::keys::{Certificate, PrivateKey, PublicKey};
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) use crate::api::Caller;
use crate::api::{
    ExecRequest, ExecResult, FileResult, GetFileRequest, PutFileRequest, ServerInfo, SessionInfo,
    SessionOpenRequest, ToolError, Tools, ms_since,
};
use crate::config::BrokerConfig;
use crate::metrics::Metrics;
use crate::session::SessionTable;

use crate::signer::{HostCache, SignerApi};

mod files;
mod oneshot;
pub(crate) use oneshot::Transfer;

/// What stops a cancelled one-shot command: sshd refuses signals to a
/// forced command, so the signer's wrapper does it on the host.
const ONESHOT_STOP: &str =
    "channel closed; the force-command's timeout -k stops the command at its deadline";

/// Longest bastion chain followed (a loop in the signer's view stops here).
const MAX_HOPS: usize = 8;

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// TLS material or URL of the signer.
    #[error("signer client: {0}")]
    Client(#[from] infrabroker_common::client::ClientError),
    /// The audit log or key.
    #[error("audit: {0}")]
    Audit(#[from] infrabroker_common::audit::AuditError),
    /// The monitor listener (`monitor_listen`).
    #[error("monitor_listen: {0}")]
    Monitor(String),
}

impl EngineError {
    /// The process exit code for this start-up failure: 65 when the audit
    /// log's last record does not verify, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            EngineError::Audit(e) if e.is_unverified_tail() => {
                infrabroker_common::audit::EXIT_UNVERIFIED_TAIL
            }
            _ => 1,
        }
    }
}

/// The broker engine.
#[derive(Debug)]
pub struct Engine {
    cfg: BrokerConfig,
    hosts: HostCache,
    audit: AuditLog,
    per_caller: Mutex<HashMap<String, Arc<Semaphore>>>,
    sessions: SessionTable,
    oneshots: Arc<crate::oneshots::OneShots>,
    metrics: Metrics,
}

/// A hop as planned: where, and which certificate role.
#[derive(Debug, Clone)]
pub(crate) struct PlannedHop {
    pub(crate) name: String,
    pub(crate) info: HostInfo,
    pub(crate) host_key: PublicKey,
}

/// A hop's fresh key, its certificate and the certificate's serial.
pub(crate) type Credential = (Arc<PrivateKey>, Certificate, u64);

/// A fresh key for one hop. `ssh_key`'s Ed25519 private key zeroizes its
/// bytes when dropped; it never leaves this process.
pub(crate) fn fresh_key() -> PrivateKey {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand::fill(&mut seed[..]);
    PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&seed))
}

impl Engine {
    /// Opens the audit log and the signer client, and fetches the first
    /// host view (a failure there is logged: every call refreshes anyway).
    pub async fn start(cfg: BrokerConfig) -> Result<Arc<Engine>, EngineError> {
        let api = SignerApi::new(&cfg.signer)?;
        let key = AuditKey::from_seed_file(&cfg.audit_key)?;
        let path = cfg.audit_log.clone();
        let opts = infrabroker_common::audit::ServiceAudit {
            checkpoints: cfg.audit_checkpoint.clone(),
            redact: cfg.redact.clone(),
            syslog: cfg.audit_syslog.clone(),
            app: "infrabroker-broker",
        };
        let audit = tokio::task::spawn_blocking(move || AuditLog::open_service(path, key, opts))
            .await
            .map_err(|e| infrabroker_common::audit::AuditError::Write(e.to_string()))??;
        let engine = Arc::new(Engine {
            cfg,
            hosts: HostCache::new(api),
            audit,
            per_caller: Mutex::new(HashMap::new()),
            sessions: SessionTable::default(),
            oneshots: Arc::default(),
            metrics: Metrics::default(),
        });
        engine.start_monitor().await?;
        if let Err(e) = engine.hosts.refresh().await {
            tracing::warn!(error = %e, "initial host view unavailable; calls will retry");
        }
        let weak = Arc::downgrade(&engine);
        let every = engine.cfg.hosts_refresh;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(e) = weak.upgrade() else { break };
                if let Err(err) = e.hosts.refresh().await {
                    tracing::warn!(error = %err, "periodic host refresh failed; keeping the previous view");
                }
            }
        });
        if let Some(every) = engine.cfg.revocation_poll {
            let weak = Arc::downgrade(&engine);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let Some(e) = weak.upgrade() else { break };
                    match e.hosts.api().revocations().await {
                        Ok(r) => {
                            e.oneshots.cut_frozen(&r);
                            e.close_frozen(&r).await;
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "revocation poll failed; sessions stay as they are until the next one")
                        }
                    }
                }
            });
        }
        let weak = Arc::downgrade(&engine);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::session::REAP_EVERY);
            loop {
                tick.tick().await;
                let Some(e) = weak.upgrade() else { break };
                e.reap().await;
            }
        });
        Ok(engine)
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `monitor_listen`.
    async fn start_monitor(self: &Arc<Self>) -> Result<(), EngineError> {
        let Some(addr) = self.cfg.monitor_listen else {
            return Ok(());
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| EngineError::Monitor(format!("cannot listen on {addr}: {e}")))?;
        if let Ok(local) = listener.local_addr() {
            tracing::info!("monitor listening on http://{local}");
        }
        let app = crate::metrics::monitor_router(self);
        tokio::spawn(infrabroker_common::tls::serve_plain(
            listener,
            app,
            infrabroker_common::tls::ServeOptions::default(),
        ));
        Ok(())
    }

    /// The metrics.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Open sessions.
    pub(crate) fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// The host view and signer client.
    pub(crate) fn hosts_cache(&self) -> &HostCache {
        &self.hosts
    }

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.cfg
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    fn permit(&self, caller: &Caller) -> Result<OwnedSemaphorePermit, ToolError> {
        let limit = self.cfg.max_concurrent_per_caller;
        let sem = {
            let mut map = match self.per_caller.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            // Forget idle callers (OIDC subjects come and go), so the map
            // cannot grow without bound.
            if map.len() > 1024 {
                map.retain(|_, s| s.available_permits() < limit);
            }
            map.entry(caller.id.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(limit)))
                .clone()
        };
        sem.try_acquire_owned().map_err(|_| ToolError::Busy(limit))
    }

    fn visible(caller: &Caller, info: &HostInfo) -> bool {
        match &caller.end_user_groups {
            None => true,
            Some(groups) => info.groups.iter().any(|g| groups.contains(g)),
        }
    }

    /// Target last: `[outermost bastion, …, target]`.
    pub(crate) fn plan(
        view: &HostsResponse,
        caller: &Caller,
        host: &str,
    ) -> Result<Vec<PlannedHop>, ToolError> {
        let mut hops = Vec::new();
        let mut cur = host.to_owned();
        loop {
            let info = view
                .get(&cur)
                .filter(|i| Self::visible(caller, i))
                .ok_or_else(|| ToolError::UnknownHost(cur.clone()))?;
            let host_key = PublicKey::from_openssh(info.host_key.trim()).map_err(|_| {
                ToolError::SignerUnreachable(format!(
                    "the signer sent an unusable host key for {cur}"
                ))
            })?;
            hops.push(PlannedHop {
                name: cur.clone(),
                info: info.clone(),
                host_key,
            });
            match &info.jump {
                Some(j) if hops.len() < MAX_HOPS => cur = j.clone(),
                Some(_) => {
                    return Err(ToolError::Invalid(format!(
                        "the jump chain of {host} is too long"
                    )));
                }
                None => break,
            }
        }
        hops.reverse();
        Ok(hops)
    }

    /// The call's timeout: its own, never above the configured maximum.
    fn exec_timeout(&self, req: &ExecRequest) -> std::time::Duration {
        req.timeout
            .unwrap_or(self.cfg.exec_timeout)
            .min(self.cfg.exec_timeout_max)
    }

    pub(crate) fn sign_request(
        &self,
        caller: &Caller,
        hop: &PlannedHop,
        target: bool,
        req: &ExecRequest,
        pubkey: String,
    ) -> SignRequest {
        SignRequest {
            host: hop.name.clone(),
            role: if target { Role::Target } else { Role::Bastion },
            purpose: Purpose::Oneshot,
            command: if target {
                req.command.clone()
            } else {
                String::new()
            },
            pubkey,
            sudo: target && req.sudo,
            sudo_user: if target { req.sudo_user.clone() } else { None },
            pty: false,
            session_mode: None,
            ttl_seconds: None,
            timeout_seconds: target.then(|| self.exec_timeout(req).as_secs().max(1)),
            end_user: caller.end_user.clone(),
            end_user_groups: caller.end_user_groups.clone(),
            dry_run: false,
            on_behalf_of: None,
            approved: false,
            file: None,
        }
    }

    /// Appends an execution audit record; a failure is an error.
    pub(crate) async fn write_record(&self, fields: Map<String, Value>) -> Result<(), ToolError> {
        self.audit.append(fields).await.map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "execution audit record could not be written");
            ToolError::AuditUnavailable
        })
    }

    fn base_record(caller: &Caller, req: &ExecRequest) -> Map<String, Value> {
        let mut r = Map::new();
        r.insert("caller".into(), caller.id.clone().into());
        if let Some(u) = &caller.end_user {
            r.insert("end_user".into(), u.clone().into());
        }
        r.insert("host".into(), req.host.clone().into());
        r.insert("command".into(), req.command.clone().into());
        if req.sudo {
            r.insert(
                "sudo_user".into(),
                req.sudo_user
                    .clone()
                    .unwrap_or_else(|| "root".into())
                    .into(),
            );
        }
        r
    }
}

impl Tools for Engine {
    async fn list_servers(&self, caller: &Caller) -> Result<Vec<ServerInfo>, ToolError> {
        let view = match self.hosts.refresh().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "host refresh failed; listing the cached view");
                self.hosts.current()
            }
        };
        Ok(view
            .iter()
            .filter(|(_, i)| Self::visible(caller, i))
            .map(|(name, i)| ServerInfo {
                name: name.clone(),
                user: i.user.clone(),
                allow_sudo: i.allow_sudo,
                allow_pty: i.allow_pty,
                jump: i.jump.clone(),
            })
            .collect())
    }

    async fn execute(&self, caller: &Caller, req: ExecRequest) -> Result<ExecResult, ToolError> {
        let started = Instant::now();
        let (out, serial, timings) = self.oneshot(caller, &req, None, Map::new()).await?;
        Ok(out.into_result(serial, ms_since(started), timings))
    }

    async fn dry_run(&self, caller: &Caller, req: ExecRequest) -> Result<Decision, ToolError> {
        let view = self.hosts.refresh().await?;
        let hops = Self::plan(&view, caller, &req.host)?;
        let target = hops
            .last()
            .ok_or_else(|| ToolError::UnknownHost(req.host.clone()))?;
        let mut sreq = self.sign_request(caller, target, true, &req, String::new());
        sreq.dry_run = true;
        let resp = self.hosts.api().sign(&sreq).await?;
        let mut rec = Self::base_record(caller, &req);
        rec.insert("outcome".into(), "dry_run".into());
        rec.insert(
            "reason_code".into(),
            resp.decision.reason_code.as_str().into(),
        );
        rec.insert("allowed".into(), resp.decision.allowed.into());
        self.write_record(rec).await?;
        Ok(resp.decision)
    }

    async fn put_file(
        &self,
        caller: &Caller,
        req: PutFileRequest,
    ) -> Result<FileResult, ToolError> {
        self.put_file_now(caller, req).await
    }

    async fn get_file(
        &self,
        caller: &Caller,
        req: GetFileRequest,
    ) -> Result<FileResult, ToolError> {
        self.get_file_now(caller, req).await
    }

    async fn session_open(
        &self,
        caller: &Caller,
        req: SessionOpenRequest,
    ) -> Result<SessionInfo, ToolError> {
        let _permit = self.permit(caller)?;
        self.open_session(caller, req).await
    }

    async fn session_exec(
        &self,
        caller: &Caller,
        session_id: &str,
        command: String,
        timeout: Option<std::time::Duration>,
    ) -> Result<ExecResult, ToolError> {
        let _permit = self.permit(caller)?;
        self.exec_in_session(caller, session_id, command, timeout)
            .await
    }

    async fn session_close(&self, caller: &Caller, session_id: &str) -> Result<(), ToolError> {
        self.close_by_caller(caller, session_id).await
    }

    async fn session_list(&self, caller: &Caller) -> Result<Vec<SessionInfo>, ToolError> {
        Ok(self.list_sessions(caller))
    }

    async fn close_sessions_of(&self, caller: &Caller) {
        self.close_all_of(caller).await;
    }
}
