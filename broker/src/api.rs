//! The tool surface every frontend (MCP stdio, MCP HTTP, REST) calls, kept
//! free of any transport. Frontends turn their own input into these types
//! and the results back into their own output.

use std::time::Duration;

use infrabroker_common::display::escape;
use infrabroker_common::wire::Decision;
use serde::{Deserialize, Serialize};

/// Who is asking: the frontend's identity plus, for OAuth frontends, the
/// human behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `mcp-stdio`, an mTLS CN, or an OIDC subject.
    pub id: String,
    /// The human (OIDC subject) the call is made for.
    pub end_user: Option<String>,
    /// The human's groups; `None` = no per-user RBAC.
    pub end_user_groups: Option<Vec<String>>,
}

impl Caller {
    /// A caller without an end user.
    pub fn local(id: impl Into<String>) -> Self {
        Caller {
            id: id.into(),
            end_user: None,
            end_user_groups: None,
        }
    }
}

/// One host as shown to an agent: enough to choose, nothing of policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServerInfo {
    /// Logical name to pass as `host`.
    pub name: String,
    /// Remote account commands run as.
    pub user: String,
    /// Elevation with `sudo` may be requested.
    pub allow_sudo: bool,
    /// A PTY may be requested.
    pub allow_pty: bool,
    /// The bastion in front of it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump: Option<String>,
}

/// A one-shot command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Logical host name.
    pub host: String,
    /// The exact command.
    pub command: String,
    /// Run through `sudo -n`.
    pub sudo: bool,
    /// Target user of `sudo` (root when absent).
    pub sudo_user: Option<String>,
    /// Per-call timeout; the configured default when absent, never above
    /// the configured maximum.
    pub timeout: Option<Duration>,
}

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExecResult {
    /// Standard output (UTF-8, invalid bytes replaced), at most the cap.
    pub stdout: String,
    /// Standard error, at most the cap.
    pub stderr: String,
    /// Exit status, when the command exited.
    pub exit_code: Option<u32>,
    /// Signal name (e.g. `KILL`), when the command was killed by one.
    pub exit_signal: Option<String>,
    /// Output beyond the cap was dropped.
    pub stdout_truncated: bool,
    /// Error output beyond the cap was dropped.
    pub stderr_truncated: bool,
    /// Serial of the target's certificate: joins this call to the signer's
    /// issuance record and sshd's log line.
    pub serial: u64,
    /// Wall time of the whole call (signing, dialling, running).
    pub duration_ms: u64,
    /// Where that time went, stage by stage.
    pub timings: Timings,
}

/// Where a call's time went, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Timings {
    /// One-shot: fetching the signer's host view. Session command: the
    /// host-view check and the signer's preflight dry run.
    pub plan_ms: u64,
    /// One-shot: each hop, outermost bastion first, target last (empty for
    /// a session command, whose hops were dialled when it opened).
    pub hops: Vec<HopTiming>,
    /// Running the command on the target until it ended.
    pub exec_ms: u64,
}

/// One hop's share of a one-shot call, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HopTiming {
    /// The hop's name.
    pub host: String,
    /// The signer's answer for the hop's certificate (an approval wait
    /// included).
    pub sign_ms: u64,
    /// TCP (or the bastion's `direct-tcpip`) and the SSH key exchange. The
    /// first hop's runs while the target's certificate is being signed.
    pub connect_ms: u64,
    /// Certificate authentication.
    pub auth_ms: u64,
}

