//! Serials from the state store: unique across a restart on the default
//! SQLite file, and across two signer replicas on one real PostgreSQL under
//! concurrent load, with one global audit chain (HA mode) that verifies; a
//! database outage refuses issuance with `store_unavailable` (nothing
//! issued) and service resumes by itself.

use std::collections::HashSet;
use std::time::Duration;

use infrabroker_common::client::MtlsClient;
use infrabroker_testbed::postgres::{Postgres, postgres_or_skip, verified_global_chain};
use infrabroker_testbed::stack::SignerProc;
use serde_json::{Value, json};

use crate::harness::{Stack, keypair, oneshot};

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
fn replica(s: &Stack, name: &str, store: &Value) -> SignerProc {
    let dir = s.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = s.config.clone();
    cfg["audit_log"] = json!(dir.join("audit.log"));
    cfg["store"] = store.clone();
    SignerProc::start(&dir, &cfg).unwrap()
}

fn client(s: &Stack, url: &str) -> MtlsClient {
    MtlsClient::new(
        url,
        &s.pki.path("ca.crt"),
        &s.pki.path("broker-1.crt"),
        &s.pki.path("broker-1.key"),
        Duration::from_secs(10),
    )
    .unwrap()
}

async fn sign(c: &MtlsClient, req: &Value) -> (u16, Value) {
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
    let a = replica(&s, "a", &store);
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
