//! `control-plane.json`: read strictly (JWCC, unknown fields refused), with
//! every problem reported at once with its JSON path.
//!
//! Field names follow the Go infrabroker where it has them (`listen`,
//! `sign_callers`, `signer`, `approval`, `behavior`, `trusted_forwarders`,
//! `audit_log`, `audit_key`, `audit_fail_mode`, `monitor_listen`). Tiers and
//! the AI reviewer are our own: `approval.tiers`, `approval.default_tier`,
//! `approval.reviewer`, `behavior.novelty_tier`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use infrabroker_common::config::{ConfigErrors, Errors, Obj, index, load_file, load_text, resolve};
use regex::Regex;
use serde_json::Value;

use crate::approval::Tier;
use crate::identity::{self, IdentityMap};

/// Pending approvals expire after this long unless configured.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(120);

/// What happens when an audit record cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFailMode {
    /// Refuse the step (the default).
    Closed,
    /// Carry on and log loudly. Only for labs.
    Open,
}

/// How the behaviour guardrails act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardMode {
    /// No tracking at all.
    Off,
    /// Findings are audited as `anomaly`; nothing is held or refused.
    Observe,
    /// A novelty needs an approval; a rate excess is answered 429.
    Enforce,
}

/// Where approval notifications go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifierKind {
    /// Nowhere.
    None,
    /// One log line on stderr.
    Log,
    /// A generic JSON POST.
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// A Microsoft Teams webhook carrying an Adaptive Card.
    Teams,
}

/// The signer the control plane forwards to.
#[derive(Debug, Clone)]
pub struct SignerEndpoint {
    /// `https://host:port` of each signer replica, in order of preference
    /// (`signer.url` is one URL or a list).
    pub urls: Vec<String>,
    /// Client certificate (its CN must be in the signer's `trusted_forwarders`).
    pub client_cert: PathBuf,
    /// Its key (0600).
    pub client_key: PathBuf,
    /// CA of the signer's server certificate.
    pub ca: PathBuf,
    /// Deadline of one call to the signer.
    pub request_timeout: Duration,
}

/// One tier rule: requests whose command matches `pattern` (and, if
/// `hosts` is not empty, whose host is listed) get `tier`.
#[derive(Debug, Clone)]
pub struct TierRule {
    /// Unanchored regex on the command.
    pub pattern: Regex,
    /// Logical host names; empty = any host.
    pub hosts: BTreeSet<String>,
    /// The tier given.
    pub tier: Tier,
}

/// The AI reviewer's MCP endpoint.
#[derive(Debug, Clone)]
pub struct ReviewerConfig {
    /// Plain-HTTP loopback address of the endpoint (`/mcp`).
    pub listen: SocketAddr,
    /// File holding the bearer token (0600).
    pub token_file: PathBuf,
    /// The identity its decisions are recorded under.
    pub name: String,
}

/// `approval`: how approvals are routed, decided and announced.
#[derive(Debug, Clone)]
pub struct ApprovalConfig {
    /// Where new approvals are announced.
    pub notifier: NotifierKind,
    /// Target of the webhook, Slack and Teams notifiers.
    pub webhook_url: Option<String>,
    /// CA bundle for an `https://` webhook (defaults to the system bundle).
    pub webhook_ca: PathBuf,
    /// Attempts per notification before giving up (logged and audited).
    pub notify_attempts: u32,
    /// A pending request expires after this long; an approved one must be
    /// collected within this long of its approval.
    pub timeout: Duration,
    /// Decided requests are forgotten this long after their decision.
    pub purge_after: Duration,
    /// Operator CNs that may list and decide approvals.
    pub callers: BTreeSet<String>,
    /// Link put into notifications, `{id}` replaced by the approval id.
    pub url_template: Option<String>,
    /// Tier rules, first match wins.
    pub tiers: Vec<TierRule>,
    /// Tier of a policy approval no rule matches.
    pub default_tier: Tier,
    /// The AI reviewer endpoint, if enabled.
    pub reviewer: Option<ReviewerConfig>,
    /// Open (pending, approved or issuing) approvals per broker CN at most.
    pub max_pending_per_caller: usize,
}

