//! The approval web page in a real browser: Debian's chromium driven by
//! `playwright-core` (`npm ci --prefix control-plane/tests/ui`) with the
//! operator's client certificate, against the real control plane, signer,
//! broker engine and sshd.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use infrabroker_broker::api::{Caller, Tools};
use infrabroker_testbed::{require, sshd_or_skip};
use serde_json::{Value, json};

use crate::harness::{Bed, err_of, host_for, req, sshd};

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui")
}

fn browser_or_skip() -> bool {
    require(
        "chromium and playwright-core (apt-get install chromium; npm ci --prefix control-plane/tests/ui)",
        Path::new("/usr/bin/chromium").is_file()
            && ui_dir().join("node_modules/playwright-core").is_dir(),
    )
}

/// Where the screenshots go (kept after the test; README shows copies).
fn shots_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_decide_on_the_web_page_and_forged_or_own_decisions_are_refused() {
    if !sshd_or_skip() || !browser_or_skip() {
        return;
    }
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let hosts = json!({"web": host_for(&s, "web-principal", &["^echo web-"])});
    let bed = Bed::start_in(dir, pki, hosts);
    let cp = bed.control_plane("cp", json!({"trusted_forwarders": ["broker-1"]}));
    let engine = bed.engine(&cp, 60).await;
    let run = |caller: Caller, cmd: &str| {
        let (e, r) = (engine.clone(), req("web", cmd));
        tokio::spawn(async move { e.execute(&caller, r).await })
    };
    let approve = run(Caller::local("mcp-stdio"), "echo web-approve");
    let deny = run(Caller::local("mcp-stdio"), "echo web-deny");
    let mut own_caller = Caller::local("mcp-stdio");
    own_caller.end_user = Some("operator".into());
    let own = run(own_caller, "echo web-own");
    let id = |v: Value| v["id"].as_str().unwrap().to_owned();
    let approve_id = id(cp.pending("echo web-approve", &[]).await);
    let deny_id = id(cp.pending("echo web-deny", &[]).await);
    let own_id = id(cp.pending("echo web-own", &[]).await);

    let config = bed.dir.path().join("drive.json");
    let drive = json!({
        "base": cp.url, "cert": bed.pki.path("operator.crt"), "key": bed.pki.path("operator.key"),
        "approve_id": approve_id, "deny_id": deny_id, "own_id": own_id, "shots": shots_dir(),
    });
    std::fs::write(&config, drive.to_string()).unwrap();
    let out = Command::new("node")
        .arg(ui_dir().join("drive.mjs"))
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "drive.mjs failed: {stderr}");
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();

    // The list: every held request, a strict CSP, no violations. (Hidden
    // characters never get this far: the signer refuses them; the page's
    // escaping is unit-tested in `ui::page`.)
    assert_eq!(seen["list_status"], 200);
    for i in [&approve_id, &deny_id, &own_id] {
        assert!(
            seen["list_ids"].as_array().unwrap().contains(&json!(i)),
            "{seen}"
        );
    }
    let list = seen["list_text"].as_str().unwrap();
    assert!(list.contains("broker-1 for operator"), "{list}");
    assert!(
        seen["list_csp"]
            .as_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert_eq!(seen["csp_violations"], json!([]));

    // Approving lets the broker's waiting call run; denying reaches the agent.
    let result = tokio::time::timeout(Duration::from_secs(30), approve)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(result.stdout, "web-approve\n");
    assert!(
        seen["approved_text"]
            .as_str()
            .unwrap()
            .contains("approved by operator (web)")
    );
    let (code, message) = err_of(
        tokio::time::timeout(Duration::from_secs(30), deny)
            .await
            .unwrap()
            .unwrap(),
    );
    assert!(code.contains("denied"), "{code}: {message}");
    assert!(message.contains("not during the freeze"), "{message}");
    assert!(
        seen["denied_text"]
            .as_str()
            .unwrap()
            .contains("denied by operator (web)")
    );

    // The operator's own request: no buttons, and a direct POST with a valid
    // token is refused server-side; forged POSTs are refused as csrf_invalid.
    assert_eq!(seen["own_buttons"], 0, "{seen}");
    assert!(
        seen["own_text"]
            .as_str()
            .unwrap()
            .contains("someone else must decide")
    );
    for forged in ["forged_missing", "forged_wrong"] {
        assert_eq!(seen[forged]["status"], 403, "{forged}: {seen}");
        assert!(
            seen[forged]["text"]
                .as_str()
                .unwrap()
                .contains("csrf_invalid"),
            "{seen}"
        );
    }
    assert_eq!(seen["own_direct"]["status"], 403, "{seen}");
    assert!(
        seen["own_direct"]["text"]
            .as_str()
            .unwrap()
            .contains("self_approval"),
        "{seen}"
    );
    own.abort();

    // Both decisions are in the control plane's audit chain, via the web.
    let granted = cp.outcomes("approval-granted");
    assert!(
        granted
            .iter()
            .any(|r| r["approved_via"] == "web" && r["approved_by"] == "operator")
    );
    assert!(
        cp.outcomes("approval-denied")
            .iter()
            .any(|r| r["approved_via"] == "web")
    );
    for shot in ["approvals-list.png", "approval-detail.png"] {
        assert!(
            shots_dir().join(shot).metadata().unwrap().len() > 1000,
            "{shot}"
        );
    }
}
