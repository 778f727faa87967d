//! End-to-end tests of the audit log: write with [`AuditLog`], tamper with
//! the file the way an attacker would, and check what [`verify_file`] says.

use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::record::write_canonical;
use super::*;

pub(super) fn key() -> AuditKey {
    AuditKey::from_seed(Zeroizing::new([42u8; 32]))
}

pub(super) fn public() -> VerifyingKey {
    key().verifying_key()
}

/// A record about the size the signer writes.
pub(super) fn fields(i: u64) -> Map<String, Value> {
    let Value::Object(map) = json!({
        "outcome": "issued",
        "caller": "broker-01.example.net",
        "host": "10.20.30.40:22",
        "user": "deploy",
        "principal": "deploy",
        "command": "role=target purpose=restart nginx after config push",
        "serial": i,
        "exit_code": 0,
    }) else {
        unreachable!()
    };
    map
}

pub(super) fn log_with(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, key()).unwrap();
    for i in 1..=n {
        let receipt = log.append_blocking(fields(i)).unwrap();
        assert_eq!(receipt.seq, i);
    }
    (dir, path)
}

pub(super) fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub(super) fn write_lines(path: &Path, lines: &[String]) {
    fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

pub(super) fn parse(line: &str) -> Map<String, Value> {
    serde_json::from_str(line).unwrap()
}

/// Re-encodes a record with a correct `hash` for its (possibly edited)
/// content, as an attacker without the key can.
pub(super) fn rehash(mut map: Map<String, Value>) -> (String, String) {
    map.remove("hash");
    let mut body = Vec::new();
    write_canonical(&map, &mut body).unwrap();
    let hash = hex::encode(Sha256::digest(&body));
    body.pop();
    let line = format!("{},\"hash\":\"{hash}\"}}", String::from_utf8(body).unwrap());
    (line, hash)
}

/// Sets `field` of the last record to `value` and re-hashes it: a forgery
/// whose hash and links check out but whose signature cannot.
pub(super) fn forge_last(path: &Path, field: &str, value: &str) {
    let mut all = lines(path);
    let last = all.len() - 1;
    let mut map = parse(&all[last]);
    map.insert(field.into(), Value::from(value));
    all[last] = rehash(map).0;
    write_lines(path, &all);
}

/// Opens a log whose path leads to `/dev/full`, fails one append, then
/// points the path at `real`: the next append makes the writer reopen it.
pub(super) fn fail_then_lead_to(real: &Path) -> (tempfile::TempDir, AuditLog) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
    let log = AuditLog::open(&path, key()).unwrap();
    assert!(log.append_blocking(fields(99)).is_err());
    fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(real, &path).unwrap();
    (dir, log)
}

/// Recomputes `prev_hash` and `hash` of every line from `from` (0-based) on.
fn rechain(lines: &mut [String], from: usize) {
    let mut prev = parse(&lines[from - 1])["hash"].as_str().unwrap().to_owned();
    for line in &mut lines[from..] {
        let mut map = parse(line);
        map.insert("prev_hash".into(), Value::from(prev));
        let (new_line, hash) = rehash(map);
        *line = new_line;
        prev = hash;
    }
}

/// Asserts both verification modes name `seq` with `kind`.
pub(super) fn assert_broken(path: &Path, want_seq: u64, want_kind: BrokenKind) {
    for all_signatures in [false, true] {
        let err = verify_file(path, &public(), VerifyOptions { all_signatures }).unwrap_err();
        match &err {
            VerifyError::Broken { seq, kind, .. } => {
                assert_eq!(
                    (*seq, *kind),
                    (want_seq, want_kind),
                    "all={all_signatures}: {err}"
                );
            }
            VerifyError::Io { .. } => panic!("unexpected {err}"),
        }
    }
}

pub(super) fn assert_valid(path: &Path, records: u64) -> VerifyReport {
    let fast = verify_file(path, &public(), VerifyOptions::default()).unwrap();
    let full = verify_file(
        path,
        &public(),
        VerifyOptions {
            all_signatures: true,
        },
    )
    .unwrap();
    assert_eq!(fast, full);
    assert_eq!((fast.records, fast.head_seq), (records, records));
    fast
}

#[test]
fn round_trip_verifies() {
    let (_dir, path) = log_with(50);
    let report = assert_valid(&path, 50);
    let all = lines(&path);
    let last = parse(&all[49]);
    assert_eq!(report.head_hash, last["hash"].as_str().unwrap());
    let first = parse(&all[0]);
    assert_eq!(first["prev_hash"], GENESIS_HASH);
    assert_eq!(first["serial"], 1);
    let ts = first["ts"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok()
    );
    assert_eq!(
        (ts.len(), ts.as_bytes()[19], ts.ends_with('Z')),
        (24, b'.', true),
        "{ts}"
    );
    assert!(all[0].ends_with(&format!(
        ",\"hash\":\"{}\"}}",
        first["hash"].as_str().unwrap()
    )));
}

