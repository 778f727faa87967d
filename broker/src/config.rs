//! `broker.json`: strict JWCC like the signer's. Hosts never come from here;
//! they come from the signer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use infrabroker_common::audit::CheckpointSettings;
use infrabroker_common::config::{ConfigErrors, Errors, Obj, index, load_file, load_text};
use infrabroker_common::names;

use crate::http::settings::{self, HttpSettings, OAuthSettings};

/// How to reach the signer (or a control plane in front of it).
#[derive(Debug, Clone)]
pub struct SignerEndpoint {
    /// `https://host:port` of each replica, in order of preference
    /// (`signer.url` is one URL or a list).
    pub urls: Vec<String>,
    /// Client certificate presented to the signer.
    pub client_cert: PathBuf,
    /// Its key (0600).
    pub client_key: PathBuf,
    /// CA of the signer's server certificate.
    pub ca: PathBuf,
    /// How long a call may wait for an approval (control plane).
    pub approval_wait: Duration,
    /// Deadline of one request to the signer.
    pub request_timeout: Duration,
}

/// The validated broker configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// The signer.
    pub signer: SignerEndpoint,
    /// Periodic host-view refresh.
    pub hosts_refresh: Duration,
    /// How often the signer's freezes are fetched to close sessions of
    /// frozen subjects (`revocation_poll_seconds`; `None` = never).
    pub revocation_poll: Option<Duration>,
    /// Execution audit log.
    pub audit_log: PathBuf,
    /// Audit signing seed (0600).
    pub audit_key: PathBuf,
    /// Signed checkpoints of the audit log (`audit_checkpoint`).
    pub audit_checkpoint: Option<infrabroker_common::audit::CheckpointSettings>,
    /// Secrets kept out of audit records and recordings (`redact`).
    pub redact: Option<std::sync::Arc<infrabroker_common::redact::Redactor>>,
    /// Records also sent to a syslog receiver (`audit_syslog`).
    pub audit_syslog: Option<infrabroker_common::audit::syslog::SyslogSettings>,
    /// Sessions: idle timeout (used by the sessions feature).
    pub session_idle: Duration,
    /// Sessions: hard maximum (used by the sessions feature).
    pub session_max: Duration,
    /// Sessions: asciicast recordings (used by the sessions feature).
    pub session_recording_dir: Option<PathBuf>,
    /// A recording that cannot be written closes its session
    /// (`recording_required`, default true); false only stops the recording.
    pub recording_required: bool,
    /// Bytes kept per stream; the rest is dropped and flagged.
    pub max_output_bytes: usize,
    /// Default per-command timeout.
    pub exec_timeout: Duration,
    /// Largest per-command timeout a caller may ask for.
    pub exec_timeout_max: Duration,
    /// Concurrent operations per caller.
    pub max_concurrent_per_caller: usize,
    /// Deadline for TCP connect + SSH handshake + authentication per hop.
    pub connect_timeout: Duration,
    /// Open sessions per caller.
    pub max_sessions_per_caller: usize,
    /// Open sessions in total.
    pub max_sessions_total: usize,
    /// Listen address of `mcp-http` and `serve` (`ip:port`).
    pub listen: Option<SocketAddr>,
    /// Plain-HTTP listener for `/metrics`, `/healthz` and `/readyz`, in
    /// every mode (`ip:port`; keep it on loopback or a monitoring network).
    pub monitor_listen: Option<SocketAddr>,
    /// TLS server certificate of `mcp-http` (optional there) and `serve`.
    pub server_cert: Option<PathBuf>,
    /// Its key (0600).
    pub server_key: Option<PathBuf>,
    /// CA whose client certificates `serve` accepts.
    pub client_ca: Option<PathBuf>,
    /// `serve`: the client-certificate CNs that may call, each with its
    /// groups. A CN not listed is refused (`403 caller_unknown`); a listed
    /// one reaches the signer as the end user with these groups.
    pub rest_callers: Option<BTreeMap<String, Vec<String>>>,
    /// Public URL of the MCP endpoint (RFC 9728 `resource`).
    pub resource_url: Option<String>,
    /// Bearer-token validation of `mcp-http`.
    pub oauth: Option<OAuthSettings>,
    /// Limits of the HTTP listeners.
    pub http: HttpSettings,
}

