//! Sessions: one authenticated chain kept open for several commands.
//!
//! * `exec` — each command on its own channel of the same connection.
//! * `shell` — one `/bin/sh` (elevated whole with `sudo -n … -- /bin/sh`),
//!   state persists, stdout and stderr apart ([`shell`]).
//! * `pty` — the same on a pseudo-terminal, streams merged.
//!
//! A session certificate carries no force-command, so every command is
//! first sent to the signer as a dry run (`purpose=session`, the session's
//! mode and elevation): a refused command is never sent. Sessions end on
//! request, when idle too long, when the client goes away, and at the
//! latest when their certificate expires.
//!
//! # Layout
//! - this file: the session table, limits, preflight and the reaper.
//! - [`shell`]: the marker protocol of shell and pty sessions.
//! - [`exec`]: one command: preflight, busy count, run, stop, close.
//! - [`recording`]: asciicast v2 recordings.

mod exec;
mod line_discipline;
pub mod recording;
pub mod shell;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use infrabroker_common::wire::{
    HostInfo, Purpose, SessionMode as WireMode, SignRequest, SignResponse,
};
use serde_json::{Map, Value};
use tokio::sync::watch;

use self::recording::Recorder;
use self::shell::Shell;
use crate::api::{Caller, SessionInfo, SessionMode, SessionOpenRequest, ToolError};
use crate::engine::Engine;
use crate::ssh::Conn;

/// How often the reaper looks for idle and expired sessions.
pub const REAP_EVERY: Duration = Duration::from_millis(500);

enum Runner {
    Exec,
    Shell(Box<Shell>),
}

/// One open session.
pub struct Session {
    id: String,
    owner: (String, Option<String>),
    host: String,
    mode: SessionMode,
    sudo: bool,
    sudo_user: Option<String>,
    elevation_prefix: Option<String>,
    chain: Vec<(String, HostInfo)>,
    conns: Vec<Conn>,
    serial: u64,
    opened: Instant,
    expires_at: Instant,
    expires_unix: u64,
    last_used: Mutex<Instant>,
    busy: AtomicUsize,
    cancelled: AtomicBool,
    runner: tokio::sync::Mutex<Runner>,
    closed: watch::Sender<Option<String>>,
    recorder: Option<Arc<Recorder>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("host", &self.host)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Session {
    fn info(&self) -> SessionInfo {
        let idle = self
            .last_used
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        SessionInfo {
            session_id: self.id.clone(),
            host: self.host.clone(),
            mode: self.mode,
            age_seconds: self.opened.elapsed().as_secs(),
            idle_seconds: idle.as_secs(),
            expires_at: self.expires_unix,
            serial: self.serial,
        }
    }

    fn owned_by(&self, caller: &Caller) -> bool {
        self.owner.0 == caller.id && self.owner.1 == caller.end_user
    }

    fn closed_reason(&self) -> Option<String> {
        self.closed.borrow().clone()
    }
}

/// Every open session of one engine.
#[derive(Debug, Default)]
pub struct SessionTable {
    map: Mutex<HashMap<String, Arc<Session>>>,
}

impl SessionTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Open sessions now.
    pub(crate) fn count(&self) -> usize {
        self.lock().len()
    }

    fn all(&self) -> Vec<Arc<Session>> {
        self.lock().values().cloned().collect()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("s-{hex}")
}

fn wire_mode(m: SessionMode) -> WireMode {
    match m {
        SessionMode::Exec => WireMode::Exec,
        SessionMode::Shell => WireMode::Shell,
        SessionMode::Pty => WireMode::Pty,
    }
}

fn mode_str(m: SessionMode) -> &'static str {
    wire_mode(m).as_str()
}

impl Engine {
    fn session_of(&self, caller: &Caller, id: &str) -> Result<Arc<Session>, ToolError> {
        self.sessions()
            .lock()
            .get(id)
            .filter(|s| s.owned_by(caller))
            .cloned()
            .ok_or_else(|| ToolError::SessionUnknown(id.to_owned()))
    }

