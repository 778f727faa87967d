//! Small OS helpers shared by the modules: running a command and checking
//! it, sending signals, finding child processes, cross-process lock files.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, bail};

/// Signal numbers used here (Linux).
pub(crate) const SIGTERM: i32 = libc::SIGTERM;

/// Sends `sig` to `pid`; false if the process does not exist (or `pid` does
/// not fit a `pid_t`).
#[expect(
    unsafe_code,
    reason = "kill(2) has no std wrapper for signals other than SIGKILL; plain integer arguments"
)]
pub(crate) fn signal(pid: u32, sig: i32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Whether a process with this pid exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_fields(&stat).is_some_and(|(state, _)| state != "Z"),
        Err(_) => false,
    }
}

/// Direct children of `parent`, found by scanning `/proc`.
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| stat_fields(&stat).map(|(_, ppid)| ppid == parent))
                .unwrap_or(false)
        })
        .collect()
}

/// `(state, ppid)` from a `/proc/PID/stat` line. The command name may hold
/// spaces and parentheses, so parse after the last `)`.
fn stat_fields(stat: &str) -> Option<(&str, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Runs `cmd` to completion; an error (with the command line and its stderr)
/// unless it exits 0.
pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let line = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Shorthand for [`run`] on a program and arguments.
pub(crate) fn run_args(program: &str, args: &[&str]) -> anyhow::Result<Output> {
    run(Command::new(program).args(args))
}

/// The command line of `cmd`, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Opens (creating it) the lock file `name` in a root-owned run directory.
/// Locks are `flock`s via [`File::lock`], so they are released when the file
/// is closed, even if the process dies.
pub(crate) fn lock_file(name: &str) -> anyhow::Result<File> {
    let dir = PathBuf::from("/run/infrabroker-testbed");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(name);
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))
}
