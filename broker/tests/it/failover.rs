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

/// A PostgreSQL with database `signers`, an sshd for host `web` and a test
/// bed that knows it.
fn on_postgres() -> (Postgres, infrabroker_testbed::Sshd, Bed) {
    let pg = Postgres::start(false).unwrap();
    pg.create_db("signers").unwrap();
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let bed = Bed::start(dir, pki, json!({"web": host_for(&s, "web-principal")}));
    (pg, s, bed)
}

/// Signer replica `name` of `bed` on database `signers` of `pg`, in its
/// own directory, with `extra` top-level settings.
fn replica(bed: &Bed, pg: &Postgres, name: &str, extra: serde_json::Value) -> SignerProc {
    let d = bed.dir.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
    let mut cfg = bed.signer_cfg.clone();
    cfg["audit_log"] = json!(d.join("audit.log"));
    cfg["store"] = json!({"postgres": {"url": pg.url("signers"), "pool_size": 4}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        cfg[k] = v.clone();
    }
    SignerProc::start(&d, &cfg).unwrap()
}

/// The broker's `signer` member naming every replica.
fn signer_urls(bed: &Bed, replicas: &[SignerProc]) -> serde_json::Value {
    json!({
        "url": replicas.iter().map(|r| r.url.clone()).collect::<Vec<_>>(),
        "client_cert": bed.pki.path("broker-1.crt"),
        "client_key": bed.pki.path("broker-1.key"),
        "ca": bed.pki.path("ca.crt"),
        "request_timeout_seconds": 5,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_signer_replica_is_failed_over_mid_load() {
    if !sshd_or_skip() || !postgres_or_skip() {
        return;
    }
    let (pg, _sshd, bed) = on_postgres();
    let mut replicas = ["a", "b"].map(|name| replica(&bed, &pg, name, json!({})));
    let engine = bed
        .engine(json!({"signer": signer_urls(&bed, &replicas)}))
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

/// A replica whose own CA (here: behind an ssh-agent) cannot sign answers
/// `503 ca_unavailable`; nothing was issued there, so the broker asks the
/// next replica (a file CA with the same key) and the command runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_ca_cannot_sign_is_passed_over() {
    if !sshd_or_skip() || !postgres_or_skip() || !infrabroker_testbed::custody::agent_or_skip() {
        return;
    }
    let (pg, _sshd, bed) = on_postgres();
    let socket = bed.dir.path().join("ca-agent.sock");
    let mut agent = infrabroker_testbed::custody::Agent::start(&socket).unwrap();
    agent.add(&bed.pki.path("ssh_user_ca")).unwrap();
    let ca_pub = std::fs::read_to_string(bed.pki.path("ssh_user_ca.pub")).unwrap();
    let agent_ca = json!({"ca_keys": {"_default": {
        "type": "agent", "socket": socket, "public_key": ca_pub.trim(),
    }}});
    let replicas = [
        replica(&bed, &pg, "a", agent_ca),
        replica(&bed, &pg, "b", json!({})),
    ];
    let engine = bed
        .engine(json!({"signer": signer_urls(&bed, &replicas)}))
        .await;
    assert_eq!(
        run(&engine, "web", "echo via-a").await.unwrap().stdout,
        "via-a\n"
    );
    agent.stop();
    for i in 0..3 {
        let r = run(&engine, "web", &format!("echo via-b-{i}")).await;
        assert_eq!(r.unwrap().stdout, format!("via-b-{i}\n"));
    }
    assert!(
        replicas[0].child.log().contains("the CA cannot sign"),
        "replica a was asked first and refused: {}",
        replicas[0].child.log()
    );
}
