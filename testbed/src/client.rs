//! The OpenSSH client as an independent peer: runs `/usr/bin/ssh` with a
//! key and certificate against a test [`Sshd`], pinning its host key and
//! ignoring every user and system ssh configuration.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, bail};
use ssh_key::{LineEnding, PrivateKey};

use crate::sshd::{Sshd, openssh_key_line};

/// Path of the OpenSSH client.
pub const SSH: &str = "/usr/bin/ssh";

/// Where to connect and which host key to expect there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Address to dial.
    pub addr: SocketAddr,
    /// Expected host key, `ssh-ed25519 AAAA…`.
    pub host_key: String,
    /// Run the client inside this network namespace.
    pub netns: Option<String>,
}

impl SshTarget {
    /// The `known_hosts` line pinning [`Self::host_key`] for [`Self::addr`].
    pub fn known_hosts_line(&self) -> String {
        let host = match (self.addr.ip(), self.addr.port()) {
            (ip, 22) => ip.to_string(),
            (ip, port) => format!("[{ip}]:{port}"),
        };
        format!("{host} {}", openssh_key_line(&self.host_key))
    }

    /// The same target, dialled from namespace `netns` (`None`: the root
    /// namespace).
    pub fn from_netns(mut self, netns: Option<&str>) -> Self {
        self.netns = netns.map(str::to_owned);
        self
    }
}

impl From<&Sshd> for SshTarget {
    /// Dials the sshd from its own namespace.
    fn from(sshd: &Sshd) -> Self {
        Self {
            addr: sshd.addr(),
            host_key: sshd.host_key_openssh(),
            netns: sshd.netns().map(str::to_owned),
        }
    }
}

impl From<(SocketAddr, String)> for SshTarget {
    fn from((addr, host_key): (SocketAddr, String)) -> Self {
        Self {
            addr,
            host_key,
            netns: None,
        }
    }
}

/// Key, certificate and `known_hosts` files for the OpenSSH client.
#[derive(Debug, Clone)]
pub struct SshClient {
    /// Private key file (mode 0600).
    pub key: PathBuf,
    /// Certificate file for [`Self::key`].
    pub cert: PathBuf,
    /// `known_hosts` file; [`Self::run`] adds each target to it.
    pub known_hosts: PathBuf,
}

impl SshClient {
    /// Writes `id_ed25519`, `id_ed25519-cert.pub` and an empty
    /// `known_hosts` into `dir`.
    pub fn create(dir: &Path, key: &PrivateKey, cert_openssh: &str) -> anyhow::Result<SshClient> {
        let client = SshClient {
            key: dir.join("id_ed25519"),
            cert: dir.join("id_ed25519-cert.pub"),
            known_hosts: dir.join("known_hosts"),
        };
        write_private_key(&client.key, key)?;
        write_cert(&client.cert, cert_openssh)?;
        std::fs::write(&client.known_hosts, "")
            .with_context(|| format!("cannot write {}", client.known_hosts.display()))?;
        Ok(client)
    }

    /// Adds `target`'s host key to [`Self::known_hosts`] unless present.
    pub fn trust(&self, target: &SshTarget) -> anyhow::Result<()> {
        let line = target.known_hosts_line();
        let existing = std::fs::read_to_string(&self.known_hosts).unwrap_or_default();
        if existing.lines().any(|l| l == line) {
            return Ok(());
        }
        let mut file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.known_hosts)
            .with_context(|| format!("cannot open {}", self.known_hosts.display()))?;
        writeln!(file, "{line}")
            .with_context(|| format!("cannot write {}", self.known_hosts.display()))
    }

    /// The `ssh` command for `user@target` running `remote_cmd`, with
    /// `extra_opts` (e.g. `["-o", "ProxyCommand=…"]`) before the
    /// destination. Does not [`trust`](Self::trust) the target.
    pub fn command(
        &self,
        target: &SshTarget,
        user: &str,
        remote_cmd: &str,
        extra_opts: &[&str],
    ) -> Command {
        let mut cmd = match &target.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, SSH]);
                c
            }
            None => Command::new(SSH),
        };
        let opt = |name: &str, value: &Path| format!("{name}={}", value.display());
        cmd.args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg("-o")
        .arg(opt("IdentityFile", &self.key))
        .arg("-o")
        .arg(opt("CertificateFile", &self.cert))
        .arg("-o")
        .arg(opt("UserKnownHostsFile", &self.known_hosts))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=5",
        ])
        .arg("-p")
        .arg(target.addr.port().to_string())
        .args(extra_opts)
        .arg(format!("{user}@{}", target.addr.ip()))
        .arg(remote_cmd)
        .stdin(Stdio::null());
        cmd
    }

    /// Trusts `target`, runs `ssh` and collects its output (any exit code).
    pub fn run(
        &self,
        target: &SshTarget,
        user: &str,
        remote_cmd: &str,
        extra_opts: &[&str],
    ) -> anyhow::Result<Output> {
        self.trust(target)?;
        let mut cmd = self.command(target, user, remote_cmd, extra_opts);
        cmd.output().context("cannot run ssh")
    }
}

/// Runs `ssh user@target remote_cmd` with the given key and certificate
/// files, pinning the target's host key; returns the output whatever the
/// exit code (255: ssh itself failed).
pub fn ssh(
    target: impl Into<SshTarget>,
    user: &str,
    key_path: &Path,
    cert_path: &Path,
    remote_cmd: &str,
    extra_opts: &[&str],
) -> anyhow::Result<Output> {
    let target = target.into();
    let known_hosts = tempfile::Builder::new()
        .prefix("ib-known-hosts-")
        .tempfile()
        .context("cannot create a known_hosts file")?;
    let client = SshClient {
        key: key_path.to_owned(),
        cert: cert_path.to_owned(),
        known_hosts: known_hosts.path().to_owned(),
    };
    client.run(&target, user, remote_cmd, extra_opts)
}

/// Writes `key` as an OpenSSH private key file with mode 0600 (ssh ignores
/// keys readable by others).
pub fn write_private_key(path: &Path, key: &PrivateKey) -> anyhow::Result<()> {
    let pem = key
        .to_openssh(LineEnding::LF)
        .context("cannot encode the private key")?;
    let mut file = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // `mode` only applies to new files.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot chmod {}", path.display()))?;
    file.write_all(pem.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes an OpenSSH certificate line (`ssh-ed25519-cert-v01@openssh.com
/// AAAA…`) to `path`.
pub fn write_cert(path: &Path, cert_openssh: &str) -> anyhow::Result<()> {
    let line = cert_openssh.trim();
    if !line.contains("-cert-v01@openssh.com ") {
        bail!("not an OpenSSH certificate line: {line:.40}");
    }
    std::fs::write(path, format!("{line}\n"))
        .with_context(|| format!("cannot write {}", path.display()))
}
