//! `broker-ctl audit tail --follow --json`: new records stream out as the
//! writer seals them, across a rotation (the path names a new file) and a
//! truncation (the same file cut back to empty).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use infrabroker_common::audit::{AuditKey, AuditLog};
use serde_json::{Map, Value, json};

/// Kills the follower when the test ends, however it ends.
struct Follow(Child);

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn append(log: &AuditLog, tag: &str) {
    let mut m = Map::new();
    m.insert("event".into(), json!("test"));
    m.insert("tag".into(), json!(tag));
    log.append_blocking(m).unwrap();
}

/// The next `n` printed records as `(seq, tag)`, waiting at most 10 s.
fn next(rx: &mpsc::Receiver<String>, n: usize) -> Vec<(u64, String)> {
    (0..n)
        .map(|_| {
            let line = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("a record within 10 s");
            let v: Value = serde_json::from_str(&line).unwrap();
            (
                v["seq"].as_u64().unwrap(),
                v["tag"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn follow_streams_new_records_across_rotation_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let key = || AuditKey::from_seed(zeroize::Zeroizing::new([3u8; 32]));
    let log = AuditLog::open(&path, key()).unwrap();
    for tag in ["a", "b", "c"] {
        append(&log, tag);
    }
    let child = Command::new(env!("CARGO_BIN_EXE_broker-ctl"))
        .args(["audit", "tail", "--follow", "--json", "-n", "2"])
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut follow = Follow(child);
    let stdout = follow.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    assert_eq!(
        next(&rx, 2),
        [(2, "b".into()), (3, "c".into())],
        "the last two"
    );
    append(&log, "d");
    append(&log, "e");
    assert_eq!(next(&rx, 2), [(4, "d".into()), (5, "e".into())]);

    // Rotation: the old file moves aside, a new chain starts at the path.
    drop(log);
    std::fs::rename(&path, dir.path().join("audit.log.1")).unwrap();
    let log = AuditLog::open(&path, key()).unwrap();
    append(&log, "f");
    assert_eq!(next(&rx, 1), [(1, "f".into())]);

    // Truncation in place (same inode): read again from the start.
    drop(log);
    std::fs::File::create(&path).unwrap();
    let log = AuditLog::open(&path, key()).unwrap();
    append(&log, "g");
    assert_eq!(next(&rx, 1), [(1, "g".into())]);
    assert!(
        rx.recv_timeout(Duration::from_millis(600)).is_err(),
        "nothing printed twice"
    );
    assert!(follow.0.try_wait().unwrap().is_none(), "still following");
}