#[test]
fn empty_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    drop(AuditLog::open(&path, key()).unwrap());
    let report = assert_valid(&path, 0);
    assert_eq!(report.head_hash, GENESIS_HASH);
    assert!(matches!(
        verify_file(
            dir.path().join("absent"),
            &public(),
            VerifyOptions::default()
        ),
        Err(VerifyError::Io { .. })
    ));
}

#[test]
fn modified_field_is_a_hash_mismatch() {
    let (_dir, path) = log_with(9);
    let mut all = lines(&path);
    all[4] = all[4].replace("\"serial\":5", "\"serial\":6");
    write_lines(&path, &all);
    assert_broken(&path, 5, BrokenKind::HashMismatch);
}

/// A full rewrite without the key: a middle record edited and every later
/// `prev_hash`/`hash` recomputed. The default mode (head signature only)
/// catches it and names the edited record, and a restart refuses to seal
/// over it (which is what keeps the head-signature argument sound).
#[test]
fn modified_field_with_recomputed_chain_is_a_bad_signature() {
    let (_dir, path) = log_with(40);
    let mut all = lines(&path);
    let mut map = parse(&all[16]);
    map.insert("outcome".into(), Value::from("denied"));
    all[16] = rehash(map).0;
    rechain(&mut all, 17);
    write_lines(&path, &all);
    assert_broken(&path, 17, BrokenKind::BadSignature);
    let err = AuditLog::open(&path, key()).unwrap_err();
    assert!(err.is_unverified_tail(), "{err}");
    assert_broken(&path, 17, BrokenKind::BadSignature);
    // The last record alone is forged the same way.
    let (_dir, path) = log_with(3);
    forge_last(&path, "user", "root");
    assert_broken(&path, 3, BrokenKind::BadSignature);
}

#[test]
fn deleted_record_is_a_seq_mismatch() {
    let (_dir, path) = log_with(9);
    let mut all = lines(&path);
    all.remove(4);
    write_lines(&path, &all);
    assert_broken(&path, 5, BrokenKind::SeqMismatch);
    let err = verify_file(&path, &public(), VerifyOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("record seq 5 (line 5): seq mismatch: expected seq 5, found 6"),
        "{err}"
    );
}

#[test]
fn deleted_and_renumbered_records_are_caught_by_signatures() {
    let (_dir, path) = log_with(9);
    let mut all = lines(&path);
    all.remove(4);
    for (i, line) in all.iter_mut().enumerate().skip(4) {
        let mut map = parse(line);
        map.insert("seq".into(), Value::from(i as u64 + 1));
        *line = rehash(map).0;
    }
    rechain(&mut all, 4);
    write_lines(&path, &all);
    assert_broken(&path, 5, BrokenKind::BadSignature);
}

#[test]
fn inserted_records_are_detected() {
    // A copy of an existing record.
    let (_dir, path) = log_with(9);
    let mut all = lines(&path);
    all.insert(3, all[2].clone());
    write_lines(&path, &all);
    assert_broken(&path, 4, BrokenKind::SeqMismatch);

    // A forged record that fits the chain but carries no valid signature.
    let (_dir, path) = log_with(9);
    let mut all = lines(&path);
    let mut forged = fields(77);
    forged.insert("seq".into(), Value::from(5));
    forged.insert("ts".into(), parse(&all[3])["ts"].clone());
    forged.insert("prev_hash".into(), parse(&all[3])["hash"].clone());
    forged.insert("sig".into(), parse(&all[3])["sig"].clone());
    all.insert(4, rehash(forged).0);
    write_lines(&path, &all);
    assert_broken(&path, 5, BrokenKind::BadSignature);
}

#[test]
fn swapped_records_are_a_seq_mismatch() {
    let (_dir, path) = log_with(9);
    let mut all = lines(&path);
    all.swap(3, 4);
    write_lines(&path, &all);
    assert_broken(&path, 4, BrokenKind::SeqMismatch);
}

#[test]
fn replaced_signature_is_a_hash_mismatch() {
    let (_dir, path) = log_with(9);
    let mut all = lines(&path);
    let other = parse(&all[5])["sig"].as_str().unwrap().to_owned();
    let mut map = parse(&all[4]);
    let sig = map["sig"].as_str().unwrap().to_owned();
    all[4] = all[4].replace(&sig, &other);
    write_lines(&path, &all);
    assert_broken(&path, 5, BrokenKind::HashMismatch);
    // With the hash (and chain) fixed up, the signature itself fails.
    map.insert("sig".into(), Value::from(other));
    all[4] = rehash(map).0;
    rechain(&mut all, 5);
    write_lines(&path, &all);
    assert_broken(&path, 5, BrokenKind::BadSignature);
}

