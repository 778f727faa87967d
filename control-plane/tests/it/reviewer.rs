//! The AI reviewer, driven by a real MCP client from another ecosystem
//! (the Python `mcp` SDK over Streamable HTTP): it approves an `ai_review`
//! request, cannot approve a `human` one, escalates one that an operator
//! then approves; every reason lands in the audit log.

use std::os::unix::fs::PermissionsExt;

use infrabroker_testbed::sshd_or_skip;
use serde_json::{Value, json};

use crate::harness::{Bed, err_of, python_mcp_or_skip, spawn_run, summary_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_ai_reviewer_approves_refuses_and_escalates() {
    if !sshd_or_skip() || !python_mcp_or_skip() {
        return;
    }
    let (bed, _sshd) = Bed::with_web_sshd(&["^echo review-"]);
    let token_file = bed.dir.path().join("reviewer.token");
    std::fs::write(&token_file, format!("{:032x}\n", rand::random::<u128>())).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cp = bed.control_plane(
        "cp-review",
        json!({"approval": {
            "tiers": [{"match": "^echo review-ai ", "hosts": ["web"], "tier": "ai_review"}],
            "default_tier": "human",
            "reviewer": {"listen": "127.0.0.1:0", "token_file": token_file, "name": "claude-reviewer"},
        }}),
    );
    let engine = bed.engine(&cp, 60).await;
    let (ok_cmd, human_cmd, esc_cmd) = (
        "echo review-ai ok",
        "echo review-human",
        "echo review-ai escalate",
    );
    let ok_run = spawn_run(&engine, "web", ok_cmd);
    let human_run = spawn_run(&engine, "web", human_cmd);
    let esc_run = spawn_run(&engine, "web", esc_cmd);
    for c in [ok_cmd, human_cmd, esc_cmd] {
        cp.pending(c, &[]).await;
    }

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ai_reviewer.py");
    let url = format!("{}/mcp", cp.reviewer_url.clone().unwrap());
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .args([
            "--url",
            &url,
            "--approve",
            ok_cmd,
            "--human",
            human_cmd,
            "--escalate",
            esc_cmd,
        ])
        .arg("--token-file")
        .arg(&token_file)
        .output();
    let summary = summary_of("python reviewer", 90, out)
        .await
        .unwrap_or_else(|e| panic!("{e}\ncontrol plane:\n{}", cp.child.log()));
    assert_eq!(summary["unauthenticated_status"], 401);

    // The approved request runs; the denied one never does.
    let r = ok_run.await.unwrap().unwrap();
    assert_eq!(r.stdout, "review-ai ok\n");
    let (code, text) = err_of(human_run.await.unwrap());
    assert_eq!(code, "approval_denied", "{text}");
    assert!(text.contains("claude-reviewer"), "{text}");

    // The escalated one is now in the human queue; an operator approves it.
    let esc_id = summary["ids"]["escalate"].as_str().unwrap();
    let (ok, shown, _) = cp.ctl("operator", &["show", esc_id, "--json"]).await;
    assert!(ok);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["tier"], "human");
    assert_eq!(shown["escalated_by"], "claude-reviewer");
    let (ok, _, err) = cp
        .ctl(
            "operator",
            &["allow", esc_id, "--reason", "checked with the on-call"],
        )
        .await;
    assert!(ok, "{err}");
    let r = esc_run.await.unwrap().unwrap();
    assert_eq!(r.stdout, "review-ai escalate\n");

    // Every reviewer decision, refusal and escalation is audited with its reason.
    let recs = cp.records();
    let find = |outcome: &str, id: &str| -> Value {
        recs.iter()
            .find(|r| r["outcome"] == outcome && r["approval_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {outcome} for {id}: {recs:#?}"))
    };
    let ids = &summary["ids"];
    let granted = find("approval-granted", ids["approve"].as_str().unwrap());
    assert_eq!(granted["approved_by"], "claude-reviewer");
    assert_eq!(granted["approved_via"], "ai_reviewer");
    assert_eq!(
        granted["reason"],
        "read-only echo of a fixed string; safe to run"
    );
    let refused = find("approval-refused", ids["human"].as_str().unwrap());
    assert_eq!(refused["reason_code"], "tier_forbidden");
    assert_eq!(refused["reason"], "looks fine to me");
    let denied = find("approval-denied", ids["human"].as_str().unwrap());
    assert_eq!(
        denied["reason"],
        "reserved for humans and no ticket given; denying"
    );
    let escalated = find("approval-escalated", esc_id);
    assert_eq!(escalated["escalated_by"], "claude-reviewer");
    assert_eq!(
        escalated["reason"],
        "unsure about the blast radius; a human should decide"
    );
    let human_ok = find("approval-granted", esc_id);
    assert_eq!(human_ok["approved_by"], "operator");
    assert_eq!(human_ok["reason"], "checked with the on-call");
}