/// Milliseconds since `t`, saturating.
pub(crate) fn ms_since(t: std::time::Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Why a call failed. Each has a stable code and one clear sentence; none
/// carries key, certificate or policy internals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The signer refused (policy, RBAC, bad input); `code` is its reason code.
    /// Both are shown escaped: the message may quote the agent's text.
    #[error("denied by the signer ({}): {}", escape(code), escape(message))]
    Denied {
        /// The signer's reason code, e.g. `command_denied`.
        code: String,
        /// The signer's sentence.
        message: String,
    },
    /// The host is not in the caller's view.
    #[error("unknown host \"{}\": call ssh_list_servers to see the hosts you can reach", escape(.0))]
    UnknownHost(String),
    /// The signer could not be reached or answered nonsense.
    #[error("signer unreachable: {0}")]
    SignerUnreachable(String),
    /// The host presented a key other than the pinned one.
    #[error("host key of {host} does not match the pinned key: refusing to connect")]
    HostKeyMismatch {
        /// Logical name of the hop.
        host: String,
    },
    /// TCP or SSH could not be established.
    #[error("cannot connect to {host}: {reason}")]
    Connect {
        /// Logical name of the hop.
        host: String,
        /// What failed.
        reason: String,
    },
    /// The host refused the certificate.
    #[error("{host} refused the certificate (see its sshd log for the reason)")]
    AuthRefused {
        /// Logical name of the hop.
        host: String,
    },
    /// The command did not finish in time; its channel was closed.
    #[error("timed out after {seconds} s; the command's channel was closed")]
    TimedOut {
        /// The limit that was hit.
        seconds: u64,
    },
    /// The SSH session broke while the command ran.
    #[error("the connection broke while the command ran: {0}")]
    Broken(String),
    /// Too many calls of this caller in flight.
    #[error("too many concurrent operations for this caller (limit {0}); retry when one finishes")]
    Busy(usize),
    /// Bad arguments.
    #[error("invalid arguments: {0}")]
    Invalid(String),
    /// The execution audit record could not be written.
    #[error("the audit log cannot be written; nothing was run")]
    AuditUnavailable,
    /// No open session with this id belongs to the caller.
    #[error(
        "no open session {0:?} of yours: open one with ssh_session_open (ssh_session_list shows yours)"
    )]
    SessionUnknown(String),
    /// Too many open sessions.
    #[error("session limit reached ({0}); close one with ssh_session_close first")]
    SessionLimit(String),
    /// The session ended; the reason says why.
    #[error("the session is closed: {0}; open a new one")]
    SessionClosed(String),
    /// The host's address, account, host key or jump changed since the
    /// session was opened.
    #[error(
        "the host's connection details changed since this session was opened; open a new session"
    )]
    SessionChainChanged,
}

impl ToolError {
    /// Stable reason code.
    pub fn reason_code(&self) -> &str {
        match self {
            ToolError::Denied { code, .. } => code,
            ToolError::UnknownHost(_) => "host_unknown",
            ToolError::SignerUnreachable(_) => "signer_unreachable",
            ToolError::HostKeyMismatch { .. } => "host_key_mismatch",
            ToolError::Connect { .. } => "connect_failed",
            ToolError::AuthRefused { .. } => "auth_refused",
            ToolError::TimedOut { .. } => "timed_out",
            ToolError::Broken(_) => "connection_broken",
            ToolError::Busy(_) => "busy",
            ToolError::Invalid(_) => "invalid_arguments",
            ToolError::AuditUnavailable => "audit_unavailable",
            ToolError::SessionUnknown(_) => "session_unknown",
            ToolError::SessionLimit(_) => "session_limit",
            ToolError::SessionClosed(_) => "session_closed",
            ToolError::SessionChainChanged => "session_chain_changed",
        }
    }
}

/// How a session runs commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionMode {
    /// One connection, each command on its own channel, no shared state.
    Exec,
    /// One `/bin/sh` kept open: `cd`, variables and functions persist.
    Shell,
    /// Like `shell` on a pseudo-terminal; stdout and stderr are merged.
    Pty,
}

/// `ssh_session_open`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOpenRequest {
    /// Logical host name.
    pub host: String,
    /// Mode of the session.
    pub mode: SessionMode,
    /// Elevate every command (exec) or the whole shell (shell/pty).
    pub sudo: bool,
    /// Target user of `sudo`.
    pub sudo_user: Option<String>,
    /// PTY width.
    pub cols: Option<u32>,
    /// PTY height.
    pub rows: Option<u32>,
}

/// An open session as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionInfo {
    /// Pass this to ssh_session_exec / ssh_session_close.
    pub session_id: String,
    /// Logical host name.
    pub host: String,
    /// Mode of the session.
    pub mode: SessionMode,
    /// Seconds since it was opened.
    pub age_seconds: u64,
    /// Seconds since its last command.
    pub idle_seconds: u64,
    /// Unix time at which it ends at the latest (its certificate's expiry).
    pub expires_at: u64,
    /// Serial of the session's target certificate.
    pub serial: u64,
}

