//! A private PostgreSQL cluster for one test: `initdb` into a temporary
//! directory, `pg_ctl start` on a free loopback port (and a unix socket in
//! the same directory), stopped with `-m immediate` when dropped.
//!
//! `initdb` and `postgres` refuse to run as root, so as root they run as
//! the `postgres` account through `runuser`; the directory is made its own
//! (see NOTES.md). Functional tests start with `fsync=off`; benchmarks pass
//! `durable = true` and keep fsync on.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::prereq::{is_root, require};

/// Where Debian's PostgreSQL 15 server programs live.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Whether a PostgreSQL server can be started here.
pub fn have_postgres() -> bool {
    Path::new(PG_BIN).join("initdb").exists() && Path::new(PG_BIN).join("pg_ctl").exists()
}

/// `require("PostgreSQL 15 server programs", …)`: skip locally, fail in CI.
pub fn postgres_or_skip() -> bool {
    require(
        "PostgreSQL 15 (initdb, pg_ctl under /usr/lib/postgresql/15/bin)",
        have_postgres(),
    )
}

/// A running private cluster.
#[derive(Debug)]
pub struct Postgres {
    _dir: tempfile::TempDir,
    root: PathBuf,
    port: u16,
    durable: bool,
    tls: bool,
}

fn as_owner(program: &str) -> Command {
    let path = Path::new(PG_BIN).join(program);
    if is_root() {
        let mut c = Command::new("runuser");
        c.arg("-u").arg("postgres").arg("--").arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn run(mut c: Command, what: &str) -> anyhow::Result<()> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl Postgres {
    /// Initialises and starts a cluster; `durable` keeps fsync on.
    pub fn start(durable: bool) -> anyhow::Result<Postgres> {
        let dir = tempfile::Builder::new().prefix("ib-pg-").tempdir()?;
        let root = dir.path().to_owned();
        if is_root() {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres:postgres").arg(&root);
                    c
                },
                "chown of the cluster directory",
            )?;
        }
        let mut init = as_owner("initdb");
        init.arg("-D")
            .arg(root.join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync"]);
        run(init, "initdb")?;
        let pg = Postgres {
            _dir: dir,
            root,
            port: crate::free_port(),
            durable,
            tls: false,
        };
        pg.start_again()?;
        Ok(pg)
    }

    /// Like [`Postgres::start`] (fsync off), serving TLS with `cert` and
    /// `key` (PEM; copied into the cluster, owned by the server's account,
    /// 0600) and logging each connection, so a test can see `SSL enabled`.
    pub fn start_tls(cert: &Path, key: &Path) -> anyhow::Result<Postgres> {
        let mut pg = Postgres::start(false)?;
        pg.stop_immediate()?;
        for (from, name) in [(cert, "server.crt"), (key, "server.key")] {
            let to = pg.root.join("data").join(name);
            std::fs::copy(from, &to).with_context(|| format!("copying {}", from.display()))?;
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))?;
            if is_root() {
                let mut c = Command::new("chown");
                c.arg("postgres:postgres").arg(&to);
                run(c, "chown of the TLS files")?;
            }
        }
        pg.tls = true;
        pg.start_again()?;
        Ok(pg)
    }

    /// Starts the (stopped) cluster again on the same port and data.
    pub fn start_again(&self) -> anyhow::Result<()> {
        let mut opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=200",
            self.port,
            self.root.display()
        );
        if self.tls {
            opts.push_str(" -c ssl=on -c log_connections=on");
        }
        if !self.durable {
            // A stop with `-m immediate` is not an OS crash: what the server
            // wrote is in the page cache, so commits survive without fsync.
            opts.push_str(" -c fsync=off");
        }
        let mut c = as_owner("pg_ctl");
        c.arg("-D")
            .arg(self.root.join("data"))
            .arg("-l")
            .arg(self.root.join("log"))
            .args(["-w", "-t", "30", "-o", &opts, "start"]);
        run(c, "pg_ctl start")
    }

    /// Stops the cluster as a crash would (`-m immediate`).
    pub fn stop_immediate(&self) -> anyhow::Result<()> {
        let mut c = as_owner("pg_ctl");
        c.arg("-D")
            .arg(self.root.join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        run(c, "pg_ctl stop")
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for database `db` (over TCP on loopback).
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` (fresh per test, so tests can share a cluster).
    pub fn create_db(&self, name: &str) -> anyhow::Result<()> {
        self.sql("postgres", &format!("CREATE DATABASE \"{name}\""))
    }

    /// Runs `statement` in database `db` as the superuser (what a database
    /// administrator, or an attacker with their access, can do).
    pub fn sql(&self, db: &str, statement: &str) -> anyhow::Result<()> {
        let mut c = Command::new("psql");
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
        .arg(statement);
        run(c, "psql")
    }

    /// The server log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop_immediate();
    }
}

/// The signer replicas' global audit chain in database `url`, read with the
/// real `broker-ctl audit export --postgres`, after `broker-ctl audit
/// verify --postgres … --pubkey pubkey` has passed. Panics (failing the
/// test) if either command fails.
#[expect(
    clippy::panic,
    reason = "a test helper: failing the calling test is the purpose"
)]
pub fn verified_global_chain(url: &str, pubkey: &Path) -> Vec<serde_json::Value> {
    let ctl = crate::bin_path("broker-ctl").unwrap_or_else(|e| panic!("{e}"));
    let verify = Command::new(&ctl)
        .args(["audit", "verify", "--postgres", url, "--pubkey"])
        .arg(pubkey)
        .output()
        .unwrap_or_else(|e| panic!("broker-ctl: {e}"));
    assert!(
        verify.status.success(),
        "the global chain must verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let export = Command::new(&ctl)
        .args(["audit", "export", "--postgres", url])
        .output()
        .unwrap_or_else(|e| panic!("broker-ctl: {e}"));
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}