impl BrokerConfig {
    /// Reads and validates `path`; relative paths are resolved against its
    /// directory.
    pub fn load(path: &Path) -> Result<BrokerConfig, ConfigErrors> {
        load_file(path, read)
    }

    /// Validates configuration text.
    pub fn from_text(text: &str, base: &Path) -> Result<BrokerConfig, ConfigErrors> {
        load_text(text, base, read)
    }
}

fn path(o: &Obj<'_>, key: &str, base: &Path) -> Option<PathBuf> {
    o.file_path(key, base)
}

fn secs(o: &Obj<'_>, key: &str, default: u64, min: u64, max: u64) -> Duration {
    let v = o.opt_u64(key).unwrap_or(default);
    if v < min || v > max {
        o.error(key, format!("must be between {min} and {max}"));
    }
    Duration::from_secs(v.clamp(min, max))
}

fn read(v: &serde_json::Value, base: &Path, errs: &Errors) -> Option<BrokerConfig> {
    let root = Obj::new(v, "", errs)?;
    let signer = read_signer(&root, base);
    let hosts_refresh = secs(&root, "hosts_refresh_seconds", 300, 5, 86_400);
    let revocation_poll = match root.opt_u64("revocation_poll_seconds") {
        Some(0) => None,
        _ => Some(secs(&root, "revocation_poll_seconds", 10, 1, 3600)),
    };
    let audit_log = path(&root, "audit_log", base);
    let audit_key = path(&root, "audit_key", base);
    let audit_checkpoint = CheckpointSettings::read(&root, base, audit_log.as_deref());
    let redact = infrabroker_common::redact::Redactor::read(&root);
    let audit_syslog = infrabroker_common::audit::syslog::SyslogSettings::read(&root, base);
    let session_idle = secs(&root, "session_idle_seconds", 300, 5, 86_400);
    let session_max = secs(&root, "session_max_seconds", 1800, 5, 86_400);
    let session_recording_dir = root.opt_str("session_recording_dir").map(|s| base.join(s));
    let recording_required = root.opt_bool("recording_required").unwrap_or(true);
    let limits = read_limits(&root);
    let connect_timeout = secs(&root, "connect_timeout_seconds", 15, 1, 300);
    let listen = socket_addr(&root, "listen", "127.0.0.1:8443");
    let monitor_listen = socket_addr(&root, "monitor_listen", "127.0.0.1:9102");
    let opt_path = |key: &str| root.raw(key).and_then(|_| path(&root, key, base));
    let server_cert = opt_path("server_cert");
    let server_key = opt_path("server_key");
    if server_cert.is_some() != server_key.is_some() {
        root.error("server_key", "server_cert and server_key go together");
    }
    let client_ca = opt_path("client_ca");
    let rest_callers = read_rest_callers(&root);
    let resource_url = settings::read_resource_url(&root);
    let oauth = settings::read_oauth(&root, base);
    let http = settings::read_http(&root);
    root.finish();
    Some(BrokerConfig {
        signer: signer?,
        hosts_refresh,
        revocation_poll,
        audit_log: audit_log?,
        audit_key: audit_key?,
        audit_checkpoint,
        redact,
        audit_syslog,
        session_idle,
        session_max,
        session_recording_dir,
        recording_required,
        max_output_bytes: limits.max_output_bytes,
        exec_timeout: limits.exec_timeout,
        exec_timeout_max: limits.exec_timeout_max,
        max_concurrent_per_caller: limits.max_concurrent_per_caller,
        connect_timeout,
        max_sessions_per_caller: limits.max_sessions_per_caller,
        max_sessions_total: limits.max_sessions_total,
        listen,
        monitor_listen,
        server_cert,
        server_key,
        client_ca,
        rest_callers,
        resource_url,
        oauth,
        http,
    })
}

