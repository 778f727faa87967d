//! The broker's MCP side of an approval, driven by the Python `mcp` SDK
//! against the real `broker mcp-stdio`: progress notifications while the
//! call waits, the result once approved, a tool error naming the approval
//! id once denied.

use std::process::Stdio;

use infrabroker_testbed::{bin_path, sshd_or_skip};
use serde_json::json;

use crate::harness::{Bed, eventually, python_mcp_or_skip, summary_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_execute_reports_progress_while_waiting_then_runs_or_names_the_denial() {
    if !sshd_or_skip() || !python_mcp_or_skip() {
        return;
    }
    let (bed, _sshd) = Bed::with_web_sshd(&["^echo wait-for-me"]);
    let cp = bed.control_plane("cp-mcp", json!({}));
    let config = bed.broker_json(&cp, 60);
    let progress = bed.dir.path().join("progress.txt");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/approval_wait_client.py");
    let cmd = "echo wait-for-me";
    let client = tokio::process::Command::new("python3")
        .arg(script)
        .arg("--broker-bin")
        .arg(bin_path("broker").unwrap())
        .arg("--config")
        .arg(&config)
        .args([
            "--host",
            "web",
            "--command",
            cmd,
            "--expect-stdout",
            "wait-for-me\\n",
        ])
        .arg("--progress-file")
        .arg(&progress)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let seen = |call: &str| {
        let p = progress.clone();
        let prefix = format!("{call} ");
        move || {
            std::fs::read_to_string(&p)
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with(&prefix))
        }
    };

    let first = cp.pending(cmd, &[]).await;
    let id1 = first["id"].as_str().unwrap().to_owned();
    assert!(
        eventually(20, seen("1")).await,
        "no progress during the first wait"
    );
    let (ok, _, err) = cp.ctl("operator", &["allow", &id1]).await;
    assert!(ok, "{err}");

    let second = cp.pending(cmd, &[&id1]).await;
    let id2 = second["id"].as_str().unwrap().to_owned();
    assert!(
        eventually(20, seen("2")).await,
        "no progress during the second wait"
    );
    let (ok, _, err) = cp
        .ctl("operator", &["deny", &id2, "--reason", "enough for today"])
        .await;
    assert!(ok, "{err}");

    let summary = summary_of("python client", 60, client.wait_with_output())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary["denied_id"], id2.as_str());
    assert!(
        summary["denied_text"]
            .as_str()
            .unwrap()
            .contains("enough for today")
    );
}