/// `behavior`: guardrails per subject.
#[derive(Debug, Clone)]
pub struct BehaviorConfig {
    /// Off, observe or enforce.
    pub mode: GuardMode,
    /// Sign requests per subject per minute; 0 = no limit.
    pub rate_limit_per_min: u32,
    /// Tier of an approval caused by a novelty.
    pub novelty_tier: Tier,
    /// Subjects remembered at most (the least recently active is dropped).
    pub max_subjects: usize,
    /// A subject idle this long is forgotten; `None` = never.
    pub subject_ttl: Option<Duration>,
    /// Hosts and command words remembered per subject, each.
    pub max_distinct_per_subject: usize,
}

/// The validated `control-plane.json`.
#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    /// mTLS listen address for brokers and operators.
    pub listen: SocketAddr,
    /// Server certificate (PEM).
    pub server_cert: PathBuf,
    /// Server key (PEM, 0600).
    pub server_key: PathBuf,
    /// CA that issues broker and operator certificates.
    pub client_ca: PathBuf,
    /// Broker CNs that may ask for hosts and certificates.
    pub sign_callers: BTreeSet<String>,
    /// The signer.
    pub signer: SignerEndpoint,
    /// Approvals.
    pub approval: ApprovalConfig,
    /// Guardrails.
    pub behavior: BehaviorConfig,
    /// Broker CNs whose `end_user` qualifies the guardrail subject.
    pub trusted_forwarders: BTreeSet<String>,
    /// Audit log path.
    pub audit_log: PathBuf,
    /// Audit signing seed path.
    pub audit_key: PathBuf,
    /// Behaviour when the audit log cannot be written.
    pub audit_fail_mode: AuditFailMode,
    /// Signed checkpoints of the audit log (`audit_checkpoint`).
    pub audit_checkpoint: Option<infrabroker_common::audit::CheckpointSettings>,
    /// Secrets kept out of audit records and notifications (`redact`).
    pub redact: Option<std::sync::Arc<infrabroker_common::redact::Redactor>>,
    /// Records also sent to a syslog receiver (`audit_syslog`).
    pub audit_syslog: Option<infrabroker_common::audit::syslog::SyslogSettings>,
    /// Plain-HTTP listener for `/healthz` and `/metrics`.
    pub monitor_listen: Option<SocketAddr>,
    /// Which operator CNs, OIDC subjects and REST CNs are the same person.
    pub identities: IdentityMap,
    /// Where approvals live (`store`, or upstream's `state_db`; default
    /// SQLite beside the audit log).
    pub store: infrabroker_store::StoreConfig,
}

impl ControlPlaneConfig {
    /// Reads and validates `path`; relative paths inside are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<ControlPlaneConfig, ConfigErrors> {
        load_file(path, read)
    }

    /// Validates configuration text; `base` resolves relative paths.
    pub fn from_text(text: &str, base: &Path) -> Result<ControlPlaneConfig, ConfigErrors> {
        load_text(text, base, read)
    }
}

fn req_path(o: &Obj<'_>, key: &str, base: &Path) -> Option<PathBuf> {
    o.file_path(key, base)
}

/// `host:port`, or Go's `:port` for every interface.
fn socket_addr(o: &Obj<'_>, key: &str) -> Option<SocketAddr> {
    let s = o.opt_str(key)?;
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.clone()
    };
    match full.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            o.error(key, format!("{s:?} is not an address like 127.0.0.1:7443"));
            None
        }
    }
}

pub use infrabroker_common::names::is_name;

fn name_set(o: &Obj<'_>, key: &str) -> BTreeSet<String> {
    let path = o.path_of(key);
    let mut out = BTreeSet::new();
    for (i, item) in o.str_list(key).into_iter().enumerate() {
        if !is_name(&item) {
            o.errors()
                .push(index(&path, i), format!("{item:?} is not a valid name"));
        } else if !out.insert(item.clone()) {
            o.errors()
                .push(index(&path, i), format!("{item:?} is listed twice"));
        }
    }
    out
}

