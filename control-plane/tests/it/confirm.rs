//! The `user_confirm` tier: the person at the MCP client confirms the exact
//! request in the conversation. Driven by the Python `mcp` SDK (both ways
//! of asking: `elicitation/create` on the handshake protocol, input
//! requests on 2026-07-28) and the TypeScript SDK, against the real
//! `broker mcp-stdio`, control plane, signer and sshd.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use infrabroker_testbed::{bin_path, require, sshd_or_skip};
use serde_json::{Value, json};

use crate::harness::{
    Bed, Cp, eventually, json_of, post_sign, python_mcp_or_skip, sign_body, summary_of,
};

/// The TypeScript SDK, installed by `make deps` (npm ci) beside the script.
fn ts_client() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp-ts/confirm_client.mjs")
}

fn ts_sdk_available() -> bool {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp-ts/node_modules/@modelcontextprotocol/sdk/package.json")
        .exists()
}

/// Control-plane settings: commands starting `echo confirm` are held in
/// the `user_confirm` tier, for `ttl` seconds.
fn confirm_tier(ttl: u64) -> Value {
    json!({"approval": {
        "timeout_seconds": ttl,
        "callers": ["operator"],
        "default_tier": "human",
        "tiers": [{"match": "^echo confirm", "tier": "user_confirm"}],
    }})
}

