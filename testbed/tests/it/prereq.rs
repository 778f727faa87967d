use std::process::Command;

use infrabroker_testbed::{is_root, require};

#[test]
fn require_passes_when_met() {
    assert!(require("nothing", true));
}

#[test]
fn require_skips_locally_and_fails_in_ci() {
    if std::env::var("CI").as_deref() == Ok("true") {
        let panic = std::panic::catch_unwind(|| require("a unicorn", false)).unwrap_err();
        let msg = panic.downcast_ref::<String>().unwrap();
        assert!(msg.starts_with("CI requires a unicorn: "), "{msg}");
    } else {
        assert!(!require("a unicorn", false));
    }
}

#[test]
fn is_root_matches_id() {
    let out = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        is_root(),
        String::from_utf8_lossy(&out.stdout).trim() == "0"
    );
}
