//! Checkpoints the writer keeps: when they are written, what is kept, and
//! that a log cut short, forked or paired with a forged checkpoint is
//! refused on open while the tail-signature check alone would accept it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::super::tests::{fields, key, lines, log_with, public, write_lines};
use super::super::{AuditError, AuditLog};
use super::*;
use crate::config::{Errors, parse_jwcc};

fn settings(dir: &Path, every_records: u64) -> CheckpointSettings {
    CheckpointSettings {
        path: dir.join("cp").join("audit.checkpoint"),
        origin: "infrabroker.test/unit".into(),
        every_records,
        every_seconds: None,
        keep: DEFAULT_KEEP,
        witnesses: Vec::new(),
    }
}

/// A log of `n` records written with checkpoints every `every` records;
/// closed, so the last checkpoint covers all `n`.
fn checkpointed(n: u64, every: u64) -> (tempfile::TempDir, PathBuf, CheckpointSettings) {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), every);
    fs::create_dir(s.path.parent().unwrap()).unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open_with(&path, key(), Some(s.clone())).unwrap();
    for i in 1..=n {
        log.append_blocking(fields(i)).unwrap();
    }
    drop(log);
    (dir, path, s)
}

fn read_cp(path: &Path) -> Checkpoint {
    Checkpoint::open(
        &fs::read_to_string(path).unwrap(),
        "infrabroker.test/unit",
        &public(),
    )
    .unwrap()
}

fn refusal(path: &Path, s: &CheckpointSettings) -> String {
    let before = fs::read(path).unwrap();
    let err = AuditLog::open_with(path, key(), Some(s.clone())).unwrap_err();
    assert!(matches!(err, AuditError::Unverified { .. }), "{err}");
    assert!(err.is_unverified_tail(), "{err}");
    assert_eq!(
        fs::read(path).unwrap(),
        before,
        "a refused log is left as it was"
    );
    err.to_string()
}

#[test]
fn a_checkpoint_follows_every_n_records_and_the_close_covers_the_rest() {
    let (_dir, path, s) = checkpointed(12, 5);
    let latest = read_cp(&s.path);
    assert_eq!(
        latest.size, 12,
        "the close checkpoints the last two records"
    );
    assert_eq!(
        latest.root,
        merkle::root(&merkle::log_leaves(&path).unwrap())
    );
    assert_eq!(read_cp(&numbered(&s.path, 1)).size, 10);
    assert_eq!(read_cp(&numbered(&s.path, 2)).size, 5);
    assert!(!numbered(&s.path, 3).exists());
    // Reopening checks it and goes on from it.
    let log = AuditLog::open_with(&path, key(), Some(s.clone())).unwrap();
    for i in 13..=17 {
        log.append_blocking(fields(i)).unwrap();
    }
    assert_eq!(
        read_cp(&s.path).size,
        17,
        "5 new records since the size-12 one"
    );
}

#[test]
fn only_keep_previous_checkpoints_stay() {
    let dir = tempfile::tempdir().unwrap();
    let s = CheckpointSettings {
        keep: 2,
        witnesses: Vec::new(),
        ..settings(dir.path(), 1)
    };
    fs::create_dir(s.path.parent().unwrap()).unwrap();
    let log = AuditLog::open_with(dir.path().join("a.jsonl"), key(), Some(s.clone())).unwrap();
    for i in 1..=6 {
        log.append_blocking(fields(i)).unwrap();
    }
    assert_eq!(read_cp(&s.path).size, 6);
    assert_eq!(read_cp(&numbered(&s.path, 1)).size, 5);
    assert_eq!(read_cp(&numbered(&s.path, 2)).size, 4);
    assert!(!numbered(&s.path, 3).exists());
}

#[test]
fn a_quiet_log_is_checkpointed_after_every_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let s = CheckpointSettings {
        every_seconds: Some(Duration::from_secs(1)),
        ..settings(dir.path(), 1000)
    };
    fs::create_dir(s.path.parent().unwrap()).unwrap();
    let log = AuditLog::open_with(dir.path().join("a.jsonl"), key(), Some(s.clone())).unwrap();
    for i in 1..=3 {
        log.append_blocking(fields(i)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        read_cp(&s.path).size,
        3,
        "written while the log is still open"
    );
    drop(log);
}

#[test]
fn a_log_cut_short_while_stopped_is_refused_though_its_tail_verifies() {
    let (_dir, path, s) = checkpointed(12, 5);
    let mut all = lines(&path);
    all.truncate(10);
    write_lines(&path, &all);
    let text = refusal(&path, &s);
    assert!(text.contains("truncated"), "{text}");
    assert!(
        text.contains("has 10 records, the checkpoint commits to 12"),
        "{text}"
    );
    assert!(text.contains(&s.path.display().to_string()), "{text}");
    // Without the checkpoint the genuine record 10 is a valid tail.
    drop(AuditLog::open(&path, key()).unwrap());
}

