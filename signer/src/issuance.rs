//! The issuance rules of SPEC §3: from a caller's intent to the exact
//! certificate constraints, and the certificate itself.
//!
//! [`evaluate`] is pure: it checks the intent against the running
//! configuration and returns either a [`Plan`] (everything the certificate
//! will say) or a [`Denial`] with a stable reason code. [`draft`] builds
//! the certificate a plan describes and [`Draft::sign`] has the host's CA
//! (a file, token or agent, `infrabroker-ca`) sign it. The HTTP layer adds
//! the serial, the audit record and the answer.

use infrabroker_common::wire::{Decision, Purpose, ReasonCode, Role, SessionMode, SignRequest};
use ssh_key::{Algorithm, PublicKey};

use crate::config::{CallerPolicy, Host, SignerConfig};
use crate::names;

mod certificate;
mod command;
pub mod envelope;
pub mod files;
mod runtime;

pub use certificate::{Draft, Issued, draft};
pub use runtime::{CaSlot, Runtime};

/// How far back a certificate's validity starts, for clock skew between the
/// signer and the hosts (SPEC: at most 60 s).
pub const BACKDATE_SECONDS: u64 = 30;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// Stable reason code.
    pub code: ReasonCode,
    /// One sentence for the caller.
    pub message: String,
    /// The policy decision, when the firewall decided.
    pub decision: Option<Decision>,
}

impl Denial {
    pub(crate) fn new(code: ReasonCode, message: impl Into<String>) -> Self {
        Denial {
            code,
            message: message.into(),
            decision: None,
        }
    }
}

/// Everything a certificate will carry, decided before signing.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The caller the decision was made for (the broker, even when a
    /// forwarder sent the request).
    pub caller: String,
    /// The forwarder that relayed the request, if any.
    pub forwarder: Option<String>,
    /// Logical host name.
    pub host: String,
    /// The host's address (for audit correlation).
    pub addr: String,
    /// Remote account.
    pub user: String,
    /// The one principal.
    pub principal: String,
    /// Lifetime in seconds.
    pub ttl: u64,
    /// `force-command`, if any.
    pub force_command: Option<String>,
    /// `source-address`, if any.
    pub source_address: Option<String>,
    /// Grant `permit-pty`.
    pub permit_pty: bool,
    /// Grant `permit-port-forwarding`.
    pub permit_port_forwarding: bool,
    /// Elevation as `sudo:USER`, if any.
    pub elevation: Option<String>,
    /// For sessions: the prefix the broker puts before each command.
    pub elevation_prefix: Option<String>,
    /// Key id (built only from charset-checked fields).
    pub key_id: String,
    /// The firewall's decision.
    pub decision: Decision,
}

fn contains_any(
    a: &std::collections::BTreeSet<String>,
    b: impl IntoIterator<Item = impl AsRef<str>>,
) -> bool {
    b.into_iter().any(|x| a.contains(x.as_ref()))
}

/// Checks `req` from the mTLS caller `cn` against `rt` (SPEC §3 and §5),
/// in this order, each step a function below: who is asking
/// ([`identify`]), may they reach the host ([`reach`]), is the request's
/// shape allowed there ([`shape`]), what does the command firewall say
/// ([`judge`]), then the certificate's contents ([`plan`]). The first
/// refusal wins, so the order is part of the contract.
pub fn evaluate(rt: &Runtime, cn: &str, req: &SignRequest) -> Result<Plan, Denial> {
    let cfg = &rt.config;
    let who = identify(cfg, cn, req)?;
    let host = reach(cfg, &who, req)?;
    let shape = shape(host, req)?;
    let decision = judge(host, req)?;
    plan(cfg, host, req, who, shape, decision)
}

/// The caller a decision is made for: the mTLS CN, or the end user's
/// broker behind a trusted forwarder.
struct Who<'a> {
    caller: String,
    forwarder: Option<String>,
    policy: &'a CallerPolicy,
}

