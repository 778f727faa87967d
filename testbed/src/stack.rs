//! The infrabroker services as real processes for tests and the demo: a dev
//! PKI in a temporary directory and a `signer` started from a JSON config.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use infrabroker_common::pki::{PkiOptions, init};
use serde_json::{Value, json};

use crate::process::{ChildGuard, bin_path, spawn_logged};

/// A dev PKI made by the same code as `broker-ctl pki init`.
#[derive(Debug, Clone)]
pub struct Pki {
    /// Directory holding the files.
    pub dir: PathBuf,
}

impl Pki {
    /// Generates the PKI into `dir/pki`.
    pub fn create(dir: &Path) -> anyhow::Result<Pki> {
        let out = dir.join("pki");
        let mut opts = PkiOptions::new(&out);
        opts.clients = vec!["broker-1".into(), "operator".into(), "stranger".into()];
        init(&opts).context("generating the dev PKI")?;
        Ok(Pki { dir: out })
    }

    /// A file of the PKI.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The SSH user CA's public key line.
    pub fn ssh_ca_pub(&self) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(self.path("ssh_user_ca.pub"))?;
        Ok(text.trim().to_owned())
    }
}

/// A minimal valid signer configuration over `pki`, listening on a free
/// loopback port, with no hosts. Tests add hosts and callers.
pub fn signer_config(pki: &Pki, audit_log: &Path) -> Value {
    json!({
        "listen": "127.0.0.1:0",
        "server_cert": pki.path("signer.crt"),
        "server_key": pki.path("signer.key"),
        "client_ca": pki.path("ca.crt"),
        "ca_key": pki.path("ssh_user_ca"),
        "audit_log": audit_log,
        "audit_key": pki.path("signer-audit.seed"),
        "max_ttl_seconds": 300,
        "reload_callers": ["operator"],
        "trusted_forwarders": ["control-plane"],
        "callers": {},
        "hosts": {},
    })
}

/// A running `signer` process.
#[derive(Debug)]
pub struct SignerProc {
    /// The process; stopped on drop.
    pub child: ChildGuard,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// Where its configuration is.
    pub config_path: PathBuf,
}

impl SignerProc {
    /// Writes `config` to `dir/signer.json` and starts the signer on it,
    /// waiting until it listens.
    pub fn start(dir: &Path, config: &Value) -> anyhow::Result<SignerProc> {
        let config_path = dir.join("signer.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(config)?)?;
        Self::start_file(dir, &config_path)
    }

    /// Starts the signer on an existing configuration file.
    pub fn start_file(dir: &Path, config_path: &Path) -> anyhow::Result<SignerProc> {
        Self::start_file_env(dir, config_path, &[])
    }

    /// Like [`SignerProc::start`] with extra environment variables (a
    /// PKCS#11 module's configuration, a PIN variable).
    pub fn start_env(
        dir: &Path,
        config: &Value,
        env: &[(&str, &OsStr)],
    ) -> anyhow::Result<SignerProc> {
        let config_path = dir.join("signer.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(config)?)?;
        Self::start_file_env(dir, &config_path, env)
    }

    fn start_file_env(
        dir: &Path,
        config_path: &Path,
        env: &[(&str, &OsStr)],
    ) -> anyhow::Result<SignerProc> {
        let log = dir.join(format!("signer-{}.log", std::process::id()));
        let mut cmd = std::process::Command::new(bin_path("signer")?);
        cmd.arg("--config")
            .arg(config_path)
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = spawn_logged(&mut cmd, &log)?;
        let mut proc = SignerProc {
            child,
            url: String::new(),
            config_path: config_path.to_owned(),
        };
        let marker = "signer listening on ";
        let found = crate::wait_until(Duration::from_secs(20), || {
            proc.child.log().contains(marker) || proc.child.try_status().is_some()
        });
        let text = proc.child.log();
        let Some(rest) = text.split(marker).nth(1) else {
            bail!("signer did not start (found={found}):\n{text}");
        };
        proc.url = rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .to_owned();
        Ok(proc)
    }

    /// Rewrites the configuration file (the running signer keeps its
    /// configuration until a reload).
    pub fn write_config(&self, config: &Value) -> anyhow::Result<()> {
        std::fs::write(&self.config_path, serde_json::to_vec_pretty(config)?)?;
        Ok(())
    }

    /// Sends SIGHUP (reload).
    pub fn hup(&self) -> anyhow::Result<()> {
        let st = std::process::Command::new("kill")
            .args(["-HUP", &self.child.pid().to_string()])
            .status()?;
        if !st.success() {
            bail!("kill -HUP failed");
        }
        Ok(())
    }

    /// The signer's stderr so far.
    pub fn log(&self) -> String {
        self.child.log()
    }
}
