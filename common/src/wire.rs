//! The signer's HTTP API on the wire: what brokers, the control plane and
//! `broker-ctl` send and receive. Field names follow SPEC §3; `public_key`
//! is accepted as an alias of `pubkey` for callers written against the Go
//! infrabroker.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Which hop of a chain a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The host the command runs on.
    Target,
    /// A jump host the chain passes through (`direct-tcpip` only).
    Bastion,
}

/// What the certificate will be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// One command, baked into the certificate's force-command.
    Oneshot,
    /// An interactive session; commands are checked by preflight dry runs.
    Session,
    /// Writes one file (`file`), the body on the channel's stdin.
    FilePut,
    /// Reads one file (`file`), at most `max_bytes`.
    FileGet,
}

/// How a session runs its commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionMode {
    /// Each command on its own channel.
    Exec,
    /// One long-lived `/bin/sh` without a terminal.
    Shell,
    /// One long-lived shell on a pseudo-terminal.
    Pty,
}

impl Role {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Target => "target",
            Role::Bastion => "bastion",
        }
    }
}

impl Purpose {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Oneshot => "oneshot",
            Purpose::Session => "session",
            Purpose::FilePut => "file_put",
            Purpose::FileGet => "file_get",
        }
    }
}

impl SessionMode {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionMode::Exec => "exec",
            SessionMode::Shell => "shell",
            SessionMode::Pty => "pty",
        }
    }
}

/// The exit statuses by which a file transfer's force-command (the
/// signer writes it) tells the broker why the host refused.
pub mod file_exit {
    /// The target exists and `overwrite` was not set.
    pub const EXISTS: u32 = 80;
    /// A symlink, not a regular file, or a directory behind a symlink.
    pub const NOT_REGULAR: u32 = 81;
    /// Larger than `max_bytes`.
    pub const TOO_LARGE: u32 = 82;
    /// The body did not match the announced size or SHA-256.
    pub const MISMATCH: u32 = 83;
}

/// `POST /v1/sign` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// Logical host name from the signer's `hosts`.
    pub host: String,
    /// Which hop this certificate is for.
    pub role: Role,
    /// One-shot command or session.
    pub purpose: Purpose,
    /// The exact command (one-shot target) or the command to judge (dry run).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command: String,
    /// The hop's fresh public key, an OpenSSH `ssh-ed25519` line.
    #[serde(alias = "public_key", default)]
    pub pubkey: String,
    /// Elevate with `sudo -n`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sudo: bool,
    /// Target user of the elevation; absent means root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo_user: Option<String>,
    /// Ask for `permit-pty`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pty: bool,
    /// Session mode, for `purpose = session`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_mode: Option<SessionMode>,
    /// Requested lifetime; clamped to the host and global maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// One-shot targets only: how long the command may run. The signer
    /// bounds the force-command with it (`timeout -k`), because sshd does
    /// not pass signals to a forced command: a command the broker reports
    /// as timed out is stopped on the host too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// The human (OIDC subject) the broker acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<String>,
    /// The end user's groups; `None` means no per-user RBAC, `Some([])`
    /// means the user may reach nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user_groups: Option<Vec<String>>,
    /// Return the decision without signing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dry_run: bool,
    /// A forwarder (control plane) acting for this broker CN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// Set by a trusted forwarder once a human or reviewer approved.
    #[serde(default, skip_serializing_if = "is_false")]
    pub approved: bool,
    /// Purposes `file_put` / `file_get`: which file, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileTransfer>,
}

impl FileTransfer {
    /// One line for people deciding about it: `put PATH (N bytes, sha256
    /// …, mode M, overwrite)` or `get PATH`.
    pub fn describe(&self, purpose: Purpose) -> String {
        if purpose != Purpose::FilePut {
            return format!("get {}", self.path);
        }
        format!(
            "put {} ({} bytes, sha256 {}, mode {}{})",
            self.path,
            self.size,
            self.sha256.as_deref().unwrap_or("?"),
            self.mode.as_deref().unwrap_or("kept, or 0644"),
            if self.overwrite { ", overwrite" } else { "" }
        )
    }
}