/// Runs one client to its end; its JSON summary.
async fn client(program: &str, script: &Path, config: &Path, args: &[&str]) -> Value {
    let out = tokio::process::Command::new(program)
        .arg(script)
        .arg("--broker-bin")
        .arg(bin_path("broker").unwrap())
        .arg("--config")
        .arg(config)
        .args(["--host", "web"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    summary_of(&format!("{program} {args:?}"), 90, out)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Each client starts its own broker, with its own audit log.
async fn python(bed: &Bed, cp: &Cp, protocol: &str, answer: &str, command: &str) -> Value {
    let config = bed.broker_json(cp, 60);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/confirm_client.py");
    let args = [
        "--protocol",
        protocol,
        "--answer",
        answer,
        "--command",
        command,
    ];
    client("python3", &script, &config, &args).await
}

async fn typescript(bed: &Bed, cp: &Cp, answer: &str, command: &str) -> Value {
    let config = bed.broker_json(cp, 60);
    let args = ["--answer", answer, "--command", command];
    client("node", &ts_client(), &config, &args).await
}

/// The user's decision as the control plane recorded it.
fn decision(cp: &Cp, command: &str) -> Option<Value> {
    cp.records().into_iter().find(|r| {
        r["command"] == command
            && (r["outcome"] == "approval-granted" || r["outcome"] == "approval-denied")
    })
}

/// What a user was shown, and that it was our form.
fn assert_asked(summary: &Value, command: &str) {
    let messages = summary["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{summary}");
    let m = messages[0].as_str().unwrap();
    assert!(m.contains(&format!("command: {command}")), "{m}");
    assert!(
        m.contains("on web?") && m.contains("tier: user_confirm"),
        "{m}"
    );
    let schema = &summary["schemas"][0];
    assert_eq!(
        schema["properties"]["confirm"]["type"], "boolean",
        "{schema}"
    );
}

/// Accepted: it ran, and the control plane recorded the user's grant.
fn assert_ran(cp: &Cp, summary: &Value, command: &str) {
    assert_eq!(summary["is_error"], false, "{summary}");
    let word = command.trim_start_matches("echo ");
    assert_eq!(
        summary["structured"]["stdout"],
        format!("{word}\n"),
        "{summary}"
    );
    let d = decision(cp, command).unwrap();
    assert_eq!(d["outcome"], "approval-granted", "{d}");
    assert_eq!(d["approved_via"], "user_confirm", "{d}");
    assert_eq!(
        d["approved_by"], "broker-1",
        "no end user: the broker is named"
    );
}

/// Refused: a tool error with `code` and `words`; nothing was issued.
fn assert_refused(bed: &Bed, summary: &Value, command: &str, code: &str, words: &str) {
    assert_eq!(summary["is_error"], true, "{summary}");
    let text = summary["text"].as_str().unwrap();
    assert!(text.contains(&format!("[reason_code: {code}]")), "{text}");
    assert!(text.contains(words), "{text}");
    let issued = bed
        .signer_records()
        .into_iter()
        .any(|r| r["command"] == command && r["outcome"] == "issued");
    assert!(!issued, "a certificate was issued for {command:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_confirms_in_the_conversation_by_elicitation_or_input_request() {
    if !sshd_or_skip()
        || !python_mcp_or_skip()
        || !require(
            "the TypeScript MCP SDK (npm ci in control-plane/tests/mcp-ts)",
            ts_sdk_available(),
        )
    {
        return;
    }
    let (bed, _sshd) = Bed::with_web_sshd(&["^echo confirm"]);
    let cp = bed.control_plane("cp-confirm", confirm_tier(60));

    // Both ways of asking, both answers, and the TypeScript SDK.
    let (legacy, modern, ts) = tokio::join!(
        python(&bed, &cp, "legacy", "accept", "echo confirm-legacy"),
        python(&bed, &cp, "2026-07-28", "accept", "echo confirm-modern"),
        typescript(&bed, &cp, "accept", "echo confirm-ts"),
    );
    // A retry must be the call that was asked about: other arguments with
    // the same requestState are refused, the faithful retry runs.
    let command = "echo confirm-tamper";
    let tamper = python(&bed, &cp, "2026-07-28", "tamper", command).await;
    assert_eq!(tamper["tampered_is_error"], true, "{tamper}");
    let text = tamper["tampered_text"].as_str().unwrap();
    assert!(text.contains("[reason_code: approval_expired]"), "{text}");
    assert_asked(&tamper, command);
    assert_ran(&cp, &tamper, command);
    let tampered = bed
        .signer_records()
        .into_iter()
        .any(|r| r["command"] == "echo confirm-tamper-tampered");
    assert!(!tampered, "the tampered command reached the signer");

    assert_eq!(legacy["protocol_version"], "2025-11-25", "{legacy}");
    assert_eq!(modern["protocol_version"], "2026-07-28", "{modern}");
    for (summary, command) in [
        (&legacy, "echo confirm-legacy"),
        (&modern, "echo confirm-modern"),
        (&ts, "echo confirm-ts"),
    ] {
        assert_asked(summary, command);
        assert_ran(&cp, summary, command);
    }

    let (declined, cancelled, modern_declined, ts_declined) = tokio::join!(
        python(&bed, &cp, "legacy", "decline", "echo confirm-no"),
        python(&bed, &cp, "legacy", "cancel", "echo confirm-cancel"),
        python(&bed, &cp, "2026-07-28", "decline", "echo confirm-no-modern"),
        typescript(&bed, &cp, "decline", "echo confirm-no-ts"),
    );
    for (summary, command) in [
        (&declined, "echo confirm-no"),
        (&modern_declined, "echo confirm-no-modern"),
        (&ts_declined, "echo confirm-no-ts"),
    ] {
        assert_asked(summary, command);
        assert_refused(
            &bed,
            summary,
            command,
            "approval_denied",
            "declined by the user",
        );
        let d = decision(&cp, command).unwrap();
        assert_eq!(
            (d["outcome"].as_str(), d["approved_via"].as_str()),
            (Some("approval-denied"), Some("user_confirm")),
            "{d}"
        );
    }
    assert_refused(
        &bed,
        &cancelled,
        "echo confirm-cancel",
        "approval_denied",
        "cancelled by the user",
    );

    // A client that cannot be asked gets the ordinary held flow: an
    // operator approves it.
    let command = "echo confirm-operator";
    let waiting = python(&bed, &cp, "legacy", "none", command);
    let approving = async {
        let held = cp.pending(command, &[]).await;
        assert_eq!(held["tier"], "user_confirm", "{held}");
        let id = held["id"].as_str().unwrap().to_owned();
        let (ok, _, err) = cp.ctl("operator", &["allow", &id]).await;
        assert!(ok, "{err}");
    };
    let (summary, ()) = tokio::join!(waiting, approving);
    assert_eq!(summary["messages"], json!([]), "{summary}");
    assert_eq!(
        summary["structured"]["stdout"], "confirm-operator\n",
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_confirmation_expires_and_nothing_runs() {
    if !sshd_or_skip() || !python_mcp_or_skip() {
        return;
    }
    let (bed, _sshd) = Bed::with_web_sshd(&["^echo confirm"]);
    let cp = bed.control_plane("cp-confirm-fast", confirm_tier(3));

    // The user answers only after the question expired (3 s): elicitation
    // gave up; a retry with the late answer finds nothing parked.
    let (legacy, modern) = tokio::join!(
        python(&bed, &cp, "legacy", "late", "echo confirm-late"),
        python(&bed, &cp, "2026-07-28", "late", "echo confirm-late-modern"),
    );
    assert_refused(
        &bed,
        &legacy,
        "echo confirm-late",
        "approval_expired",
        "approval",
    );
    assert_refused(
        &bed,
        &modern,
        "echo confirm-late-modern",
        "approval_expired",
        "expired",
    );
    for command in ["echo confirm-late", "echo confirm-late-modern"] {
        assert!(decision(&cp, command).is_none(), "nobody decided {command}");
        let expired = eventually(10, || {
            cp.outcomes("approval-timeout")
                .iter()
                .any(|r| r["command"] == command)
        })
        .await;
        assert!(expired, "no approval-timeout record for {command}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_asking_broker_can_confirm_and_only_the_user_confirm_tier() {
    let bed = Bed::start_with(
        |pki| json!({"web": crate::harness::paper_host(pki, &["^echo confirm", "^systemctl"])}),
    );
    let mut settings = confirm_tier(60);
    settings["sign_callers"] = json!(["broker-1", "stranger"]);
    let cp = bed.control_plane("cp-confirm-rules", settings);
    let broker = bed.client(&cp.url, "broker-1");
    let stranger = bed.client(&cp.url, "stranger");
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOfFcyT5Lh8Ux5v6e3OD5J7sS6HuhVAp8FbvJXh9Iusf";
    let confirm = |client: &infrabroker_common::client::MtlsClient, id: &str, body: Value| {
        let client = client.clone();
        let path = format!("/v1/sign/confirm/{id}");
        async move {
            let raw = client
                .call_raw(
                    hyper::Method::POST,
                    &path,
                    Some(serde_json::to_vec(&body).unwrap()),
                )
                .await
                .unwrap();
            (raw.status.as_u16(), json_of(&raw))
        }
    };

    let held = post_sign(&broker, &sign_body("web", "echo confirm-rules", key)).await;
    assert_eq!(held.status.as_u16(), 202);
    let held = json_of(&held);
    assert_eq!(held["tier"], "user_confirm", "{held}");
    assert_eq!(held["expires_in_seconds"], 60, "{held}");
    let id = held["approval_id"].as_str().unwrap();

    // Another broker learns nothing and decides nothing.
    let (st, v) = confirm(&stranger, id, json!({"answer": "accept"})).await;
    assert_eq!(
        (st, v["reason_code"].as_str()),
        (404, Some("approval_unknown")),
        "{v}"
    );
    // A malformed answer is refused.
    let (st, v) = confirm(&broker, id, json!({"answer": "yes"})).await;
    assert_eq!(
        (st, v["reason_code"].as_str()),
        (400, Some("malformed_request")),
        "{v}"
    );
    let (ok, out, err) = cp.ctl("operator", &["show", id, "--json"]).await;
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["status"],
        "pending"
    );

    // The asking broker relays the answer once.
    let (st, v) = confirm(&broker, id, json!({"answer": "accept"})).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("approved")), "{v}");
    let (st, v) = confirm(&broker, id, json!({"answer": "decline"})).await;
    assert_eq!(
        (st, v["reason_code"].as_str()),
        (409, Some("approval_decided")),
        "{v}"
    );

    // A human-tier request cannot be confirmed by the user.
    let human = post_sign(&broker, &sign_body("web", "systemctl restart nginx", key)).await;
    let human = json_of(&human);
    assert_eq!(human["tier"], "human", "{human}");
    let id = human["approval_id"].as_str().unwrap();
    let (st, v) = confirm(&broker, id, json!({"answer": "accept"})).await;
    assert_eq!(
        (st, v["reason_code"].as_str()),
        (403, Some("tier_forbidden")),
        "{v}"
    );
    let refused = cp.outcomes("approval-refused");
    assert!(
        refused
            .iter()
            .any(|r| r["approval_id"] == id && r["reason_code"] == "tier_forbidden"),
        "{refused:?}"
    );
}
