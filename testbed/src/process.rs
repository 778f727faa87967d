//! Workspace binaries, free ports, condition polling and child processes
//! that are stopped when their guard is dropped.

use std::ffi::OsStr;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::sys;

/// How long a stopped child gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// Path of the workspace binary `name`: `$CARGO_BIN_EXE_<name>` if set,
/// else next to the running test (`target/<profile>/deps/x` →
/// `target/<profile>/<name>`). Fails, saying how to build it, if missing.
pub fn bin_path(name: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("cannot locate the running test binary")?;
    let mut dir = exe
        .parent()
        .context("the running test binary has no parent directory")?;
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir = dir.parent().unwrap_or(dir);
    }
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "binary `{name}` not found at {}: run `cargo build --workspace --bins` first",
            path.display()
        );
    }
    Ok(path)
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it;
/// another process may still take it before you bind, so retry on
/// "address in use").
pub fn free_port() -> u16 {
    for _ in 0..10 {
        if let Ok(port) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr().map(|a| a.port()))
        {
            return port;
        }
    }
    // Binding port 0 on loopback does not fail in practice; a random high
    // port keeps the signature simple for the callers.
    rand::random_range(20_000..60_000)
}

/// Polls `cond` every 20 ms until it is true (→ true) or `timeout` has
/// passed (→ false). `cond` always runs at least once.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process that is stopped (SIGTERM, then SIGKILL after a grace
/// period) and reaped when dropped. Optionally knows the file its output
/// goes to.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    log: Option<PathBuf>,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Guards `child`.
    pub fn new(child: Child) -> Self {
        Self {
            child,
            log: None,
            status: None,
        }
    }

    /// Guards `child` whose output goes to `log`.
    pub fn with_log(child: Child, log: impl Into<PathBuf>) -> Self {
        Self {
            child,
            log: Some(log.into()),
            status: None,
        }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends signal `sig` (e.g. `libc::SIGHUP` to make a service reload);
    /// false if the process is gone.
    pub fn signal(&mut self, sig: i32) -> bool {
        self.try_status().is_none() && sys::signal(self.child.id(), sig)
    }

    /// The guarded child, e.g. to take its stdin.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Path of the output file, if any.
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// Current contents of the output file (empty if none or unreadable).
    pub fn log(&self) -> String {
        self.log
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the output file contains `needle`; false on timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    /// Sends SIGTERM, waits up to a grace period, then SIGKILLs; returns the
    /// exit status. Idempotent.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.try_status().is_none() {
            sys::signal(self.child.id(), sys::SIGTERM);
            let exited = wait_until(GRACE, || self.try_status().is_some());
            if !exited {
                let _ = self.child.kill();
                self.status = self.child.wait().ok();
            }
        }
        self.status
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `bin args…` with stdin from /dev/null and stdout + stderr written
/// to `log_file` (created or truncated).
pub fn spawn_service<I, S>(
    bin: impl AsRef<Path>,
    args: I,
    log_file: impl AsRef<Path>,
) -> anyhow::Result<ChildGuard>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    spawn_logged(
        Command::new(bin.as_ref()).args(args).stdin(Stdio::null()),
        log_file,
    )
}

/// Like [`spawn_service`] for a prepared command (environment, working
/// directory, stdin, …).
pub fn spawn_logged(cmd: &mut Command, log_file: impl AsRef<Path>) -> anyhow::Result<ChildGuard> {
    let log_file = log_file.as_ref();
    let log = File::options()
        .create(true)
        .write(true)
        .truncate(true)
        .open(log_file)
        .with_context(|| format!("cannot create log file {}", log_file.display()))?;
    let log2 = log
        .try_clone()
        .context("cannot duplicate the log file handle")?;
    let child = cmd
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .spawn()
        .with_context(|| format!("cannot start `{}`", sys::describe(cmd)))?;
    Ok(ChildGuard::with_log(child, log_file))
}

/// Runs the workspace's `broker-ctl` with `args`: whether it succeeded, and
/// its stdout then stderr.
pub fn broker_ctl<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> anyhow::Result<(bool, String)> {
    let out = Command::new(bin_path("broker-ctl")?).args(args).output()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), text))
}