/// CN and forwarding rules, the caller's entry, and the end-user fields'
/// characters.
fn identify<'a>(cfg: &'a SignerConfig, cn: &str, req: &SignRequest) -> Result<Who<'a>, Denial> {
    use ReasonCode as R;
    if !names::is_name(cn) {
        return Err(Denial::new(
            R::CallerInvalid,
            "the client certificate's CN has characters outside [A-Za-z0-9._-]",
        ));
    }
    let forwarded = req.on_behalf_of.is_some() || req.approved;
    if forwarded && !cfg.trusted_forwarders.contains(cn) {
        return Err(Denial::new(
            R::ForwarderUntrusted,
            format!("{cn} is not a trusted forwarder: on_behalf_of and approved are refused"),
        ));
    }
    let (caller, forwarder) = match &req.on_behalf_of {
        Some(b) if !names::is_name(b) => {
            return Err(Denial::new(
                R::CallerInvalid,
                "on_behalf_of has characters outside [A-Za-z0-9._-]",
            ));
        }
        Some(b) => (b.clone(), Some(cn.to_owned())),
        None => (cn.to_owned(), None),
    };
    let Some(policy) = cfg.callers.get(&caller) else {
        return Err(Denial::new(
            R::CallerUnknown,
            format!("caller {caller} is not listed in callers"),
        ));
    };
    if let Some(eu) = &req.end_user
        && !names::is_identity(eu)
    {
        return Err(Denial::new(
            R::EndUserInvalid,
            "end_user has characters outside [A-Za-z0-9._@+:-]",
        ));
    }
    if let Some(groups) = &req.end_user_groups
        && groups.iter().any(|g| !names::is_name(g))
    {
        return Err(Denial::new(
            R::EndUserInvalid,
            "end_user_groups has a name outside [A-Za-z0-9._-]",
        ));
    }
    Ok(Who {
        caller,
        forwarder,
        policy,
    })
}

/// The host exists and the caller (and the end user's groups) may reach it.
fn reach<'a>(cfg: &'a SignerConfig, who: &Who<'_>, req: &SignRequest) -> Result<&'a Host, Denial> {
    use ReasonCode as R;
    let caller = &who.caller;
    let Some(host) = cfg.hosts.get(&req.host) else {
        return Err(Denial::new(
            R::HostUnknown,
            format!("no host named {:?}", req.host),
        ));
    };
    if (!host.allowed_callers.is_empty() && !host.allowed_callers.contains(caller))
        || !contains_any(&who.policy.allowed_groups, &host.groups)
    {
        return Err(Denial::new(
            R::HostForbidden,
            format!("caller {caller} may not reach host {}", host.name),
        ));
    }
    if let Some(groups) = &req.end_user_groups
        && !contains_any(&host.groups, groups)
    {
        return Err(Denial::new(
            R::EndUserForbidden,
            format!("the end user's groups do not reach host {}", host.name),
        ));
    }
    Ok(host)
}

/// What [`shape`] settled about the request.
struct Shape {
    wants_pty: bool,
    sudo_user: Option<String>,
}

/// The command's characters, the role's rules, the deadline, the session
/// mode, PTY and sudo, as the host allows them.
fn shape(host: &Host, req: &SignRequest) -> Result<Shape, Denial> {
    use ReasonCode as R;
    command::check_characters(host, &req.command)?;
    files::check(host, req)?;
    if req.sudo_user.is_some() && !req.sudo {
        return Err(Denial::new(R::InvalidRequest, "sudo_user needs sudo: true"));
    }
    match req.role {
        Role::Bastion => check_bastion(host, req)?,
        Role::Target => check_target(host, req)?,
    }
    crate::deadline::check(req)?;
    let session_mode = match (req.purpose, req.session_mode) {
        (Purpose::Oneshot, Some(_)) => {
            return Err(Denial::new(
                R::InvalidRequest,
                "session_mode is only for purpose session",
            ));
        }
        (Purpose::Oneshot | Purpose::FilePut | Purpose::FileGet, None) => None,
        (Purpose::FilePut | Purpose::FileGet, Some(_)) => {
            return Err(Denial::new(
                R::InvalidRequest,
                "session_mode is only for purpose session",
            ));
        }
        (Purpose::Session, m) => Some(m.unwrap_or(SessionMode::Exec)),
    };
    let interactive = matches!(session_mode, Some(SessionMode::Shell | SessionMode::Pty));
    if req.role == Role::Target && interactive && !host.policy.is_empty() {
        return Err(Denial::new(
            R::SessionModeNotAllowed,
            format!(
                "host {} has a command policy: only exec sessions are allowed",
                host.name
            ),
        ));
    }
    if req.role == Role::Target
        && host.sealed_exec.is_some()
        && session_mode.is_some()
        && (interactive || req.pty)
    {
        return Err(Denial::new(
            R::SessionModeNotAllowed,
            format!(
                "host {} is sealed: only exec sessions without a PTY (its shim runs signed commands only)",
                host.name
            ),
        ));
    }
    let wants_pty = req.pty || session_mode == Some(SessionMode::Pty);
    if wants_pty && !host.allow_pty {
        return Err(Denial::new(
            R::PtyNotAllowed,
            format!("host {} does not allow a PTY", host.name),
        ));
    }
    let sudo_user = if req.sudo && req.role == Role::Target {
        Some(check_sudo(host, req.sudo_user.as_deref())?)
    } else {
        None
    };
    Ok(Shape {
        wants_pty,
        sudo_user,
    })
}

