//! A real MCP client from another ecosystem (the Python `mcp` SDK) drives
//! `broker mcp-stdio` end to end against a test-bed sshd.

use std::process::Command;

use infrabroker_testbed::{require, sshd_or_skip};

use crate::harness::{Bed, host_for, sshd};

fn python_mcp_available() -> bool {
    Command::new("python3")
        .args(["-c", "import mcp.client.stdio"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn python_mcp_client_runs_ssh_execute_through_broker_mcp_stdio() {
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
    let bed = Bed::start(
        dir,
        pki,
        serde_json::json!({"web": host_for(&s, "web-principal")}),
    );
    let config = bed.broker_json(serde_json::json!({}));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg("--broker-bin")
        .arg(infrabroker_testbed::bin_path("broker").unwrap())
        .arg("--config")
        .arg(&config)
        .args([
            "--host",
            "web",
            "--command",
            "echo from-python; id -un",
            "--expect-stdout",
        ])
        .arg("from-python\nibtest\n")
        .args(["--expect-exit", "0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let serial = summary["serial"].as_u64().unwrap();
    assert!(
        bed.broker_records()
            .iter()
            .any(|r| r["serial"] == serial && r["outcome"] == "executed")
    );
}
