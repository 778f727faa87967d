//! `broker mcp-http` end to end: a real OpenID provider issues the tokens,
//! the Python MCP SDK (another ecosystem) is the client, the signer and
//! sshd are real. Per-user RBAC, session binding, and every kind of bad
//! token refused with 401 before anything runs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use infrabroker_testbed::sshd_or_skip;
use serde_json::{Value, json};

use crate::http_harness::{
    McpHttp, Oidc, call_body, initialize_body, mcp_post, mcp_post_to, mcp_url, oidc_or_skip,
    python_client, python_mcp_or_skip, request, two_teams,
};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Opens an MCP session with `token`; returns its id.
fn open_session(mcp: &McpHttp, token: &str) -> String {
    let init = mcp_post(mcp, Some(token), None, &initialize_body());
    assert_eq!(init.status, 200, "initialize: {}", init.text());
    let id = init.header("mcp-session-id").unwrap().to_owned();
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let ack = mcp_post(mcp, Some(token), Some(&id), &note);
    assert_eq!(ack.status, 202, "initialized: {}", ack.text());
    id
}

fn hosts_listed(answer: &crate::http_harness::Answer) -> Vec<String> {
    let rpc = answer.rpc();
    rpc["result"]["structuredContent"]["servers"]
        .as_array()
        .unwrap_or_else(|| panic!("no server list in {rpc}"))
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn python_sdk_clients_get_per_user_rbac_and_sessions_stay_with_their_user() {
    if !sshd_or_skip() || !oidc_or_skip() || !python_mcp_or_skip() {
        return;
    }
    let (bed, sshd_a, sshd_b) = two_teams();
    let (port, url) = mcp_url();
    let oidc = Oidc::start(bed.dir.path(), &url);
    let mcp = McpHttp::start(&bed, &oidc, port, json!({}), json!({}));

    // The protected-resource metadata points at the provider.
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let prm = request(&mcp.base, "GET", path, &[], b"");
        assert_eq!(prm.status, 200, "{path}");
        let doc: Value = serde_json::from_slice(&prm.body).unwrap();
        assert_eq!(doc["resource"], url.as_str());
        assert_eq!(doc["authorization_servers"], json!([oidc.issuer]));
    }

    // alice (team-a, RS256 tokens) sees and reaches host-a only.
    let alice = python_client(
        &mcp,
        &oidc,
        "alice",
        &[
            "--expect-hosts",
            "host-a",
            "--run",
            "host-a",
            "echo from-alice; id -un",
            "from-alice\\nibtest\\n",
            "--refused",
            "host-b",
        ],
    );
    // bob (team-b, ES256 tokens) the other way round.
    let bob = python_client(
        &mcp,
        &oidc,
        "bob",
        &[
            "--expect-hosts",
            "host-b",
            "--run",
            "host-b",
            "echo from-bob",
            "from-bob\\n",
            "--refused",
            "host-a",
        ],
    );
    // carol (no group, EdDSA tokens) sees and reaches nothing.
    python_client(
        &mcp,
        &oidc,
        "carol",
        &[
            "--expect-hosts",
            "",
            "--refused",
            "host-a",
            "--refused",
            "host-b",
        ],
    );

    // Each execution was made for its end user, on every hop's record.
    for (who, summary, sshd) in [("alice", &alice, &sshd_a), ("bob", &bob, &sshd_b)] {
        let serial = summary["serials"][0].as_u64().unwrap();
        let executed = bed
            .broker_records()
            .into_iter()
            .find(|r| r["serial"] == serial && r["outcome"] == "executed")
            .unwrap();
        assert_eq!(executed["outcome"], "executed");
        assert_eq!(executed["end_user"], who);
        let issued = bed
            .signer_records()
            .into_iter()
            .find(|r| r["serial"] == serial)
            .unwrap();
        assert_eq!(issued["outcome"], "issued");
        // sshd logs the key id, which names the end user.
        assert!(
            sshd.wait_for_log(&format!("user={who} "), Duration::from_secs(5)),
            "{}",
            sshd.log()
        );
    }
    // Only alice's and bob's commands ran; carol's refusals issued nothing.
    let executed: Vec<Value> = bed
        .broker_records()
        .into_iter()
        .filter(|r| r["outcome"] == "executed")
        .collect();
    assert_eq!(executed.len(), 2, "{executed:?}");
    assert!(
        !bed.signer_records()
            .iter()
            .any(|r| r["outcome"] == "issued" && r.to_string().contains("carol"))
    );
    // No bearer token went past the broker (JWTs start with "eyJ").
    let signer_side = std::fs::read_to_string(bed.dir.path().join("signer-audit.log")).unwrap()
        + &bed.signer.log();
    assert!(!signer_side.contains("eyJ"), "a token reached the signer");

    // Session binding, with raw requests and real tokens.
    let alice_token = oidc.token("alice", &url);
    let bob_token = oidc.token("bob", &url);
    let session = open_session(&mcp, &alice_token);
    let list = call_body(2, "ssh_list_servers", json!({}));
    let own = mcp_post(&mcp, Some(&alice_token), Some(&session), &list);
    assert_eq!(own.status, 200, "{}", own.text());
    assert_eq!(hosts_listed(&own), ["host-a"]);
    let stolen = mcp_post(&mcp, Some(&bob_token), Some(&session), &list);
    assert_eq!(stolen.status, 403, "{}", stolen.text());
    assert!(stolen.text().contains("another user"), "{}", stolen.text());
    let run = call_body(
        3,
        "ssh_execute",
        json!({"host": "host-a", "command": "echo hijack"}),
    );
    let stolen = mcp_post(&mcp, Some(&bob_token), Some(&session), &run);
    assert_eq!(stolen.status, 403, "{}", stolen.text());
    let deleted = request(
        &mcp.base,
        "DELETE",
        "/mcp",
        &[
            ("authorization", &format!("Bearer {bob_token}")),
            ("mcp-session-id", &session),
        ],
        b"",
    );
    assert_eq!(deleted.status, 403, "bob cannot close alice's session");
    let anonymous = mcp_post(&mcp, None, Some(&session), &list);
    assert_eq!(anonymous.status, 401);
    // alice's session still works, and nothing ran for bob.
    let own = mcp_post(&mcp, Some(&alice_token), Some(&session), &list);
    assert_eq!(own.status, 200, "{}", own.text());
    assert!(
        !bed.broker_records()
            .iter()
            .any(|r| r["command"] == "echo hijack")
    );
}

