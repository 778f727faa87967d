//! Prerequisite checks that skip a test locally and fail it in CI.
//!
//! A developer without root or `sshd` should still be able to run
//! `cargo test`; CI must never silently skip the tests that matter, so there
//! a missing prerequisite is a failure.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Path of the OpenSSH server every test `sshd` runs from (absolute: sshd
/// refuses to re-exec itself from a relative path).
pub const SSHD: &str = "/usr/sbin/sshd";

/// Returns `ok`; when `ok` is false, panics if `CI=true`, otherwise prints a
/// `SKIP` line naming the test and `what` is missing, and returns false.
///
/// Use as `if !require("…", cond) { return; }` at the top of a test.
#[expect(
    clippy::panic,
    reason = "failing the calling test in CI is the purpose"
)]
pub fn require(what: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed>")
        .to_owned();
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI requires {what}: not available, and CI=true forbids skipping (test {test})");
    }
    eprintln!("SKIP {test}: requires {what}");
    false
}

/// Whether `/usr/sbin/sshd` exists and is executable.
pub fn have_sshd() -> bool {
    std::fs::metadata(SSHD).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether the effective user id is 0, read from `/proc/self/status`.
pub fn is_root() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    // "Uid:\treal\teffective\tsaved\tfs"
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// `require("root and /usr/sbin/sshd", …)`.
pub fn sshd_or_skip() -> bool {
    require("root and /usr/sbin/sshd", is_root() && have_sshd())
}

/// `require("root and working `ip netns`", …)`. The check really adds and
/// deletes a namespace once per process, since listing namespaces works in
/// containers that cannot create them.
pub fn netns_or_skip() -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    let works = *WORKS.get_or_init(|| is_root() && probe_netns());
    require("root and working `ip netns` (iproute2)", works)
}

fn probe_netns() -> bool {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "ibprobe-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    if !Path::new("/usr/sbin/ip").exists() && !Path::new("/usr/bin/ip").exists() {
        return false;
    }
    let ip = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let added = ip(&["netns", "add", &name]);
    added && ip(&["netns", "del", &name])
}
