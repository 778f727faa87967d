//! Holds that can be collected, and only for what was judged: a session
//! command whose policy asks for approval is held and runs once approved
//! (and the slow approval does not get its session reaped), a collection
//! cancelled mid-way is spent and audited, and one broker cannot pile up
//! open approvals.

use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use infrabroker_broker::api::{SessionMode, SessionOpenRequest, Tools};
use infrabroker_broker::config::BrokerConfig;
use infrabroker_broker::engine::Engine;
use infrabroker_testbed::sshd_or_skip;
use serde_json::{Value, json};

use crate::harness::{Bed, Cp, caller, err_of, json_of, paper_host, post_sign, python_mcp_or_skip};

/// Linux signal numbers (no libc in these tests).
const SIGSTOP: i32 = 19;
const SIGCONT: i32 = 18;

async fn engine_with(bed: &Bed, cp: &Cp, extra: Value) -> Arc<Engine> {
    let path = bed.broker_json(cp, 30);
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    Engine::start(BrokerConfig::load(&path).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_command_needing_approval_is_held_and_runs_once_approved() {
    if !sshd_or_skip() {
        return;
    }
    let (bed, _sshd) = Bed::with_web_sshd(&["^echo approve-me"]);
    let cp = bed.control_plane("cp-held", json!({}));
    let engine = engine_with(&bed, &cp, json!({"session_idle_seconds": 5})).await;
    let open = SessionOpenRequest {
        host: "web".into(),
        mode: SessionMode::Exec,
        sudo: false,
        sudo_user: None,
        cols: None,
        rows: None,
    };
    let session = engine.session_open(&caller(), open).await.unwrap();
    let cmd = "echo approve-me in a session";
    let (e, id) = (engine.clone(), session.session_id.clone());
    let run = tokio::spawn(async move { e.session_exec(&caller(), &id, cmd.into(), None).await });
    let pending = cp.pending(cmd, &[]).await;
    assert_eq!(pending["tier"], "human");
    // Slower than the session's idle limit: the waiting call keeps it open.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let approval = pending["id"].as_str().unwrap();
    let (ok, _, err) = cp
        .ctl("operator", &["allow", approval, "--reason", "ok"])
        .await;
    assert!(ok, "{err}");
    let r = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r.stdout, "approve-me in a session\n");
    // The approval was collected by that preflight, and is spent.
    let collected = cp.outcomes("approval-collected");
    assert!(
        collected
            .iter()
            .any(|r| r["approval_id"] == approval && r["dry_run"] == true),
        "{collected:?}"
    );
    // A second run of it needs a new approval.
    let (e, id) = (engine.clone(), session.session_id.clone());
    let again = tokio::spawn(async move { e.session_exec(&caller(), &id, cmd.into(), None).await });
    let second = cp.pending(cmd, &[approval]).await;
    let (ok, _, err) = cp
        .ctl(
            "operator",
            &[
                "deny",
                second["id"].as_str().unwrap(),
                "--reason",
                "once is enough",
            ],
        )
        .await;
    assert!(ok, "{err}");
    let (code, text) = err_of(again.await.unwrap());
    assert_eq!(code, "approval_denied", "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_collection_is_spent_and_audited() {
    let mut bed = Bed::start_with(|pki| json!({"web": paper_host(pki, &["^echo approve-me"])}));
    let cp = bed.control_plane(
        "cp-cancel",
        json!({"signer": {"request_timeout_seconds": 20}}),
    );
    let broker = bed.client(&cp.url, "broker-1");
    let key = bed.pki.ssh_ca_pub().unwrap();
    let held = post_sign(
        &broker,
        &crate::harness::sign_body("web", "echo approve-me", &key),
    )
    .await;
    assert_eq!(held.status, StatusCode::ACCEPTED);
    let id = json_of(&held)["approval_id"].as_str().unwrap().to_owned();
    let (ok, _, err) = cp.ctl("operator", &["allow", &id, "--reason", "ok"]).await;
    assert!(ok, "{err}");
    // The signer stops answering; the broker gives up while the control
    // plane still waits for it.
    assert!(bed.signer.child.signal(SIGSTOP));
    let impatient = infrabroker_common::client::MtlsClient::new(
        &cp.url,
        &bed.pki.path("ca.crt"),
        &bed.pki.path("broker-1.crt"),
        &bed.pki.path("broker-1.key"),
        Duration::from_secs(1),
    )
    .unwrap();
    let path = format!("/v1/sign/result/{id}");
    assert!(
        impatient
            .call_raw(hyper::Method::GET, &path, None)
            .await
            .is_err()
    );
    let abandoned = crate::harness::eventually(10, || {
        cp.outcomes("approval-abandoned")
            .iter()
            .any(|r| r["approval_id"] == id.as_str())
    })
    .await;
    assert!(bed.signer.child.signal(SIGCONT));
    assert!(
        abandoned,
        "no approval-abandoned record:\n{:#?}",
        cp.records()
    );
    let (ok, shown, _) = cp.ctl("operator", &["show", &id, "--json"]).await;
    assert!(ok);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["status"], "used", "spent, never issuing forever");
    let replay = broker
        .call_raw(hyper::Method::GET, &path, None)
        .await
        .unwrap();
    assert_eq!(json_of(&replay)["reason_code"], "approval_used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_approvals_per_caller_are_capped() {
    let bed = Bed::start_with(|pki| json!({"web": paper_host(pki, &["^echo approve-me"])}));
    let cp = bed.control_plane("cp-cap", json!({"approval": {"max_pending_per_caller": 2}}));
    let broker = bed.client(&cp.url, "broker-1");
    let key = bed.pki.ssh_ca_pub().unwrap();
    for i in 0..2 {
        let body = crate::harness::sign_body("web", &format!("echo approve-me {i}"), &key);
        assert_eq!(post_sign(&broker, &body).await.status, StatusCode::ACCEPTED);
    }
    let body = crate::harness::sign_body("web", "echo approve-me 2", &key);
    let refused = post_sign(&broker, &body).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(json_of(&refused)["reason_code"], "too_many_pending");
    assert!(
        cp.records()
            .iter()
            .any(|r| r["reason_code"] == "too_many_pending" && r["command"] == "echo approve-me 2")
    );
    // A decision frees a slot.
    let first = cp.pending("echo approve-me 0", &[]).await;
    let (ok, _, err) = cp
        .ctl(
            "operator",
            &["deny", first["id"].as_str().unwrap(), "--reason", "no"],
        )
        .await;
    assert!(ok, "{err}");
    assert_eq!(post_sign(&broker, &body).await.status, StatusCode::ACCEPTED);
}

/// An approval decided by the AI reviewer for a novelty cannot carry a
/// request that a signer reload has since put under a `human` rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_raised_after_the_decision_refuses_the_collection() {
    use std::os::unix::fs::PermissionsExt as _;
    if !python_mcp_or_skip() {
        return;
    }
    let bed = Bed::start_with(|pki| json!({"web": paper_host(pki, &[])}));
    let token_file = bed.dir.path().join("reviewer.token");
    std::fs::write(&token_file, format!("{:032x}\n", rand::random::<u128>())).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cp = bed.control_plane(
        "cp-tier",
        json!({
            "behavior": {"mode": "enforce", "novelty_tier": "ai_review"},
            "approval": {
                "default_tier": "human",
                "reviewer": {"listen": "127.0.0.1:0", "token_file": token_file, "name": "reviewer"},
            },
        }),
    );
    let broker = bed.client(&cp.url, "broker-1");
    let key = bed.pki.ssh_ca_pub().unwrap();
    let cmd = "echo tier-me";
    let held = post_sign(&broker, &crate::harness::sign_body("web", cmd, &key)).await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "a novelty is held");
    let id = json_of(&held)["approval_id"].as_str().unwrap().to_owned();
    assert_eq!(cp.pending(cmd, &[]).await["tier"], "ai_review");

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/approve_one.py");
    let url = format!("{}/mcp", cp.reviewer_url.clone().unwrap());
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(["--url", &url, "--id", &id, "--token-file"])
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Now the signer's policy asks for approval of this command, which
    // the control plane routes to `human`.
    let mut cfg: Value =
        serde_json::from_slice(&std::fs::read(&bed.signer.config_path).unwrap()).unwrap();
    cfg["hosts"]["web"]["command_policy"]["require_approval"] = json!(["^echo tier-me"]);
    bed.signer.write_config(&cfg).unwrap();
    bed.signer.hup().unwrap();
    let reloaded = crate::harness::eventually(10, || {
        bed.signer_records()
            .iter()
            .any(|r| r["outcome"] == "reloaded")
    })
    .await;
    assert!(reloaded, "the signer did not reload:\n{}", bed.signer.log());

    let path = format!("/v1/sign/result/{id}");
    let refused = broker
        .call_raw(hyper::Method::GET, &path, None)
        .await
        .unwrap();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        json_of(&refused)["reason_code"],
        "tier_raised",
        "{refused:?}"
    );
    assert!(
        !bed.signer_records()
            .iter()
            .any(|r| r["outcome"] == "issued" && r["command"] == cmd),
        "nothing was issued"
    );
    let replay = broker
        .call_raw(hyper::Method::GET, &path, None)
        .await
        .unwrap();
    assert_eq!(json_of(&replay)["reason_code"], "approval_used", "spent");
}
