//! The command firewall end to end: what the signer allows runs on the host
//! exactly as judged; what it refuses never reaches the host.

use std::time::Duration;

use infrabroker_broker::api::Tools;
use infrabroker_testbed::sshd_or_skip;
use serde_json::json;

use crate::harness::{Bed, caller, host_for, req, run, sshd};

#[tokio::test]
async fn allowed_commands_run_byte_for_byte_and_refused_ones_never_reach_the_host() {
    if !sshd_or_skip() {
        return;
    }
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let mut h = host_for(&s, "web-principal");
    h["command_policy"] = json!({
        "mode": "allowlist",
        "allow": ["^printf ", "^echo ", "^tr ", "^id$"],
        "deny": ["^echo forbidden"],
    });
    let bed = Bed::start(dir, pki, json!({"web": h}));
    let engine = bed.engine(json!({})).await;

    // Quotes, spaces, $ and a single quote inside: the remote /bin/sh sees
    // exactly what the firewall judged, whatever the login shell is.
    let cmd = r#"printf '%s|' 'a  b' "c'd" '$HOME' | tr '|' '\n'"#;
    let r = run(&engine, "web", cmd).await.unwrap();
    assert_eq!(r.stdout, "a  b\nc'd\n$HOME\n", "{r:?}");
    let issued = bed
        .signer_records()
        .into_iter()
        .find(|x| x["serial"] == r.serial)
        .unwrap();
    assert_eq!(
        issued["force_command"],
        infrabroker_common::force_command::wrap(&["timeout", "-k", "2", "30"], cmd).unwrap()
    );
    assert_eq!(issued["command"], cmd);

    let before = s.log().matches("Starting session").count();
    for (command, code) in [
        ("echo forbidden thing", "command_denied"),
        ("id; rm -rf /tmp/x", "allowlist_no_match"),
        ("echo $(id)", "parse_rejected"),
        ("sh -c id", "parse_rejected"),
        ("echo ok > /tmp/owned", "parse_rejected"),
    ] {
        let e = run(&engine, "web", command).await.unwrap_err();
        assert_eq!(e.reason_code(), code, "{command}: {e}");
        let d = engine
            .dry_run(&caller(), req("web", command))
            .await
            .unwrap();
        assert!(!d.allowed, "{command}");
        assert_eq!(d.reason_code.as_str(), code, "{command}");
    }
    let d = engine.dry_run(&caller(), req("web", "id")).await.unwrap();
    assert!(d.allowed);
    // Give sshd time to log anything it might have received, then check it
    // received nothing for the refused commands or the dry runs.
    assert!(!s.wait_for_log("forbidden", Duration::from_millis(500)));
    assert_eq!(
        s.log().matches("Starting session").count(),
        before,
        "{}",
        s.log()
    );
    assert!(!std::path::Path::new("/tmp/owned").exists());
    let denied: Vec<_> = bed
        .signer_records()
        .into_iter()
        .filter(|r| r["outcome"] == "denied")
        .collect();
    assert_eq!(denied.len(), 5, "every refusal is audited by the signer");
    assert!(denied.iter().all(|r| r["matched_rule"].is_string()));
}
