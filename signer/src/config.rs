//! `signer.json`: read strictly, validated into types that cannot hold a
//! bad value, with every problem reported at once with its JSON path.
//!
//! Field names are the Go infrabroker's, so its files load unchanged as far
//! as we implement them; a field we do not implement is an error naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use infrabroker_common::audit::CheckpointSettings;
use infrabroker_common::config::{ConfigErrors, Errors, Obj, index, load_file, load_text};
use infrabroker_firewall::{CompiledPolicy, PolicySet};
use regex::Regex;
use serde_json::Value;

use crate::names;

mod ca_keys;
pub mod files;
mod policy;
mod sealed;

pub use ca_keys::CaKeySource;
use ca_keys::read_ca_keys;
pub use files::FileRules;
use policy::{compile_at, read_group_policies, read_policy, read_policy_library};

/// The largest certificate lifetime we accept anywhere, in seconds.
pub const TTL_CEILING: u64 = 900;
/// The global maximum TTL when `max_ttl_seconds` is absent or 0.
pub const DEFAULT_MAX_TTL: u64 = 300;

/// What happens when an audit record cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFailMode {
    /// Refuse to issue (the default).
    Closed,
    /// Issue anyway and log loudly. Only for labs.
    Open,
}

/// A caller (broker mTLS CN) and the host groups it may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerPolicy {
    /// Host groups this caller may reach.
    pub allowed_groups: BTreeSet<String>,
}

/// One host as the signer sees it.
#[derive(Debug)]
pub struct Host {
    /// Logical name.
    pub name: String,
    /// `host:port` dialled by the previous hop.
    pub addr: String,
    /// Remote account.
    pub user: String,
    /// Pinned host key line (`ssh-ed25519 AAAA…`).
    pub host_key: String,
    /// Logical name of the bastion in front of it.
    pub jump: Option<String>,
    /// The one principal its certificates carry.
    pub principal: String,
    /// `source-address` critical option (comma-separated CIDRs), if any.
    pub source_address: Option<String>,
    /// Host maximum TTL in seconds (already capped by the global maximum).
    pub max_ttl: u64,
    /// RBAC groups.
    pub groups: BTreeSet<String>,
    /// Callers allowed in addition to the group rule; empty = any.
    pub allowed_callers: BTreeSet<String>,
    /// Elevation allowed.
    pub allow_sudo: bool,
    /// Allowed sudo target users; empty = root only.
    pub allowed_sudo_users: BTreeSet<String>,
    /// PTY allowed.
    pub allow_pty: bool,
    /// Marked as bastion, or named as another host's `jump`.
    pub allow_as_bastion: bool,
    /// `allow_invisible_characters`: do not refuse commands holding control
    /// characters (other than tab) or invisible/format Unicode characters.
    /// Off by default; a command policy refuses them anyway.
    pub allow_invisible_characters: bool,
    /// The composed command firewall (empty = no firewall).
    pub policy: PolicySet,
    /// Which CA signs its certificates (index into [`SignerConfig::ca_keys`]
    /// by group name, or the default).
    pub ca_group: Option<String>,
    /// `sealed_exec`: the force-command of its session certificates (the
    /// shim, `shim_path`), so every session command needs an envelope.
    pub sealed_exec: Option<String>,
    /// `allow_file_transfer`, `file_transfer_paths`, `max_file_bytes`.
    pub files: FileRules,
}