/// The file of a `file_put` or `file_get` certificate; the signer bakes
/// every field into the certificate's force-command.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTransfer {
    /// Absolute, canonical path on the host.
    pub path: String,
    /// Put: permission bits, octal (`"0644"`, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Put: the body's exact size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Put: the body's SHA-256, lowercase hex; the host checks it before
    /// the file replaces anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Put: replace an existing file.
    #[serde(default, skip_serializing_if = "is_false")]
    pub overwrite: bool,
    /// Get: the largest file returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `POST /v1/sign` success body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignResponse {
    /// The OpenSSH certificate line; absent for a dry run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Certificate serial; absent for a dry run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    /// Unix time the certificate stops being valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_before: Option<u64>,
    /// Sessions only: the prefix (`sudo -n [-u USER]`) the broker must put
    /// before each command when elevated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elevation_prefix: Option<String>,
    /// Sealed hosts, allowed session preflights only: the signed envelope
    /// the broker sends as the command's SSH exec request (the host's shim
    /// runs nothing else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<String>,
    /// The policy decision behind the answer.
    pub decision: Decision,
}

/// The one decision type of the signer, used by `/v1/sign`, dry runs and
/// `broker-ctl policy explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Whether a certificate may be issued for this command now.
    pub allowed: bool,
    /// Stable machine-readable reason.
    pub reason_code: ReasonCode,
    /// The rule that decided, with its source, e.g. `host: deny:^rm `.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_rule: Option<String>,
    /// The command needs an approval before it can be signed.
    #[serde(default)]
    pub require_approval: bool,
    /// Audit-mode findings: what enforcement would have done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// One sentence for humans.
    pub message: String,
    /// Audit mode: an enforced policy would have refused this command.
    #[serde(default, skip_serializing_if = "is_false")]
    pub would_deny: bool,
    /// Audit mode: an enforced policy would have required an approval.
    #[serde(default, skip_serializing_if = "is_false")]
    pub would_require_approval: bool,
}

impl Decision {
    /// An unconditional allow.
    pub fn allowed(message: impl Into<String>) -> Self {
        Decision {
            allowed: true,
            reason_code: ReasonCode::Allowed,
            matched_rule: None,
            require_approval: false,
            warnings: Vec::new(),
            message: message.into(),
            would_deny: false,
            would_require_approval: false,
        }
    }
}