fn tier(o: &Obj<'_>, key: &str, default: Tier) -> Tier {
    match o.opt_str(key) {
        None => default,
        Some(s) => Tier::parse(&s).unwrap_or_else(|| {
            o.error(
                key,
                format!("{s:?} is not \"auto\", \"user_confirm\", \"ai_review\" or \"human\""),
            );
            default
        }),
    }
}

/// `sign_callers`: the broker CNs that may sign, at least one.
fn read_sign_callers(root: &Obj<'_>) -> BTreeSet<String> {
    let sign_callers = name_set(root, "sign_callers");
    if sign_callers.is_empty() && root.raw("sign_callers").is_some() {
        root.error("sign_callers", "must list at least one broker CN");
    } else if root.raw("sign_callers").is_none() {
        root.error("sign_callers", "is required (the broker CNs that may sign)");
    }
    sign_callers
}

fn read(v: &Value, base: &Path, errs: &Errors) -> Option<ControlPlaneConfig> {
    let root = Obj::new(v, "", errs)?;
    let listen = if root.raw("listen").is_some() {
        socket_addr(&root, "listen")
    } else {
        Some(SocketAddr::from(([0, 0, 0, 0], 7443)))
    };
    let server_cert = req_path(&root, "server_cert", base);
    let server_key = req_path(&root, "server_key", base);
    let client_ca = req_path(&root, "client_ca", base);
    let sign_callers = read_sign_callers(&root);
    let signer = match root.opt_obj("signer") {
        Some(s) => read_signer(s, base),
        None => {
            root.error("signer", "is required");
            None
        }
    };
    let approval = match root.opt_obj("approval") {
        Some(a) => read_approval(a, base),
        None => read_approval_default(),
    };
    let behavior = match root.opt_obj("behavior") {
        Some(b) => read_behavior(b),
        None => Some(default_behavior()),
    };
    let trusted_forwarders = name_set(&root, "trusted_forwarders");
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
    let monitor_listen = socket_addr(&root, "monitor_listen");
    let identities = identity::read(&root);
    let store = infrabroker_store::StoreConfig::read(&root, base, audit_log.as_deref());
    let audit_checkpoint =
        infrabroker_common::audit::CheckpointSettings::read(&root, base, audit_log.as_deref());
    let redact = infrabroker_common::redact::Redactor::read(&root);
    let audit_syslog = infrabroker_common::audit::syslog::SyslogSettings::read(&root, base);
    if let Some(a) = &approval {
        // A broker that may also approve could approve other brokers'
        // requests; keep requesters and approvers apart.
        for cn in a.callers.intersection(&sign_callers) {
            errs.push(
                "approval.callers",
                format!("{cn:?} is also in sign_callers: a requester may not be an approver"),
            );
        }
    }
    root.finish();
    Some(ControlPlaneConfig {
        listen: listen?,
        server_cert: server_cert?,
        server_key: server_key?,
        client_ca: client_ca?,
        sign_callers,
        signer: signer?,
        approval: approval?,
        behavior: behavior?,
        trusted_forwarders,
        audit_log: audit_log?,
        audit_key: audit_key?,
        audit_fail_mode,
        audit_checkpoint,
        redact,
        audit_syslog,
        monitor_listen,
        identities,
        store: store?,
    })
}

fn read_signer(s: Obj<'_>, base: &Path) -> Option<SignerEndpoint> {
    let urls = infrabroker_common::replicas::read_urls(&s);
    let client_cert = req_path(&s, "client_cert", base);
    let client_key = req_path(&s, "client_key", base);
    let ca = req_path(&s, "ca", base);
    let timeout = s.opt_u64("request_timeout_seconds").unwrap_or(10);
    if !(1..=120).contains(&timeout) {
        s.error("request_timeout_seconds", "must be between 1 and 120");
    }
    s.finish();
    Some(SignerEndpoint {
        urls: urls?,
        client_cert: client_cert?,
        client_key: client_key?,
        ca: ca?,
        request_timeout: Duration::from_secs(timeout.clamp(1, 120)),
    })
}

