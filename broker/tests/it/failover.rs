//! `signer.url` as a list: two signer replicas on one real PostgreSQL, a
//! broker pointed at both, and `kill -9` of the replica it is using in the
//! middle of a load. Every call still succeeds (through the other
//! replica), no serial is issued twice, and every certificate a client used
//! has its record in the replicas' one global chain, which verifies.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use infrabroker_testbed::postgres::{Postgres, postgres_or_skip, verified_global_chain};
use infrabroker_testbed::sshd_or_skip;
use infrabroker_testbed::stack::SignerProc;
use serde_json::json;

use crate::harness::{Bed, host_for, run, sshd};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_signer_replica_is_failed_over_mid_load() {
    if !sshd_or_skip() || !postgres_or_skip() {
        return;
    }
    let pg = Postgres::start(false).unwrap();
    pg.create_db("signers").unwrap();
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let bed = Bed::start(dir, pki, json!({"web": host_for(&s, "web-principal")}));
    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        let d = bed.dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let mut cfg = bed.signer_cfg.clone();
        cfg["audit_log"] = json!(d.join("audit.log"));
        cfg["store"] = json!({"postgres": {"url": pg.url("signers"), "pool_size": 4}});
        replicas.push(SignerProc::start(&d, &cfg).unwrap());
    }
    let engine = bed
        .engine(json!({"signer": {
            "url": [replicas[0].url, replicas[1].url],
            "client_cert": bed.pki.path("broker-1.crt"),
            "client_key": bed.pki.path("broker-1.key"),
            "ca": bed.pki.path("ca.crt"),
            "request_timeout_seconds": 5,
        }}))
        .await;

    // 4 workers × 10 commands; replica a dies after the 8th success.
    let done = Arc::new(AtomicUsize::new(0));
    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
    let kill_tx = Arc::new(std::sync::Mutex::new(Some(kill_tx)));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (engine, done, kill_tx) = (engine.clone(), done.clone(), kill_tx.clone());
        workers.push(tokio::spawn(async move {
            let mut serials = Vec::new();
            for i in 0..10 {
                let cmd = format!("echo w{w}-{i}");
                let r = run(&engine, "web", &cmd)
                    .await
                    .unwrap_or_else(|e| panic!("{cmd}: {e:?}"));
                assert_eq!(r.stdout, format!("w{w}-{i}\n"));
                serials.push(r.serial);
                if done.fetch_add(1, Ordering::SeqCst) + 1 == 8
                    && let Some(tx) = kill_tx.lock().unwrap().take()
                {
                    let _ = tx.send(());
                }
            }
            serials
        }));
    }
    kill_rx.await.unwrap();
    assert!(replicas[0].child.signal(9), "kill -9 of replica a");
    let mut received = HashSet::new();
    for w in workers {
        for serial in w.await.unwrap() {
            assert!(received.insert(serial), "serial {serial} issued twice");
        }
    }
    assert_eq!(received.len(), 40, "every call succeeded");

    // One global chain for both replicas (HA mode), verified by broker-ctl:
    // every certificate a client used has its committed record.
    let chain = verified_global_chain(&pg.url("signers"), &bed.pki.path("signer-audit.pub"));
    let recorded: HashSet<u64> = chain
        .iter()
        .filter(|r| r["outcome"] == "issued")
        .filter_map(|r| r["serial"].as_u64())
        .collect();
    assert!(
        received.is_subset(&recorded),
        "each certificate used has its record"
    );
}
