//! Bad input gets a stable reason code, no certificate, and a `denied`
//! audit record (SPEC §3, issue: "bad input → clear error").

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Stack, keypair, oneshot};

fn stack() -> Stack {
    Stack::start(|cfg, _| {
        cfg["hosts"]["web"]["allow_sudo"] = json!(true);
        cfg["hosts"]["web"]["allowed_sudo_users"] = json!(["deploy"]);
        cfg["hosts"]["other"] = json!({
            "addr": "127.0.0.1:3", "user": "x", "host_key": crate::harness::DUMMY_HOST_KEY,
            "principal": "p", "groups": ["db"],
        });
    })
}

/// Asserts the refusal and that it was audited with the same code.
async fn expect_refusal(s: &Stack, rule: &str, stem: &str, body: Vec<u8>, status: u16, code: &str) {
    let before = s.audit_records().len();
    let raw = s.sign_raw(stem, body).await;
    let v: Value = serde_json::from_slice(&raw.body).unwrap_or(Value::Null);
    assert_eq!(raw.status.as_u16(), status, "{rule}: status; body {v}");
    assert_eq!(v["reason_code"], code, "{rule}: reason code; body {v}");
    assert!(v.get("certificate").is_none(), "{rule}: no certificate");
    assert!(
        !v["message"].as_str().unwrap_or("").is_empty(),
        "{rule}: a message"
    );
    let rec = s.wait_audit(|r| r["seq"].as_u64() > Some(before as u64) && r["reason_code"] == code);
    let rec = rec.unwrap_or_else(|| panic!("{rule}: no audit record with {code}"));
    assert_eq!(rec["outcome"], "denied", "{rule}");
    assert!(rec.get("serial").is_none(), "{rule}: nothing issued");
}

#[tokio::test]
async fn bad_requests_are_refused_with_reason_codes_and_audited() {
    let s = stack();
    let key = keypair();
    let ok = oneshot("web", "id", &key);
    let with = |patch: Value| {
        let mut r = ok.clone();
        for (k, v) in patch.as_object().unwrap() {
            r[k] = v.clone();
        }
        serde_json::to_vec(&r).unwrap()
    };
    let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDGu8ou5PzGrEr4PW2Yf8Fk+KIXTGv8C3z2xNnKN1n5xBqHfgjGzNmh2I5Rxv2lSVxFkRuVmS8gmPvI5nGdjDqxlWJ3OmG8YTn3F3h9m6Lg4b+8Qf0Y3Gkr4h8W8mwM6kV6YdXe2cJbbq2gH0sCkXhFv0c1B3FmbJ8b3O5kV0s7rQ== x";
    let cert_line = {
        // A certificate is not a public key, even one we issued.
        let (st, v) = s.sign("broker-1", &ok).await;
        assert_eq!(st, 200, "{v}");
        v["certificate"].as_str().unwrap().to_owned()
    };
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            "broker-1",
            b"{not json".to_vec(),
            400,
            "malformed_request",
        ),
        (
            "unknown field",
            "broker-1",
            with(json!({"bogus": 1})),
            400,
            "malformed_request",
        ),
        (
            "wrong type",
            "broker-1",
            with(json!({"sudo": "yes"})),
            400,
            "malformed_request",
        ),
        (
            "body over the limit",
            "broker-1",
            with(json!({"command": "x".repeat(70_000)})),
            413,
            "body_too_large",
        ),
        (
            "garbage pubkey",
            "broker-1",
            with(json!({"pubkey": "hello"})),
            400,
            "pubkey_invalid",
        ),
        (
            "RSA pubkey",
            "broker-1",
            with(json!({"pubkey": rsa})),
            400,
            "pubkey_invalid",
        ),
        (
            "certificate as pubkey",
            "broker-1",
            with(json!({"pubkey": cert_line})),
            400,
            "pubkey_invalid",
        ),
        (
            "newline in command",
            "broker-1",
            with(json!({"command": "id\nrm -rf /"})),
            400,
            "command_invalid",
        ),
        (
            "carriage return in command",
            "broker-1",
            with(json!({"command": "id\rrm"})),
            400,
            "command_invalid",
        ),
        (
            "NUL in command",
            "broker-1",
            with(json!({"command": "id\u{0}rm"})),
            400,
            "command_invalid",
        ),
        (
            "empty one-shot command",
            "broker-1",
            with(json!({"command": ""})),
            400,
            "command_invalid",
        ),
        (
            "sudo_user with a flag",
            "broker-1",
            with(json!({"sudo": true, "sudo_user": "-s"})),
            400,
            "sudo_user_invalid",
        ),
        (
            "sudo_user with a space",
            "broker-1",
            with(json!({"sudo": true, "sudo_user": "a b"})),
            400,
            "sudo_user_invalid",
        ),
        (
            "sudo_user not allowlisted",
            "broker-1",
            with(json!({"sudo": true, "sudo_user": "postgres"})),
            403,
            "sudo_user_not_allowed",
        ),
        (
            "root not in a non-empty allowlist",
            "broker-1",
            with(json!({"sudo": true})),
            403,
            "sudo_user_not_allowed",
        ),
        (
            "sudo_user without sudo",
            "broker-1",
            with(json!({"sudo_user": "deploy"})),
            400,
            "invalid_request",
        ),
        (
            "unknown host",
            "broker-1",
            with(json!({"host": "nope"})),
            404,
            "host_unknown",
        ),
        (
            "host outside the caller's groups",
            "broker-1",
            with(json!({"host": "other"})),
            403,
            "host_forbidden",
        ),
        (
            "end user outside the host's groups",
            "broker-1",
            with(json!({"end_user": "alice", "end_user_groups": ["db"]})),
            403,
            "end_user_forbidden",
        ),
        (
            "end user in no group",
            "broker-1",
            with(json!({"end_user": "alice", "end_user_groups": []})),
            403,
            "end_user_forbidden",
        ),
        (
            "end user with a space",
            "broker-1",
            with(json!({"end_user": "alice smith"})),
            400,
            "end_user_invalid",
        ),
        (
            "caller CN not in callers",
            "stranger",
            with(json!({})),
            403,
            "caller_unknown",
        ),
        (
            "bastion role on a non-bastion host",
            "broker-1",
            with(json!({"role": "bastion", "command": ""})),
            403,
            "bastion_not_allowed",
        ),
        (
            "pty on a host without allow_pty",
            "broker-1",
            with(json!({"pty": true})),
            403,
            "pty_not_allowed",
        ),
        (
            "approved from a non-forwarder",
            "broker-1",
            with(json!({"approved": true})),
            403,
            "forwarder_untrusted",
        ),
        (
            "on_behalf_of from a non-forwarder",
            "broker-1",
            with(json!({"on_behalf_of": "broker-1"})),
            403,
            "forwarder_untrusted",
        ),
        (
            "session_mode on a one-shot",
            "broker-1",
            with(json!({"session_mode": "shell"})),
            400,
            "invalid_request",
        ),
    ];
    for (rule, stem, body, status, code) in cases {
        expect_refusal(&s, rule, stem, body, status, code).await;
    }
    // The sudo allowlist admits its own entry.
    let (st, v) = s
        .sign(
            "broker-1",
            &serde_json::from_slice(&with(json!({"sudo": true, "sudo_user": "deploy"}))).unwrap(),
        )
        .await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test]
