//! Serials from the state store: unique across a restart on the default
//! SQLite file, and across two signer replicas on one real PostgreSQL under
//! concurrent load, with one global audit chain (HA mode) that verifies; a
//! database outage refuses issuance with `store_unavailable` (nothing
//! issued) and service resumes by itself. With `audit_checkpoint`, each
//! replica checkpoints the global chain to its own file, and rows removed
//! from the database are caught: running replicas stop adding records, a
//! restart exits 65 and `broker-ctl audit verify --postgres --checkpoint`
//! fails.

use std::collections::HashSet;
use std::time::Duration;

use infrabroker_common::client::MtlsClient;
use infrabroker_testbed::postgres::{Postgres, postgres_or_skip, verified_global_chain};
use infrabroker_testbed::stack::SignerProc;
use serde_json::{Value, json};

use crate::harness::{Stack, checkpoint_size, keypair, oneshot};

fn issued_serials(records: &[Value]) -> Vec<u64> {
    records
        .iter()
        .filter(|r| r["outcome"] == "issued")
        .filter_map(|r| r["serial"].as_u64())
        .collect()
}

#[tokio::test]
async fn serials_continue_after_a_restart_on_the_default_store() {
    let mut s = Stack::start(|_, _| {});
    let req = oneshot("web", "id", &keypair());
    let (st, first) = s.sign("broker-1", &req).await;
    assert_eq!(st, 200, "{first}");
    let db = s.dir.path().join("audit.log.state.db");
    assert!(db.exists(), "the default store sits beside the audit log");
    // Kill and restart on the same files: the next serial is higher.
    assert!(s.signer.child.signal(9));
    s.signer = SignerProc::start_file(s.dir.path(), &s.signer.config_path.clone()).unwrap();
    let (st, second) = s.sign("broker-1", &req).await;
    assert_eq!(st, 200, "{second}");
    assert!(
        second["serial"].as_u64() > first["serial"].as_u64(),
        "{first} {second}"
    );
}

/// A replica in its own directory (own audit log and stderr) on `store`.
pub fn replica(s: &Stack, name: &str, store: &Value) -> SignerProc {
    replica_with(s, name, store, json!({}))
}

/// [`replica`] with `extra` top-level settings.
fn replica_with(s: &Stack, name: &str, store: &Value, extra: Value) -> SignerProc {
    let dir = s.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = s.config.clone();
    cfg["audit_log"] = json!(dir.join("audit.log"));
    cfg["store"] = store.clone();
    for (k, v) in extra.as_object().into_iter().flatten() {
        cfg[k] = v.clone();
    }
    SignerProc::start(&dir, &cfg).unwrap()
}

pub fn client(s: &Stack, url: &str) -> MtlsClient {
    MtlsClient::new(
        url,
        &s.pki.path("ca.crt"),
        &s.pki.path("broker-1.crt"),
        &s.pki.path("broker-1.key"),
        Duration::from_secs(10),
    )
    .unwrap()
}

