//! CA custody peers: a SoftHSM2 token made by `broker-ctl pki init --hsm`
//! and a real `ssh-agent` holding a CA key.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::prereq::require;
use crate::process::{ChildGuard, bin_path, spawn_logged};

/// SoftHSM2's PKCS#11 module on Debian.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// `require("SoftHSM2 (softhsm2)", …)`.
pub fn softhsm_or_skip() -> bool {
    require(
        "SoftHSM2 (apt-get install softhsm2)",
        Path::new(SOFTHSM_MODULE).is_file(),
    )
}

/// `require("ssh-agent and ssh-add", …)`.
pub fn agent_or_skip() -> bool {
    let have = |b: &str| Command::new(b).arg("-h").output().is_ok();
    require(
        "ssh-agent and ssh-add (openssh-client)",
        have("ssh-agent") && have("ssh-add"),
    )
}

/// A SoftHSM2 token `ca` with an Ed25519 key `ca`, made by the real
/// `broker-ctl pki init --hsm DIR`.
#[derive(Debug, Clone)]
pub struct SoftHsm {
    /// The directory `broker-ctl` filled.
    pub dir: PathBuf,
    /// The CA's public key line.
    pub public_key: String,
}

impl SoftHsm {
    /// Runs `broker-ctl pki init --hsm DIR`.
    pub fn create(dir: &Path) -> anyhow::Result<SoftHsm> {
        let out = Command::new(bin_path("broker-ctl")?)
            .args(["pki", "init", "--hsm"])
            .arg(dir)
            .output()
            .context("cannot run broker-ctl pki init --hsm")?;
        if !out.status.success() {
            bail!(
                "broker-ctl pki init --hsm failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let public_key = std::fs::read_to_string(dir.join("ca.pub"))
            .context("broker-ctl pki init --hsm wrote no ca.pub")?
            .trim()
            .to_owned();
        Ok(SoftHsm {
            dir: dir.to_owned(),
            public_key,
        })
    }

    /// `SOFTHSM2_CONF` for processes that use the token.
    pub fn env(&self) -> (&'static str, OsString) {
        (
            "SOFTHSM2_CONF",
            self.dir.join("softhsm2.conf").into_os_string(),
        )
    }

    /// The `ca_keys` entry for this token.
    pub fn ca_entry(&self) -> Value {
        json!({
            "type": "pkcs11",
            "module": SOFTHSM_MODULE,
            "token_label": "ca",
            "key_label": "ca",
            "pin_file": self.dir.join("pin"),
        })
    }

    /// Where the token's objects are (rename it to take the token away).
    pub fn token_dir(&self) -> PathBuf {
        self.dir.join("tokens")
    }
}

/// A real `ssh-agent -D` on a socket in a temporary directory.
#[derive(Debug)]
pub struct Agent {
    /// The agent's socket.
    pub socket: PathBuf,
    process: ChildGuard,
}

impl Agent {
    /// Starts an agent on `socket` and waits until the socket exists.
    pub fn start(socket: &Path) -> anyhow::Result<Agent> {
        let _ = std::fs::remove_file(socket);
        let log = socket.with_extension("log");
        let mut cmd = Command::new("ssh-agent");
        cmd.arg("-D").arg("-a").arg(socket);
        let process = spawn_logged(&mut cmd, &log)?;
        if !crate::wait_until(Duration::from_secs(10), || socket.exists()) {
            bail!("ssh-agent did not create {}", socket.display());
        }
        Ok(Agent {
            socket: socket.to_owned(),
            process,
        })
    }

    /// `ssh-add KEYFILE` into this agent.
    pub fn add(&self, key_file: &Path) -> anyhow::Result<()> {
        let out = Command::new("ssh-add")
            .arg(key_file)
            .env("SSH_AUTH_SOCK", &self.socket)
            .output()
            .context("cannot run ssh-add")?;
        if !out.status.success() {
            bail!("ssh-add failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Stops the agent (its socket goes away with it).
    pub fn stop(&mut self) {
        self.process.stop();
        let _ = std::fs::remove_file(&self.socket);
    }
}