fn read_approval_default() -> Option<ApprovalConfig> {
    Some(ApprovalConfig {
        notifier: NotifierKind::None,
        webhook_url: None,
        webhook_ca: PathBuf::from(SYSTEM_CA_BUNDLE),
        notify_attempts: 3,
        timeout: DEFAULT_APPROVAL_TIMEOUT,
        purge_after: Duration::from_secs(3600),
        callers: BTreeSet::new(),
        url_template: None,
        tiers: Vec::new(),
        default_tier: Tier::Human,
        reviewer: None,
        max_pending_per_caller: DEFAULT_MAX_PENDING,
    })
}

/// `approval.max_pending_per_caller` unless set.
pub const DEFAULT_MAX_PENDING: usize = 20;

/// Debian's bundle of the system's trusted CAs.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `notifier`, `webhook_url` (required by the webhook kinds) and
/// `teams_format`.
fn read_notifier(a: &Obj<'_>) -> (NotifierKind, Option<String>) {
    let notifier = match a.opt_str("notifier").as_deref() {
        None | Some("") => NotifierKind::None,
        Some("log") => NotifierKind::Log,
        Some("webhook") => NotifierKind::Webhook,
        Some("slack") => NotifierKind::Slack,
        Some("teams") => NotifierKind::Teams,
        Some(other) => {
            a.error(
                "notifier",
                format!("{other:?} is not \"log\", \"webhook\", \"slack\" or \"teams\""),
            );
            NotifierKind::None
        }
    };
    let webhook_url = a.opt_str("webhook_url").filter(|u| !u.is_empty());
    match (&webhook_url, notifier) {
        (None, NotifierKind::Webhook | NotifierKind::Slack | NotifierKind::Teams) => {
            a.error("webhook_url", "is required by this notifier");
        }
        (Some(u), _) if !(u.starts_with("https://") || u.starts_with("http://")) => {
            a.error("webhook_url", "must be an http:// or https:// URL");
        }
        _ => {}
    }
    match a.opt_str("teams_format").as_deref() {
        None | Some("") | Some("adaptivecard") => {}
        Some(other) => a.error(
            "teams_format",
            format!("{other:?} is not implemented; only \"adaptivecard\" is"),
        ),
    }
    (notifier, webhook_url)
}

fn read_approval(a: Obj<'_>, base: &Path) -> Option<ApprovalConfig> {
    let (notifier, webhook_url) = read_notifier(&a);
    let webhook_ca = a
        .opt_str("webhook_ca")
        .map(|p| resolve(base, &p))
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
    let notify_attempts = a.opt_u64("notify_attempts").unwrap_or(3);
    if !(1..=10).contains(&notify_attempts) {
        a.error("notify_attempts", "must be between 1 and 10");
    }
    let timeout = match a.opt_u64("timeout_seconds") {
        None | Some(0) => DEFAULT_APPROVAL_TIMEOUT,
        Some(s) if s > 86_400 => {
            a.error("timeout_seconds", "must be at most 86400");
            DEFAULT_APPROVAL_TIMEOUT
        }
        Some(s) => Duration::from_secs(s),
    };
    let purge = a.opt_u64("purge_after_seconds").unwrap_or(3600);
    if !(1..=7 * 86_400).contains(&purge) {
        a.error("purge_after_seconds", "must be between 1 and 604800");
    }
    let callers = name_set(&a, "callers");
    let url_template = a.opt_str("approval_url_template").filter(|t| !t.is_empty());
    if let Some(t) = &url_template
        && !t.contains("{id}")
    {
        a.error("approval_url_template", "must contain the {id} placeholder");
    }
    let tiers = read_tiers(&a);
    let default_tier = tier(&a, "default_tier", Tier::Human);
    let reviewer = a.opt_obj("reviewer").and_then(|r| read_reviewer(r, base));
    let max_pending = a
        .opt_u64("max_pending_per_caller")
        .unwrap_or(DEFAULT_MAX_PENDING as u64);
    if !(1..=10_000).contains(&max_pending) {
        a.error("max_pending_per_caller", "must be between 1 and 10000");
    }
    a.finish();
    Some(ApprovalConfig {
        notifier,
        webhook_url,
        webhook_ca,
        notify_attempts: u32::try_from(notify_attempts.clamp(1, 10)).unwrap_or(3),
        timeout,
        purge_after: Duration::from_secs(purge.clamp(1, 7 * 86_400)),
        callers,
        url_template,
        tiers,
        default_tier,
        reviewer,
        max_pending_per_caller: usize::try_from(max_pending.clamp(1, 10_000))
            .unwrap_or(DEFAULT_MAX_PENDING),
    })
}