/// The per-command and per-caller limits of [`BrokerConfig`].
struct Limits {
    max_output_bytes: usize,
    exec_timeout: Duration,
    exec_timeout_max: Duration,
    max_concurrent_per_caller: usize,
    max_sessions_per_caller: usize,
    max_sessions_total: usize,
}

/// Output, timeout, concurrency and session limits, each range-checked.
fn read_limits(root: &Obj<'_>) -> Limits {
    let max_output_bytes = root.opt_u64("max_output_bytes").unwrap_or(1024 * 1024);
    if !(1024..=64 * 1024 * 1024).contains(&max_output_bytes) {
        root.error("max_output_bytes", "must be between 1024 and 67108864");
    }
    let exec_timeout = secs(root, "exec_timeout_seconds", 120, 1, 3600);
    let exec_timeout_max = secs(root, "exec_timeout_max_seconds", 600, 1, 86_400);
    if exec_timeout > exec_timeout_max {
        root.error(
            "exec_timeout_seconds",
            "must not exceed exec_timeout_max_seconds",
        );
    }
    let max_concurrent_per_caller = root.opt_u64("max_concurrent_per_caller").unwrap_or(8);
    if !(1..=1024).contains(&max_concurrent_per_caller) {
        root.error("max_concurrent_per_caller", "must be between 1 and 1024");
    }
    let max_sessions_per_caller = root.opt_u64("max_sessions_per_caller").unwrap_or(10);
    let max_sessions_total = root.opt_u64("max_sessions_total").unwrap_or(100);
    for (key, v) in [
        ("max_sessions_per_caller", max_sessions_per_caller),
        ("max_sessions_total", max_sessions_total),
    ] {
        if !(1..=10_000).contains(&v) {
            root.error(key, "must be between 1 and 10000");
        }
    }
    Limits {
        max_output_bytes: usize::try_from(max_output_bytes).unwrap_or(usize::MAX),
        exec_timeout,
        exec_timeout_max,
        max_concurrent_per_caller: usize::try_from(max_concurrent_per_caller).unwrap_or(8),
        max_sessions_per_caller: usize::try_from(max_sessions_per_caller).unwrap_or(10),
        max_sessions_total: usize::try_from(max_sessions_total).unwrap_or(100),
    }
}

/// `signer`: where the signer is and this broker's identity toward it.
fn read_signer(root: &Obj<'_>, base: &Path) -> Option<SignerEndpoint> {
    let signer = root.opt_obj("signer");
    if signer.is_none() && root.raw("signer").is_none() {
        root.error("signer", "is required");
    }
    signer.and_then(|s| {
        let url = infrabroker_common::replicas::read_urls(&s);
        let client_cert = path(&s, "client_cert", base);
        let client_key = path(&s, "client_key", base);
        let ca = path(&s, "ca", base);
        let approval_wait = secs(&s, "approval_wait_seconds", 300, 0, 3600);
        let request_timeout = secs(&s, "request_timeout_seconds", 10, 1, 120);
        let endpoint = match (url, client_cert, client_key, ca) {
            (Some(urls), Some(client_cert), Some(client_key), Some(ca)) => Some(SignerEndpoint {
                urls,
                client_cert,
                client_key,
                ca,
                approval_wait,
                request_timeout,
            }),
            _ => None,
        };
        s.finish();
        endpoint
    })
}

/// An optional `ip:port` setting.
fn socket_addr(root: &Obj<'_>, key: &str, example: &str) -> Option<SocketAddr> {
    root.opt_str(key)
        .and_then(|l| match l.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                root.error(key, format!("must be ip:port, e.g. {example}"));
                None
            }
        })
}

