//! Checks that dial out: the signer with the configured identity (and the
//! clock against its `Date`), and each directly reachable host's pinned key
//! through the broker's own SSH pinning code.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hyper::{Method, StatusCode};
use infrabroker_broker::api::ToolError;
use infrabroker_broker::ssh::{HopTarget, check_host_key};
use infrabroker_common::client::MtlsClient;
use infrabroker_common::wire::HostsResponse;
use infrabroker_signer::config::SignerConfig;
use russh::keys::PublicKey;

use super::{Finding, Report};

/// Clock difference to the signer above which certificates may be refused
/// as not yet valid or already expired.
const MAX_SKEW: Duration = Duration::from_secs(30);
/// Deadline of each dial.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How a broker or control plane reaches the signer.
#[derive(Debug)]
pub struct Upstream {
    pub url: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Upstream {
    /// One upstream per replica in a `signer.url` list.
    pub fn replicas(urls: &[String], ca: &Path, cert: &Path, key: &Path) -> Vec<Upstream> {
        urls.iter()
            .map(|url| Upstream {
                url: url.clone(),
                ca: ca.to_owned(),
                cert: cert.to_owned(),
                key: key.to_owned(),
            })
            .collect()
    }
}

/// Asks the signer (or control plane) for the host view with this identity;
/// with `hosts`, checks every directly reachable host in it too.
pub async fn upstream(up: &Upstream, report: &mut Report, hosts: bool) {
    let unreachable = |message: String| {
        Finding::new(
            "signer_unreachable",
            up.url.clone(),
            message,
            "check the URL, that the signer runs, and the firewall between them",
        )
        .unreachable()
    };
    report.checks += 1;
    let client = match MtlsClient::new(&up.url, &up.ca, &up.cert, &up.key, DIAL_TIMEOUT) {
        Ok(c) => c,
        Err(e) => return report.findings.push(unreachable(e.to_string())),
    };
    let raw = match client.call_raw(Method::GET, "/v1/hosts", None).await {
        Ok(raw) => raw,
        Err(e) => return report.findings.push(unreachable(e.to_string())),
    };
    if raw.status != StatusCode::OK {
        let body = String::from_utf8_lossy(&raw.body);
        return report.findings.push(Finding::new(
            "identity_refused",
            up.url.clone(),
            format!(
                "the signer refused this identity: {} {}",
                raw.status,
                body.trim()
            ),
            "list the certificate's CN in the signer's `callers` (or `trusted_forwarders`)",
        ));
    }
    report.check(raw.date.as_deref().and_then(skew).map(|secs| {
        Finding::new(
            "clock_skew",
            up.url.clone(),
            format!("this machine's clock differs from the signer's by {secs} s"),
            "run NTP (systemd-timesyncd or chrony) on both machines",
        )
    }));
    if !hosts {
        return;
    }
    match serde_json::from_slice::<HostsResponse>(&raw.body) {
        Ok(view) => {
            let targets = view
                .into_iter()
                .map(|(name, h)| (name, h.addr, h.host_key, h.jump));
            host_keys(targets, report).await;
        }
        Err(e) => report.findings.push(Finding::new(
            "signer_protocol",
            up.url.clone(),
            format!("the host view is not valid JSON: {e}"),
            "run the same version of the broker and the signer",
        )),
    }
}

/// Seconds of skew against an HTTP `Date`, when above [`MAX_SKEW`].
fn skew(date: &str) -> Option<u64> {
    let theirs = httpdate::parse_http_date(date).ok()?;
    let now = SystemTime::now();
    let diff = now
        .duration_since(theirs)
        .or_else(|_| theirs.duration_since(now))
        .ok()?;
    // `Date` has one-second resolution.
    (diff > MAX_SKEW + Duration::from_secs(1)).then_some(diff.as_secs())
}

/// Checks the pinned keys of the signer's hosts.
pub async fn signer_hosts(cfg: &SignerConfig, report: &mut Report) {
    let targets = cfg.hosts.values().map(|h| {
        (
            h.name.clone(),
            h.addr.clone(),
            h.host_key.clone(),
            h.jump.clone(),
        )
    });
    host_keys(targets, report).await;
}

async fn host_keys(
    targets: impl Iterator<Item = (String, String, String, Option<String>)>,
    report: &mut Report,
) {
    for (name, addr, host_key, jump) in targets {
        if let Some(bastion) = jump {
            report.skipped.push(format!(
                "host {name}: behind bastion {bastion}, reached only with a certificate"
            ));
            continue;
        }
        report.check(host_key_finding(name, addr, &host_key).await);
    }
}

async fn host_key_finding(name: String, addr: String, host_key: &str) -> Option<Finding> {
    let subject = format!("host {name} ({addr})");
    let Ok(key) = PublicKey::from_openssh(host_key) else {
        return Some(Finding::new(
            "host_key_invalid",
            subject,
            "the pinned host key is not an OpenSSH public key".to_owned(),
            "copy the key line from `ssh-keyscan` or the host's /etc/ssh/ssh_host_ed25519_key.pub",
        ));
    };
    let hop = HopTarget {
        name,
        addr,
        user: String::new(),
        host_key: key,
    };
    match check_host_key(&hop, DIAL_TIMEOUT).await {
        Ok(()) => None,
        Err(ToolError::HostKeyMismatch { .. }) => Some(Finding::new(
            "host_key_mismatch",
            subject,
            "the host presents a different key than the one pinned".to_owned(),
            "if the host was rebuilt, pin its new key; otherwise treat it as an attack",
        )),
        Err(e) => Some(
            Finding::new(
                "host_unreachable",
                subject,
                e.to_string(),
                "check the address, that sshd runs, and the network path",
            )
            .unreachable(),
        ),
    }
}