fn read_tiers(a: &Obj<'_>) -> Vec<TierRule> {
    let Some(v) = a.raw("tiers") else {
        return Vec::new();
    };
    let path = a.path_of("tiers");
    let Value::Array(items) = v else {
        a.error("tiers", "expected a list of tier rules");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(rule) = Obj::new(item, &index(&path, i), a.errors()) else {
            continue;
        };
        let pattern = rule.str("match").and_then(|m| match Regex::new(&m) {
            Ok(re) => Some(re),
            Err(e) => {
                rule.error("match", format!("not a valid regex: {e}"));
                None
            }
        });
        let hosts = name_set(&rule, "hosts");
        if rule.raw("tier").is_none() {
            rule.error("tier", "is required");
        }
        let t = tier(&rule, "tier", Tier::Human);
        rule.finish();
        if let Some(pattern) = pattern {
            out.push(TierRule {
                pattern,
                hosts,
                tier: t,
            });
        }
    }
    out
}

fn read_reviewer(r: Obj<'_>, base: &Path) -> Option<ReviewerConfig> {
    let listen = socket_addr(&r, "listen");
    if r.raw("listen").is_none() {
        r.error("listen", "is required");
    }
    if let Some(a) = listen
        && !a.ip().is_loopback()
    {
        r.error(
            "listen",
            "must be a loopback address: the endpoint is plain HTTP (put a TLS proxy in front for remote reviewers)",
        );
    }
    let token_file = req_path(&r, "token_file", base);
    let name = r.opt_str("name").unwrap_or_else(|| "ai-reviewer".into());
    if !is_name(&name) {
        r.error("name", format!("{name:?} is not a valid name"));
    }
    r.finish();
    Some(ReviewerConfig {
        listen: listen?,
        token_file: token_file?,
        name,
    })
}

fn default_behavior() -> BehaviorConfig {
    BehaviorConfig {
        mode: GuardMode::Off,
        rate_limit_per_min: 0,
        novelty_tier: Tier::Human,
        max_subjects: 10_000,
        subject_ttl: None,
        max_distinct_per_subject: 1_000,
    }
}

fn read_behavior(b: Obj<'_>) -> Option<BehaviorConfig> {
    let mode = match b.opt_str("mode").as_deref() {
        None | Some("") | Some("off") => GuardMode::Off,
        Some("observe") => GuardMode::Observe,
        Some("enforce") => GuardMode::Enforce,
        Some(other) => {
            b.error(
                "mode",
                format!("{other:?} is not \"off\", \"observe\" or \"enforce\""),
            );
            GuardMode::Off
        }
    };
    let rate = b.opt_u64("rate_limit_per_min").unwrap_or(0);
    if rate > 100_000 {
        b.error("rate_limit_per_min", "must be at most 100000");
    }
    let novelty_tier = tier(&b, "novelty_tier", Tier::Human);
    let max_subjects = b.opt_u64("max_subjects").unwrap_or(10_000);
    if !(1..=1_000_000).contains(&max_subjects) {
        b.error("max_subjects", "must be between 1 and 1000000");
    }
    let ttl = b.opt_u64("subject_ttl_minutes").unwrap_or(0);
    let max_distinct = b.opt_u64("max_distinct_per_subject").unwrap_or(1_000);
    if !(1..=100_000).contains(&max_distinct) {
        b.error("max_distinct_per_subject", "must be between 1 and 100000");
    }
    b.finish();
    Some(BehaviorConfig {
        mode,
        rate_limit_per_min: u32::try_from(rate.min(100_000)).unwrap_or(0),
        novelty_tier,
        max_subjects: usize::try_from(max_subjects.max(1)).unwrap_or(10_000),
        subject_ttl: (ttl > 0).then(|| Duration::from_secs(ttl.saturating_mul(60))),
        max_distinct_per_subject: usize::try_from(max_distinct.max(1)).unwrap_or(1_000),
    })
}

#[cfg(test)]
mod tests;
