//! Approvals in the state store: a pending approval survives a crash of
//! the control plane (SQLite, the default), and two control planes on one
//! real PostgreSQL share their approvals — held on one, decided on the
//! other, collected once, and racing decisions end in one state.

use std::time::Duration;

use hyper::StatusCode;
use infrabroker_broker::api::{ExecResult, ToolError};
use infrabroker_testbed::postgres::{Postgres, postgres_or_skip};
use infrabroker_testbed::{free_port, sshd_or_skip};
use serde_json::{Value, json};

use crate::harness::{Bed, host_for, json_of, spawn_run, sshd};

fn accepted(s: &infrabroker_testbed::Sshd) -> usize {
    s.log().matches("Accepted publickey").count()
}

/// Allows `id` on `cp` as the operator; the waiting `run` then prints `out`.
async fn allow_and_run(
    cp: &crate::harness::Cp,
    id: &str,
    run: tokio::task::JoinHandle<Result<ExecResult, ToolError>>,
    out: &str,
) {
    let (ok, stdout, err) = cp
        .ctl("operator", &["allow", id, "--reason", "checked"])
        .await;
    assert!(ok, "{stdout}{err}");
    let result = tokio::time::timeout(Duration::from_secs(40), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(result.stdout, out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_approval_survives_a_control_plane_crash() {
    if !sshd_or_skip() {
        return;
    }
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let hosts = json!({"web": host_for(&s, "web-principal", &["^echo restart-me"])});
    let bed = Bed::start_in(dir, pki, hosts);
    // A fixed port, so the broker's poll reaches the restarted process; no
    // `store` block: the default SQLite file beside the audit log.
    let listen = json!({"listen": format!("127.0.0.1:{}", free_port())});
    let mut cp = bed.control_plane("cp", listen.clone());
    let engine = bed.engine(&cp, 60).await;
    let cmd = "echo restart-me please";
    let run = spawn_run(&engine, "web", cmd);
    let id = cp.pending(cmd, &[]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = bed.dir.path().join("cp-audit.log.state.db");
    assert!(db.exists(), "the default store sits beside the audit log");

    // A crash, not a clean stop: nothing is flushed on the way out.
    assert!(cp.child.signal(9));
    drop(cp);
    let cp = bed.control_plane("cp", listen);
    let listed = cp.pending(cmd, &[]).await;
    assert_eq!(
        listed["id"],
        id.as_str(),
        "the same approval after the restart"
    );

    allow_and_run(&cp, &id, run, "restart-me please\n").await;
    assert_eq!(accepted(&s), 1, "one run:\n{}", s.log());
    let replay = bed
        .client(&cp.url, "broker-1")
        .call_raw(hyper::Method::GET, &format!("/v1/sign/result/{id}"), None)
        .await
        .unwrap();
    assert_eq!(replay.status, StatusCode::GONE, "collected once");
    // One chain across both lives of the process, with each step in it.
    let by = |o: &str| cp.outcomes(o).len();
    assert_eq!((by("approval-required"), by("approval-granted")), (1, 1));
}

/// Two control planes `cp-a` and `cp-b` on database `db` of `pg`.
fn on_postgres(bed: &Bed, pg: &Postgres, db: &str) -> (crate::harness::Cp, crate::harness::Cp) {
    pg.create_db(db).unwrap();
    let store = json!({"store": {"postgres": {"url": pg.url(db), "pool_size": 4}}});
    (
        bed.control_plane("cp-a", store.clone()),
        bed.control_plane("cp-b", store),
    )
}

fn decisions(records: &[Value]) -> (usize, usize) {
    let won = records
        .iter()
        .filter(|r| r["outcome"] == "approval-granted" || r["outcome"] == "approval-denied")
        .count();
    let refused = records
        .iter()
        .filter(|r| r["outcome"] == "approval-refused" && r["reason_code"] == "approval_decided")
        .count();
    (won, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_control_planes_on_postgres_share_one_set_of_approvals() {
    if !sshd_or_skip() || !postgres_or_skip() {
        return;
    }
    let pg = Postgres::start(false).unwrap();
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let hosts = json!({"web": host_for(&s, "web-principal", &["^echo replica"])});
    let bed = Bed::start_in(dir, pki, hosts);
    let (a, b) = on_postgres(&bed, &pg, "cp");
    let engine = bed.engine(&a, 60).await;

    // 1. Held on A, seen and decided on B, collected through A, once.
    let cmd = "echo replica one";
    let run = spawn_run(&engine, "web", cmd);
    let id = b.pending(cmd, &[]).await["id"].as_str().unwrap().to_owned();
    allow_and_run(&b, &id, run, "replica one\n").await;
    assert_eq!(accepted(&s), 1);
    for cp in [&a, &b] {
        let replay = bed
            .client(&cp.url, "broker-1")
            .call_raw(hyper::Method::GET, &format!("/v1/sign/result/{id}"), None)
            .await
            .unwrap();
        assert_eq!(
            replay.status,
            StatusCode::GONE,
            "consumed once across replicas"
        );
        assert_eq!(json_of(&replay)["reason_code"], "approval_used");
    }
    assert_eq!(a.outcomes("approval-required").len(), 1, "held on a");
    assert_eq!(b.outcomes("approval-granted").len(), 1, "decided on b");

    // 2. Approve on A and deny on B at the same moment: exactly one wins,
    //    the loser is refused and audited, and the run follows the winner.
    let cmd = "echo replica two";
    let run = spawn_run(&engine, "web", cmd);
    let id2 = a.pending(cmd, &[&id]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (allow, deny) = (
        ["allow", id2.as_str(), "--reason", "race a"],
        ["deny", id2.as_str(), "--reason", "race b"],
    );
    let (ra, rb) = tokio::join!(a.ctl("operator", &allow), b.ctl("operator", &deny));
    assert!(
        ra.0 ^ rb.0,
        "exactly one decision stands: a={ra:?} b={rb:?}"
    );
    let loser = if ra.0 { &rb } else { &ra };
    assert!(loser.2.contains("approval_decided"), "{loser:?}");
    let mut all = a.records();
    all.extend(b.records());
    let race: Vec<Value> = all
        .into_iter()
        .filter(|r| r["approval_id"] == id2.as_str())
        .collect();
    assert_eq!(decisions(&race), (1, 1), "both attempts audited: {race:?}");
    let outcome = tokio::time::timeout(Duration::from_secs(40), run)
        .await
        .unwrap()
        .unwrap();
    if ra.0 {
        assert_eq!(outcome.unwrap().stdout, "replica two\n");
        assert_eq!(accepted(&s), 2);
    } else {
        assert!(outcome.is_err(), "denied on b: the run is refused");
        assert_eq!(accepted(&s), 1, "the denied command never reached the host");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_refuses_decisions_and_service_resumes_by_itself() {
    if !postgres_or_skip() {
        return;
    }
    let pg = Postgres::start(false).unwrap();
    let bed = Bed::start_with(|pki| json!({"web": crate::harness::paper_host(pki, &["^echo"])}));
    pg.create_db("outage").unwrap();
    let port = free_port();
    let a = bed.control_plane(
        "cp-a",
        json!({"store": {"postgres": {"url": pg.url("outage"), "pool_size": 4}},
               "monitor_listen": format!("127.0.0.1:{port}")}),
    );
    let (ok, _, err) = a.ctl("operator", &["list", "--json"]).await;
    assert!(ok, "{err}");
    let readyz = || async move {
        tokio::task::spawn_blocking(move || infrabroker_testbed::monitor::get(port, "/readyz"))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(readyz().await.0, 200);

    pg.stop_immediate().unwrap();
    let (status, why) = readyz().await;
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("state store"), "{why}");
    let (ok, out, err) = a.ctl("operator", &["list", "--json"]).await;
    assert!(!ok && err.contains("store_unavailable"), "{out}{err}");
    let broker = bed.client(&a.url, "broker-1");
    let pubkey = bed.pki.ssh_ca_pub().unwrap();
    let body = crate::harness::sign_body("web", "echo held", &pubkey);
    let held = crate::harness::post_sign(&broker, &body).await;
    assert_eq!(
        held.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&held.body)
    );
    assert_eq!(json_of(&held)["reason_code"], "store_unavailable");

    pg.start_again().unwrap();
    let mut back = false;
    for _ in 0..50 {
        if a.ctl("operator", &["list", "--json"]).await.0 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        back,
        "the control plane uses the database again without a restart"
    );
    assert_eq!(readyz().await.0, 200, "ready again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardrails_see_one_history_across_control_planes() {
    if !postgres_or_skip() {
        return;
    }
    let pg = Postgres::start(false).unwrap();
    pg.create_db("guard").unwrap();
    let bed = Bed::start_with(|pki| json!({"web": crate::harness::paper_host(pki, &[])}));
    let store = json!({"postgres": {"url": pg.url("guard"), "pool_size": 2}});
    let behavior = json!({"mode": "observe", "rate_limit_per_min": 2});
    let a = bed.control_plane("cp-ga", json!({"store": store, "behavior": behavior}));
    let b = bed.control_plane("cp-gb", json!({"store": store, "behavior": behavior}));
    let pubkey = bed.pki.ssh_ca_pub().unwrap();
    let sign = |cp: &crate::harness::Cp, cmd: &str| {
        let (client, body) = (
            bed.client(&cp.url, "broker-1"),
            crate::harness::sign_body("web", cmd, &pubkey),
        );
        async move { crate::harness::post_sign(&client, &body).await }
    };
    let anomalies = |cp: &crate::harness::Cp| -> Vec<Value> {
        cp.outcomes("anomaly")
            .iter()
            .map(|r| r["anomaly"].clone())
            .collect()
    };

    // Learned through A (observe learns once issued), known on B.
    assert_eq!(sign(&a, "id -un").await.status, StatusCode::OK);
    assert_eq!(
        anomalies(&a),
        [json!(["novel host web", "novel command id -n -u"])]
    );
    assert_eq!(sign(&b, "id -nu").await.status, StatusCode::OK);
    assert!(
        anomalies(&b).is_empty(),
        "b knows what a learned: {:?}",
        anomalies(&b)
    );
    // One rate window: the third request of the minute, on A, is over the
    // limit of 2 although A itself saw only two.
    assert_eq!(sign(&a, "id -un").await.status, StatusCode::OK);
    let last = anomalies(&a).pop().unwrap();
    assert!(last.to_string().contains("rate limit exceeded"), "{last}");
}