/// The validated `signer.json`.
#[derive(Debug)]
pub struct SignerConfig {
    /// HTTPS listen address.
    pub listen: SocketAddr,
    /// Server certificate (PEM).
    pub server_cert: PathBuf,
    /// Server key (PEM, 0600).
    pub server_key: PathBuf,
    /// CA that issues caller certificates.
    pub client_ca: PathBuf,
    /// Default CA key.
    pub ca_default: CaKeySource,
    /// Per-group CA keys (without `_default`).
    pub ca_groups: BTreeMap<String, CaKeySource>,
    /// Audit log path.
    pub audit_log: PathBuf,
    /// Audit signing seed path.
    pub audit_key: PathBuf,
    /// Seed of the key that signs sealed-exec envelopes (`envelope_key`).
    pub envelope_key: Option<PathBuf>,
    /// Behaviour when the audit log cannot be written.
    pub audit_fail_mode: AuditFailMode,
    /// Signed checkpoints of the audit log (`audit_checkpoint`).
    pub audit_checkpoint: Option<infrabroker_common::audit::CheckpointSettings>,
    /// Secrets kept out of audit records (`redact`).
    pub redact: Option<std::sync::Arc<infrabroker_common::redact::Redactor>>,
    /// Records also sent to a syslog receiver (`audit_syslog`).
    pub audit_syslog: Option<infrabroker_common::audit::syslog::SyslogSettings>,
    /// Global maximum TTL in seconds.
    pub max_ttl: u64,
    /// Poll the file's mtime and reload every N seconds (0 = off).
    pub auto_reload_seconds: u64,
    /// Plain-HTTP listener for `/metrics` and `/healthz`.
    pub monitor_listen: Option<SocketAddr>,
    /// Plain-HTTP listener that serves only `GET /v1/krl`, for hosts
    /// without a client certificate.
    pub krl_listen: Option<SocketAddr>,
    /// CNs that may call `POST /v1/reload`.
    pub reload_callers: BTreeSet<String>,
    /// CNs whose `on_behalf_of` and `approved` are honoured.
    pub trusted_forwarders: BTreeSet<String>,
    /// Certificates per caller (or end user behind a forwarder) per minute;
    /// 0 = no limit.
    pub sign_rate_limit_per_min: u32,
    /// Caller CN → policy. Unlisted CNs are refused.
    pub callers: BTreeMap<String, CallerPolicy>,
    /// Hosts by logical name.
    pub hosts: BTreeMap<String, Host>,
    /// Where serials are allocated (`store`, or upstream's `state_db`;
    /// default SQLite beside the audit log).
    pub store: infrabroker_store::StoreConfig,
}

impl SignerConfig {
    /// Reads and validates `path`. Relative paths inside are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<SignerConfig, ConfigErrors> {
        load_file(path, read)
    }

    /// Validates configuration text; `base` resolves relative paths.
    pub fn from_text(text: &str, base: &Path) -> Result<SignerConfig, ConfigErrors> {
        load_text(text, base, read)
    }
}

fn req_path(o: &Obj<'_>, key: &str, base: &Path) -> PathBuf {
    o.file_path(key, base).unwrap_or_default()
}

fn name_set(o: &Obj<'_>, key: &str, what: &str) -> BTreeSet<String> {
    let list = o.str_list(key);
    let path = o.path_of(key);
    let mut out = BTreeSet::new();
    for (i, item) in list.into_iter().enumerate() {
        if !names::is_name(&item) {
            o.errors()
                .push(index(&path, i), format!("{item:?} is not a valid {what}"));
        } else if !out.insert(item.clone()) {
            o.errors()
                .push(index(&path, i), format!("{item:?} is listed twice"));
        }
    }
    out
}

fn ttl(o: &Obj<'_>, key: &str) -> Option<u64> {
    let v = o.opt_u64(key)?;
    if v > TTL_CEILING {
        o.error(
            key,
            format!("{v} exceeds the ceiling of {TTL_CEILING} seconds"),
        );
        return None;
    }
    (v > 0).then_some(v)
}

/// HA signers keep their chain in PostgreSQL: shipping the local audit
/// file would ship nothing, so `audit_syslog` is refused there
/// (`audit_checkpoint` applies to the global chain: each replica checkpoints
/// it to its own file).
fn refuse_for_ha(root: &Obj<'_>, syslog: bool) {
    if syslog {
        root.error(
            "audit_syslog",
            "is for the local audit log; with store.postgres the chain lives in PostgreSQL (ship `broker-ctl audit export`)",
        );
    }
}

