//! What an approver reads is what runs: a held command carrying terminal
//! escapes and a bidi override reaches a Slack notification, `broker-ctl
//! approval list/show` and `broker-ctl audit tail` with those characters
//! visibly escaped, while `--json` keeps the exact bytes.

use std::process::Command;

use hyper::StatusCode;
use infrabroker_testbed::bin_path;
use infrabroker_testbed::stack::{Pki, signer_config};
use serde_json::{Value, json};

use crate::harness::{Bed, Receiver, USER, json_of, post_sign, sign_body};

/// ESC sequences that clear the screen and move the cursor, then a right-
/// to-left override that makes `exe.txt` read as `txt.exe`.
const HOSTILE: &str = "echo \x1b[2J\x1b[1;1Hall good \u{202e}exe.txt";
const RAW: [char; 2] = ['\x1b', '\u{202e}'];

/// A host without a command policy (nobody dials it). Once the signer
/// refuses invisible characters by default, the host opts in to them:
/// that is the only way such a command can still reach an approver.
fn raw_host(dir: &std::path::Path, pki: &Pki) -> Value {
    let mut host = json!({
        "addr": "127.0.0.1:9", "user": USER, "host_key": pki.ssh_ca_pub().unwrap(),
        "principal": "raw", "groups": ["web"],
    });
    let mut probe = signer_config(pki, &dir.join("probe.log"));
    probe["hosts"] = json!({"raw": host.clone()});
    probe["hosts"]["raw"]["allow_invisible_characters"] = true.into();
    let path = dir.join("probe.json");
    std::fs::write(&path, probe.to_string()).unwrap();
    let out = Command::new(bin_path("signer").unwrap())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    if out.status.success() {
        host["allow_invisible_characters"] = true.into();
    }
    host
}

fn assert_escaped(what: &str, text: &str) {
    for c in RAW {
        assert!(
            !text.contains(c),
            "{what} shows U+{:04X} raw:\n{text}",
            u32::from(c)
        );
    }
    assert!(
        text.contains("\\x1b[2J\\x1b[1;1Hall good \\u{202e}exe.txt"),
        "{what}:\n{text}"
    );
}

fn all_strings(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|i| all_strings(i, out)),
        Value::Object(m) => m.values().for_each(|i| all_strings(i, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_see_escapes_and_bidi_overrides_escaped() {
    let (dir, pki) = Bed::pki();
    let host = raw_host(dir.path(), &pki);
    let bed = Bed::start_in(dir, pki, json!({"raw": host}));
    let rx = Receiver::start();
    let cp = bed.control_plane(
        "cp-display",
        json!({"behavior": {"mode": "enforce"},
               "approval": {"notifier": "slack", "webhook_url": format!("{}/slack", rx.url)}}),
    );
    let broker = bed.client(&cp.url, "broker-1");
    let pubkey = bed.pki.ssh_ca_pub().unwrap();
    let held = post_sign(&broker, &sign_body("raw", HOSTILE, &pubkey)).await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{}", json_of(&held));
    let id = json_of(&held)["approval_id"].as_str().unwrap().to_owned();

    // Slack: every string of the message.
    let mut slack = String::new();
    all_strings(&rx.wait_for("/slack").await, &mut slack);
    assert_escaped("the Slack message", &slack);

    // broker-ctl approval list and show.
    let (ok, list, err) = cp.ctl("operator", &["list"]).await;
    assert!(ok, "{err}");
    assert_escaped("approval list", &list);
    let (ok, show, err) = cp.ctl("operator", &["show", &id]).await;
    assert!(ok, "{err}");
    assert_escaped("approval show", &show);
    // --json is for scripts: the exact command.
    let (ok, exact, err) = cp.ctl("operator", &["show", &id, "--json"]).await;
    assert!(ok, "{err}");
    let exact: Value = serde_json::from_str(&exact).unwrap();
    assert_eq!(exact["command"], HOSTILE);

    // A decision reason is the operator's text, shown escaped as well.
    let (ok, _, err) = cp
        .ctl("operator", &["deny", &id, "--reason", "no \u{202e}gnp.exe"])
        .await;
    assert!(ok, "{err}");
    let (ok, show, err) = cp.ctl("operator", &["show", &id]).await;
    assert!(ok, "{err}");
    assert!(
        show.contains("no \\u{202e}gnp.exe") && !show.contains('\u{202e}'),
        "{show}"
    );

    // broker-ctl audit tail: JSON lines that still parse to the exact text.
    let out = Command::new(bin_path("broker-ctl").unwrap())
        .args(["audit", "tail", "-n", "50"])
        .arg(&cp.audit)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for c in RAW {
        assert!(
            !text.contains(c),
            "audit tail shows U+{:04X} raw",
            u32::from(c)
        );
    }
    let held_rec: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["outcome"] == "approval-required")
        .collect();
    assert_eq!(held_rec.len(), 1, "{text}");
    assert_eq!(held_rec[0]["command"], HOSTILE);
}
