//! Human approvals end to end: a real sshd, the signer, the control-plane
//! process, a broker engine and the real `broker-ctl`.

use std::time::Duration;

use hyper::StatusCode;
use infrabroker_testbed::sshd_or_skip;
use serde_json::json;

use crate::harness::{Bed, err_of, json_of, paper_host, post_sign, sign_body, spawn_run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_allows_one_run_and_a_denied_command_never_reaches_the_host() {
    if !sshd_or_skip() {
        return;
    }
    let (bed, s) = Bed::with_web_sshd(&["^echo approve-me"]);
    // A requester can never be an approver (the config refuses a CN in
    // both lists), so broker-1 cannot approve its own request.
    let cp = bed.control_plane("cp", json!({"approval": {"callers": ["operator"]}}));
    let engine = bed.engine(&cp, 30).await;
    let cmd = "echo approve-me now";

    // 1. The command waits; an operator allows it; it runs once.
    let run = spawn_run(&engine, "web", cmd);
    let pending = cp.pending(cmd, &[]).await;
    let id1 = pending["id"].as_str().unwrap().to_owned();
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["tier"], "human");
    assert!(
        pending["rule"]
            .as_str()
            .unwrap()
            .contains("require_approval:^echo approve-me"),
        "{pending}"
    );
    let (ok, shown, _) = cp.ctl("operator", &["show", &id1]).await;
    assert!(
        ok && shown.contains(cmd) && shown.contains("broker-1"),
        "{shown}"
    );

    let (ok, _, err) = cp.ctl("broker-1", &["allow", &id1]).await;
    assert!(!ok && err.contains("approver_forbidden"), "{err}");
    let (ok, out, err) = cp
        .ctl(
            "operator",
            &["allow", &id1, "--reason", "checked the ticket"],
        )
        .await;
    assert!(ok, "{out}{err}");
    let result = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(result.stdout, "approve-me now\n");
    let accepted = s.log().matches("Accepted certificate").count();
    assert!(s.log().contains(&format!("serial {}", result.serial)));

    // 2. The id is spent: replaying it, or deciding it again, is refused.
    let broker = bed.client(&cp.url, "broker-1");
    let replay = broker
        .call_raw(hyper::Method::GET, &format!("/v1/sign/result/{id1}"), None)
        .await
        .unwrap();
    assert_eq!(replay.status, StatusCode::GONE);
    assert_eq!(json_of(&replay)["reason_code"], "approval_used");
    let (ok, _, err) = cp
        .ctl("operator", &["deny", &id1, "--reason", "late"])
        .await;
    assert!(!ok && err.contains("approval_decided"), "{err}");

    // 3. The same command again needs a new approval; denied, it never runs.
    let run = spawn_run(&engine, "web", cmd);
    let again = cp.pending(cmd, &[&id1]).await;
    let id2 = again["id"].as_str().unwrap().to_owned();
    assert_ne!(id1, id2);
    let (ok, _, err) = cp.ctl("operator", &["deny", &id2]).await;
    assert!(!ok, "deny without --reason must fail: {err}");
    let (ok, _, err) = cp
        .ctl(
            "operator",
            &["deny", &id2, "--reason", "not during the freeze"],
        )
        .await;
    assert!(ok, "{err}");
    let (code, text) = err_of(run.await.unwrap());
    assert_eq!(code, "approval_denied", "{text}");
    assert!(
        text.contains(&id2) && text.contains("not during the freeze"),
        "{text}"
    );
    assert_eq!(
        s.log().matches("Accepted certificate").count(),
        accepted,
        "the denied command never reached the host:\n{}",
        s.log()
    );

    // 4. Every step is in the control plane's chain.
    let recs = cp.records();
    let by = |o: &str| recs.iter().filter(|r| r["outcome"] == o).count();
    assert_eq!(by("approval-required"), 2);
    let granted = recs
        .iter()
        .find(|r| r["outcome"] == "approval-granted")
        .unwrap();
    assert_eq!(granted["approved_by"], "operator");
    assert_eq!(granted["reason"], "checked the ticket");
    assert!(
        recs.iter()
            .any(|r| r["reason_code"] == "approver_forbidden" && r["caller"] == "broker-1"),
        "the refused approval attempt is audited: {recs:?}"
    );
    let collected = recs
        .iter()
        .find(|r| r["outcome"] == "approval-collected")
        .unwrap();
    assert_eq!(collected["serial"], result.serial);
    assert_eq!(collected["approval_id"], id1.as_str());
    assert_eq!(by("approval-replayed"), 1);
    let denied = recs
        .iter()
        .find(|r| r["outcome"] == "approval-denied")
        .unwrap();
    assert_eq!(denied["reason"], "not during the freeze");

    // The signer issued exactly one certificate for it, marked approved and
    // attributed to broker-1 through the control plane.
    let issued: Vec<_> = bed
        .signer_records()
        .into_iter()
        .filter(|r| r["outcome"] == "issued" && r["command"] == cmd)
        .collect();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0]["approved"], true);
    assert_eq!(issued[0]["on_behalf_of"], "broker-1");
    assert_eq!(issued[0]["caller"], "broker-1");
    assert_eq!(issued[0]["cn"], "control-plane");
    assert_eq!(issued[0]["serial"], result.serial);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_and_a_bounded_broker_wait_give_clear_errors() {
    let bed = Bed::start_with(|pki| json!({"web": paper_host(pki, &["^echo approve-me"])}));
    let cp = bed.control_plane(
        "cp-short",
        json!({"approval": {"timeout_seconds": 2, "purge_after_seconds": 1}}),
    );
    let engine = bed.engine(&cp, 30).await;
    let (code, text) = err_of(
        spawn_run(&engine, "web", "echo approve-me late")
            .await
            .unwrap(),
    );
    assert_eq!(code, "approval_expired", "{text}");
    assert!(text.contains("expired"), "{text}");
    let timeout = cp.outcomes("approval-timeout");
    assert_eq!(timeout.len(), 1, "{timeout:?}");
    let id = timeout[0]["approval_id"].as_str().unwrap().to_owned();
    assert!(text.contains(&id), "{text}");

    // Decided requests are purged later: then the id is simply unknown.
    let broker = bed.client(&cp.url, "broker-1");
    let mut gone = false;
    for _ in 0..50 {
        let (ok, out, _) = cp.ctl("operator", &["list", "--all", "--json"]).await;
        assert!(ok);
        if !out.contains(&id) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(gone, "the expired approval was never purged");
    let raw = broker
        .call_raw(hyper::Method::GET, &format!("/v1/sign/result/{id}"), None)
        .await
        .unwrap();
    assert_eq!(raw.status, StatusCode::NOT_FOUND);
    assert_eq!(json_of(&raw)["reason_code"], "approval_unknown");

    // The broker gives up after its own approval_wait_seconds.
    let patient_cp = bed.control_plane("cp-long", json!({}));
    let impatient = bed.engine(&patient_cp, 1).await;
    let started = std::time::Instant::now();
    let (code, text) = err_of(
        spawn_run(&impatient, "web", "echo approve-me soon")
            .await
            .unwrap(),
    );
    assert_eq!(code, "approval_expired", "{text}");
    assert!(text.contains("not granted within 1 s"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_approve_and_deny_end_in_exactly_one_state() {
    let bed = Bed::start_with(|pki| json!({"web": paper_host(pki, &["^echo race"])}));
    let cp = bed.control_plane(
        "cp-race",
        json!({"approval": {"callers": ["operator", "stranger"]}}),
    );
    let broker = bed.client(&cp.url, "broker-1");
    let a = bed.client(&cp.url, "operator");
    let b = bed.client(&cp.url, "stranger");
    let pubkey = bed.pki.ssh_ca_pub().unwrap();
    for i in 0..10 {
        let held = post_sign(
            &broker,
            &sign_body("web", &format!("echo race {i}"), &pubkey),
        )
        .await;
        assert_eq!(held.status, StatusCode::ACCEPTED);
        let id = json_of(&held)["approval_id"].as_str().unwrap().to_owned();
        let path = format!("/v1/approvals/{id}");
        let approve = serde_json::to_vec(&json!({"approve": true, "reason": "a"})).unwrap();
        let deny = serde_json::to_vec(&json!({"approve": false, "reason": "b"})).unwrap();
        let (ra, rb) = tokio::join!(
            a.call_raw(hyper::Method::POST, &path, Some(approve)),
            b.call_raw(hyper::Method::POST, &path, Some(deny)),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let wins = [&ra, &rb]
            .iter()
            .filter(|r| r.status == StatusCode::OK)
            .count();
        assert_eq!(wins, 1, "{:?} / {:?}", ra.status, rb.status);
        let loser = if ra.status == StatusCode::OK {
            &rb
        } else {
            &ra
        };
        assert_eq!(loser.status, StatusCode::CONFLICT);
        assert_eq!(json_of(loser)["reason_code"], "approval_decided");
        let result = broker
            .call_raw(hyper::Method::GET, &format!("/v1/sign/result/{id}"), None)
            .await
            .unwrap();
        if ra.status == StatusCode::OK {
            assert_eq!(result.status, StatusCode::OK, "approved → issued");
            assert!(json_of(&result)["certificate"].is_string());
        } else {
            assert_eq!(result.status, StatusCode::FORBIDDEN, "denied → refused");
        }
        let recs = cp.records();
        let decided = recs
            .iter()
            .filter(|r| {
                r["approval_id"] == id.as_str()
                    && (r["outcome"] == "approval-granted" || r["outcome"] == "approval-denied")
            })
            .count();
        assert_eq!(decided, 1);
    }
}
