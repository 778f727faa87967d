use std::path::Path;
use std::process::Command;

use infrabroker_testbed::{ensure_user, is_root, require, sshd_or_skip, sudoers};

use crate::support::USER;

#[test]
fn ensure_user_is_idempotent_under_concurrency() {
    if !sshd_or_skip() {
        return;
    }
    let name = "ibtest-users";
    let threads: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(move || ensure_user(name)))
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    ensure_user(name).unwrap();
    let out = Command::new("id").args(["-u", name]).output().unwrap();
    assert!(out.status.success());
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap();
    let entry = shadow
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap();
    assert!(entry.starts_with(&format!("{name}:*:")), "{entry}");
}

#[test]
fn ensure_user_rejects_odd_names() {
    let err = ensure_user("../etc").unwrap_err().to_string();
    assert!(err.contains("invalid test user name"), "{err}");
}

#[test]
fn sudoers_drop_in_grants_and_is_removed() {
    if !sshd_or_skip() || !require("sudo", Path::new("/usr/bin/sudo").exists()) {
        return;
    }
    ensure_user(USER).unwrap();
    let sudo_id = || {
        Command::new("runuser")
            .args(["-u", USER, "--", "sudo", "-n", "id", "-u"])
            .output()
            .unwrap()
    };
    let guard = sudoers(USER, &format!("{USER} ALL=(root) NOPASSWD: /usr/bin/id")).unwrap();
    let path = guard.path().to_owned();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o440
    );
    let out = sudo_id();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n", "{out:?}");
    drop(guard);
    assert!(!path.exists());
}

#[test]
fn invalid_sudoers_rule_is_refused_and_leaves_nothing() {
    if !require("root", is_root()) || !require("sudo", Path::new("/usr/sbin/visudo").exists()) {
        return;
    }
    let err = sudoers("ibtest-nobody", "this is not sudoers syntax ((").unwrap_err();
    assert!(format!("{err:#}").contains("visudo"), "{err:#}");
    let leftovers: Vec<_> = std::fs::read_dir("/etc/sudoers.d")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .contains("ib-test-ibtest-nobody")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
