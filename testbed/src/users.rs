//! Test accounts and temporary sudoers drop-ins.
//!
//! Tests of several crates (and several test binaries at once) create the
//! same accounts, so creation is serialised by a lock file and tolerates an
//! account that appeared meanwhile.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, bail};

use crate::sys;

/// Serialises account creation between threads; the lock file does the same
/// between processes.
static USERS: Mutex<()> = Mutex::new(());

/// Makes sure the local account `name` exists with a `/bin/sh` shell, a home
/// directory and an unlocked, password-less entry (`*`), which sshd with
/// `UsePAM no` needs to accept a certificate login. Idempotent.
pub fn ensure_user(name: &str) -> anyhow::Result<()> {
    locked(name, || create_user(name))
}

fn create_user(name: &str) -> anyhow::Result<()> {
    if !user_exists(name) {
        let created = sys::run_args("useradd", &["-m", "-s", "/bin/sh", name]);
        // Another tool may have created it since the check; only then is a
        // useradd failure fine.
        if let Err(e) = created
            && !user_exists(name)
        {
            return Err(e.context(format!("cannot create test user {name}")));
        }
    }
    if password_locked(name)? {
        // A fresh account has password `!` (locked), which sshd refuses.
        sys::run_args("usermod", &["-p", "*", name])
            .with_context(|| format!("cannot unlock test user {name}"))?;
    }
    Ok(())
}

/// Sets the login shell of the existing test account `name` to `shell`
/// (`usermod -s`; sshd runs every command through it, and does not consult
/// `/etc/shells` with `UsePAM no`). Give each shell its own account: other
/// tests may be using a shared one at the same time.
pub fn set_login_shell(name: &str, shell: &Path) -> anyhow::Result<()> {
    locked(name, || {
        sys::run_args("usermod", &["-s", &shell.to_string_lossy(), name])
            .with_context(|| format!("cannot set the login shell of {name}"))?;
        Ok(())
    })
}

/// Runs `change` on account `name` (checked first) under both locks.
fn locked(name: &str, change: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    check_name(name)?;
    let _threads = USERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let lock = sys::lock_file("users.lock")?;
    lock.lock().context("cannot lock users.lock")?;
    change()
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .args(["-u", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn password_locked(name: &str) -> anyhow::Result<bool> {
    let shadow = std::fs::read_to_string("/etc/shadow").context("cannot read /etc/shadow")?;
    let hash = shadow
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(user, _)| *user == name)
        .map(|(_, rest)| rest.split(':').next().unwrap_or_default());
    Ok(hash.is_none_or(|h| h.starts_with('!')))
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        bail!("invalid test user name {name:?} (use [a-z0-9_-], at most 32 characters)");
    }
    Ok(())
}

/// A sudoers drop-in in `/etc/sudoers.d`, removed on drop. Each call gets its
/// own file, so tests sharing a user do not remove each other's rules.
#[derive(Debug)]
pub struct SudoersGuard {
    path: PathBuf,
}

impl SudoersGuard {
    /// Path of the drop-in file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SudoersGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Installs `rule_line` (e.g. `ibtest ALL=(root) NOPASSWD: ALL`) as
/// `/etc/sudoers.d/ib-test-<user>-<pid>-<n>`, mode 0440, after `visudo -cf`
/// accepted it. Needs root and the `sudo` package.
pub fn sudoers(user: &str, rule_line: &str) -> anyhow::Result<SudoersGuard> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    check_name(user)?;
    if rule_line.contains('\n') {
        bail!("sudoers rule must be a single line");
    }
    let dir = Path::new("/etc/sudoers.d");
    if !dir.is_dir() {
        bail!("/etc/sudoers.d is missing: install sudo (apt-get install -y sudo)");
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // sudo skips files whose name contains a dot, so the staging file is
    // never read half-written or unvalidated.
    let name = format!("ib-test-{user}-{}-{n}", std::process::id());
    let staging = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);

    let written = write_staged(&staging, rule_line).and_then(|()| {
        sys::run_args("visudo", &["-cf", &staging.to_string_lossy()])
            .context("visudo rejected the sudoers rule (is sudo installed?)")
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staging);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&staging, &path) {
        let _ = std::fs::remove_file(&staging);
        return Err(e).with_context(|| format!("cannot install {}", path.display()));
    }
    Ok(SudoersGuard { path })
}

fn write_staged(path: &Path, rule_line: &str) -> anyhow::Result<()> {
    let mut file = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o440)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(file, "{rule_line}").with_context(|| format!("cannot write {}", path.display()))?;
    // An existing staging file keeps its old mode; sudo insists on 0440.
    file.set_permissions(std::fs::Permissions::from_mode(0o440))
        .with_context(|| format!("cannot chmod {}", path.display()))?;
    Ok(())
}

/// The uid of account `user`.
pub fn uid_of(user: &str) -> anyhow::Result<u32> {
    let out = std::process::Command::new("id")
        .args(["-u", user])
        .output()?;
    if !out.status.success() {
        anyhow::bail!("no account {user}");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}