/// The certificate's contents: lifetime, force-command, extensions and
/// the key id (built only from charset-checked fields).
fn plan(
    cfg: &SignerConfig,
    host: &Host,
    req: &SignRequest,
    who: Who<'_>,
    shape: Shape,
    decision: Decision,
) -> Result<Plan, Denial> {
    let Shape {
        wants_pty,
        sudo_user,
    } = shape;
    let requested = req.ttl_seconds.filter(|t| *t > 0).unwrap_or(host.max_ttl);
    let ttl = requested.min(host.max_ttl).min(cfg.max_ttl);
    let prefix = sudo_user.as_ref().map(|u| sudo_prefix(u));
    let force_command = match (req.role, req.purpose) {
        (Role::Bastion, _) => Some("/bin/false".to_owned()),
        (Role::Target, Purpose::Oneshot) => Some(command::force_command(
            &crate::deadline::prefix(req),
            prefix.as_deref(),
            &req.command,
        )?),
        // A sealed host's shim runs only what an envelope names.
        (Role::Target, Purpose::Session) => host.sealed_exec.clone(),
        (Role::Target, purpose @ (Purpose::FilePut | Purpose::FileGet)) => {
            let file = req.file.clone().unwrap_or_default();
            Some(command::force_command(
                &crate::deadline::prefix(req),
                prefix.as_deref(),
                &files::script(host, purpose, &file),
            )?)
        }
    };
    let elevation = sudo_user.as_ref().map(|u| format!("sudo:{u}"));
    let key_id = format!(
        "caller={} user={} host={} role={} purpose={} elev={} pty={}",
        who.caller,
        req.end_user.as_deref().unwrap_or("-"),
        host.name,
        req.role.as_str(),
        req.purpose.as_str(),
        elevation.as_deref().unwrap_or("none"),
        u8::from(wants_pty),
    );
    Ok(Plan {
        caller: who.caller,
        forwarder: who.forwarder,
        host: host.name.clone(),
        addr: host.addr.clone(),
        user: host.user.clone(),
        principal: host.principal.clone(),
        ttl,
        force_command,
        source_address: host.source_address.clone(),
        permit_pty: wants_pty && req.role == Role::Target,
        permit_port_forwarding: req.role == Role::Bastion,
        elevation,
        elevation_prefix: if req.purpose == Purpose::Session {
            prefix
        } else {
            None
        },
        key_id,
        decision,
    })
}

fn check_bastion(host: &Host, req: &SignRequest) -> Result<(), Denial> {
    if !host.allow_as_bastion {
        return Err(Denial::new(
            ReasonCode::BastionNotAllowed,
            format!("host {} may not be used as a bastion", host.name),
        ));
    }
    if !req.command.is_empty() || req.sudo || req.pty || req.session_mode.is_some() {
        return Err(Denial::new(
            ReasonCode::InvalidRequest,
            "a bastion certificate carries no command, sudo, pty or session mode",
        ));
    }
    Ok(())
}

fn check_target(host: &Host, req: &SignRequest) -> Result<(), Denial> {
    let one_shot = req.purpose == Purpose::Oneshot;
    if one_shot && req.command.trim().is_empty() {
        return Err(Denial::new(
            ReasonCode::CommandInvalid,
            "a one-shot certificate needs a command",
        ));
    }
    if !one_shot && !req.command.is_empty() && !req.dry_run {
        return Err(Denial::new(
            ReasonCode::InvalidRequest,
            "a session certificate carries no command; judge commands with dry_run",
        ));
    }
    if req.sudo && !host.allow_sudo {
        return Err(Denial::new(
            ReasonCode::SudoNotAllowed,
            format!("host {} does not allow sudo", host.name),
        ));
    }
    Ok(())
}

