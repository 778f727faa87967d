//! `signer check` and start-up: every configuration error at once with its
//! JSON path (exit 64), the shipped example validates, `/metrics` answers,
//! SIGTERM stops the service cleanly.

use std::process::Command;
use std::time::Duration;

use infrabroker_testbed::stack::Pki;
use serde_json::json;

use crate::harness::{DUMMY_HOST_KEY, Stack};

fn check(path: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(infrabroker_testbed::bin_path("signer").unwrap())
        .args(["check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn the_example_configuration_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    Pki::create(dir.path()).unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../signer.example.json");
    std::fs::copy(example, dir.path().join("signer.json")).unwrap();
    let (code, text) = check(&dir.path().join("signer.json"));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("valid (2 hosts)"), "{text}");
}

#[test]
fn every_error_is_reported_with_its_path_and_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path()).unwrap();
    let mut cfg = infrabroker_testbed::stack::signer_config(&pki, &dir.path().join("a.log"));
    cfg["colour"] = json!("blue");
    cfg["max_ttl_seconds"] = json!(3600);
    cfg["audit_fail_mode"] = json!("sometimes");
    cfg["callers"] = json!({"broker 1": {"allowed_groups": ["web"]}});
    cfg["command_policies"] = json!({
        "p": {"mode": "allowlist", "allow": ["("]},
        "q": {"mode": "allowlist", "allow_argv": [{"program": "sh"}]},
        "r": {"mode": "allowlist", "allow_argv": [{"program": "ls", "flags": ["-l"]}]},
        "s": {"mode": "denylist", "allow_argv": [{"program": "ls"}]},
    });
    cfg["group_command_policies"] = json!({"web": ["missing"]});
    cfg["hosts"] = json!({
        "web": {"addr": "nohost", "user": "u", "host_key": "garbage", "groups": ["web"],
                "allowed_sudo_users": ["-s"], "source_address": "10.0.0.300", "jump": "ghost"},
        "bast": {"addr": "127.0.0.1:22", "user": "u", "host_key": DUMMY_HOST_KEY, "principal": "p",
                 "allow_as_bastion": true, "command_policy": {"mode": "denylist", "deny": ["^rm"]}},
        "_note": {"addr": "x"},
        "blank": {"addr": "", "user": "", "host_key": "", "principal": "p"},
    });
    let path = dir.path().join("signer.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let (code, text) = check(&path);
    assert_eq!(code, Some(64), "{text}");
    for needle in [
        "colour: unknown field",
        "max_ttl_seconds: 3600 exceeds the ceiling of 900",
        "audit_fail_mode: \"sometimes\"",
        "callers[\"broker 1\"]: \"broker 1\" is not a valid caller CN",
        "command_policies.p.allow[0]",
        "command_policies.q.allow_argv[0].program: sh runs other commands",
        "command_policies.r.allow_argv: not a list of structured rules: unknown field `flags`",
        "command_policies.s.allow_argv: allow rules have no effect in denylist mode",
        "group_command_policies.web[0]: no policy named \"missing\"",
        "hosts.web.addr: \"nohost\" is not host:port",
        "hosts.web.host_key: is not an OpenSSH public key line",
        "hosts.web.principal: is required",
        "hosts.web.allowed_sudo_users[0]",
        "hosts.web.source_address",
        "hosts.web.jump: no host named \"ghost\"",
        "hosts.bast.command_policy: a host with a command policy cannot be a bastion",
        "hosts.blank.addr: \"\" is not host:port",
        "hosts.blank.user: \"\" is not a valid account name",
        "hosts.blank.host_key: is not an OpenSSH public key line",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // Not valid JSON with comments at all.
    std::fs::write(&path, "{ \"listen\": 'x' }").unwrap();
    let (code, text) = check(&path);
    assert_eq!(code, Some(64), "{text}");
    assert!(text.contains("not valid JSON"), "{text}");
}

#[test]
fn a_jump_target_becomes_a_bastion_and_must_not_have_a_policy() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path()).unwrap();
    let mut cfg = infrabroker_testbed::stack::signer_config(&pki, &dir.path().join("a.log"));
    let h = |extra: serde_json::Value| {
        let mut v = json!({"addr": "127.0.0.1:22", "user": "u", "host_key": DUMMY_HOST_KEY, "principal": "p", "groups": ["g"]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    cfg["command_policies"] = json!({"ro": {"mode": "allowlist", "allow": ["^id$"]}, "all": {"mode": "denylist", "deny": ["^rm"]}});
    cfg["group_command_policies"] = json!({"_default": ["all"], "g2": ["ro"]});
    cfg["hosts"] = json!({
        "jump1": h(json!({"groups": ["g2"]})),
        "target": h(json!({"jump": "jump1"})),
        "loop-a": h(json!({"jump": "loop-b"})),
        "loop-b": h(json!({"jump": "loop-a"})),
    });
    let path = dir.path().join("signer.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let (code, text) = check(&path);
    assert_eq!(code, Some(64), "{text}");
    assert!(
        text.contains(
            "hosts.jump1.command_policy: a host with a command policy cannot be a bastion"
        ),
        "{text}"
    );
    assert!(
        text.contains("hosts.loop-a.jump: the jump chain loops"),
        "{text}"
    );
    // `_default` alone does not forbid bastions.
    cfg["hosts"] = json!({"jump1": h(json!({})), "target": h(json!({"jump": "jump1"}))});
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let (code, text) = check(&path);
    assert_eq!(code, Some(0), "{text}");
}

#[tokio::test]
async fn metrics_and_graceful_sigterm() {
    let port = infrabroker_testbed::free_port();
    let mut s = Stack::start(|cfg, _| cfg["monitor_listen"] = json!(format!("127.0.0.1:{port}")));
    let key = crate::harness::keypair();
    let (st, _) = s
        .sign("broker-1", &crate::harness::oneshot("web", "id", &key))
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .sign("broker-1", &crate::harness::oneshot("nope", "id", &key))
        .await;
    assert_eq!(st, 404);
    let (status, body) =
        tokio::task::spawn_blocking(move || infrabroker_testbed::monitor::get(port, "/metrics"))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(status, 200, "{body}");
    if infrabroker_testbed::require(
        "Python prometheus_client (pip install prometheus_client)",
        infrabroker_testbed::monitor::have_prometheus_parser(),
    ) {
        let families = infrabroker_testbed::monitor::parse_openmetrics(&body).unwrap();
        assert!(
            families
                .iter()
                .any(|f| f == "infrabroker_signer_sign_seconds"),
            "{families:?}"
        );
    }
    let (status, ready) =
        tokio::task::spawn_blocking(move || infrabroker_testbed::monitor::get(port, "/readyz"))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(status, 200, "{ready}");
    assert!(
        body.contains("infrabroker_signer_certificates_issued_total 1"),
        "{body}"
    );
    assert!(
        body.contains("infrabroker_signer_denied_total{reason_code=\"host_unknown\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("infrabroker_signer_sign_seconds_count 2"),
        "{body}"
    );

    assert!(s.signer.child.signal(libc_sigterm()));
    let exited = infrabroker_testbed::wait_until(Duration::from_secs(10), || {
        s.signer.child.try_status().is_some()
    });
    assert!(exited, "signer stops on SIGTERM");
    assert!(s.signer.child.try_status().unwrap().success());
    assert!(s.audit_records().last().unwrap()["outcome"] == "stopped");
}

fn libc_sigterm() -> i32 {
    15
}

/// HA signers keep their chain in PostgreSQL: shipping a local file that is
/// never written would ship nothing, so `audit_syslog` is refused there;
/// `audit_checkpoint` applies to the global chain and is accepted.
#[test]
fn audit_syslog_with_a_postgres_store_is_refused_and_checkpoints_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path()).unwrap();
    let mut cfg = infrabroker_testbed::stack::signer_config(&pki, &dir.path().join("a.log"));
    cfg["store"] = json!({"postgres": {"url": "postgresql://ib@127.0.0.1:1/ib"}});
    cfg["audit_checkpoint"] = json!({"path": "cp/a.cp", "origin": "ib.test/signer"});
    cfg["audit_syslog"] = json!({"address": "127.0.0.1:514"});
    let path = dir.path().join("signer.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let (code, text) = check(&path);
    assert_eq!(code, Some(64), "{text}");
    assert!(
        text.contains("audit_syslog: is for the local audit log"),
        "{text}"
    );
    assert!(!text.contains("audit_checkpoint"), "{text}");
}