/// `ssh_put_file`: one file written on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutFileRequest {
    /// Logical host name.
    pub host: String,
    /// Absolute, canonical path.
    pub path: String,
    /// The body, any bytes.
    pub content: Vec<u8>,
    /// Permission bits, octal (`"0644"` when `None`).
    pub mode: Option<String>,
    /// Write through `sudo`.
    pub sudo: bool,
    /// Account sudo writes as (`None`: root).
    pub sudo_user: Option<String>,
    /// Replace an existing file.
    pub overwrite: bool,
}

/// `ssh_get_file`: one file read from a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetFileRequest {
    /// Logical host name.
    pub host: String,
    /// Absolute, canonical path.
    pub path: String,
    /// Refuse files larger than this (default: the host's `max_file_bytes`).
    pub max_bytes: Option<u64>,
    /// Read through `sudo`.
    pub sudo: bool,
    /// Account sudo reads as (`None`: root).
    pub sudo_user: Option<String>,
}

/// A file moved: its size and SHA-256 (the agent can check them), and the
/// body for a get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileResult {
    /// The path on the host.
    pub path: String,
    /// Bytes moved.
    pub size: u64,
    /// SHA-256 of the body, lowercase hex.
    pub sha256: String,
    /// Get only: the body, standard base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_base64: Option<String>,
    /// Serial of the certificate that did it.
    pub serial: u64,
    /// Wall time of the whole call, ms.
    pub duration_ms: u64,
}

/// What frontends need from the engine.
pub trait Tools: Send + Sync + 'static {
    /// Hosts the caller may use.
    fn list_servers(
        &self,
        caller: &Caller,
    ) -> impl std::future::Future<Output = Result<Vec<ServerInfo>, ToolError>> + Send;
    /// Runs one command.
    fn execute(
        &self,
        caller: &Caller,
        req: ExecRequest,
    ) -> impl std::future::Future<Output = Result<ExecResult, ToolError>> + Send;
    /// The signer's decision for the command, without connecting.
    fn dry_run(
        &self,
        caller: &Caller,
        req: ExecRequest,
    ) -> impl std::future::Future<Output = Result<Decision, ToolError>> + Send;

    /// Opens a session.
    fn session_open(
        &self,
        _caller: &Caller,
        _req: SessionOpenRequest,
    ) -> impl std::future::Future<Output = Result<SessionInfo, ToolError>> + Send {
        async { Err(ToolError::Invalid("sessions are not available here".into())) }
    }

    /// Runs one command in an open session of the caller.
    fn session_exec(
        &self,
        _caller: &Caller,
        _session_id: &str,
        _command: String,
        _timeout: Option<Duration>,
    ) -> impl std::future::Future<Output = Result<ExecResult, ToolError>> + Send {
        async { Err(ToolError::Invalid("sessions are not available here".into())) }
    }

    /// Closes one of the caller's sessions.
    fn session_close(
        &self,
        _caller: &Caller,
        _session_id: &str,
    ) -> impl std::future::Future<Output = Result<(), ToolError>> + Send {
        async { Err(ToolError::Invalid("sessions are not available here".into())) }
    }

    /// The caller's open sessions.
    fn session_list(
        &self,
        _caller: &Caller,
    ) -> impl std::future::Future<Output = Result<Vec<SessionInfo>, ToolError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// Writes one file.
    fn put_file(
        &self,
        _caller: &Caller,
        _req: PutFileRequest,
    ) -> impl std::future::Future<Output = Result<FileResult, ToolError>> + Send {
        async {
            Err(ToolError::Invalid(
                "file transfer is not available here".into(),
            ))
        }
    }

    /// Reads one file.
    fn get_file(
        &self,
        _caller: &Caller,
        _req: GetFileRequest,
    ) -> impl std::future::Future<Output = Result<FileResult, ToolError>> + Send {
        async {
            Err(ToolError::Invalid(
                "file transfer is not available here".into(),
            ))
        }
    }

    /// Closes every session of `caller` (its client went away).
    fn close_sessions_of(&self, _caller: &Caller) -> impl std::future::Future<Output = ()> + Send {
        async {}
    }
}