    fn session_request(
        &self,
        caller: &Caller,
        host: &str,
        mode: SessionMode,
        sudo: bool,
        sudo_user: Option<String>,
    ) -> SignRequest {
        SignRequest {
            host: host.to_owned(),
            role: infrabroker_common::wire::Role::Target,
            purpose: Purpose::Session,
            command: String::new(),
            pubkey: String::new(),
            sudo,
            sudo_user,
            pty: mode == SessionMode::Pty,
            session_mode: Some(wire_mode(mode)),
            ttl_seconds: None,
            timeout_seconds: None,
            end_user: caller.end_user.clone(),
            end_user_groups: caller.end_user_groups.clone(),
            dry_run: false,
            on_behalf_of: None,
            approved: false,
            file: None,
        }
    }

    /// Refuses an open past `max_sessions_total` or the caller's
    /// `max_sessions_per_caller`.
    fn check_limits(&self, caller: &Caller) -> Result<(), ToolError> {
        let table = self.sessions().lock();
        self.room(&table, caller)
    }

    fn room(
        &self,
        table: &HashMap<String, Arc<Session>>,
        caller: &Caller,
    ) -> Result<(), ToolError> {
        let total = self.config().max_sessions_total;
        if table.len() >= total {
            return Err(ToolError::SessionLimit(format!(
                "{total} sessions in total"
            )));
        }
        let per_caller = self.config().max_sessions_per_caller;
        if table.values().filter(|s| s.owned_by(caller)).count() >= per_caller {
            return Err(ToolError::SessionLimit(format!(
                "{per_caller} sessions per caller"
            )));
        }
        Ok(())
    }

    /// The recording of a shell or pty session, when recordings are on.
    fn recorder_for(
        &self,
        caller: &Caller,
        req: &SessionOpenRequest,
        id: &str,
    ) -> Result<Option<Arc<Recorder>>, ToolError> {
        let (SessionMode::Shell | SessionMode::Pty, Some(dir)) =
            (req.mode, &self.config().session_recording_dir)
        else {
            return Ok(None);
        };
        let title = format!(
            "{} on {} ({})",
            caller.end_user.as_deref().unwrap_or(&caller.id),
            req.host,
            mode_str(req.mode)
        );
        let size = (req.cols.unwrap_or(80), req.rows.unwrap_or(24));
        let required = self.config().recording_required;
        match Recorder::create(dir, id, size, &title, self.audit().clone()) {
            Ok(r) => Ok(Some(Arc::new(r.required(required)))),
            Err(e) if required => Err(ToolError::Broken(format!(
                "cannot create the session recording: {e}"
            ))),
            Err(e) => {
                tracing::error!(session = id, error = %e, "cannot create the session recording; going on without one (recording_required is false)");
                Ok(None)
            }
        }
    }

    /// What carries the session's commands: a channel per command (exec),
    /// or one remote `/bin/sh` behind the elevation prefix (shell, pty).
    async fn start_runner(
        &self,
        target: &Conn,
        req: &SessionOpenRequest,
        elevation_prefix: Option<&str>,
        recorder: Option<Arc<Recorder>>,
    ) -> Result<Runner, ToolError> {
        if req.mode == SessionMode::Exec {
            return Ok(Runner::Exec);
        }
        let shell_cmd = match elevation_prefix {
            Some(p) => format!("{p} -- /bin/sh"),
            None => "/bin/sh".to_owned(),
        };
        let pty = (req.mode == SessionMode::Pty)
            .then(|| (req.cols.unwrap_or(80), req.rows.unwrap_or(24)));
        let timeout = self.config().connect_timeout;
        let shell = Shell::start(target, &shell_cmd, pty, recorder, timeout).await?;
        Ok(Runner::Shell(Box::new(shell)))
    }