fn read(v: &Value, base: &Path, errs: &Errors) -> Option<SignerConfig> {
    let root = Obj::new(v, "", errs)?;
    let listen = root.socket_addr("listen", true);
    let server_cert = req_path(&root, "server_cert", base);
    let server_key = req_path(&root, "server_key", base);
    let client_ca = req_path(&root, "client_ca", base);
    let (ca_default, ca_groups) = read_ca_keys(&root, base);
    let audit_log = req_path(&root, "audit_log", base);
    let audit_key = req_path(&root, "audit_key", base);
    let audit_fail_mode = match root.opt_str("audit_fail_mode").as_deref() {
        None | Some("") | Some("closed") => AuditFailMode::Closed,
        Some("open") => AuditFailMode::Open,
        Some(other) => {
            root.error(
                "audit_fail_mode",
                format!("{other:?} is not \"closed\" or \"open\""),
            );
            AuditFailMode::Closed
        }
    };
    let max_ttl = ttl(&root, "max_ttl_seconds").unwrap_or(DEFAULT_MAX_TTL);
    let auto_reload_seconds = root.opt_u64("auto_reload_seconds").unwrap_or(0);
    let monitor_listen = root.socket_addr("monitor_listen", false);
    let krl_listen = root.socket_addr("krl_listen", false);
    if krl_listen.is_some() && (krl_listen == monitor_listen || krl_listen == listen) {
        root.error("krl_listen", "must differ from listen and monitor_listen");
    }
    let reload_callers = name_set(&root, "reload_callers", "caller CN");
    let trusted_forwarders = name_set(&root, "trusted_forwarders", "caller CN");
    let rate = root.opt_u64("sign_rate_limit_per_min").unwrap_or(0);
    if rate > 1_000_000 {
        root.error("sign_rate_limit_per_min", "must be at most 1000000");
    }
    let sign_rate_limit_per_min = u32::try_from(rate.min(1_000_000)).unwrap_or(0);
    let callers = read_callers(&root);
    let library = read_policy_library(&root);
    let group_policies = read_group_policies(&root, &library);
    let hosts = read_hosts(&root, max_ttl, &ca_groups, &library, &group_policies);
    let envelope_key = sealed::envelope_key(&root, base, &hosts);
    let store = infrabroker_store::StoreConfig::read(&root, base, Some(&audit_log));
    let audit_checkpoint = CheckpointSettings::read(&root, base, Some(&audit_log));
    let redact = infrabroker_common::redact::Redactor::read(&root);
    let audit_syslog = infrabroker_common::audit::syslog::SyslogSettings::read(&root, base);
    if matches!(store, Some(infrabroker_store::StoreConfig::Postgres(_))) {
        refuse_for_ha(&root, audit_syslog.is_some());
    }
    root.finish();

    Some(SignerConfig {
        listen: listen?,
        server_cert,
        server_key,
        client_ca,
        ca_default: ca_default?,
        ca_groups,
        audit_log,
        audit_key,
        envelope_key,
        audit_fail_mode,
        audit_checkpoint,
        redact,
        audit_syslog,
        max_ttl,
        auto_reload_seconds,
        monitor_listen,
        krl_listen,
        reload_callers,
        trusted_forwarders,
        sign_rate_limit_per_min,
        callers,
        hosts,
        store: store?,
    })
}

fn read_callers(root: &Obj<'_>) -> BTreeMap<String, CallerPolicy> {
    let mut out = BTreeMap::new();
    for (cn, path, value) in root.map_entries("callers") {
        let Some(entry) = Obj::new(value, &path, root.errors()) else {
            continue;
        };
        if !names::is_name(&cn) {
            root.errors()
                .push(path.clone(), format!("{cn:?} is not a valid caller CN"));
        }
        let allowed_groups = name_set(&entry, "allowed_groups", "group name");
        entry.finish();
        out.insert(cn, CallerPolicy { allowed_groups });
    }
    out
}