#[test]
fn a_log_replaced_by_another_of_the_same_key_is_refused_as_a_fork() {
    let (_dir, path, s) = checkpointed(12, 5);
    let (_other_dir, other) = log_with(14);
    fs::copy(&other, &path).unwrap();
    let text = refusal(&path, &s);
    assert!(text.contains("rewritten or forked"), "{text}");
}

#[test]
fn a_forged_or_removed_checkpoint_is_refused() {
    let (_dir, path, s) = checkpointed(12, 5);
    let genuine = fs::read_to_string(&s.path).unwrap();
    // Shrinking the checkpoint to hide a truncation breaks its signature.
    fs::write(&s.path, genuine.replacen("\n12\n", "\n10\n", 1)).unwrap();
    let text = refusal(&path, &s);
    assert!(text.contains("signature does not verify"), "{text}");
    fs::remove_file(&s.path).unwrap();
    let text = refusal(&path, &s);
    assert!(
        text.contains("is missing while older checkpoints"),
        "{text}"
    );
    fs::write(&s.path, genuine).unwrap();
    drop(AuditLog::open_with(&path, key(), Some(s)).unwrap());
}

#[test]
fn a_checkpoint_that_cannot_be_written_never_fails_an_append() {
    let dir = tempfile::tempdir().unwrap();
    // Its directory does not exist.
    let s = settings(dir.path(), 1);
    let log = AuditLog::open_with(dir.path().join("a.jsonl"), key(), Some(s.clone())).unwrap();
    for i in 1..=3 {
        assert_eq!(log.append_blocking(fields(i)).unwrap().seq, i);
    }
    fs::create_dir(s.path.parent().unwrap()).unwrap();
    log.append_blocking(fields(4)).unwrap();
    assert_eq!(read_cp(&s.path).size, 4, "retried with the next record");
}

fn read_config(text: &str) -> Result<Option<CheckpointSettings>, Vec<String>> {
    let v = parse_jwcc(text).unwrap();
    let errs = Errors::new();
    let o = Obj::new(&v, "", &errs).unwrap();
    let got = CheckpointSettings::read(
        &o,
        Path::new("/etc/ib"),
        Some(Path::new("/var/log/ib/a.log")),
    );
    errs.finish(got)
        .map_err(|e| e.0.iter().map(ToString::to_string).collect())
}

#[test]
fn config_defaults_and_paths() {
    let s = read_config(
        r#"{"audit_checkpoint": {"path": "cp/signer.cp", "origin": "ib.example/signer", "_note": "x"}}"#,
    )
    .unwrap()
    .unwrap();
    assert_eq!(s.path, Path::new("/etc/ib/cp/signer.cp"));
    assert_eq!((s.every_records, s.every_seconds, s.keep), (1000, None, 8));
    assert_eq!(read_config("{}").unwrap(), None);
}

#[test]
fn config_errors_name_every_bad_member() {
    let errs = read_config(
        r#"{"audit_checkpoint": {"path": "/var/log/ib/a.cp", "origin": "my log",
            "every_records": 0, "every_seconds": 0, "keep": 5000,
            "witnesses": ["https://w.example", {"url": "ftp://w", "vkey": "w+00+AA=="}], "extra": 1}}"#,
    )
    .unwrap_err();
    let want = [
        "audit_checkpoint.origin: \"my log\" has a space",
        "audit_checkpoint.every_records: must be at least 1",
        "audit_checkpoint.every_seconds: must be at least 1",
        "audit_checkpoint.keep: at most 1000",
        "audit_checkpoint.witnesses[0]: expected an object",
        "audit_checkpoint.witnesses[1].url: \"ftp://w\" is not an http",
        "audit_checkpoint.witnesses[1].vkey: key type 0x00 is not a cosignature/v1",
        "audit_checkpoint.path: /var/log/ib/a.cp is in the audit log's directory",
        "audit_checkpoint.extra: unknown field",
    ];
    for w in want {
        assert!(
            errs.iter().any(|e| e.starts_with(w)),
            "{w:?} not in {errs:#?}"
        );
    }
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
    let errs = read_config(r#"{"audit_checkpoint": {}}"#).unwrap_err();
    assert_eq!(
        errs,
        [
            "audit_checkpoint.path: is required",
            "audit_checkpoint.origin: is required"
        ]
    );
}
