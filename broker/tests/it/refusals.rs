//! Calls that must fail closed, each with a clear error, quickly.

use std::time::{Duration, Instant};

use infrabroker_broker::api::{ToolError, Tools};
use infrabroker_testbed::{
    BastionChain, Sshd, SshdOptions, TestNet, ensure_user, netns_or_skip, sshd_or_skip,
};
use serde_json::json;

use crate::harness::{Bed, USER, caller, host_for, req, run, sshd};

#[tokio::test]
async fn host_key_mismatch_unknown_host_other_groups_and_target_down() {
    if !sshd_or_skip() {
        return;
    }
    let (dir, pki) = Bed::pki();
    let good = sshd(&pki, "web-principal");
    let impostor = sshd(&pki, "web-principal");
    let mut wrong_key = host_for(&impostor, "web-principal");
    wrong_key["host_key"] = json!(good.host_key_openssh());
    let mut other_group = host_for(&good, "web-principal");
    other_group["groups"] = json!(["db"]);
    let down = sshd(&pki, "web-principal");
    let down_entry = host_for(&down, "web-principal");
    drop(down);
    let bed = Bed::start(
        dir,
        pki,
        json!({
            "good": host_for(&good, "web-principal"),
            "impostor": wrong_key,
            "db": other_group,
            "down": down_entry,
        }),
    );
    let engine = bed.engine(json!({})).await;

    assert_eq!(
        run(&engine, "impostor", "id").await.unwrap_err(),
        ToolError::HostKeyMismatch {
            host: "impostor".into()
        }
    );
    assert!(
        !impostor.log().contains("Accepted"),
        "never authenticated to the impostor"
    );
    assert_eq!(
        run(&engine, "nope", "id").await.unwrap_err(),
        ToolError::UnknownHost("nope".into())
    );
    assert_eq!(
        run(&engine, "db", "id").await.unwrap_err(),
        ToolError::UnknownHost("db".into())
    );
    match run(&engine, "down", "id").await.unwrap_err() {
        ToolError::Connect { host, .. } => assert_eq!(host, "down"),
        other => panic!("expected a connect error, got {other:?}"),
    }
    let names: Vec<String> = engine
        .list_servers(&caller())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["down", "good", "impostor"], "the signer hides db");
    // Every refusal is in the broker's audit log.
    let recs = bed.broker_records();
    for code in ["host_key_mismatch", "host_unknown", "connect_failed"] {
        assert!(
            recs.iter().any(|r| r["reason_code"] == code),
            "{code} audited"
        );
    }
    assert_eq!(
        run(&engine, "good", "echo fine").await.unwrap().stdout,
        "fine\n"
    );
}

