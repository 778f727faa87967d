//! Rotation: the old file stays a complete, verifiable chain ending in
//! `audit_rotated`; the new file's first record names it exactly; with
//! checkpoints the old file's final checkpoint is kept and the new file
//! gets its own, also across a crash between the rename and that write.

use std::fs;
use std::path::Path;

use serde_json::Value;

use super::tests::{fields, key, lines, parse, public};
use super::*;

fn settings(dir: &Path) -> CheckpointSettings {
    fs::create_dir_all(dir.join("cp")).unwrap();
    CheckpointSettings {
        path: dir.join("cp").join("a.cp"),
        origin: "infrabroker.test/rotate".into(),
        every_records: 1000,
        every_seconds: None,
        keep: 4,
        witnesses: Vec::new(),
    }
}

fn cp_size(path: &Path) -> u64 {
    let text = fs::read_to_string(path).unwrap();
    checkpoint::Checkpoint::open_own(&text, &public())
        .unwrap()
        .size
}

#[tokio::test]
async fn the_new_file_names_the_old_one_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, key()).unwrap();
    for i in 1..=3 {
        log.append(fields(i)).await.unwrap();
    }
    let r = log.rotate().await.unwrap();
    assert_eq!(r.previous_seq, 4, "three records and audit_rotated");
    let old = verify_file(&r.archived, &public(), VerifyOptions::default()).unwrap();
    assert_eq!(
        (old.records, old.head_hash.as_str()),
        (4, r.previous_hash.as_str())
    );
    let old_lines = lines(&r.archived);
    let last = parse(&old_lines[3]);
    assert_eq!(last["event"], "audit_rotated");
    let archived_name = r.archived.file_name().unwrap().to_str().unwrap();
    assert_eq!(last["archived_as"], archived_name);
    assert!(
        archived_name.starts_with("audit.jsonl.2"),
        "{archived_name}"
    );

    assert_eq!(log.append(fields(5)).await.unwrap().seq, 2, "a new chain");
    let new = lines(&path);
    let first = parse(&new[0]);
    assert_eq!(first["seq"], 1);
    assert_eq!(first["event"], "audit_continued");
    assert_eq!(first["previous_file"], archived_name);
    assert_eq!(first["previous_seq"], 4);
    assert_eq!(first["previous_hash"], Value::from(r.previous_hash.clone()));
    let root = hex::encode(merkle::root(&merkle::log_leaves(&r.archived).unwrap()));
    assert_eq!(r.previous_root, root);
    assert_eq!(first["previous_checkpoint"]["size"], 4);
    assert_eq!(first["previous_checkpoint"]["root"], Value::from(root));
    drop(log);
    verify_file(&path, &public(), VerifyOptions::default()).unwrap();
    assert!(!dir.path().join("audit.jsonl.next").exists());
    // A second rotation within the same second gets its own name.
    let log = AuditLog::open(&path, key()).unwrap();
    let again = log.rotate().await.unwrap();
    assert_ne!(again.archived, r.archived);
    assert!(again.archived.exists() && r.archived.exists());
}

#[tokio::test]
async fn checkpoints_move_to_the_new_file_and_survive_a_crash_between() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let s = settings(dir.path());
    let log = AuditLog::open_with(&path, key(), Some(s.clone())).unwrap();
    for i in 1..=3 {
        log.append(fields(i)).await.unwrap();
    }
    log.rotate().await.unwrap();
    assert_eq!(cp_size(&s.path), 1, "the new file's first checkpoint");
    let previous = fs::read_to_string(s.path.with_extension("cp.1")).unwrap();
    assert_eq!(
        cp_size(&s.path.with_extension("cp.1")),
        4,
        "the old file's last"
    );
    log.append(fields(4)).await.unwrap();
    drop(log);
    assert_eq!(cp_size(&s.path), 2);
    drop(AuditLog::open_with(&path, key(), Some(s.clone())).unwrap());

    // As if the service died after renaming the new file in and before its
    // first checkpoint: the latest checkpoint is still the old file's.
    fs::write(&s.path, &previous).unwrap();
    let log = AuditLog::open_with(&path, key(), Some(s.clone())).unwrap();
    log.append(fields(5)).await.unwrap();
    drop(log);
    assert_eq!(cp_size(&s.path), 3, "carried on from the continuation");
}
