//! `broker-ctl` as an operator runs it: the real binary in a temp dir.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed setup aborts the test with its message"
)]

mod audit_checkpoint;
mod audit_rotated;
mod audit_tail;
mod cli;
mod doctor;
mod krl;
mod recording;

use std::process::{Command, Output};

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_broker-ctl"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An audit key in `dir` (`k.seed`, 0600, from `seed` repeated) and its
/// public key file `k.pub`.
fn audit_key(
    dir: &std::path::Path,
    seed: u8,
) -> (infrabroker_common::audit::AuditKey, std::path::PathBuf) {
    let path = dir.join("k.seed");
    std::fs::write(&path, [seed; 32]).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let key = infrabroker_common::audit::AuditKey::from_seed_file(&path).unwrap();
    let pubkey = dir.join("k.pub");
    std::fs::write(&pubkey, key.public_key_openssh("test")).unwrap();
    (key, pubkey)
}
