//! Characters a human cannot see are refused on every host (issue 10 item
//! 4), unless the host opts in; printable non-ASCII text inside quotes
//! passes a command policy, in program and option names it does not.

use infrabroker_common::force_command;
use serde_json::{Value, json};

use crate::harness::{DUMMY_HOST_KEY, Stack, host, keypair, oneshot};

/// Terminal escapes, DEL, C1 controls, bidi, zero-width, BOM, tags.
const HIDDEN: &[(&str, &str)] = &[
    ("echo \u{1b}[1A\u{1b}[2Kok", "ESC sequence"),
    ("echo \u{1b}]0;title\u{7}", "OSC title and BEL"),
    ("echo x\u{7f}", "DEL"),
    ("echo \u{85}", "C1 next line"),
    ("echo \u{9b}2J", "C1 CSI"),
    ("echo \u{1}", "C0 SOH"),
    ("ls \u{202E}txt.exe", "right-to-left override"),
    ("echo '\u{2066}x\u{2069}'", "bidi isolates inside quotes"),
    ("rm\u{200B} -rf /", "zero-width space"),
    ("\u{200F}ls", "right-to-left mark"),
    ("\u{FEFF}ls", "byte order mark"),
    ("echo x\u{E0041}", "tag character"),
];

fn stack() -> Stack {
    Stack::start(|cfg, _| {
        let mut lab = host("127.0.0.1:1", DUMMY_HOST_KEY, "lab-principal");
        lab["allow_invisible_characters"] = json!(true);
        cfg["hosts"]["lab"] = lab;
        let mut pol = host("127.0.0.1:1", DUMMY_HOST_KEY, "pol-principal");
        pol["command_policy"] =
            json!({"mode": "allowlist", "allow": ["^printf ", "^grep ", "^git ", "^ls "]});
        cfg["hosts"]["pol"] = pol;
    })
}

async fn sign(s: &Stack, host: &str, command: &str, dry_run: bool) -> (u16, Value) {
    let mut req = oneshot(host, command, &keypair());
    req["dry_run"] = json!(dry_run);
    s.sign("broker-1", &req).await
}

#[tokio::test]
async fn hidden_characters_are_refused_on_every_host_unless_it_opts_in() {
    let s = stack();
    for (command, what) in HIDDEN {
        for host in ["web", "pol"] {
            let (st, v) = sign(&s, host, command, false).await;
            assert_eq!(st, 400, "{what} on {host}: {v}");
            assert_eq!(v["reason_code"], "command_invalid", "{what} on {host}: {v}");
            assert!(v.get("certificate").is_none());
            let message = v["message"].as_str().unwrap();
            assert!(
                message.contains("U+"),
                "{what}: the message names it: {message}"
            );
            assert!(
                message.is_ascii(),
                "{what}: the message never echoes it: {message}"
            );
        }
        // Dry runs (session preflight) are refused the same way.
        let (st, v) = sign(&s, "web", command, true).await;
        assert_eq!(
            (st, v["reason_code"].as_str()),
            (400, Some("command_invalid")),
            "{what}"
        );
    }
    // The opt-in host signs them, byte for byte in the force-command.
    let (st, v) = sign(&s, "lab", HIDDEN[0].0, false).await;
    assert_eq!(st, 200, "{v}");
    let rec = s
        .wait_audit(|r| r["serial"] == v["serial"] && r["outcome"] == "issued")
        .unwrap();
    let wrapped = rec["force_command"].as_str().unwrap();
    assert_eq!(force_command::unwrap(wrapped).unwrap().command, HIDDEN[0].0);
    assert!(wrapped.is_ascii() && !wrapped.contains('\u{1b}'));
    // Tab is an ordinary blank everywhere.
    let (st, v) = sign(&s, "web", "printf '%s\\n' 'a\tb'", false).await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test]
async fn printable_text_in_quotes_passes_a_policy_but_not_in_names() {
    let s = stack();
    for command in [
        "grep 'café' f",
        "printf '€'",
        "printf '%s\\n' \"日本語 — “ok” 😀\"",
        "git commit '--message=naïve'",
    ] {
        let (st, v) = sign(&s, "pol", command, true).await;
        assert_eq!(st, 200, "{command}: {v}");
        assert_eq!(v["decision"]["allowed"], true, "{command}: {v}");
        // And on a host without a policy.
        let (st, v) = sign(&s, "web", command, false).await;
        assert_eq!(st, 200, "{command}: {v}");
    }
    for command in ["'gr\u{0435}p' x f", "ls '--\u{0430}ll'", "printf'€'"] {
        let (st, v) = sign(&s, "pol", command, false).await;
        assert_eq!(st, 403, "{command}: {v}");
        assert_eq!(v["reason_code"], "parse_rejected", "{command}: {v}");
        let (_, v) = sign(&s, "pol", command, true).await;
        let rule = v["decision"]["matched_rule"].as_str().unwrap_or_default();
        assert!(rule.ends_with("shell-parse:non_ascii"), "{command}: {v}");
    }
}