#[test]
fn bad_tokens_get_401_with_a_challenge_and_nothing_runs() {
    if !sshd_or_skip() || !oidc_or_skip() {
        return;
    }
    let (bed, sshd_a, _sshd_b) = two_teams();
    let (port, url) = mcp_url();
    let oidc = Oidc::start(bed.dir.path(), &url);
    let mut mcp = McpHttp::start(
        &bed,
        &oidc,
        port,
        json!({"max_token_age_seconds": 120, "clock_skew_seconds": 5,
               "jwks_refresh_min_seconds": 2}),
        json!({}),
    );
    let metadata = format!(
        "resource_metadata=\"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp\""
    );

    let t = now();
    let good = json!({"iss": oidc.issuer, "aud": url, "sub": "alice", "groups": ["team-a"],
        "scope": "mcp", "iat": t, "exp": t + 300});
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let tokens = oidc.forge(&json!([
        {"name": "rs256", "mode": "RS256", "claims": good},
        {"name": "es256", "mode": "ES256", "claims": good},
        {"name": "eddsa", "mode": "EdDSA", "claims": good},
        {"name": "expired", "mode": "RS256", "claims": with(json!({"iat": t - 100, "exp": t - 60}))},
        {"name": "not yet valid", "mode": "ES256", "claims": with(json!({"nbf": t + 600}))},
        {"name": "wrong issuer", "mode": "RS256", "claims": with(json!({"iss": "http://127.0.0.1:1"}))},
        {"name": "wrong audience", "mode": "EdDSA",
            "claims": with(json!({"aud": format!("http://127.0.0.1:{port}/other")}))},
        {"name": "alg none", "mode": "none", "claims": good},
        {"name": "HS256 with the public key", "mode": "hs256-pubkey", "claims": good},
        {"name": "tampered signature", "mode": "tampered", "claims": good,
            "tamper": with(json!({"groups": ["team-a", "team-b"]}))},
        {"name": "ES256 naming the RSA key", "mode": "es256-rsa-kid", "claims": good},
        {"name": "missing groups claim", "mode": "RS256", "claims": with(json!({"groups": null}))},
        {"name": "older than max_token_age", "mode": "RS256",
            "claims": with(json!({"iat": t - 600}))},
        {"name": "typ JWT (not an access token)", "mode": "RS256", "claims": good, "typ": "JWT"},
        {"name": "no typ", "mode": "ES256", "claims": good, "typ": null},
        {"name": "ID token (nonce)", "mode": "RS256", "claims": with(json!({"nonce": "n-0S6_WzA2Mj"}))},
        {"name": "ID token (at_hash)", "mode": "EdDSA",
            "claims": with(json!({"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"}))},
        {"name": "ID token (typ ID)", "mode": "RS256", "claims": with(json!({"typ": "ID"}))},
        {"name": "unknown kid", "mode": "rogue", "claims": good},
        {"name": "unknown kid again", "mode": "rogue", "claims": good},
    ]));

    // Forged tokens of each allowed algorithm are accepted: the refusals
    // below are about the one thing each token gets wrong.
    let session = open_session(&mcp, &tokens["rs256"]);
    let run = call_body(
        2,
        "ssh_execute",
        json!({"host": "host-a", "command": "echo ran"}),
    );
    for alg in ["es256", "eddsa"] {
        let init = mcp_post(&mcp, Some(&tokens[alg]), None, &initialize_body());
        assert_eq!(init.status, 200, "{alg}: {}", init.text());
    }

    let mut cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("not a JWT", Some("not-a-jwt".to_owned())),
        (
            "real provider token without groups (dave)",
            Some(oidc.token("dave", &url)),
        ),
    ];
    for name in [
        "expired",
        "not yet valid",
        "wrong issuer",
        "wrong audience",
        "alg none",
        "HS256 with the public key",
        "tampered signature",
        "ES256 naming the RSA key",
        "missing groups claim",
        "older than max_token_age",
        "typ JWT (not an access token)",
        "no typ",
        "ID token (nonce)",
        "ID token (at_hash)",
        "ID token (typ ID)",
    ] {
        cases.push((name, Some(tokens[name].clone())));
    }
    for (name, token) in &cases {
        let r = mcp_post(&mcp, token.as_deref(), Some(&session), &run);
        assert_eq!(r.status, 401, "{name}: {}", r.text());
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer "), "{name}: {challenge}");
        assert!(challenge.contains(&metadata), "{name}: {challenge}");
        if token.is_some() {
            assert!(
                challenge.contains("error=\"invalid_token\""),
                "{name}: {challenge}"
            );
        } else {
            assert!(!challenge.contains("error="), "{name}: {challenge}");
        }
    }

    // An unknown kid makes the broker fetch the JWKS again (the rate limit
    // has passed), and the key is still unknown → 401. A second one right
    // after does not fetch again.
    std::thread::sleep(Duration::from_millis(2100));
    let before = oidc.jwks_fetches();
    let r = mcp_post(&mcp, Some(&tokens["unknown kid"]), Some(&session), &run);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("unknown signing key")
    );
    assert_eq!(
        oidc.jwks_fetches(),
        before + 1,
        "one refetch for the unknown kid"
    );
    let r = mcp_post(
        &mcp,
        Some(&tokens["unknown kid again"]),
        Some(&session),
        &run,
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        oidc.jwks_fetches(),
        before + 1,
        "refetches are rate-limited"
    );

    // Nothing was signed, nothing connected, nothing ran.
    assert!(
        !bed.broker_records()
            .iter()
            .any(|r| r["outcome"] == "executed"),
        "{:?}",
        bed.broker_records()
    );
    assert!(
        !bed.signer_records()
            .iter()
            .any(|r| r["outcome"] == "issued")
    );
    assert!(
        !sshd_a.log().contains("Accepted certificate"),
        "{}",
        sshd_a.log()
    );

    // The very same request with the valid token runs.
    let r = mcp_post(&mcp, Some(&tokens["rs256"]), Some(&session), &run);
    assert_eq!(r.status, 200, "{}", r.text());
    let rpc = r.rpc();
    assert_eq!(
        rpc["result"]["structuredContent"]["stdout"], "ran\n",
        "{rpc}"
    );
    assert_eq!(
        bed.broker_records()
            .iter()
            .filter(|r| r["outcome"] == "executed")
            .count(),
        1
    );

    // Graceful shutdown: a call in flight when SIGTERM arrives finishes.
    let slow = call_body(
        4,
        "ssh_execute",
        json!({"host": "host-a", "command": "sleep 1; echo drained"}),
    );
    let (base, token) = (mcp.base.clone(), tokens["rs256"].clone());
    let in_flight =
        std::thread::spawn(move || mcp_post_to(&base, Some(&token), Some(&session), &slow));
    std::thread::sleep(Duration::from_millis(400));
    let status = mcp.child.stop().unwrap();
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.rpc()["result"]["structuredContent"]["stdout"],
        "drained\n"
    );
    assert!(status.success(), "{status:?}\n{}", mcp.child.log());
}