async fn ttl_beyond_the_maximum_is_clamped() {
    let s = Stack::start(|cfg, _| {
        cfg["max_ttl_seconds"] = json!(200);
        cfg["hosts"]["web"]["max_ttl_seconds"] = json!(60);
        cfg["hosts"]["jumpbox"]["max_ttl_seconds"] = json!(900);
    });
    let key = keypair();
    for (host, role, asked, expect) in [
        ("web", "target", 100_000u64, 60u64),
        ("web", "target", 10, 10),
        ("web", "target", 0, 60),
        ("jumpbox", "bastion", 5_000, 200),
    ] {
        let mut req = oneshot(host, "id", &key);
        req["role"] = json!(role);
        req["ttl_seconds"] = json!(asked);
        if role == "bastion" {
            req["command"] = json!("");
        }
        let (st, v) = s.sign("broker-1", &req).await;
        assert_eq!(st, 200, "{v}");
        let cert = ssh_key::Certificate::from_openssh(v["certificate"].as_str().unwrap()).unwrap();
        assert_eq!(
            cert.valid_before() - cert.valid_after(),
            expect + 30,
            "{host} asked {asked}"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            cert.valid_after() + 60 >= now,
            "validity starts at most 60 s in the past"
        );
        assert_eq!(v["valid_before"].as_u64(), Some(cert.valid_before()));
    }
}

/// Connections without an acceptable client certificate never reach HTTP;
/// the refusal is audited as `tls_rejected`.
#[tokio::test]
async fn tls_refuses_missing_foreign_and_expired_client_certs() {
    use infrabroker_common::pki::{TlsCa, load_ca};
    let s = Stack::start(|_, _| {});
    let dir = s.dir.path();

    let other = TlsCa::generate("another CA").unwrap();
    let (cert, key) = other
        .issue_client("broker-1")
        .unwrap()
        .write(dir, "foreign")
        .unwrap();
    let foreign = s.client_with(&cert, &key);

    let ca = load_ca(&s.pki.path("ca.crt"), &s.pki.path("ca.key")).unwrap();
    let past = time::OffsetDateTime::now_utc() - time::Duration::days(10);
    let (cert, key) = ca
        .issue_client_with_validity("broker-1", past, past + time::Duration::days(1))
        .unwrap()
        .write(dir, "expired")
        .unwrap();
    let expired = s.client_with(&cert, &key);

    let body = serde_json::to_vec(&oneshot("web", "id", &keypair())).unwrap();
    for (what, client) in [("foreign CA", foreign), ("expired", expired)] {
        let r = client
            .call_raw(hyper::Method::POST, "/v1/sign", Some(body.clone()))
            .await;
        assert!(
            r.is_err(),
            "{what}: a client cert from {what} must be refused, got {r:?}"
        );
    }
    // No certificate at all.
    let r = no_cert_request(&s).await;
    assert!(
        match &r {
            Err(_) => true,
            Ok(text) => !text.contains("HTTP/"),
        },
        "no client cert: the server must not answer HTTP, got {r:?}"
    );

    let rejected = || {
        s.audit_records()
            .into_iter()
            .filter(|r| r["outcome"] == "tls_rejected")
            .count()
    };
    assert!(
        infrabroker_testbed::wait_until(Duration::from_secs(5), || rejected() >= 3),
        "three tls_rejected records, got {}",
        rejected()
    );
    assert!(s.audit_records().iter().all(|r| r["outcome"] != "issued"));
}

async fn no_cert_request(s: &Stack) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        for c in infrabroker_common::tls::load_certs(&s.pki.path("ca.crt")).unwrap() {
            r.add(c).unwrap();
        }
        r
    };
    let cfg = rustls::ClientConfig::builder_with_provider(infrabroker_common::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let addr = s.signer.url.trim_start_matches("https://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, tcp)
        .await?;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
