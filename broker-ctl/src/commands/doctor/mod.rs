//! `broker-ctl doctor --config FILE`: checks a signer, broker or control
//! plane configuration the way the service will use it, and says what to
//! fix. Each finding has a stable code, a sentence and the fix.
//!
//! Exit codes: 0 nothing found; 1 findings; 69 something the service needs
//! (the signer, a host) could not be reached; 64 the file is not a valid
//! configuration of any service.

mod files;
mod reach;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use infrabroker_broker::config::BrokerConfig;
use infrabroker_common::config::parse_jwcc;
use infrabroker_control_plane::config::ControlPlaneConfig;
use infrabroker_signer::config::SignerConfig;
use serde::Serialize;

use super::{Failure, Outcome};

/// One thing that is wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Stable code, e.g. `cert_expiring`.
    pub code: &'static str,
    /// The file, host or URL it is about.
    pub subject: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub fix: String,
    /// The finding is that something could not be reached (exit 69).
    #[serde(skip)]
    pub unreachable: bool,
}

impl Finding {
    fn new(code: &'static str, subject: impl Into<String>, message: String, fix: &str) -> Self {
        Finding {
            code,
            subject: subject.into(),
            message,
            fix: fix.to_owned(),
            unreachable: false,
        }
    }

    fn unreachable(mut self) -> Self {
        self.unreachable = true;
        self
    }
}

/// What the checks found, and how much they looked at.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// `signer`, `broker` or `control-plane`.
    pub kind: &'static str,
    /// Individual checks run.
    pub checks: usize,
    /// What is wrong.
    pub findings: Vec<Finding>,
    /// What was not checked, and why.
    pub skipped: Vec<String>,
}

impl Report {
    /// Records one check and its finding, if any.
    fn check(&mut self, finding: Option<Finding>) {
        self.checks += 1;
        self.findings.extend(finding);
    }
}

/// Which service a configuration belongs to, from its top-level keys.
fn detect(path: &Path) -> Result<&'static str, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::config(format!("cannot read {}: {e}", path.display())))?;
    let value =
        parse_jwcc(&text).map_err(|e| Failure::config(format!("{}: {e}", path.display())))?;
    let has = |k: &str| value.get(k).is_some();
    if has("hosts") || has("callers") || has("ca_key") || has("ca_keys") {
        Ok("signer")
    } else if has("sign_callers") || has("approval") {
        Ok("control-plane")
    } else if has("signer") {
        Ok("broker")
    } else {
        Err(Failure::config(format!(
            "{}: not a signer, broker or control-plane configuration \
             (no \"hosts\", \"sign_callers\" or \"signer\" key)",
            path.display()
        )))
    }
}

/// Runs every check for the configuration at `path`.
pub fn run(path: &Path, json: bool) -> Outcome {
    let kind = detect(path)?;
    let invalid = |e: infrabroker_common::config::ConfigErrors| {
        Failure::config(format!(
            "{}: invalid {kind} configuration: {e}",
            path.display()
        ))
    };
    let rt = super::runtime()?;
    let mut report = Report {
        kind,
        ..Report::default()
    };
    match kind {
        "signer" => {
            let cfg = SignerConfig::load(path).map_err(invalid)?;
            files::signer(&cfg, &mut report);
            rt.block_on(reach::signer_hosts(&cfg, &mut report));
        }
        "control-plane" => {
            let cfg = ControlPlaneConfig::load(path).map_err(invalid)?;
            files::control_plane(&cfg, &mut report);
            let s = &cfg.signer;
            for up in reach::Upstream::replicas(&s.urls, &s.ca, &s.client_cert, &s.client_key) {
                rt.block_on(reach::upstream(&up, &mut report, false));
            }
        }
        _ => {
            let cfg = BrokerConfig::load(path).map_err(invalid)?;
            files::broker(&cfg, &mut report);
            // Every replica is checked: a broker fails over to any of them.
            let s = &cfg.signer;
            for up in reach::Upstream::replicas(&s.urls, &s.ca, &s.client_cert, &s.client_key) {
                rt.block_on(reach::upstream(&up, &mut report, true));
            }
        }
    }
    print(path, &report, json);
    Ok(ExitCode::from(exit_code(&report)))
}

fn exit_code(report: &Report) -> u8 {
    if report.findings.iter().any(|f| f.unreachable) {
        69
    } else if report.findings.is_empty() {
        0
    } else {
        1
    }
}

fn print(path: &Path, report: &Report, json: bool) {
    if json {
        let doc = serde_json::json!({
            "config": path,
            "kind": report.kind,
            "checks": report.checks,
            "ok": report.findings.is_empty(),
            "findings": report.findings,
            "skipped": report.skipped,
        });
        println!("{doc}");
        return;
    }
    for f in &report.findings {
        println!(
            "{} [{}] {}\n    fix: {}",
            f.subject, f.code, f.message, f.fix
        );
    }
    for s in &report.skipped {
        println!("not checked: {s}");
    }
    println!(
        "{}: {} configuration, {} checks, {} findings",
        path.display(),
        report.kind,
        report.checks,
        report.findings.len()
    );
}

/// Shows a path for findings.
fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// A path that may be unset in a configuration.
fn set(path: &Path) -> Option<PathBuf> {
    (!path.as_os_str().is_empty()).then(|| path.to_path_buf())
}