#[test]
fn spliced_prev_hash_and_malformed_lines_are_detected() {
    let (_dir, path) = log_with(6);
    let mut all = lines(&path);
    let mut map = parse(&all[2]);
    map.insert("prev_hash".into(), Value::from(GENESIS_HASH));
    all[2] = rehash(map).0;
    write_lines(&path, &all);
    assert_broken(&path, 3, BrokenKind::PrevHashMismatch);

    let (_dir, path) = log_with(6);
    let mut all = lines(&path);
    all[3] = "this is not json".to_owned();
    write_lines(&path, &all);
    assert_broken(&path, 4, BrokenKind::Malformed);
    let err = verify_file(&path, &public(), VerifyOptions::default()).unwrap_err();
    assert!(matches!(err, VerifyError::Broken { line: 4, .. }), "{err}");
}

#[test]
fn wrong_key_fails_at_the_first_record() {
    let (_dir, path) = log_with(20);
    let other = AuditKey::from_seed(Zeroizing::new([7u8; 32])).verifying_key();
    for all_signatures in [false, true] {
        let err = verify_file(&path, &other, VerifyOptions { all_signatures }).unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::Broken {
                    seq: 1,
                    kind: BrokenKind::BadSignature,
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn restart_continues_the_chain() {
    let (_dir, path) = log_with(3);
    let log = AuditLog::open(&path, key()).unwrap();
    assert_eq!(log.head().0, 3);
    assert_eq!(log.append_blocking(fields(4)).unwrap().seq, 4);
    let receipt = log.append_blocking(fields(5)).unwrap();
    assert_eq!(log.head(), (5, receipt.hash.clone()));
    drop(log);
    let report = assert_valid(&path, 5);
    assert_eq!(report.head_hash, receipt.hash);
    let seqs: Vec<u64> = lines(&path)
        .iter()
        .map(|l| parse(l)["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
}

#[test]
fn torn_last_line_is_reported_then_quarantined_on_restart() {
    let (dir, path) = log_with(3);
    let mut bytes = fs::read(&path).unwrap();
    let good = bytes.clone();
    bytes.extend_from_slice(b"{\"outcome\":\"issued\",\"prev_h");
    fs::write(&path, &bytes).unwrap();
    assert_broken(&path, 4, BrokenKind::Malformed);
    let log = AuditLog::open(&path, key()).unwrap();
    // The torn bytes live on in the quarantine file, never dropped.
    let quarantined: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".torn-"))
        .collect();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(fs::read(&quarantined[0]).unwrap(), &bytes[good.len()..]);
    // The next record says so, and the chain continues after it.
    assert!(fs::read(&path).unwrap().starts_with(&good));
    let all = lines(&path);
    let notice = parse(&all[3]);
    assert_eq!(notice["seq"], 4);
    assert_eq!(notice["event"], "audit_torn_quarantined");
    assert_eq!(notice["torn_bytes"], 27);
    assert_eq!(
        notice["quarantine_file"],
        quarantined[0].display().to_string()
    );
    assert_eq!(log.append_blocking(fields(4)).unwrap().seq, 5);
    drop(log);
    assert_valid(&path, 5);
}

#[test]
fn reserved_fields_are_rejected() {
    let (_dir, path) = log_with(0);
    let log = AuditLog::open(&path, key()).unwrap();
    for name in RESERVED_FIELDS {
        let mut f = fields(1);
        f.insert(name.to_owned(), Value::from(1));
        let err = log.append_blocking(f).unwrap_err();
        assert!(
            matches!(&err, AuditError::ReservedField(n) if n == name),
            "{err}"
        );
    }
    assert_eq!(log.head().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, key()).unwrap();
    let tasks: Vec<_> = (1..=1000)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(fields(i)).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap().unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=1000).collect::<Vec<u64>>());
    let batches = log.batches();
    assert!(batches > 0 && batches < 1000, "{batches} batches");
    let err = log.append(
        fields(0)
            .into_iter()
            .chain([("sig".into(), json!(""))])
            .collect(),
    );
    assert!(matches!(err.await, Err(AuditError::ReservedField(_))));
    drop(log);
    assert_valid(&path, 1000);
}

#[test]
fn full_disk_fails_every_append_without_wedging() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
    let log = AuditLog::open(&path, key()).unwrap();
    for _ in 0..3 {
        let err = log.append_blocking(fields(1)).unwrap_err();
        assert!(matches!(err, AuditError::Write(_)), "{err}");
    }
    assert_eq!(log.head(), (0, GENESIS_HASH.to_owned()));
    assert_eq!(log.batches(), 0);
}

#[test]
fn appends_recover_once_the_disk_is_writable_again() {
    let (_dir, real) = log_with(3);
    // The failed batch makes the writer reopen the path, which now leads
    // to a healthy log: the chain continues from what is on disk.
    let (_link_dir, log) = fail_then_lead_to(&real);
    let receipt = log.append_blocking(fields(4)).unwrap();
    assert_eq!(receipt.seq, 4);
    assert_eq!(log.head(), (4, receipt.hash));
    drop(log);
    assert_valid(&real, 4);
}
