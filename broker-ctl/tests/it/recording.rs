//! `broker-ctl recording verify` on a cast whose chunk records are made
//! here, so the chunks can be chosen: reordered equal-length chunks, a
//! chunk removed from the end, a close record that disagrees, and an audit
//! log that does not verify.

use std::path::{Path, PathBuf};

use infrabroker_common::audit::AuditLog;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{ctl, text};

const CHUNKS: [&[u8]; 3] = [
    b"[0.1, \"o\", \"aaaa\"]\n",
    b"[0.2, \"o\", \"bbbb\"]\n",
    b"[0.3, \"o\", \"cccc\"]\n",
];

fn record(pairs: Value) -> Map<String, Value> {
    pairs.as_object().unwrap().clone()
}

/// `<dir>/s-1.cast` and a broker log holding its chunk records and (when
/// `close_size` is given) a close record claiming that size.
fn bed(dir: &Path, close_size: Option<usize>) -> (PathBuf, PathBuf, PathBuf) {
    let (key, pubkey) = super::audit_key(dir, 6);
    let log_path = dir.join("broker-audit.log");
    let log = AuditLog::open(&log_path, key).unwrap();
    let mut offset = 0;
    let mut all = Sha256::new();
    for (i, c) in CHUNKS.iter().enumerate() {
        let hash = Sha256::digest(c);
        all.update(hash);
        log.append_blocking(record(
            json!({"event": "recording_chunk", "session_id": "s-1",
            "index": i, "offset": offset, "length": c.len(), "sha256": hex::encode(hash)}),
        ))
        .unwrap();
        offset += c.len();
    }
    if let Some(size) = close_size {
        log.append_blocking(record(
            json!({"outcome": "session_close", "session_id": "s-1",
            "recording_size": size, "recording_chunks": 3,
            "recording_sha256": hex::encode(all.finalize())}),
        ))
        .unwrap();
    }
    drop(log);
    let cast = dir.join("s-1.cast");
    std::fs::write(&cast, CHUNKS.concat()).unwrap();
    (cast, log_path, pubkey)
}

fn verify(cast: &Path, log: &Path, pubkey: &Path) -> (Option<i32>, String) {
    let o = ctl(&[
        "recording",
        "verify",
        cast.to_str().unwrap(),
        "--audit",
        log.to_str().unwrap(),
        "--pubkey",
        pubkey.to_str().unwrap(),
    ]);
    (o.status.code(), text(&o))
}

#[test]
fn reordered_removed_and_disputed_chunks_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let total = CHUNKS.concat().len();
    let (cast, log, pubkey) = bed(dir.path(), Some(total));
    let (code, t) = verify(&cast, &log, &pubkey);
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("byte-exact, 3 chunks"), "{t}");

    std::fs::write(&cast, [CHUNKS[0], CHUNKS[2], CHUNKS[1]].concat()).unwrap();
    let (code, t) = verify(&cast, &log, &pubkey);
    assert_eq!(code, Some(1), "{t}");
    assert!(
        t.contains("chunk 1 (bytes 19..38) holds chunk 2's bytes: chunks were reordered"),
        "{t}"
    );

    std::fs::write(&cast, [CHUNKS[0], CHUNKS[1]].concat()).unwrap();
    let (code, t) = verify(&cast, &log, &pubkey);
    assert_eq!(code, Some(1), "{t}");
    assert!(
        t.contains("chunk 2 (bytes 38..57) was removed or cut short"),
        "{t}"
    );

    let other = tempfile::tempdir().unwrap();
    let (cast, log, pubkey) = bed(other.path(), Some(total + 1));
    let (code, t) = verify(&cast, &log, &pubkey);
    assert_eq!(code, Some(1), "{t}");
    assert!(t.contains("the session's close record says"), "{t}");
}

#[test]
fn an_audit_log_that_does_not_verify_proves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (cast, log, pubkey) = bed(dir.path(), None);
    let (code, t) = verify(&cast, &log, &pubkey);
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("no close record yet"), "{t}");
    // Point a chunk record at forged bytes without the key.
    let forged = std::fs::read_to_string(&log)
        .unwrap()
        .replacen("\"index\":0", "\"index\":9", 1);
    std::fs::write(&log, forged).unwrap();
    let (code, t) = verify(&cast, &log, &pubkey);
    assert_eq!(code, Some(1), "{t}");
    assert!(t.contains("broken"), "{t}");
    let (code, t) = verify(&dir.path().join("s-2.cast"), &log, &pubkey);
    assert_ne!(code, Some(0), "{t}");
}
