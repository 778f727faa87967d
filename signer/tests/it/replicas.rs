//! Serials from the state store: unique across a restart on the default
//! SQLite file, and across two signer replicas on one real PostgreSQL under
//! concurrent load; a database outage refuses issuance with
//! `store_unavailable` (nothing issued) and service resumes by itself.

use std::collections::HashSet;
use std::time::Duration;

use infrabroker_common::client::MtlsClient;
use infrabroker_testbed::postgres::{Postgres, postgres_or_skip};
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

fn read_records(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
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
    // Every certificate a client received has its record in the chain of
    // the replica that issued it, and the two chains share no serial.
    let in_a: HashSet<u64> = issued_serials(&read_records(&s.dir.path().join("a/audit.log")))
        .into_iter()
        .collect();
    let in_b: HashSet<u64> = issued_serials(&read_records(&s.dir.path().join("b/audit.log")))
        .into_iter()
        .collect();
    assert!(in_a.is_disjoint(&in_b));
    let recorded: HashSet<u64> = in_a.union(&in_b).copied().collect();
    assert_eq!(recorded, received);
    assert!(!in_a.is_empty() && !in_b.is_empty(), "both replicas issued");
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
    // Use up the serial block the replica holds, so the next one needs the
    // database (a block is 1,024 serials).
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (c, req) = (c.clone(), req.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..256 {
                assert_eq!(sign(&c, &req).await.0, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let before = issued_serials(&read_records(&s.dir.path().join("a/audit.log"))).len();
    assert_eq!(before, 1024);

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
    let after = read_records(&s.dir.path().join("a/audit.log"));
    assert_eq!(
        issued_serials(&after).len(),
        before,
        "no certificate without a serial"
    );
    assert!(
        after
            .iter()
            .any(|r| r["reason_code"] == "store_unavailable"),
        "the refusal is audited"
    );

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
    assert!(v["serial"].as_u64().is_some());
}