/// `rest_callers: {"<CN>": {"allowed_groups": [...]}}`, the shape of the
/// signer's `callers`. The CN becomes the signer's `end_user`, so it must
/// pass the signer's end-user rule; the groups its group rule.
fn read_rest_callers(root: &Obj<'_>) -> Option<BTreeMap<String, Vec<String>>> {
    root.raw("rest_callers")?;
    let mut out = BTreeMap::new();
    for (cn, path, value) in root.map_entries("rest_callers") {
        let Some(entry) = Obj::new(value, &path, root.errors()) else {
            continue;
        };
        if !names::is_identity(&cn) {
            root.errors().push(
                path.clone(),
                format!("{cn:?} is not a valid caller CN (1-128 of [A-Za-z0-9._@+:-])"),
            );
        }
        let list_path = entry.path_of("allowed_groups");
        let mut groups = entry.str_list("allowed_groups");
        for (i, g) in groups.iter().enumerate() {
            if !names::is_name(g) {
                root.errors().push(
                    index(&list_path, i),
                    format!("{g:?} is not a valid group name"),
                );
            }
        }
        if groups.is_empty() {
            entry.error("allowed_groups", "must list at least one group");
        }
        groups.sort();
        groups.dedup();
        entry.finish();
        out.insert(cn, groups);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_reported_with_its_path() {
        let e = BrokerConfig::from_text(
            r#"{"signer": {"url": "http://x", "client_cert": "a", "extra": 1},
                "audit_key": "k", "max_output_bytes": 10, "hosts": {},
                "rest_callers": {"bad cn": {"allowed_groups": ["web"]}, "ok": {},
                                 "x": {"allowed_groups": ["a b"], "groups": []}}}"#,
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "signer.url: must be an https:// URL",
            "signer.extra: unknown field",
            "signer.client_key: is required",
            "audit_log: is required",
            "max_output_bytes: must be between",
            "hosts: unknown field",
            "rest_callers[\"bad cn\"]: \"bad cn\" is not a valid caller CN",
            "rest_callers.ok.allowed_groups: must list at least one group",
            "rest_callers.x.allowed_groups[0]: \"a b\" is not a valid group name",
            "rest_callers.x.groups: unknown field",
        ] {
            assert!(e.contains(needle), "{needle} missing in:\n{e}");
        }
    }

    fn with_url(url: &str) -> Result<BrokerConfig, ConfigErrors> {
        BrokerConfig::from_text(
            &format!(
                r#"{{"signer": {{"url": {url}, "client_cert": "c", "client_key": "k", "ca": "ca"}},
                    "audit_log": "l", "audit_key": "s"}}"#
            ),
            Path::new("/etc/ib"),
        )
    }

    #[test]
    fn revocation_poll_defaults_to_ten_seconds_and_zero_turns_it_off() {
        let with = |extra: &str| {
            BrokerConfig::from_text(
                &format!(
                    r#"{{"signer": {{"url": "https://s", "client_cert": "c", "client_key": "k", "ca": "ca"}},
                        "audit_log": "l", "audit_key": "s" {extra}}}"#
                ),
                Path::new("/etc/ib"),
            )
        };
        assert_eq!(
            with("").unwrap().revocation_poll,
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            with(r#", "revocation_poll_seconds": 0"#)
                .unwrap()
                .revocation_poll,
            None
        );
        assert_eq!(
            with(r#", "revocation_poll_seconds": 1"#)
                .unwrap()
                .revocation_poll,
            Some(Duration::from_secs(1))
        );
        assert!(with(r#", "revocation_poll_seconds": 99999"#).is_err());
    }

    #[test]
    fn signer_url_is_one_url_or_a_list_of_replicas() {
        let one = with_url(r#""https://s1:9443""#).unwrap();
        assert_eq!(one.signer.urls, ["https://s1:9443"]);
        let two = with_url(r#"["https://s1:9443", "https://s2:9443"]"#).unwrap();
        assert_eq!(two.signer.urls, ["https://s1:9443", "https://s2:9443"]);
        for (bad, needle) in [
            ("[]", "at least one"),
            (r#"["https://s1", "http://s2"]"#, "must be an https:// URL"),
            (r#"["https://s1", "https://s1"]"#, "listed twice"),
            ("[1]", "expected a string"),
            (&format!("{:?}", vec!["https://s"; 9]), "at most 8"),
        ] {
            let e = with_url(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {needle} missing in {e}");
        }
    }
}
