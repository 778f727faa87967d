//! A private OpenSSH `sshd` for tests: its own host key, config, pid file and
//! log in a temporary directory, trusting one user CA, with per-user
//! authorized principals; optionally inside a network namespace.
//!
//! The config is a throwaway under `/tmp`, hence `StrictModes no` (a
//! principals file below world-writable `/tmp` is otherwise refused).
//! `LogLevel VERBOSE` makes sshd log why each certificate was accepted or
//! refused; the client is never told, so tests assert on [`Sshd::log`].

use std::fmt::Write as _;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use ssh_key::{Algorithm, LineEnding, PrivateKey};
use tempfile::TempDir;

use crate::client::SshTarget;
use crate::prereq::SSHD;
use crate::process::{ChildGuard, free_port, spawn_logged, wait_until};
use crate::sys;

/// How long sshd gets to start listening.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Start attempts when the port is picked here and turns out to be taken.
const PORT_ATTEMPTS: usize = 5;

/// Set once this sshd turned out not to know `PerSourcePenalties` (< 9.8).
static NO_PENALTIES_OPTION: AtomicBool = AtomicBool::new(false);

/// What a test [`Sshd`] trusts and where it listens.
#[derive(Debug, Clone)]
pub struct SshdOptions {
    /// OpenSSH public key line of the SSH user CA (`TrustedUserCAKeys`).
    pub user_ca_pubkey: String,
    /// Authorized principals per unix user. Users must exist (see
    /// [`crate::ensure_user`]); users not listed cannot log in.
    pub principals: Vec<(String, Vec<String>)>,
    /// Listen address; default 127.0.0.1.
    pub listen: IpAddr,
    /// Listen port; `None` picks a free one (retrying if it gets taken).
    pub port: Option<u16>,
    /// Run sshd inside this network namespace (`ip netns exec NAME`).
    pub netns: Option<String>,
    /// Extra `sshd_config` lines. sshd keeps the *first* value of a keyword,
    /// so these go before the defaults; lines from the first `Match` on go
    /// last.
    pub extra_config: Vec<String>,
}

impl SshdOptions {
    /// Options trusting `user_ca_pubkey`, listening on 127.0.0.1 on a free
    /// port, with no authorized users yet.
    pub fn new(user_ca_pubkey: impl Into<String>) -> Self {
        Self {
            user_ca_pubkey: user_ca_pubkey.into(),
            principals: Vec::new(),
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: None,
            netns: None,
            extra_config: Vec::new(),
        }
    }

    /// Adds `user` with its authorized `principals`.
    pub fn with_principals<I, S>(mut self, user: impl Into<String>, principals: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.principals.push((
            user.into(),
            principals.into_iter().map(Into::into).collect(),
        ));
        self
    }
}

/// A running private sshd; stopped (with its connection processes) on drop.
#[derive(Debug)]
pub struct Sshd {
    process: ChildGuard,
    addr: SocketAddr,
    host_key: String,
    netns: Option<String>,
    dir: TempDir,
}

/// Why one start attempt failed.
enum Attempt {
    PortTaken(anyhow::Error),
    Failed(anyhow::Error),
}

