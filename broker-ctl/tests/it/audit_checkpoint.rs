//! `broker-ctl audit verify --checkpoint` and `audit prove` (issue 11 §2):
//! truncation, a rewrite with the key, and a forged checkpoint are each
//! refused; an inclusion proof verifies against the log's root.

use std::path::Path;

use infrabroker_common::audit::AuditKey;
use infrabroker_common::audit::checkpoint::Checkpoint;
use infrabroker_common::audit::merkle;

use super::cli::write_log;
use super::{ctl, text};

const ORIGIN: &str = "infrabroker.test/signer";

/// `broker-ctl audit checkpoint` over the log's current records.
fn checkpoint_of(dir: &Path, log: &Path) -> std::path::PathBuf {
    let seed = dir.join("k.seed");
    let o = ctl(&[
        "audit",
        "checkpoint",
        log.to_str().unwrap(),
        "--key",
        seed.to_str().unwrap(),
        "--origin",
        ORIGIN,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let note = String::from_utf8(o.stdout).unwrap();
    let key = AuditKey::from_seed_file(&seed).unwrap().verifying_key();
    let leaves = merkle::log_leaves(log).unwrap();
    let cp = Checkpoint::open_own(&note, &key).unwrap();
    assert_eq!(
        (cp.size, cp.root),
        (leaves.len() as u64, merkle::root(&leaves))
    );
    let path = dir.join("checkpoint");
    std::fs::write(&path, note).unwrap();
    path
}

fn verify_with(log: &Path, pubkey: &Path, cp: &Path) -> std::process::Output {
    ctl(&[
        "audit",
        "verify",
        log.to_str().unwrap(),
        "--pubkey",
        pubkey.to_str().unwrap(),
        "--checkpoint",
        cp.to_str().unwrap(),
    ])
}

#[test]
fn verify_with_a_checkpoint_catches_truncation_rewrite_and_forgery() {
    let dir = tempfile::tempdir().unwrap();
    let (log, pubkey) = write_log(dir.path(), 8);
    let cp = checkpoint_of(dir.path(), &log);
    let o = verify_with(&log, &pubkey, &cp);
    assert!(o.status.success(), "{}", text(&o));

    // Tail truncation: a valid shorter chain, caught only by the checkpoint.
    let full = std::fs::read_to_string(&log).unwrap();
    let cut: String = full.lines().take(6).map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, &cut).unwrap();
    let plain = ctl(&[
        "audit",
        "verify",
        log.to_str().unwrap(),
        "--pubkey",
        pubkey.to_str().unwrap(),
    ]);
    assert!(plain.status.success(), "{}", text(&plain));
    let o = verify_with(&log, &pubkey, &cp);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("truncated"), "{}", text(&o));

    // A rewrite by the key holder: a valid chain with other records.
    std::fs::remove_file(&log).unwrap();
    let (log, _) = write_log(dir.path(), 9);
    let o = verify_with(&log, &pubkey, &cp);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("rewritten or forked"), "{}", text(&o));

    // A checkpoint whose body was edited no longer verifies.
    let note = std::fs::read_to_string(&cp).unwrap();
    std::fs::write(&cp, note.replacen("\n8\n", "\n9\n", 1)).unwrap();
    let o = verify_with(&log, &pubkey, &cp);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("signature does not verify"),
        "{}",
        text(&o)
    );
}

#[test]
fn prove_prints_an_inclusion_proof_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = write_log(dir.path(), 13);
    let o = ctl(&[
        "audit",
        "prove",
        log.to_str().unwrap(),
        "--seq",
        "5",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let h = |s: &serde_json::Value| -> merkle::Hash {
        let s = s.as_str().unwrap();
        (0..32)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
            .try_into()
            .unwrap()
    };
    let proof: Vec<merkle::Hash> = v["proof"].as_array().unwrap().iter().map(h).collect();
    let leaves = merkle::log_leaves(&log).unwrap();
    assert_eq!(h(&v["leaf_hash"]), leaves[4]);
    assert_eq!(h(&v["root"]), merkle::root(&leaves));
    assert!(merkle::verify_inclusion(
        4,
        13,
        &leaves[4],
        &proof,
        &merkle::root(&leaves)
    ));
    let o = ctl(&["audit", "prove", log.to_str().unwrap(), "--seq", "14"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

fn consistency(old: &Path, new: &Path, pubkey: &Path, log: &Path) -> std::process::Output {
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let (old, new, pubkey, log) = (s(old), s(new), s(pubkey), s(log));
    ctl(&[
        "audit",
        "consistency",
        &old,
        &new,
        "--pubkey",
        &pubkey,
        "--log",
        &log,
        "--json",
    ])
}

#[test]
fn consistency_accepts_an_extension_and_refuses_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    let (log, pubkey) = write_log(dir.path(), 5);
    let old = dir.path().join("old");
    std::fs::rename(checkpoint_of(dir.path(), &log), &old).unwrap();
    let key = AuditKey::from_seed_file(dir.path().join("k.seed")).unwrap();
    let writer = infrabroker_common::audit::AuditLog::open(&log, key).unwrap();
    for i in 0..4u64 {
        let mut m = serde_json::Map::new();
        m.insert("serial".into(), i.into());
        writer.append_blocking(m).unwrap();
    }
    drop(writer);
    let new = checkpoint_of(dir.path(), &log);
    let o = consistency(&old, &new, &pubkey, &log);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["old_size"].as_u64()),
        (Some(true), Some(5))
    );

    // A different history of 9 records, signed with the same key: a fork.
    std::fs::remove_file(&log).unwrap();
    let (log, _) = write_log(dir.path(), 9);
    let forked = checkpoint_of(dir.path(), &log);
    let o = consistency(&old, &forked, &pubkey, &log);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("inconsistent"), "{}", text(&o));
}
