//! Default-mode `audit verify` throughput (SPEC §11 / issue 11 target:
//! ≥ 1,000,000 records/s): seals `RECORDS` signer-sized records with the
//! real writer, then times `verify_file` (every hash link, the head
//! signature) five times and prints the best and median rate. Then the
//! start-up cost of checkpoints (issue 11 §2: rebuild ≥ 1M records/s):
//! opening the same log with `audit_checkpoint`, which re-reads every line
//! into the Merkle tree and checks the latest checkpoint against it. Last,
//! proofs on a million-record tree once it is built (issue 11: `audit
//! prove` < 10 ms), next to hashing the whole tree, which is what one
//! proof cost before the tree was kept.
//! `cargo bench --workspace --bench audit_verify`.

#![allow(clippy::unwrap_used, reason = "bench setup fails loudly")]

use std::time::Instant;

use infrabroker_common::audit::{
    AuditKey, AuditLog, CheckpointSettings, VerifyOptions, merkle, verify_file,
};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

const RECORDS: u64 = 200_000;

fn record(i: u64) -> Map<String, Value> {
    let Value::Object(map) = json!({
        "serial": i,
        "key_id": format!("broker-01/deploy/{i}"),
        "outcome": "issued",
        "cn": "broker-01.example.net",
        "target": "web-07:22",
        "login": "deploy",
        "force_command": "systemctl restart nginx",
        "valid_after": 1_800_000_000u64,
        "valid_before": 1_800_000_300u64,
    }) else {
        unreachable!()
    };
    map
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let key = AuditKey::from_seed(Zeroizing::new([5u8; 32]));
    let public = key.verifying_key();
    let log = AuditLog::open(&path, key).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        for chunk in (1..=RECORDS).collect::<Vec<_>>().chunks(4096) {
            let tasks: Vec<_> = chunk
                .iter()
                .map(|&i| {
                    let log = log.clone();
                    tokio::spawn(async move { log.append(record(i)).await })
                })
                .collect();
            for t in tasks {
                t.await.unwrap().unwrap();
            }
        }
    });
    drop(log);
    let bytes = std::fs::metadata(&path).unwrap().len();
    let mut rates = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let report = verify_file(&path, &public, VerifyOptions::default()).unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(report.records, RECORDS);
        rates.push(RECORDS as f64 / secs);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "audit verify (default mode): {RECORDS} records, {} bytes/record: best {:.0} records/s, median {:.0} records/s",
        bytes / RECORDS,
        rates[4],
        rates[2]
    );
    rebuild_on_open(&path, dir.path());
    proofs_on_a_million();
}

/// Inclusion and consistency proofs from a stored [`merkle::Tree`] of
/// 1,000,000 leaves, 1,000 of each at spread-out positions.
fn proofs_on_a_million() {
    const N: usize = 1_000_000;
    let leaves: Vec<merkle::Hash> = (0..N as u64)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect();
    let start = Instant::now();
    let tree = merkle::Tree::new(&leaves);
    let build = start.elapsed();
    let start = Instant::now();
    let root = merkle::root(&leaves);
    let full = start.elapsed();
    let positions: Vec<usize> = (0..1000).map(|k| (k * 7_919 * 131 + 17) % N).collect();
    let start = Instant::now();
    for &i in &positions {
        let proof = tree.inclusion_proof(i).unwrap();
        std::hint::black_box(proof);
    }
    let inclusion = start.elapsed() / 1000;
    let start = Instant::now();
    for &m in &positions {
        std::hint::black_box(tree.consistency_proof(m.max(1)).unwrap());
    }
    let consistency = start.elapsed() / 1000;
    let i = positions[3];
    let proof = tree.inclusion_proof(i).unwrap();
    assert!(merkle::verify_inclusion(
        i as u64, N as u64, &leaves[i], &proof, &root
    ));
    println!(
        "Merkle tree of {N} leaves: built in {build:.2?}; inclusion proof {inclusion:.2?} each, consistency proof {consistency:.2?} each; hashing the whole tree (a proof without a kept tree) {full:.2?} ({:.0}x)",
        full.as_secs_f64() / inclusion.as_secs_f64()
    );
}

/// Times `AuditLog::open_with` on the log once a checkpoint of all of it
/// exists (the first open writes it on close).
fn rebuild_on_open(path: &std::path::Path, dir: &std::path::Path) {
    let settings = CheckpointSettings {
        path: dir.join("cp").join("audit.cp"),
        origin: "infrabroker.bench/audit".into(),
        every_records: 1000,
        every_seconds: None,
        keep: 1,
        witnesses: Vec::new(),
    };
    std::fs::create_dir_all(dir.join("cp")).unwrap();
    let key = || AuditKey::from_seed(Zeroizing::new([5u8; 32]));
    drop(AuditLog::open_with(path, key(), Some(settings.clone())).unwrap());
    let mut rates = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let log = AuditLog::open_with(path, key(), Some(settings.clone())).unwrap();
        rates.push(RECORDS as f64 / start.elapsed().as_secs_f64());
        drop(log);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "open with audit_checkpoint (tail check + Merkle rebuild + checkpoint check): best {:.0} records/s, median {:.0} records/s",
        rates[4], rates[2]
    );
}