impl Sshd {
    /// Writes the config, checks it with `sshd -t`, starts `sshd -D -e` and
    /// waits until it listens and answers with an SSH banner.
    pub fn start(opts: SshdOptions) -> anyhow::Result<Sshd> {
        std::fs::create_dir_all("/run/sshd").context("cannot create /run/sshd")?;
        let dir = tempfile::Builder::new()
            .prefix("ib-sshd-")
            .tempdir()
            .context("cannot create the sshd temp dir")?;
        // sshd reads AuthorizedPrincipalsFile with the target user's uid.
        set_mode(dir.path(), 0o755)?;
        let principals_dir = dir.path().join("principals");
        std::fs::create_dir(&principals_dir).context("cannot create the principals dir")?;
        set_mode(&principals_dir, 0o755)?;

        let host_key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
            .context("cannot generate the sshd host key")?;
        host_key
            .write_openssh_file(dir.path().join("ssh_host_ed25519_key"), LineEnding::LF)
            .context("cannot write the sshd host key")?;
        let host_key = openssh_key_line(
            &host_key
                .public_key()
                .to_openssh()
                .context("cannot encode the sshd host key")?,
        );
        std::fs::write(
            dir.path().join("user_ca.pub"),
            format!("{}\n", opts.user_ca_pubkey.trim()),
        )
        .context("cannot write the user CA key")?;
        for (user, principals) in &opts.principals {
            write_principals(&principals_dir, user, principals)?;
        }

        let attempts = if opts.port.is_some() {
            1
        } else {
            PORT_ATTEMPTS
        };
        let mut last = anyhow!("sshd was not started");
        for _ in 0..attempts {
            let port = opts.port.unwrap_or_else(free_port);
            match attempt(&opts, dir.path(), port) {
                Ok(process) => {
                    return Ok(Sshd {
                        process,
                        addr: SocketAddr::new(dial_ip(opts.listen), port),
                        host_key,
                        netns: opts.netns.clone(),
                        dir,
                    });
                }
                Err(Attempt::PortTaken(e)) => last = e,
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        Err(last)
    }

    /// Address to dial (an unspecified listen address maps to loopback).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The public host key, `ssh-ed25519 AAAA…` without comment.
    pub fn host_key_openssh(&self) -> String {
        self.host_key.clone()
    }

    /// The namespace sshd runs in, if any.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// How to reach this sshd with [`crate::ssh`] (from its own namespace).
    pub fn target(&self) -> SshTarget {
        SshTarget::from(self)
    }

    /// sshd's log (its stderr, `-e`) so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Path of the log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }

    /// Waits until the log contains `needle` (sshd logs asynchronously, e.g.
    /// after the client has already seen the connection fail).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.process.wait_for_log(needle, timeout)
    }

    /// Path of the generated `sshd_config`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("sshd_config")
    }

    /// The temporary directory holding config, keys and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Process id of the listening sshd.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Replaces the authorized principals of `user` (sshd rereads the file
    /// on every login). An empty list authorizes nobody.
    pub fn set_principals<S: AsRef<str>>(
        &self,
        user: &str,
        principals: &[S],
    ) -> anyhow::Result<()> {
        let principals: Vec<String> = principals.iter().map(|p| p.as_ref().to_owned()).collect();
        write_principals(&self.dir.path().join("principals"), user, &principals)
    }