#[tokio::test]
async fn policy_refusal_and_signer_down_fail_closed_in_bounded_time() {
    if !sshd_or_skip() {
        return;
    }
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let mut h = host_for(&s, "web-principal");
    h["command_policy"] = json!({"mode": "denylist", "deny": ["^rm( |$)"]});
    let mut bed = Bed::start(dir, pki, json!({"web": h}));
    let engine = bed.engine(json!({})).await;
    let e = run(&engine, "web", "rm -rf /tmp/x").await.unwrap_err();
    assert_eq!(e.reason_code(), "command_denied", "{e}");
    assert!(
        !s.log().contains("Accepted"),
        "a denied command never reaches the host"
    );
    let d = engine
        .dry_run(&caller(), req("web", "rm -rf /"))
        .await
        .unwrap();
    assert!(!d.allowed);
    assert_eq!(d.reason_code.as_str(), "command_denied");

    bed.signer.child.stop();
    let started = Instant::now();
    let e = run(&engine, "web", "echo hi").await.unwrap_err();
    assert!(matches!(e, ToolError::SignerUnreachable(_)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "bounded: {:?}",
        started.elapsed()
    );
    // The cached view is still listed, but nothing runs without a fresh one.
    assert_eq!(engine.list_servers(&caller()).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bastion_killed_mid_command_gives_a_clear_error() {
    if !netns_or_skip() {
        return;
    }
    ensure_user(USER).unwrap();
    let chain: BastionChain = TestNet::bastion_chain(1).unwrap();
    let (dir, pki) = Bed::pki();
    let b = &chain.bastions[0];
    let start = |ns: &str, addr: std::net::Ipv4Addr, p: &str| {
        let mut o = SshdOptions::new(pki.ssh_ca_pub().unwrap()).with_principals(USER, [p]);
        o.netns = Some(ns.to_owned());
        o.listen = addr.into();
        o.port = Some(2222);
        Sshd::start(o).unwrap()
    };
    let mut bastion = start(&b.netns, b.addr, "b-p");
    let target = start(&chain.target.netns, chain.target.addr, "t-p");
    let mut t = json!({"addr": target.addr().to_string(), "user": USER, "host_key": target.host_key_openssh(),
        "principal": "t-p", "groups": ["web"], "jump": "bastion"});
    t["source_address"] = json!(b.next.unwrap().to_string());
    let bastion_entry = json!({"addr": bastion.addr().to_string(), "user": USER,
        "host_key": bastion.host_key_openssh(), "principal": "b-p", "groups": ["web"]});
    let bed = Bed::start(dir, pki, json!({"bastion": bastion_entry, "target": t}));
    let engine = bed.engine(json!({})).await;
    let e2 = engine.clone();
    let call = tokio::spawn(async move { run(&e2, "target", "echo started; sleep 20").await });
    if !target.wait_for_log("Starting session", Duration::from_secs(10)) {
        let r = call.await;
        panic!(
            "the command never started: {r:?}\n{}\nbastion:\n{}",
            target.log(),
            bastion.log()
        );
    }
    let started = Instant::now();
    bastion.kill();
    let res = tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .expect("the call ends by itself")
        .unwrap();
    match res {
        Err(ToolError::Broken(_)) => {}
        other => panic!("expected a broken-connection error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(
        bed.broker_records()
            .iter()
            .any(|r| r["reason_code"] == "connection_broken")
    );
}

#[tokio::test]
async fn an_unreachable_signer_is_reported_without_its_address() {
    let (dir, pki) = Bed::pki();
    let bed = Bed::start(dir, pki, json!({}));
    let port = infrabroker_testbed::free_port();
    let url = format!("https://127.0.0.1:{port}");
    let engine = bed
        .engine(json!({"signer": {
            "url": url,
            "client_cert": bed.pki.path("broker-1.crt"),
            "client_key": bed.pki.path("broker-1.key"),
            "ca": bed.pki.path("ca.crt"),
            "request_timeout_seconds": 2,
        }}))
        .await;
    let e = run(&engine, "web", "id").await.unwrap_err();
    assert_eq!(e.reason_code(), "signer_unreachable", "{e:?}");
    let text = e.to_string();
    assert!(
        !text.contains(&port.to_string()) && !text.contains("127.0.0.1") && !text.contains("https"),
        "the agent sees where the signer lives: {text}"
    );
}

/// Issue 11 §2: the broker keeps signed checkpoints of its own audit log
/// when `audit_checkpoint` is set (here after every record).
#[tokio::test]
async fn the_broker_checkpoints_its_audit_log() {
    use infrabroker_common::audit::{AuditKey, checkpoint::Checkpoint, merkle};
    let (dir, pki) = Bed::pki();
    let cp_dir = dir.path().join("checkpoints");
    std::fs::create_dir(&cp_dir).unwrap();
    let bed = Bed::start(dir, pki, json!({}));
    let cp_path = cp_dir.join("broker.cp");
    let engine = bed
        .engine(json!({"audit_checkpoint": {
            "path": cp_path, "origin": "infrabroker.test/broker", "every_records": 1,
        }}))
        .await;
    for i in 0..3u64 {
        let mut rec = serde_json::Map::new();
        rec.insert("event".into(), json!("test"));
        rec.insert("n".into(), json!(i));
        engine.audit().append(rec).await.unwrap();
    }
    let log = bed.dir.path().join("broker-audit.log");
    let leaves = merkle::log_leaves(&log).unwrap();
    let key = AuditKey::from_seed_file(bed.pki.path("broker-audit.seed")).unwrap();
    let text = std::fs::read_to_string(&cp_path).unwrap();
    let cp = Checkpoint::open_own(&text, &key.verifying_key()).unwrap();
    assert_eq!(cp.origin, "infrabroker.test/broker");
    assert_eq!(cp.size, leaves.len() as u64);
    assert_eq!(cp.root, merkle::root(&leaves));
}