    /// Opens a session (see the module docs).
    pub(crate) async fn open_session(
        &self,
        caller: &Caller,
        req: SessionOpenRequest,
    ) -> Result<SessionInfo, ToolError> {
        self.check_limits(caller)?;
        let view = self.hosts_cache().refresh().await?;
        let hops = Engine::plan(&view, caller, &req.host)?;
        let target_req =
            self.session_request(caller, &req.host, req.mode, req.sudo, req.sudo_user.clone());
        let pre = hops
            .first()
            .map(|h| crate::chain::PreDial::start(h, self.config().connect_timeout));
        let certified = self.certify_with(caller, &hops, target_req).await?;
        let serial = certified.creds.last().map(|c| c.2).unwrap_or_default();
        let responses = &certified.answers;
        let expires_unix = self.session_end(responses);
        let elevation_prefix = responses.last().and_then(|r| r.elevation_prefix.clone());
        let (conns, _) = self.dial_chain(&hops, certified, pre).await?;
        let id = new_id();
        let recorder = self.recorder_for(caller, &req, &id)?;
        let target = conns
            .last()
            .ok_or_else(|| ToolError::Invalid("empty chain".into()))?;
        let runner = self
            .start_runner(target, &req, elevation_prefix.as_deref(), recorder.clone())
            .await?;
        let remaining = Duration::from_secs(expires_unix.saturating_sub(unix_now()));
        let session = Arc::new(Session {
            id: id.clone(),
            owner: (caller.id.clone(), caller.end_user.clone()),
            host: req.host.clone(),
            mode: req.mode,
            sudo: req.sudo,
            sudo_user: req.sudo_user.clone(),
            elevation_prefix,
            chain: hops
                .iter()
                .map(|h| (h.name.clone(), h.info.clone()))
                .collect(),
            conns,
            serial,
            opened: Instant::now(),
            expires_at: Instant::now() + remaining,
            expires_unix,
            last_used: Mutex::new(Instant::now()),
            busy: AtomicUsize::new(0),
            cancelled: AtomicBool::new(false),
            runner: tokio::sync::Mutex::new(runner),
            closed: watch::channel(None).0,
            recorder,
        });
        let info = session.info();
        self.admit(caller, session).await?;
        Ok(info)
    }

    /// When a session opened now ends at the latest: its first certificate
    /// to expire, or `session_max`.
    fn session_end(&self, responses: &[SignResponse]) -> u64 {
        let now = unix_now();
        let cert_end = responses
            .iter()
            .filter_map(|r| r.valid_before)
            .min()
            .unwrap_or(now);
        cert_end.min(now + self.config().session_max.as_secs())
    }

    /// Puts an opened session in the table (unless another open raced it
    /// past the limit) and audits it; a session whose record cannot be
    /// written is closed again.
    async fn admit(&self, caller: &Caller, session: Arc<Session>) -> Result<(), ToolError> {
        let admitted = {
            let mut table = self.sessions().lock();
            let room = self.room(&table, caller);
            if room.is_ok() {
                table.insert(session.id.clone(), session.clone());
            }
            room
        };
        if let Err(e) = admitted {
            self.shutdown_session(&session, "session limit").await;
            return Err(e);
        }
        let mut rec = self.session_record(caller, &session, "session_open");
        rec.insert("expires_at".into(), session.expires_unix.into());
        if let Some(r) = &session.recorder {
            rec.insert("recording".into(), r.path().display().to_string().into());
        }
        if let Err(e) = self.write_record(rec).await {
            self.close_session(&session, "its audit record could not be written")
                .await;
            return Err(e);
        }
        Ok(())
    }

    fn session_record(&self, caller: &Caller, s: &Session, outcome: &str) -> Map<String, Value> {
        let mut r = Map::new();
        r.insert("outcome".into(), outcome.into());
        r.insert("caller".into(), caller.id.clone().into());
        if let Some(u) = &caller.end_user {
            r.insert("end_user".into(), u.clone().into());
        }
        r.insert("session_id".into(), s.id.clone().into());
        r.insert("host".into(), s.host.clone().into());
        r.insert("mode".into(), mode_str(s.mode).into());
        r.insert("serial".into(), s.serial.into());
        if s.sudo {
            r.insert(
                "sudo_user".into(),
                s.sudo_user.clone().unwrap_or_else(|| "root".into()).into(),
            );
        }
        r
    }

    /// Marks `s` closed, removes it, disconnects it and audits why.
    pub(crate) async fn close_session(&self, s: &Session, reason: &str) {
        self.close_session_for(s, reason, None).await;
    }