    /// Stops sshd and the processes serving its open connections. Also
    /// done on drop.
    pub fn kill(&mut self) {
        // Connection processes outlive the listener, so find them first.
        let sessions = sys::children_of(self.process.pid());
        self.process.stop();
        for pid in &sessions {
            sys::signal(*pid, sys::SIGTERM);
        }
        wait_until(Duration::from_secs(2), || {
            sessions.iter().all(|p| !sys::alive(*p))
        });
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One try at starting sshd on `port`.
fn attempt(opts: &SshdOptions, dir: &Path, port: u16) -> Result<ChildGuard, Attempt> {
    let config = dir.join("sshd_config");
    let mut penalties = !NO_PENALTIES_OPTION.load(Ordering::Relaxed);
    loop {
        std::fs::write(&config, config_text(opts, dir, port, penalties))
            .context("cannot write sshd_config")
            .map_err(Attempt::Failed)?;
        match check_config(&config) {
            Ok(()) => break,
            // OpenSSH < 9.8 does not know the option; it also has no
            // penalties to switch off.
            Err(e) if penalties && e.to_string().contains("PerSourcePenalties") => {
                NO_PENALTIES_OPTION.store(true, Ordering::Relaxed);
                penalties = false;
            }
            Err(e) => return Err(Attempt::Failed(e)),
        }
    }

    let mut cmd = match &opts.netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, SSHD]);
            c
        }
        None => Command::new(SSHD),
    };
    cmd.arg("-D").arg("-e").arg("-f").arg(&config);
    cmd.stdin(std::process::Stdio::null());
    let mut process = spawn_logged(&mut cmd, dir.join("sshd.log")).map_err(Attempt::Failed)?;

    let addr = SocketAddr::new(dial_ip(opts.listen), port);
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = process.try_status() {
            let log = process.log();
            let e = anyhow!("sshd exited during start-up ({status}); its log:\n{log}");
            return Err(if log.contains("Address already in use") {
                Attempt::PortTaken(e)
            } else {
                Attempt::Failed(e)
            });
        }
        if process.log().contains("Server listening on") && banner(addr, opts.netns.as_deref()) {
            return Ok(process);
        }
        if Instant::now() >= deadline {
            let log = process.log();
            return Err(Attempt::Failed(anyhow!(
                "sshd not ready on {addr} after {READY_TIMEOUT:?}; its log:\n{log}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config_text(opts: &SshdOptions, dir: &Path, port: u16, penalties: bool) -> String {
    let d = dir.display();
    let split = opts
        .extra_config
        .iter()
        .position(|l| l.trim_start().to_ascii_lowercase().starts_with("match "))
        .unwrap_or(opts.extra_config.len());
    let (early, matches) = opts.extra_config.split_at(split);
    let mut text = String::new();
    for line in early {
        let _ = writeln!(text, "{line}");
    }
    let _ = write!(
        text,
        "Port {port}\n\
         ListenAddress {listen}\n\
         HostKey {d}/ssh_host_ed25519_key\n\
         PidFile {d}/sshd.pid\n\
         TrustedUserCAKeys {d}/user_ca.pub\n\
         AuthorizedPrincipalsFile {d}/principals/%u\n\
         AuthorizedKeysFile none\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\n\
         UsePAM no\n\
         StrictModes no\n\
         LogLevel VERBOSE\n\
         PermitRootLogin no\n\
         AllowTcpForwarding yes\n\
         X11Forwarding no\n\
         PrintMotd no\n\
         MaxStartups 200:30:400\n\
         MaxSessions 64\n",
        listen = opts.listen,
    );
    if penalties {
        // Repeated refusals in tests must not get 127.0.0.1 penalised.
        text.push_str("PerSourcePenalties no\n");
    }
    for line in matches {
        let _ = writeln!(text, "{line}");
    }
    text
}

/// `sshd -t`; the error carries sshd's complaint.
fn check_config(config: &Path) -> anyhow::Result<()> {
    let out = Command::new(SSHD)
        .arg("-t")
        .arg("-f")
        .arg(config)
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run sshd -t")?;
    if !out.status.success() {
        bail!(
            "sshd -t rejected {}: {}",
            config.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether `addr` answers with an SSH banner. Inside a namespace the probe
/// has to run there too.
fn banner(addr: SocketAddr, netns: Option<&str>) -> bool {
    match netns {
        None => tcp_banner(addr),
        Some(ns) => {
            let script = format!(
                "exec 3<>/dev/tcp/{}/{} && head -c 8 <&3",
                addr.ip(),
                addr.port()
            );
            Command::new("ip")
                .args(["netns", "exec", ns, "timeout", "2", "bash", "-c", &script])
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"SSH-2.0-"))
        }
    }
}

fn tcp_banner(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 8];
    stream.read_exact(&mut buf).is_ok() && &buf == b"SSH-2.0-"
}

fn dial_ip(listen: IpAddr) -> IpAddr {
    match listen {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}

fn write_principals(dir: &Path, user: &str, principals: &[String]) -> anyhow::Result<()> {
    if user.is_empty() || user.contains('/') || user.starts_with('.') {
        bail!("invalid user name {user:?} for a principals file");
    }
    if let Some(bad) = principals.iter().find(|p| p.contains(['\n', '\r'])) {
        bail!("principal {bad:?} contains a line break");
    }
    let mut text = principals.join("\n");
    text.push('\n');
    // Rename so sshd never reads a half-written list.
    let staging = dir.join(format!(".{user}.tmp"));
    std::fs::write(&staging, text)
        .with_context(|| format!("cannot write principals for {user}"))?;
    set_mode(&staging, 0o644)?;
    std::fs::rename(&staging, dir.join(user))
        .with_context(|| format!("cannot install principals for {user}"))
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// `type base64` of an OpenSSH public key line, dropping any comment.
pub(crate) fn openssh_key_line(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}