/// Stable reason codes of the signer. The wire spelling is snake_case and
/// never changes once released; scripts and the broker match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Allowed.
    Allowed,
    /// Allowed by policy but waiting for an approval.
    NeedsApproval,
    /// A `deny` rule matched.
    CommandDenied,
    /// An allowlist applies and no rule matched.
    AllowlistNoMatch,
    /// The shell parser refused the command.
    ParseRejected,
    /// An allowed program was given an option or subcommand that runs
    /// another command (the firewall's exec-option table).
    ExecOption,
    /// Empty command or one with a newline, carriage return or NUL.
    CommandInvalid,
    /// The body is not valid JSON or has unknown or mistyped fields.
    MalformedRequest,
    /// The body is larger than the limit.
    BodyTooLarge,
    /// `pubkey` is not an OpenSSH Ed25519 public key.
    PubkeyInvalid,
    /// The client certificate's CN is not in `callers`.
    CallerUnknown,
    /// The client certificate's CN has characters outside the allowed set.
    CallerInvalid,
    /// `on_behalf_of` or `approved` from a caller not in `trusted_forwarders`.
    ForwarderUntrusted,
    /// The host is not in the signer's configuration.
    HostUnknown,
    /// The caller's groups or `allowed_callers` do not reach this host.
    HostForbidden,
    /// The end user's groups do not reach this host.
    EndUserForbidden,
    /// `end_user` has characters outside the allowed set.
    EndUserInvalid,
    /// Role `bastion` on a host that may not be a bastion.
    BastionNotAllowed,
    /// Elevation asked on a host without `allow_sudo`.
    SudoNotAllowed,
    /// `sudo_user` fails the name pattern.
    SudoUserInvalid,
    /// `sudo_user` is not in the host's `allowed_sudo_users`.
    SudoUserNotAllowed,
    /// A PTY asked on a host without `allow_pty`.
    PtyNotAllowed,
    /// Session mode not allowed here (shell/pty on a command-policy host).
    SessionModeNotAllowed,
    /// Fields that do not fit together (a command on a bastion cert…).
    InvalidRequest,
    /// The caller may not reload the configuration.
    ReloadForbidden,
    /// The new configuration is invalid; the running one was kept.
    ReloadFailed,
    /// The audit record could not be written; nothing was issued.
    AuditUnavailable,
    /// The state store (SQLite or PostgreSQL) could not be used; nothing
    /// was issued.
    StoreUnavailable,
    /// The caller, end user, host or key id is frozen (`POST /v1/freeze`).
    Frozen,
    /// The caller may not add or lift freezes (not in `reload_callers`).
    FreezeForbidden,
    /// An unexpected internal failure; nothing was issued.
    Internal,
    /// No such route.
    NotFound,
    /// The certificate could not be built or signed.
    SigningFailed,
    /// The host's CA key (a PKCS#11 token or an ssh-agent) cannot sign
    /// right now; nothing was issued and no other key was used.
    CaUnavailable,
    /// The caller (or end user behind a forwarder) exceeded
    /// `sign_rate_limit_per_min`; retry after the `Retry-After` seconds.
    RateLimited,
    /// A file transfer on a host without `allow_file_transfer`.
    FileTransferNotAllowed,
    /// A file path that is not absolute and canonical, or holds `..`, NUL,
    /// a newline or another control character.
    PathInvalid,
    /// A file path outside the host's `file_transfer_paths`.
    PathForbidden,
    /// A file larger than the host's `max_file_bytes` (or `max_bytes`).
    FileTooLarge,
}

