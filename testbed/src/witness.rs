//! A real C2SP `tlog-witness` for tests: `aics-witness` from PyPI, an
//! independent implementation (Python, SQLite), installed by
//! `deploy/deps.sh` into a virtual environment under `testbed/witness/venv`.
//! Each [`Witness`] has its own key, database and loopback port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::prereq::require;
use crate::process::{ChildGuard, free_port, spawn_service, wait_until};

/// The witness program deps.sh installs.
pub fn witness_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("witness/venv/bin/aics-witness")
}

/// `require("aics-witness", …)`: skip locally, fail in CI.
pub fn witness_or_skip() -> bool {
    require(
        "the aics-witness C2SP witness (deploy/deps.sh installs it under testbed/witness/venv)",
        witness_bin().exists(),
    )
}

/// Runs `aics-witness <cmd> -c config <args>`; what it printed (stdout,
/// then stderr).
fn admin(config: &Path, cmd: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(witness_bin())
        .arg(cmd)
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .with_context(|| format!("aics-witness {cmd}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("aics-witness {cmd}: {text}");
    }
    Ok(text)
}

/// A running witness.
#[derive(Debug)]
pub struct Witness {
    /// Its directory (config, key, database, log).
    pub dir: PathBuf,
    /// Its cosigner name.
    pub name: String,
    /// Its verifier key (`<name>+<id>+<key>`).
    pub vkey: String,
    /// Its submission prefix, `http://127.0.0.1:<port>`.
    pub url: String,
    child: Option<ChildGuard>,
}

impl Witness {
    /// Creates a witness in `dir` (which must not hold one yet) trusting
    /// the log `origin` with the note verifier key `log_vkey`, and starts it.
    pub fn start(dir: &Path, origin: &str, log_vkey: &str) -> anyhow::Result<Witness> {
        std::fs::create_dir_all(dir)?;
        let port = free_port();
        let name = "witness.test/w1".to_owned();
        let config = dir.join("witness.json");
        let listen = format!("127.0.0.1:{port}");
        let printed = admin(&config, "init", &["--name", &name, "--listen", &listen])?;
        let vkey = printed
            .lines()
            .find(|l| l.starts_with(&format!("{name}+")))
            .map(str::to_owned)
            .context("aics-witness init printed no vkey")?;
        admin(
            &config,
            "add-log",
            &["--origin", origin, "--vkey", log_vkey],
        )?;
        let mut w = Witness {
            dir: dir.to_owned(),
            name,
            vkey,
            url: format!("http://127.0.0.1:{port}"),
            child: None,
        };
        w.start_again()?;
        Ok(w)
    }

    /// Starts the witness again (after [`stop`](Self::stop)) on its state.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        let config = self.dir.join("witness.json");
        let child = spawn_service(
            witness_bin(),
            [
                std::ffi::OsStr::new("serve"),
                "-c".as_ref(),
                config.as_os_str(),
            ],
            self.dir.join("witness.log"),
        )?;
        let addr = self.url.trim_start_matches("http://").to_owned();
        if !wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(&addr).is_ok()
        }) {
            bail!("aics-witness did not listen on {addr}: {}", child.log());
        }
        self.child = Some(child);
        Ok(())
    }

    /// Stops it (a witness that is down).
    pub fn stop(&mut self) {
        self.child = None;
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("witness.log")).unwrap_or_default()
    }
}