/// A user's SSH sessions end with the user's last MCP session (closed by
/// the client) and with the token that proved the user (its `exp`), not
/// only when the idle reaper finds them.
#[test]
fn ssh_sessions_end_with_the_last_mcp_session_and_with_the_token() {
    if !sshd_or_skip() || !oidc_or_skip() {
        return;
    }
    let (bed, _sshd_a, _sshd_b) = two_teams();
    let (port, url) = mcp_url();
    let oidc = Oidc::start(bed.dir.path(), &url);
    let mcp = McpHttp::start(
        &bed,
        &oidc,
        port,
        json!({"clock_skew_seconds": -1}),
        json!({}),
    );
    let token = |ttl: u64| {
        let t = now();
        let claims = json!({"iss": oidc.issuer, "aud": url, "sub": "alice",
            "groups": ["team-a"], "scope": "mcp", "iat": t, "exp": t + ttl});
        oidc.forge(&json!([{"name": "t", "mode": "RS256", "claims": claims}]))["t"].clone()
    };
    let open_ssh = |token: &str, session: &str| {
        let open = call_body(
            9,
            "ssh_session_open",
            json!({"host": "host-a", "mode": "exec"}),
        );
        let r = mcp_post(&mcp, Some(token), Some(session), &open);
        let rpc = r.rpc();
        rpc["result"]["structuredContent"]["session_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{rpc}"))
            .to_owned()
    };
    let closed = |ssh: &str| {
        bed.broker_records()
            .iter()
            .any(|r| r["outcome"] == "session_close" && r["session_id"] == ssh)
    };
    let delete = |token: &str, session: &str| {
        let auth = format!("Bearer {token}");
        let r = request(
            &mcp.base,
            "DELETE",
            "/mcp",
            &[("authorization", &auth), ("mcp-session-id", session)],
            b"",
        );
        assert!(r.status < 300, "DELETE: {} {}", r.status, r.text());
    };

    // Two MCP sessions of alice; the SSH session outlives the first one
    // closed and ends with the last.
    let long = token(300);
    let first = open_session(&mcp, &long);
    let second = open_session(&mcp, &long);
    let ssh = open_ssh(&long, &first);
    delete(&long, &first);
    std::thread::sleep(Duration::from_secs(1));
    assert!(!closed(&ssh), "another MCP session of alice is still open");
    delete(&long, &second);
    assert!(
        infrabroker_testbed::wait_until(Duration::from_secs(10), || closed(&ssh)),
        "the SSH session outlived alice's last MCP session:\n{}",
        mcp.child.log()
    );

    // A token valid for a few seconds: when it expires unrenewed, the MCP
    // session and the SSH session opened under it end.
    let short = token(6);
    let session = open_session(&mcp, &short);
    let ssh = open_ssh(&short, &session);
    assert!(!closed(&ssh));
    assert!(
        infrabroker_testbed::wait_until(Duration::from_secs(30), || closed(&ssh)),
        "the SSH session outlived the token:\n{}",
        mcp.child.log()
    );
    assert!(mcp.child.log().contains("its token expired"));
}
