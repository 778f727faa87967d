//! The kill switch through the real `broker-ctl freeze` and two signer
//! replicas on one real PostgreSQL: a frozen caller gets `403 frozen` from
//! every replica (signs and dry runs), other callers do not; only
//! `reload_callers` may freeze; a lifted or expired freeze stops applying;
//! every step is in the global chain.

use std::time::Duration;

use infrabroker_testbed::bin_path;
use infrabroker_testbed::postgres::{Postgres, postgres_or_skip, verified_global_chain};
use serde_json::{Value, json};

use crate::harness::{Stack, keypair, oneshot};
use crate::replicas::{client, replica, sign};

/// `broker-ctl freeze ARGS… --url URL` as `who`; (success, stdout, stderr).
fn ctl(s: &Stack, url: &str, who: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(bin_path("broker-ctl").unwrap())
        .arg("freeze")
        .args(args)
        .args(["--url", url])
        .arg("--ca")
        .arg(s.pki.path("ca.crt"))
        .arg("--cert")
        .arg(s.pki.path(&format!("{who}.crt")))
        .arg("--key")
        .arg(s.pki.path(&format!("{who}.key")))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits (≤ 5 s) until signing `req` on `c` answers `status`.
async fn until_status(
    c: &infrabroker_common::client::MtlsClient,
    req: &Value,
    status: u16,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..50 {
        let (st, v) = sign(c, req).await;
        if st == status {
            return v;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never answered {status}; last answer {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_caller_is_refused_by_every_replica_until_lifted() {
    if !postgres_or_skip() {
        return;
    }
    let pg = Postgres::start(false).unwrap();
    pg.create_db("freeze").unwrap();
    let s = Stack::start(|_, _| {});
    let store = json!({"postgres": {"url": pg.url("freeze"), "pool_size": 2}});
    let (a, b) = (replica(&s, "a", &store), replica(&s, "b", &store));
    let (on_a, on_b) = (client(&s, &a.url), client(&s, &b.url));
    let req = oneshot("web", "id", &keypair());
    assert_eq!(sign(&on_a, &req).await.0, 200);

    // Only reload_callers may freeze; a broker cannot.
    let (ok, _, err) = ctl(
        &s,
        &a.url,
        "broker-1",
        &["add", "--caller", "broker-1", "--reason", "x"],
    );
    assert!(!ok && err.contains("freeze_forbidden"), "{err}");

    let (ok, out, err) = ctl(
        &s,
        &a.url,
        "operator",
        &[
            "add",
            "--caller",
            "broker-1",
            "--reason",
            "leaked key",
            "--json",
        ],
    );
    assert!(ok, "{out}{err}");
    let freeze: Value = serde_json::from_str(&out).unwrap();
    let id = freeze["id"].as_str().unwrap().to_owned();
    let refused = until_status(&on_a, &req, 403).await;
    assert_eq!(refused["reason_code"], "frozen");
    assert!(
        refused["message"].as_str().unwrap().contains(&id),
        "{refused}"
    );
    // The other replica refuses too (within its one-second refresh), dry
    // runs included; another caller is not affected.
    until_status(&on_b, &req, 403).await;
    let mut dry = req.clone();
    dry["dry_run"] = json!(true);
    assert_eq!(sign(&on_b, &dry).await.1["reason_code"], "frozen");
    let other = s.client("control-plane");
    let raw = other
        .call_raw(
            hyper::Method::POST,
            "/v1/sign",
            Some(serde_json::to_vec(&req).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(
        raw.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&raw.body)
    );

    let (ok, out, _) = ctl(&s, &b.url, "operator", &["list", "--json"]);
    assert!(ok);
    let listed: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.len(), 1, "listed on either replica: {out}");
    assert_eq!(listed[0]["value"], "broker-1");

    // Lifted on b, signing works again on a.
    let (ok, out, err) = ctl(&s, &b.url, "operator", &["lift", &id]);
    assert!(ok, "{out}{err}");
    until_status(&on_a, &req, 200).await;
    let (ok, _, err) = ctl(&s, &b.url, "operator", &["lift", &id]);
    assert!(!ok && err.contains("not_found"), "lifted once: {err}");

    // A freeze with a TTL lifts itself at its time.
    let (ok, _, err) = ctl(
        &s,
        &a.url,
        "operator",
        &[
            "add",
            "--host",
            "web",
            "--reason",
            "maintenance",
            "--ttl",
            "2s",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        until_status(&on_b, &req, 403).await["reason_code"],
        "frozen"
    );
    until_status(&on_b, &req, 200).await;

    // Every step is in the one global chain.
    let chain = verified_global_chain(&pg.url("freeze"), &s.pki.path("signer-audit.pub"));
    let count = |o: &str| chain.iter().filter(|r| r["outcome"] == o).count();
    assert_eq!((count("freeze"), count("freeze-lifted")), (2, 1));
    assert!(
        chain
            .iter()
            .any(|r| r["reason_code"] == "frozen" && r["freeze_id"] == id.as_str())
    );
    assert!(chain.iter().any(|r| r["reason_code"] == "freeze_forbidden"));
}

#[tokio::test]
async fn freeze_requests_name_exactly_one_valid_subject() {
    let s = Stack::start(|_, _| {});
    let (ok, _, err) = ctl(&s, &s.signer.url, "operator", &["add", "--reason", "x"]);
    assert!(!ok && err.contains("name the subject"), "{err}");
    let (ok, _, err) = ctl(
        &s,
        &s.signer.url,
        "operator",
        &["add", "--host", "web", "--caller", "b", "--reason", "x"],
    );
    assert!(!ok && err.contains("cannot be used with"), "{err}");
    let op = s.client("operator");
    for (body, status) in [
        (
            json!({"caller": "broker-1", "host": "web", "reason": "two"}),
            400,
        ),
        (json!({"reason": "none"}), 400),
        (json!({"caller": "broker-1", "reason": "  "}), 400),
        (json!({"caller": "bad cn", "reason": "r"}), 400),
        (
            json!({"caller": "broker-1", "reason": "r", "ttl_seconds": 0}),
            400,
        ),
        (
            json!({"caller": "broker-1", "reason": "r", "extra": 1}),
            400,
        ),
        (
            json!({"end_user": "alice", "reason": "r", "ttl_seconds": 60}),
            201,
        ),
    ] {
        let raw = op
            .call_raw(
                hyper::Method::POST,
                "/v1/freeze",
                Some(serde_json::to_vec(&body).unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(
            raw.status.as_u16(),
            status,
            "{body}: {}",
            String::from_utf8_lossy(&raw.body)
        );
    }
    // The end-user freeze applies to requests behind the trusted forwarder.
    let mut fwd = oneshot("web", "id", &keypair());
    fwd["on_behalf_of"] = json!("broker-1");
    fwd["end_user"] = json!("alice");
    let (st, v) = s.sign("control-plane", &fwd).await;
    assert_eq!(
        (st, v["reason_code"].as_str()),
        (403, Some("frozen")),
        "{v}"
    );
    fwd["end_user"] = json!("bob");
    assert_eq!(s.sign("control-plane", &fwd).await.0, 200);
}