impl ReasonCode {
    /// The wire spelling, e.g. `command_denied`.
    pub fn as_str(self) -> &'static str {
        // Kept in step with the serde names by the test below.
        match self {
            ReasonCode::Allowed => "allowed",
            ReasonCode::NeedsApproval => "needs_approval",
            ReasonCode::CommandDenied => "command_denied",
            ReasonCode::AllowlistNoMatch => "allowlist_no_match",
            ReasonCode::ParseRejected => "parse_rejected",
            ReasonCode::ExecOption => "exec_option",
            ReasonCode::CommandInvalid => "command_invalid",
            ReasonCode::MalformedRequest => "malformed_request",
            ReasonCode::BodyTooLarge => "body_too_large",
            ReasonCode::PubkeyInvalid => "pubkey_invalid",
            ReasonCode::CallerUnknown => "caller_unknown",
            ReasonCode::CallerInvalid => "caller_invalid",
            ReasonCode::ForwarderUntrusted => "forwarder_untrusted",
            ReasonCode::HostUnknown => "host_unknown",
            ReasonCode::HostForbidden => "host_forbidden",
            ReasonCode::EndUserForbidden => "end_user_forbidden",
            ReasonCode::EndUserInvalid => "end_user_invalid",
            ReasonCode::BastionNotAllowed => "bastion_not_allowed",
            ReasonCode::SudoNotAllowed => "sudo_not_allowed",
            ReasonCode::SudoUserInvalid => "sudo_user_invalid",
            ReasonCode::SudoUserNotAllowed => "sudo_user_not_allowed",
            ReasonCode::PtyNotAllowed => "pty_not_allowed",
            ReasonCode::SessionModeNotAllowed => "session_mode_not_allowed",
            ReasonCode::InvalidRequest => "invalid_request",
            ReasonCode::ReloadForbidden => "reload_forbidden",
            ReasonCode::ReloadFailed => "reload_failed",
            ReasonCode::AuditUnavailable => "audit_unavailable",
            ReasonCode::StoreUnavailable => "store_unavailable",
            ReasonCode::Frozen => "frozen",
            ReasonCode::FreezeForbidden => "freeze_forbidden",
            ReasonCode::Internal => "internal",
            ReasonCode::NotFound => "not_found",
            ReasonCode::SigningFailed => "signing_failed",
            ReasonCode::CaUnavailable => "ca_unavailable",
            ReasonCode::RateLimited => "rate_limited",
            ReasonCode::FileTransferNotAllowed => "file_transfer_not_allowed",
            ReasonCode::PathInvalid => "path_invalid",
            ReasonCode::PathForbidden => "path_forbidden",
            ReasonCode::FileTooLarge => "file_too_large",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer: a stable code and one sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable reason.
    pub reason_code: ReasonCode,
    /// One sentence for humans; never contains policy internals or secrets.
    pub message: String,
    /// Details for config reload failures (one line per problem).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// `POST /v1/freeze`: exactly one subject, a reason, an optional lifetime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeRequest {
    /// A caller's mTLS CN (a broker, or the broker behind a control plane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// An end user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<String>,
    /// A logical host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// One certificate serial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    /// A certificate key id, exactly as issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Why (required, one line).
    pub reason: String,
    /// Lifts itself after this long; none = until lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// One freeze as listed by `GET /v1/freezes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    /// Its id (for `DELETE /v1/freeze/{id}`).
    pub id: String,
    /// `caller`, `end_user`, `host`, `serial` or `key_id`.
    pub kind: String,
    /// The frozen value.
    pub value: String,
    /// Why.
    pub reason: String,
    /// The operator CN that froze it.
    pub by: String,
    /// Unix milliseconds.
    pub created_ms: u64,
    /// When it lifts itself, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

/// `GET /v1/revocations`: the freezes in force, for brokers to close what
/// they hold of a frozen subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationsResponse {
    /// The asking caller's CN, as the signer sees it (a `caller` freeze of
    /// this value applies to everything the asker holds).
    pub caller: String,
    /// Every freeze in force.
    pub freezes: Vec<Freeze>,
}

/// `GET /v1/certificates` query: at most one subject (none lists every
/// live certificate), and how many at most.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificatesQuery {
    /// A caller CN (matched as caller or forwarder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// An end user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<String>,
    /// A logical host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// One serial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    /// A key id, exactly as issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Most entries answered (default and ceiling 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One certificate that has not expired, from the signer's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCertificate {
    /// Its serial.
    pub serial: u64,
    /// Its key id.
    pub key_id: String,
    /// The broker CN it was issued to.
    pub caller: String,
    /// The forwarder that relayed the request, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarder: Option<String>,
    /// The end user, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<String>,
    /// The logical host.
    pub host: String,
    /// Unix seconds when it stops being valid.
    pub valid_before: u64,
    /// The freeze that revoked it (it is in the KRL), if one has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

/// `GET /v1/certificates`: live certificates, by serial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificatesResponse {
    /// Matching certificates still valid now.
    pub certificates: Vec<LiveCertificate>,
    /// Whether `limit` cut the list.
    pub truncated: bool,
}

/// One entry of `GET /v1/hosts`: how to reach a host, nothing of its policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInfo {
    /// `host:port` to dial (from the previous hop when `jump` is set).
    pub addr: String,
    /// Remote account.
    pub user: String,
    /// Pinned host key, an OpenSSH public key line.
    pub host_key: String,
    /// Logical name of the bastion in front of this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump: Option<String>,
    /// Elevation may be requested.
    #[serde(default)]
    pub allow_sudo: bool,
    /// A PTY may be requested.
    #[serde(default)]
    pub allow_pty: bool,
    /// RBAC groups of the host.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `GET /v1/hosts` body: logical name → host.
pub type HostsResponse = BTreeMap<String, HostInfo>;

/// `POST /v1/reload` success body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadResponse {
    /// Always `ok`.
    pub status: String,
    /// Number of hosts in the new configuration.
    pub hosts: usize,
}

#[cfg(test)]
mod tests;