pub async fn sign(c: &MtlsClient, req: &Value) -> (u16, Value) {
    let raw = c
        .call_raw(
            hyper::Method::POST,
            "/v1/sign",
            Some(serde_json::to_vec(req).unwrap()),
        )
        .await
        .unwrap();
    (
        raw.status.as_u16(),
        serde_json::from_slice(&raw.body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_signers_on_postgres_never_share_a_serial() {
    if !postgres_or_skip() {
        return;
    }
    let pg = Postgres::start(false).unwrap();
    pg.create_db("signers").unwrap();
    let s = Stack::start(|_, _| {});
    let store = json!({"postgres": {"url": pg.url("signers"), "pool_size": 4}});
    let (a, b) = (replica(&s, "a", &store), replica(&s, "b", &store));
    let clients = [client(&s, &a.url), client(&s, &b.url)];
    let req = oneshot("web", "id", &keypair());

    // 8 concurrent callers, alternating replicas, 40 certificates each.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (c, req) = (clients[i % 2].clone(), req.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..40 {
                let (st, v) = sign(&c, &req).await;
                assert_eq!(st, 200, "{v}");
                got.push(v["serial"].as_u64().unwrap());
            }
            got
        }));
    }
    let mut received = HashSet::new();
    for t in tasks {
        for serial in t.await.unwrap() {
            assert!(received.insert(serial), "serial {serial} issued twice");
        }
    }
    assert_eq!(received.len(), 320);
    // HA mode: one global chain in the database, verified by broker-ctl;
    // every certificate a client received has its committed record there,
    // exactly once, and the replicas wrote no local log.
    let chain = verified_global_chain(&pg.url("signers"), &s.pki.path("signer-audit.pub"));
    let recorded = issued_serials(&chain);
    assert_eq!(recorded.len(), 320, "one record per certificate");
    assert_eq!(recorded.into_iter().collect::<HashSet<u64>>(), received);
    let seqs: Vec<u64> = chain.iter().filter_map(|r| r["seq"].as_u64()).collect();
    assert_eq!(
        seqs,
        (1..=chain.len() as u64).collect::<Vec<_>>(),
        "one gap-free chain"
    );
    for name in ["a", "b"] {
        assert!(
            !s.dir.path().join(name).join("audit.log").exists(),
            "no local log in HA mode"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_refuses_issuance_until_it_returns() {
    if !postgres_or_skip() {
        return;
    }
    let pg = Postgres::start(false).unwrap();
    pg.create_db("outage").unwrap();
    let s = Stack::start(|_, _| {});
    let store = json!({"postgres": {"url": pg.url("outage"), "pool_size": 2}});
    let port = infrabroker_testbed::free_port();
    let a = replica_with(
        &s,
        "a",
        &store,
        json!({"monitor_listen": format!("127.0.0.1:{port}")}),
    );
    let readyz = || async move {
        tokio::task::spawn_blocking(move || infrabroker_testbed::monitor::get(port, "/readyz"))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(readyz().await.0, 200);
    let c = client(&s, &a.url);
    let req = oneshot("web", "id", &keypair());
    for _ in 0..20 {
        assert_eq!(sign(&c, &req).await.0, 200);
    }
    let url = pg.url("outage");
    let before = issued_serials(&verified_global_chain(
        &url,
        &s.pki.path("signer-audit.pub"),
    ))
    .len();
    assert_eq!(before, 20);

    pg.stop_immediate().unwrap();
    let (status, why) = readyz().await;
    assert!(
        status == 503 && why.contains("state store"),
        "{status} {why}"
    );
    let (st, v) = sign(&c, &req).await;
    assert_eq!(
        (st, v["reason_code"].as_str()),
        (503, Some("store_unavailable")),
        "{v}"
    );
    assert!(
        v.get("certificate").is_none_or(Value::is_null),
        "nothing issued: {v}"
    );
    // The replica still holds serials: what cannot be written is the
    // record, and without it nothing leaves (store_unavailable above).

    pg.start_again().unwrap();
    let mut back = None;
    for _ in 0..50 {
        let (st, v) = sign(&c, &req).await;
        if st == 200 {
            back = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v = back.expect("the signer issues again once the database is back, without a restart");
    let serial = v["serial"].as_u64().unwrap();
    let issued = issued_serials(&verified_global_chain(
        &url,
        &s.pki.path("signer-audit.pub"),
    ));
    assert_eq!(
        issued.len(),
        before + 1,
        "nothing was issued during the outage"
    );
    assert_eq!(
        issued.last(),
        Some(&serial),
        "the certificate after it has its record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_mid_load_issues_nothing_without_its_record() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    if !postgres_or_skip() {
        return;
    }
    let pg = Postgres::start(false).unwrap();
    pg.create_db("midload").unwrap();
    let s = Stack::start(|_, _| {});
    let store = json!({"postgres": {"url": pg.url("midload"), "pool_size": 4}});
    let (a, b) = (replica(&s, "a", &store), replica(&s, "b", &store));
    let clients = [client(&s, &a.url), client(&s, &b.url)];
    let req = oneshot("web", "id", &keypair());
    let (ok, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(40);

    // 4 workers sign until told to stop (or 3,000 requests, or 40 s).
    let mut workers = Vec::new();
    for i in 0..4 {
        let (c, req, ok, stop) = (
            clients[i % 2].clone(),
            req.clone(),
            ok.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..750 {
                if stop.load(Ordering::Relaxed) || std::time::Instant::now() > deadline {
                    break;
                }
                let (st, v) = sign(&c, &req).await;
                if st == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                seen.push((st, v));
            }
            seen
        }));
    }
    let wait_for = |n: usize| {
        let ok = ok.clone();
        async move {
            while ok.load(Ordering::Relaxed) < n && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(100).await;
    pg.stop_immediate().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let during = ok.load(Ordering::Relaxed);
    pg.start_again().unwrap();
    wait_for(during + 100).await;
    stop.store(true, Ordering::Relaxed);

    let mut received = HashSet::new();
    let mut refused = 0;
    for w in workers {
        for (st, v) in w.await.unwrap() {
            if st == 200 {
                assert!(
                    received.insert(v["serial"].as_u64().unwrap()),
                    "serial twice: {v}"
                );
            } else {
                assert_eq!(
                    (st, v["reason_code"].as_str()),
                    (503, Some("store_unavailable")),
                    "{v}"
                );
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the outage was seen by the load");
    assert!(
        received.len() >= during + 100,
        "service resumed: {} issued",
        received.len()
    );
    // Every certificate that left has its committed record, once.
    let chain = verified_global_chain(&pg.url("midload"), &s.pki.path("signer-audit.pub"));
    let recorded: HashSet<u64> = issued_serials(&chain).into_iter().collect();
    assert!(
        received.is_subset(&recorded),
        "a certificate left without its record"
    );
    // A commit that reached the disk just as the server died can be
    // reported as failed: that record's certificate was refused, never sent.
    // At most one such batch per replica.
    let orphans = recorded.len() - received.len();
    assert!(
        orphans <= 2 * 1_024,
        "{orphans} records without a certificate"
    );
}

/// `audit_checkpoint` for replica `name`: a file outside its log's
/// directory, a checkpoint after every record.
fn checkpoint_settings(s: &Stack, name: &str) -> Value {
    let dir = s.dir.path().join(format!("{name}-checkpoints"));
    std::fs::create_dir_all(&dir).unwrap();
    json!({"audit_checkpoint": {
        "path": dir.join("chain.cp"), "origin": "infrabroker.test/global", "every_records": 1,
    }})
}

fn ctl_verify(url: &str, pubkey: &std::path::Path, checkpoint: &std::path::Path) -> (bool, String) {
    let args: [&std::ffi::OsStr; 8] = [
        "audit".as_ref(),
        "verify".as_ref(),
        "--postgres".as_ref(),
        url.as_ref(),
        "--pubkey".as_ref(),
        pubkey.as_os_str(),
        "--checkpoint".as_ref(),
        checkpoint.as_os_str(),
    ];
    infrabroker_testbed::broker_ctl(&args).unwrap()
}

/// Issue 11 §2 / issue 17 §4: two replicas on one database each keep
/// signed checkpoints of the one global chain (every replica's records).
/// Someone with database access deletes the newest rows: `audit verify
/// --postgres --checkpoint` fails (truncated), the running replicas stop
/// adding records (`audit_unavailable`, nothing issued), and a restarted
/// replica refuses to start with exit 65 naming its checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_checkpoint_the_global_chain_and_catch_removed_rows() {
    if !postgres_or_skip() {
        return;
    }
    let pg = Postgres::start(false).unwrap();
    pg.create_db("chain").unwrap();
    let url = pg.url("chain");
    let s = Stack::start(|_, _| {});
    let store = json!({"postgres": {"url": url, "pool_size": 2}});
    let a = replica_with(&s, "a", &store, checkpoint_settings(&s, "a"));
    let b = replica_with(&s, "b", &store, checkpoint_settings(&s, "b"));
    let (ca, cb) = (client(&s, &a.url), client(&s, &b.url));
    let req = oneshot("web", "id", &keypair());
    for i in 0..6 {
        let (st, v) = sign(if i % 2 == 0 { &ca } else { &cb }, &req).await;
        assert_eq!(st, 200, "{v}");
    }
    let pubkey = s.pki.path("signer-audit.pub");
    let chain = verified_global_chain(&url, &pubkey);
    let n = chain.len() as u64;
    assert!(n >= 6, "{n}");
    // Both replicas follow the whole chain, not only their own records.
    let cps = [
        s.dir.path().join("a-checkpoints/chain.cp"),
        s.dir.path().join("b-checkpoints/chain.cp"),
    ];
    for cp in &cps {
        assert!(
            infrabroker_testbed::wait_until(Duration::from_secs(15), || checkpoint_size(cp) == n),
            "{} covers {} of {n} records",
            cp.display(),
            checkpoint_size(cp)
        );
        let (ok, text) = ctl_verify(&url, &pubkey, cp);
        assert!(ok, "{text}");
    }

    // The newest two rows go, as a database administrator could do it.
    pg.sql(
        "chain",
        &format!("DELETE FROM audit_chain WHERE seq > {}", n - 2),
    )
    .unwrap();
    let (ok, text) = ctl_verify(&url, &pubkey, &cps[0]);
    assert!(
        !ok,
        "a truncated chain must fail against the checkpoint: {text}"
    );
    assert!(text.contains("truncated"), "{text}");

    // Running replicas notice within a poll and refuse to add records.
    for (r, c) in [(&a, &ca), (&b, &cb)] {
        assert!(
            infrabroker_testbed::wait_until(Duration::from_secs(15), || r
                .child
                .log()
                .contains("refusing to add audit records")),
            "{}",
            r.child.log()
        );
        let (st, v) = sign(c, &req).await;
        assert_eq!(
            (st, v["reason_code"].as_str()),
            (503, Some("audit_unavailable")),
            "{v}"
        );
        assert!(v.get("certificate").is_none_or(Value::is_null), "{v}");
    }
    let after = verified_global_chain(&url, &pubkey);
    assert_eq!(
        after.len() as u64,
        n - 2,
        "nothing was added after the removal"
    );

    // A restart refuses: exit 65, naming the checkpoint.
    let cfg_path = b.config_path.clone();
    drop(b);
    let mut child = infrabroker_testbed::spawn_service(
        infrabroker_testbed::bin_path("signer").unwrap(),
        [std::ffi::OsStr::new("--config"), cfg_path.as_os_str()],
        s.dir.path().join("b-refused.log"),
    )
    .unwrap();
    infrabroker_testbed::wait_until(Duration::from_secs(20), || child.try_status().is_some());
    let stderr = child.log();
    assert_eq!(
        child.try_status().and_then(|s| s.code()),
        Some(65),
        "{stderr}"
    );
    assert!(stderr.contains(&cps[1].display().to_string()), "{stderr}");
    assert!(stderr.contains("truncated"), "{stderr}");
    drop(a);
}
