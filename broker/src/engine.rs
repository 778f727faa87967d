//! The engine: turns one tool call into signed hops, an SSH chain and one
//! audited command. Transport-free; every frontend shares it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use infrabroker_common::audit::{AuditKey, AuditLog};
use infrabroker_common::wire::{
    Decision, HostInfo, HostsResponse, Purpose, Role, SignRequest, SignResponse,
};
use russh::keys::{Certificate, PrivateKey, PublicKey};
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::abandon::AbandonGuard;
use crate::api::{
    Caller, ExecRequest, ExecResult, ServerInfo, SessionInfo, SessionOpenRequest, ToolError, Tools,
};
use crate::config::BrokerConfig;
use crate::exec;
use crate::session::SessionTable;
use crate::signer::{HostCache, SignerApi};
use crate::ssh::{self, Conn, HopTarget};

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
fn fresh_key() -> PrivateKey {
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
        let audit = tokio::task::spawn_blocking(move || AuditLog::open(path, key))
            .await
            .map_err(|e| infrabroker_common::audit::AuditError::Write(e.to_string()))??;
        let engine = Arc::new(Engine {
            cfg,
            hosts: HostCache::new(api),
            audit,
            per_caller: Mutex::new(HashMap::new()),
            sessions: SessionTable::default(),
        });
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

    fn sign_request(
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
        }
    }

    /// Keys and certificates for every hop of a one-shot call.
    async fn certify(
        &self,
        caller: &Caller,
        hops: &[PlannedHop],
        req: &ExecRequest,
    ) -> Result<Vec<Credential>, ToolError> {
        let target = hops
            .last()
            .ok_or_else(|| ToolError::Invalid("empty chain".into()))?;
        let target_req = self.sign_request(caller, target, true, req, String::new());
        Ok(self.certify_with(caller, hops, target_req).await?.0)
    }

    /// Keys and certificates for every hop, signed concurrently: bastions
    /// with role `bastion`, the target with `target_req` (its `pubkey` is
    /// filled in here). Also returns the signer's answers.
    pub(crate) async fn certify_with(
        &self,
        caller: &Caller,
        hops: &[PlannedHop],
        target_req: SignRequest,
    ) -> Result<(Vec<Credential>, Vec<SignResponse>), ToolError> {
        let last = hops.len().saturating_sub(1);
        let no_command = ExecRequest {
            host: String::new(),
            command: String::new(),
            sudo: false,
            sudo_user: None,
            timeout: None,
        };
        // The target first: it may wait for an approval, and bastion
        // certificates issued before a long wait could expire during it.
        let mut jobs = Vec::new();
        for (i, hop) in hops.iter().enumerate() {
            let key = fresh_key();
            let pubkey = key
                .public_key()
                .to_openssh()
                .map_err(|e| ToolError::Invalid(format!("key encoding: {e}")))?;
            let sreq = if i == last {
                SignRequest {
                    pubkey,
                    ..target_req.clone()
                }
            } else {
                self.sign_request(caller, hop, false, &no_command, pubkey)
            };
            jobs.push((key, sreq));
        }
        let api = self.hosts.api().clone();
        let issue = move |(key, sreq): (PrivateKey, SignRequest)| {
            let api = api.clone();
            async move {
                let resp = api.sign(&sreq).await?;
                let cert_line = resp.certificate.clone().ok_or_else(|| {
                    ToolError::SignerUnreachable("the signer answered without a certificate".into())
                })?;
                let cert = Certificate::from_openssh(&cert_line).map_err(|_| {
                    ToolError::SignerUnreachable("the signer sent an unreadable certificate".into())
                })?;
                let serial = resp.serial.unwrap_or_default();
                Ok::<_, ToolError>(((Arc::new(key), cert, serial), resp))
            }
        };
        let target_job = jobs
            .pop()
            .ok_or_else(|| ToolError::Invalid("empty chain".into()))?;
        let target = issue(target_job).await?;
        let mut creds = Vec::new();
        let mut answers = Vec::new();
        for r in futures_join_all(jobs.into_iter().map(&issue).collect()).await {
            let (c, a) = r?;
            creds.push(c);
            answers.push(a);
        }
        creds.push(target.0);
        answers.push(target.1);
        Ok((creds, answers))
    }

    /// Dials the chain hop by hop. Returns every connection so the
    /// intermediate ones stay open while the target is used.
    pub(crate) async fn dial_chain(
        &self,
        hops: &[PlannedHop],
        creds: Vec<Credential>,
    ) -> Result<Vec<Conn>, ToolError> {
        let mut conns: Vec<Conn> = Vec::new();
        for (hop, (key, cert, _)) in hops.iter().zip(creds) {
            let target = HopTarget {
                name: hop.name.clone(),
                addr: hop.info.addr.clone(),
                user: hop.info.user.clone(),
                host_key: hop.host_key.clone(),
            };
            let conn =
                ssh::connect(&target, conns.last(), key, cert, self.cfg.connect_timeout).await?;
            conns.push(conn);
        }
        Ok(conns)
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

    async fn execute_inner(
        &self,
        caller: &Caller,
        req: &ExecRequest,
        rec: &mut Map<String, Value>,
        guard: &mut AbandonGuard,
    ) -> Result<ExecResult, ToolError> {
        let started = Instant::now();
        let timeout = self.exec_timeout(req);
        // Fail closed: a new connection never uses a stale view.
        let view = self.hosts.refresh().await?;
        let hops = Self::plan(&view, caller, &req.host)?;
        if let Some(t) = hops.last() {
            rec.insert("user".into(), t.info.user.clone().into());
            rec.insert("addr".into(), t.info.addr.clone().into());
        }
        rec.insert(
            "chain".into(),
            hops.iter()
                .map(|h| h.name.clone())
                .collect::<Vec<_>>()
                .into(),
        );
        let creds = self.certify(caller, &hops, req).await?;
        let serials: Vec<u64> = creds.iter().map(|c| c.2).collect();
        let serial = serials.last().copied().unwrap_or_default();
        rec.insert("serial".into(), serial.into());
        if serials.len() > 1 {
            rec.insert("hop_serials".into(), serials.clone().into());
        }
        let conns = self.dial_chain(&hops, creds).await?;
        let target = conns
            .last()
            .ok_or_else(|| ToolError::Invalid("empty chain".into()))?;
        // Durable before anything runs: no command without its record.
        let mut start_rec = rec.clone();
        start_rec.insert("outcome".into(), "exec_started".into());
        self.write_record(start_rec).await?;
        guard.started(ONESHOT_STOP);
        let (out, stop) = exec::run(target, &req.command, self.cfg.max_output_bytes, timeout).await;
        if let Some(stop) = stop {
            rec.insert("stop".into(), stop.to_json());
        }
        for c in conns.iter().rev() {
            let _ = c
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
        }
        let out = out?;
        Ok(ExecResult {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            exit_code: out.exit_code,
            exit_signal: out.exit_signal,
            stdout_truncated: out.stdout_truncated,
            stderr_truncated: out.stderr_truncated,
            serial,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// Awaits every future, keeping order (a tiny join_all without the
/// `futures` crate).
async fn futures_join_all<F>(futs: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
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
        let _permit = self.permit(caller)?;
        let mut rec = Self::base_record(caller, &req);
        let started = Instant::now();
        let mut guard = AbandonGuard::new(self.audit.clone(), rec.clone());
        let result = self.execute_inner(caller, &req, &mut rec, &mut guard).await;
        guard.disarm();
        rec.insert(
            "duration_ms".into(),
            u64::try_from(started.elapsed().as_millis())
                .unwrap_or(u64::MAX)
                .into(),
        );
        match &result {
            Ok(r) => {
                rec.insert("outcome".into(), "executed".into());
                rec.insert(
                    "exit_code".into(),
                    r.exit_code.map_or(Value::Null, Value::from),
                );
                if let Some(s) = &r.exit_signal {
                    rec.insert("exit_signal".into(), s.clone().into());
                }
                if r.stdout_truncated || r.stderr_truncated {
                    rec.insert("truncated".into(), true.into());
                }
            }
            Err(e) => {
                let outcome = match e {
                    ToolError::Denied { .. } => "denied",
                    ToolError::TimedOut { .. } => "timed_out",
                    _ => "failed",
                };
                rec.insert("outcome".into(), outcome.into());
                rec.insert("reason_code".into(), e.reason_code().into());
                rec.insert("error".into(), e.to_string().into());
            }
        }
        // The command already ran; the record is still required so the
        // execution can be joined to its issuance. A failed write turns a
        // result into an error so it is never silently unaudited.
        self.write_record(rec).await?;
        result
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