    /// Closes every open session a freeze in `r` covers: the broker's own
    /// CN, the session's end user, host or serial. Each close is audited
    /// with the freeze id.
    pub(crate) async fn close_frozen(&self, r: &infrabroker_common::wire::RevocationsResponse) {
        for s in self.sessions().all() {
            let hit = crate::oneshots::covering(r, s.owner.1.as_deref(), &s.host, &[s.serial]);
            if let Some(f) = hit {
                let reason = format!(
                    "{} {} was frozen (freeze {}): {}",
                    f.kind, f.value, f.id, f.reason
                );
                self.close_session_for(&s, &reason, Some(&f.id)).await;
            }
        }
    }

    async fn close_session_for(&self, s: &Session, reason: &str, freeze_id: Option<&str>) {
        if s.closed.send_replace(Some(reason.to_owned())).is_some() {
            return;
        }
        self.sessions().lock().remove(&s.id);
        self.shutdown_session(s, reason).await;
        let owner = Caller {
            id: s.owner.0.clone(),
            end_user: s.owner.1.clone(),
            end_user_groups: None,
        };
        let mut rec = self.session_record(&owner, s, "session_close");
        rec.insert("reason".into(), reason.into());
        if let Some(r) = &s.recorder {
            close_recording(r, &mut rec).await;
        }
        if let Some(id) = freeze_id {
            rec.insert("freeze_id".into(), id.into());
        }
        if self.write_record(rec).await.is_err() {
            tracing::error!(session = %s.id, "audit record of a session close could not be written");
        }
    }

    async fn shutdown_session(&self, s: &Session, reason: &str) {
        tracing::info!(session = %s.id, reason, "closing session");
        if let Ok(runner) = s.runner.try_lock()
            && let Runner::Shell(sh) = &*runner
        {
            sh.close().await;
        }
        for c in s.conns.iter().rev() {
            let _ = c
                .disconnect(russh::Disconnect::ByApplication, "session closed", "en")
                .await;
        }
    }

    /// Closes the caller's session `id`.
    pub(crate) async fn close_by_caller(&self, caller: &Caller, id: &str) -> Result<(), ToolError> {
        let s = self.session_of(caller, id)?;
        self.close_session(&s, "closed by its owner").await;
        Ok(())
    }

    /// The caller's open sessions.
    pub(crate) fn list_sessions(&self, caller: &Caller) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self
            .sessions()
            .all()
            .iter()
            .filter(|s| s.owned_by(caller))
            .map(|s| s.info())
            .collect();
        v.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        v
    }

    /// Closes every session of `caller`.
    pub(crate) async fn close_all_of(&self, caller: &Caller) {
        for s in self.sessions().all().iter().filter(|s| s.owned_by(caller)) {
            self.close_session(s, "the client went away").await;
        }
    }

    /// One pass of the reaper: expired sessions are closed even when busy;
    /// idle ones when not busy.
    pub(crate) async fn reap(&self) {
        let idle_limit = self.config().session_idle;
        let now = Instant::now();
        for s in self.sessions().all() {
            if s.cancelled.load(Ordering::SeqCst) {
                self.close_session(
                    &s,
                    "a command was cancelled and the shell's state is unknown",
                )
                .await;
            } else if now >= s.expires_at {
                self.close_session(&s, "its certificate expired (the session's hard end)")
                    .await;
            } else if s.busy.load(Ordering::SeqCst) == 0
                && s.last_used
                    .lock()
                    .map(|t| t.elapsed() >= idle_limit)
                    .unwrap_or(false)
            {
                let reason = format!("idle for {} s", idle_limit.as_secs());
                self.close_session(&s, &reason).await;
            }
        }
    }
}

/// Finishes a session's recording and puts what the chain needs to prove
/// it into the close record: size, chunk count, hash over the chunks (and
/// why it stopped, if it did).
async fn close_recording(r: &Recorder, rec: &mut Map<String, Value>) {
    if let Some(sum) = r.finish().await {
        rec.insert("recording_size".into(), sum.size.into());
        rec.insert("recording_chunks".into(), sum.chunks.into());
        rec.insert("recording_sha256".into(), sum.chunks_sha256.into());
    }
    if let Some(why) = r.failure() {
        rec.insert("recording_error".into(), why.into());
    }
}
