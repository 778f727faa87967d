//! The recorder on its own: UTF-8 split across reads, chunk records that
//! match the file's bytes, the time limit of a chunk, and a failure that
//! stops the recording and says why.

use std::path::Path;
use std::time::Duration;

use infrabroker_common::audit::{AuditKey, AuditLog};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::*;

fn audit(dir: &Path) -> AuditLog {
    AuditLog::open(
        dir.join("audit.log"),
        AuditKey::from_seed(Zeroizing::new([8u8; 32])),
    )
    .unwrap()
}

fn chunks(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["event"] == "recording_chunk")
        .collect()
}

fn cast_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_character_split_across_reads_is_recorded_whole() {
    let dir = tempfile::tempdir().unwrap();
    let r = Recorder::create(dir.path(), "s1", (80, 24), "t", audit(dir.path())).unwrap();
    let e_acute = "é".as_bytes();
    r.event("o", &e_acute[..1]);
    r.event("e", b"err ");
    r.event("o", &e_acute[1..]);
    let crab = "🦀".as_bytes();
    r.event("o", &crab[..1]);
    r.event("o", &crab[1..]);
    r.event("o", b"\xff!");
    r.finish().await.unwrap();
    let texts: Vec<(String, String)> = cast_events(r.path())
        .iter()
        .map(|v| (v[1].as_str().unwrap().into(), v[2].as_str().unwrap().into()))
        .collect();
    let want = [("e", "err "), ("o", "é"), ("o", "🦀"), ("o", "\u{fffd}!")];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, t)| ((*k).into(), (*t).into()))
        .collect();
    assert_eq!(texts, want);
}

#[tokio::test]
async fn every_64_kib_is_a_chunk_whose_record_matches_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let r = Recorder::create(dir.path(), "s2", (80, 24), "t", audit(dir.path())).unwrap();
    let block = "x".repeat(1000);
    for _ in 0..200 {
        r.event("o", block.as_bytes());
    }
    let summary = r.finish().await.unwrap();
    let bytes = std::fs::read(r.path()).unwrap();
    assert_eq!(summary.size, bytes.len() as u64);
    let chunks = chunks(dir.path());
    assert!(chunks.len() >= 3, "{} chunks for ~200 KB", chunks.len());
    assert_eq!(summary.chunks, chunks.len() as u64);
    let mut offset = 0;
    let mut all = Sha256::new();
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c["session_id"], "s2");
        assert_eq!(c["index"], i as u64);
        assert_eq!(c["offset"], offset);
        let len = c["length"].as_u64().unwrap();
        let slice = &bytes[offset as usize..(offset + len) as usize];
        let hash = Sha256::digest(slice);
        assert_eq!(c["sha256"], hex::encode(hash));
        all.update(hash);
        if i + 1 < chunks.len() {
            assert!(len >= CHUNK_BYTES, "chunk {i} ended early at {len} bytes");
        }
        offset += len;
    }
    assert_eq!(offset, bytes.len() as u64, "the chunks cover the file");
    assert_eq!(summary.chunks_sha256, hex::encode(all.finalize()));
}

#[tokio::test]
async fn a_quiet_session_still_ends_a_chunk_after_its_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let r = Recorder::create_with(dir.path(), "s3", (80, 24), "t", audit(dir.path()), 1).unwrap();
    r.event("o", b"hello");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while chunks(dir.path()).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        chunks(dir.path()).len(),
        1,
        "sealed while the session is open"
    );
    assert!(r.failure().is_none());
    drop(r);
}

#[tokio::test]
async fn a_chunk_the_audit_log_refuses_stops_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("full.log");
    std::os::unix::fs::symlink("/dev/full", &log_path).unwrap();
    let log = AuditLog::open(&log_path, AuditKey::from_seed(Zeroizing::new([8u8; 32]))).unwrap();
    let r = Recorder::create(dir.path(), "s4", (80, 24), "t", log).unwrap();
    r.event("o", b"secret work");
    r.finish().await.unwrap();
    let why = r.failure().expect("the recording failed");
    assert!(
        why.contains("the audit record of a recording chunk"),
        "{why}"
    );
}
