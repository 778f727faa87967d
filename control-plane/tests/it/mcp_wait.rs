//! The broker's MCP side of an approval, driven by the Python `mcp` SDK
//! against the real `broker mcp-stdio`: progress notifications while the
//! call waits, the result once approved, a tool error naming the approval
//! id once denied.

use std::process::Stdio;
use std::time::Duration;

use infrabroker_testbed::{bin_path, require, sshd_or_skip};
use serde_json::{Value, json};

use crate::harness::{Bed, eventually, host_for, sshd};

fn python_mcp_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import mcp.client.stdio"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_execute_reports_progress_while_waiting_then_runs_or_names_the_denial() {
    if !sshd_or_skip()
        || !require(
            "the Python `mcp` package (pip install mcp)",
            python_mcp_available(),
        )
    {
        return;
    }
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let hosts = json!({"web": host_for(&s, "web-principal", &["^echo wait-for-me"])});
    let bed = Bed::start_in(dir, pki, hosts);
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

    let out = tokio::time::timeout(Duration::from_secs(60), client.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["denied_id"], id2.as_str());
    assert!(
        summary["denied_text"]
            .as_str()
            .unwrap()
            .contains("enough for today")
    );
}