fn read_hosts(
    root: &Obj<'_>,
    global_max_ttl: u64,
    ca_groups: &BTreeMap<String, CaKeySource>,
    library: &BTreeMap<String, CompiledPolicy>,
    group_policies: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, Host> {
    let sudo_user_re = Regex::new(names::SUDO_USER_PATTERN).ok();
    let mut hosts = BTreeMap::new();
    let mut specific_policy = BTreeSet::new();
    for (name, path, value) in root.map_entries("hosts") {
        let Some(o) = Obj::new(value, &path, root.errors()) else {
            continue;
        };
        if !names::is_name(&name) {
            root.errors()
                .push(path.clone(), format!("{name:?} is not a valid host name"));
        }
        let (addr, user, host_key) = read_endpoint(&o);
        let jump = o.opt_str("jump").filter(|j| !j.is_empty());
        let principal = read_principal(&o);
        let source_address = o.opt_str("source_address").filter(|s| !s.is_empty());
        if let Some(sa) = &source_address
            && let Err(why) = names::check_source_address(sa)
        {
            o.error("source_address", why);
        }
        let max_ttl = ttl(&o, "max_ttl_seconds")
            .unwrap_or(global_max_ttl)
            .min(global_max_ttl);
        let groups = name_set(&o, "groups", "group name");
        let ca_group = ca_keys::first_ca_group(&o, ca_groups);
        let allowed_callers = name_set(&o, "allowed_callers", "caller CN");
        let allow_sudo = o.opt_bool("allow_sudo").unwrap_or(false);
        let allowed_sudo_users = read_sudo_users(&o, sudo_user_re.as_ref());
        let allow_pty = o.opt_bool("allow_pty").unwrap_or(false);
        let allow_as_bastion = o.opt_bool("allow_as_bastion").unwrap_or(false);
        let allow_invisible_characters = o.opt_bool("allow_invisible_characters").unwrap_or(false);
        let sealed_exec = sealed::read(&o);
        let files = files::read(&o);
        let inline = o.opt_obj("command_policy").and_then(|p| {
            let cfg = read_policy(&p);
            let at = p.path().to_owned();
            p.finish();
            compile_at(&cfg, &at, root.errors())
        });
        o.finish();

        let (parts, specific) = policy_parts(&groups, inline, library, group_policies);
        if specific {
            specific_policy.insert(name.clone());
        }
        hosts.insert(
            name.clone(),
            Host {
                name,
                addr,
                user,
                host_key,
                jump,
                principal,
                source_address,
                max_ttl,
                groups,
                allowed_callers,
                allow_sudo,
                allowed_sudo_users: allowed_sudo_users.into_iter().collect(),
                allow_pty,
                allow_as_bastion,
                allow_invisible_characters,
                policy: PolicySet::compose(parts),
                ca_group,
                sealed_exec,
                files,
            },
        );
    }
    check_jumps(root, &mut hosts, &specific_policy);
    hosts
}

/// A host's `addr`, `user` and `host_key` (normalised), each checked.
fn read_endpoint(o: &Obj<'_>) -> (String, String, String) {
    let addr = o.str("addr").unwrap_or_default();
    if o.raw("addr").is_some() && !names::is_host_port(&addr) {
        o.error("addr", format!("{addr:?} is not host:port"));
    }
    let user = o.str("user").unwrap_or_default();
    if o.raw("user").is_some() && !names::is_unix_user(&user) {
        o.error("user", format!("{user:?} is not a valid account name"));
    }
    let host_key = o.str("host_key").unwrap_or_default();
    let host_key = match ssh_key::PublicKey::from_openssh(host_key.trim()) {
        Ok(k) => k.to_openssh().unwrap_or_default(),
        Err(_) => {
            if o.raw("host_key").is_some() {
                o.error("host_key", "is not an OpenSSH public key line");
            }
            String::new()
        }
    };
    (addr, user, host_key)
}

/// `allowed_sudo_users`, each matching the sudo user pattern.
fn read_sudo_users(o: &Obj<'_>, re: Option<&Regex>) -> Vec<String> {
    let users = o.str_list("allowed_sudo_users");
    let path = o.path_of("allowed_sudo_users");
    for (i, u) in users.iter().enumerate() {
        if !re.is_some_and(|re| re.is_match(u)) {
            o.errors()
                .push(index(&path, i), format!("{u:?} is not a valid sudo user"));
        }
    }
    users
}

/// A host's one `principal`: never empty (an empty list means any user).
fn read_principal(o: &Obj<'_>) -> String {
    let principal = o.str("principal").unwrap_or_default();
    if principal.is_empty() && o.raw("principal").is_some() {
        o.error(
            "principal",
            "must not be empty (an empty principal list means any user)",
        );
    } else if !principal.is_empty() && !names::is_principal(&principal) {
        o.error(
            "principal",
            format!("{principal:?} has characters outside [A-Za-z0-9._@:+-]"),
        );
    }
    principal
}

/// The policies a host is judged by, in order: the `_default` group's,
/// its groups', then its own; and whether any is specific to it (more
/// than the `_default` ones).
fn policy_parts(
    groups: &BTreeSet<String>,
    inline: Option<CompiledPolicy>,
    library: &BTreeMap<String, CompiledPolicy>,
    group_policies: &BTreeMap<String, Vec<String>>,
) -> (Vec<(String, CompiledPolicy)>, bool) {
    let group_parts = |group: &str| {
        group_policies
            .get(group)
            .into_iter()
            .flatten()
            .filter_map(|pname| {
                library
                    .get(pname)
                    .map(|p| (format!("group {group}: {pname}"), p.clone()))
            })
            .collect::<Vec<_>>()
    };
    let mut parts = group_parts("_default");
    let global_parts = parts.len();
    for g in groups {
        parts.extend(group_parts(g));
    }
    if let Some(p) = inline {
        parts.push(("host".to_owned(), p));
    }
    let specific = parts.len() > global_parts;
    (parts, specific)
}

/// Jumps must name existing hosts, must not loop, and make their target a
/// bastion. A bastion may not carry a command policy of its own or of its
/// groups: its role-`bastion` certificates grant port forwarding, so a
/// firewall there would protect nothing. `_default` policies are exempt
/// (they would otherwise forbid every bastion); bastion certificates carry
/// `force-command=/bin/false`, so they run no command anyway.
fn check_jumps(root: &Obj<'_>, hosts: &mut BTreeMap<String, Host>, specific: &BTreeSet<String>) {
    let path = |name: &str, key: &str| {
        format!("{}.{key}", infrabroker_common::config::join("hosts", name))
    };
    let jumps: Vec<(String, String)> = hosts
        .values()
        .filter_map(|h| h.jump.clone().map(|j| (h.name.clone(), j)))
        .collect();
    for (name, jump) in &jumps {
        if jump == name {
            root.errors()
                .push(path(name, "jump"), "a host cannot jump through itself");
        } else if !hosts.contains_key(jump) {
            root.errors()
                .push(path(name, "jump"), format!("no host named {jump:?}"));
        }
    }
    for (name, _) in &jumps {
        let mut seen = BTreeSet::new();
        let mut cur = name.clone();
        while let Some(next) = hosts.get(&cur).and_then(|h| h.jump.clone()) {
            if !seen.insert(cur.clone()) || seen.len() > hosts.len() {
                root.errors()
                    .push(path(name, "jump"), "the jump chain loops");
                break;
            }
            cur = next;
        }
    }
    for (_, jump) in &jumps {
        if let Some(h) = hosts.get_mut(jump) {
            h.allow_as_bastion = true;
        }
    }
    for h in hosts.values() {
        if h.allow_as_bastion && specific.contains(&h.name) {
            root.errors().push(
                path(&h.name, "command_policy"),
                "a host with a command policy cannot be a bastion (allow_as_bastion or named as a jump)",
            );
        }
    }
}