fn check_sudo(host: &Host, user: Option<&str>) -> Result<String, Denial> {
    let user = user.unwrap_or("root");
    let valid = regex::Regex::new(names::SUDO_USER_PATTERN).is_ok_and(|re| re.is_match(user));
    if !valid {
        return Err(Denial::new(
            ReasonCode::SudoUserInvalid,
            "sudo_user must match ^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,31}$",
        ));
    }
    let allowed = if host.allowed_sudo_users.is_empty() {
        user == "root"
    } else {
        host.allowed_sudo_users.contains(user)
    };
    if !allowed {
        return Err(Denial::new(
            ReasonCode::SudoUserNotAllowed,
            format!("host {} does not allow sudo to {user}", host.name),
        ));
    }
    Ok(user.to_owned())
}

/// `sudo -n` for root, `sudo -n -u USER` otherwise.
pub fn sudo_prefix(user: &str) -> String {
    if user == "root" {
        "sudo -n".to_owned()
    } else {
        format!("sudo -n -u {user}")
    }
}

/// The firewall's word on the command. Policy refusals keep their decision
/// so dry runs can report it; approval is satisfied only by `approved` from
/// a trusted forwarder (checked before this point).
fn judge(host: &Host, req: &SignRequest) -> Result<Decision, Denial> {
    if files::is_file(req.purpose) {
        return Ok(Decision::allowed("within the host's file_transfer_paths"));
    }
    if req.role == Role::Bastion || req.command.is_empty() {
        return Ok(Decision::allowed("no command to judge"));
    }
    // Pager rows of the exec-option table apply only with a terminal.
    let ctx = infrabroker_firewall::Context {
        terminal: req.pty || req.session_mode == Some(SessionMode::Pty),
    };
    let decision = to_wire(host.policy.decide_in(&req.command, ctx));
    // An approved request passes as a dry run too: a session command's
    // preflight is a dry run, and its approval must let it run.
    if !decision.allowed && decision.require_approval && req.approved {
        let mut d = decision;
        d.allowed = true;
        d.reason_code = ReasonCode::Allowed;
        d.message = "allowed: approval granted".to_owned();
        return Ok(d);
    }
    if decision.allowed || req.dry_run {
        return Ok(decision);
    }
    Err(Denial {
        code: decision.reason_code,
        message: decision.message.clone(),
        decision: Some(decision),
    })
}

/// Parses the caller's public key: exactly one OpenSSH Ed25519 key.
pub fn parse_pubkey(line: &str) -> Result<PublicKey, Denial> {
    let deny = |m: &str| Denial::new(ReasonCode::PubkeyInvalid, m.to_owned());
    let key = PublicKey::from_openssh(line.trim())
        .map_err(|_| deny("pubkey is not an OpenSSH ssh-ed25519 public key"))?;
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(deny("pubkey must be an ssh-ed25519 key"));
    }
    Ok(key)
}

/// The firewall's decision in wire form: the one decision shape of the API
/// (`/v1/sign`, dry runs, `policy explain`). The rule's source is folded
/// into `matched_rule` as `source: rule`.
pub fn to_wire(d: infrabroker_firewall::Decision) -> Decision {
    use infrabroker_firewall::ReasonCode as F;
    let reason_code = match d.reason_code {
        F::Allowed => ReasonCode::Allowed,
        F::NeedsApproval => ReasonCode::NeedsApproval,
        F::CommandDenied => ReasonCode::CommandDenied,
        F::AllowlistNoMatch => ReasonCode::AllowlistNoMatch,
        F::ParseRejected => ReasonCode::ParseRejected,
        F::ExecOption => ReasonCode::ExecOption,
        F::CommandInvalid => ReasonCode::CommandInvalid,
    };
    let matched_rule = match (d.rule_source, d.matched_rule) {
        (Some(src), Some(rule)) => Some(format!("{src}: {rule}")),
        (_, rule) => rule,
    };
    Decision {
        allowed: d.allowed,
        reason_code,
        matched_rule,
        require_approval: d.require_approval,
        warnings: d.warnings,
        message: d.message,
        would_deny: d.would_deny,
        would_require_approval: d.would_require_approval,
    }
}
