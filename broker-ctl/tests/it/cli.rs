//! `broker-ctl pki|audit|policy` as an operator runs them.

use std::path::Path;

use infrabroker_common::audit::{AuditKey, AuditLog};
use serde_json::{Map, json};

use super::{ctl, text};

#[test]
fn pki_init_writes_everything_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pki");
    let o = ctl(&["pki", "init", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    for f in [
        "ca.crt",
        "ca.key",
        "signer.crt",
        "signer.key",
        "control-plane.crt",
        "control-plane.key",
        "broker-1.crt",
        "broker-1.key",
        "operator.crt",
        "operator.key",
        "ssh_user_ca",
        "ssh_user_ca.pub",
        "signer-audit.seed",
        "signer-audit.pub",
        "broker-audit.seed",
        "broker-audit.pub",
        "control-plane-audit.seed",
        "control-plane-audit.pub",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let before = std::fs::read(out.join("ca.key")).unwrap();
    let o = ctl(&["pki", "init", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--force"), "{}", text(&o));
    assert_eq!(
        std::fs::read(out.join("ca.key")).unwrap(),
        before,
        "nothing overwritten"
    );
    let o = ctl(&["pki", "init", "--out", out.to_str().unwrap(), "--force"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_ne!(std::fs::read(out.join("ca.key")).unwrap(), before);
}

pub(crate) fn write_log(dir: &Path, n: u64) -> (std::path::PathBuf, std::path::PathBuf) {
    let (key, pubkey) = super::audit_key(dir, 9);
    let log_path = dir.join("audit.log");
    let log = AuditLog::open(&log_path, key).unwrap();
    for i in 0..n {
        let mut m = Map::new();
        m.insert("outcome".into(), json!("issued"));
        m.insert("serial".into(), json!(i));
        log.append_blocking(m).unwrap();
    }
    drop(log);
    (log_path, pubkey)
}

#[test]
fn audit_verify_exit_codes_name_the_first_bad_record() {
    let dir = tempfile::tempdir().unwrap();
    let (log, pubkey) = write_log(dir.path(), 6);
    let (l, p) = (log.to_str().unwrap(), pubkey.to_str().unwrap());
    let o = ctl(&["audit", "verify", l, "--pubkey", p]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("6 records"), "{}", text(&o));

    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "modified",
            {
                let mut v = lines.clone();
                v[2] = v[2].replace("\"serial\":2", "\"serial\":7");
                v
            },
            "seq 3",
        ),
        (
            "deleted",
            {
                let mut v = lines.clone();
                v.remove(3);
                v
            },
            "seq 4",
        ),
        (
            "inserted",
            {
                let mut v = lines.clone();
                v.insert(2, lines[1].clone());
                v
            },
            "seq 3",
        ),
        (
            "reordered",
            {
                let mut v = lines.clone();
                v.swap(4, 5);
                v
            },
            "seq 5",
        ),
    ];
    for (what, body, needle) in cases {
        std::fs::write(&log, body.join("\n") + "\n").unwrap();
        let o = ctl(&["audit", "verify", l, "--pubkey", p]);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", text(&o));
        assert!(
            text(&o).contains(needle),
            "{what}: expected {needle}: {}",
            text(&o)
        );
    }
    // A log checked with another key: bad signature.
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let other = dir.path().join("other.pub");
    let k2 = AuditKey::from_seed(zeroize::Zeroizing::new([3u8; 32]));
    std::fs::write(&other, k2.public_key_openssh("x")).unwrap();
    let o = ctl(&["audit", "verify", l, "--pubkey", other.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("signature"), "{}", text(&o));
}

/// Writes a signer.json with these policies and one host `web01` in group
/// `web` (plus `host_policy` as its own policy, if any).
fn policy_config(
    dir: &std::path::Path,
    policies: serde_json::Value,
    groups: serde_json::Value,
    host_policy: Option<serde_json::Value>,
) -> std::path::PathBuf {
    let pki = infrabroker_testbed::stack::Pki::create(dir).unwrap();
    let mut cfg = infrabroker_testbed::stack::signer_config(&pki, &dir.join("a.log"));
    cfg["command_policies"] = policies;
    cfg["group_command_policies"] = groups;
    cfg["hosts"] = json!({"web01": {
        "addr": "127.0.0.1:22", "user": "u", "principal": "p", "groups": ["web"],
        "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    }});
    if let Some(p) = host_policy {
        cfg["hosts"]["web01"]["command_policy"] = p;
    }
    let path = dir.join("signer.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    path
}

#[test]
fn policy_explain_shows_composition_and_the_offline_decision() {
    let dir = tempfile::tempdir().unwrap();
    let path = policy_config(
        dir.path(),
        json!({
            "global": {"mode": "denylist", "deny": ["^rm( |$)"]},
            "readonly": {"mode": "allowlist", "allow": ["^(ps|ls|uptime)( |$)"], "require_approval": ["^ps aux$"]},
        }),
        json!({"_default": ["global"], "web": ["readonly"]}),
        Some(json!({"mode": "denylist", "deny": ["^ls /root"]})),
    );
    let c = path.to_str().unwrap();

    let o = ctl(&["policy", "explain", "--config", c, "--host", "web01"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("mode allowlist"), "{t}");
    for source in ["group _default: global", "group web: readonly", "host"] {
        assert!(t.contains(source), "{source} missing: {t}");
    }
    for (cmd, code, allowed) in [
        ("uptime", "allowed", true),
        ("ps aux && kill -9 1", "allowlist_no_match", false),
        ("rm -rf /", "command_denied", false),
        ("ls /root", "command_denied", false),
        ("ps aux", "needs_approval", false),
        ("ls $(id)", "parse_rejected", false),
    ] {
        let o = ctl(&[
            "policy",
            "explain",
            "--config",
            c,
            "--host",
            "web01",
            "--command",
            cmd,
            "--json",
        ]);
        let v: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
        assert_eq!(v["decision"]["reason_code"], code, "{cmd}: {v}");
        assert_eq!(o.status.success(), allowed, "{cmd}");
    }
    let o = ctl(&["policy", "explain", "--config", c, "--host", "nope"]);
    assert_eq!(o.status.code(), Some(64));
}

#[test]
fn policy_explain_shows_the_normalised_argv_and_the_deciding_rule() {
    let dir = tempfile::tempdir().unwrap();
    let tar = json!({
        "program": "tar",
        "options": {"-t": "flag", "-v": "flag", "-f": {"value": "/srv/[a-z]+\\.tar"},
                    "--list": "flag", "--file": {"value": "/srv/[a-z]+\\.tar"}},
    });
    let path = policy_config(
        dir.path(),
        json!({"git-log": {"mode": "allowlist", "allow": ["^uptime$", "^git( |$)"], "allow_argv": [tar]}}),
        json!({"web": ["git-log"]}),
        None,
    );
    let c = path.to_str().unwrap();
    let explain = |cmd: &str, json: bool| {
        let mut args = vec![
            "policy",
            "explain",
            "--config",
            c,
            "--host",
            "web01",
            "--command",
            cmd,
        ];
        if json {
            args.push("--json");
        }
        ctl(&args)
    };

    // Structured: bundled flags and an abbreviation, normalised.
    let o = explain("uptime; tar -tvf /srv/a.tar", true);
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert!(o.status.success(), "{v}");
    assert_eq!(v["commands"][0]["decided_by"]["form"], "regex", "{v}");
    assert_eq!(
        v["commands"][0]["decided_by"]["rule"], "allow:^uptime$",
        "{v}"
    );
    let tar = &v["commands"][1];
    assert_eq!(tar["decided_by"]["form"], "structured", "{v}");
    assert_eq!(tar["decided_by"]["rule"], "allow_argv:tar", "{v}");
    assert_eq!(
        tar["normalized"],
        json!(["tar", "-t", "-v", "-f", "/srv/a.tar"]),
        "{v}"
    );
    let o = explain("tar --li --file=/srv/a.tar", false);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("normalised: tar --list --file=/srv/a.tar"),
        "{t}"
    );
    assert!(
        t.contains("decided by structured rule: allow_argv:tar from group web: git-log"),
        "{t}"
    );

    // Refusals name the rule form and why the structured rule did not match.
    let o = explain("tar -tvf /etc/shadow.tar", false);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("allowlist_no_match"), "{t}");
    assert!(t.contains("value of -f does not match its pattern"), "{t}");
    let o = explain("git rebase --exec id main", true);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["decision"]["reason_code"], "exec_option", "{v}");
    assert_eq!(
        v["decision"]["matched_rule"], "exec-option:git rebase --exec",
        "{v}"
    );
    assert_eq!(v["commands"][0]["decided_by"]["form"], "exec_table", "{v}");
    // Pager rows apply to PTY requests only.
    assert!(explain("git log", false).status.success());
    let o = ctl(&[
        "policy",
        "explain",
        "--config",
        c,
        "--host",
        "web01",
        "--command",
        "git log",
        "--pty",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["decision"]["reason_code"], "exec_option", "{v}");
}
