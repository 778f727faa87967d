//! `broker serve`: the mTLS one-shot API as a real process. A client
//! certificate from the project CA whose CN is in `rest_callers` is the
//! caller (and the signer's end user, with its configured groups); an
//! unlisted CN gets `403 caller_unknown` and nothing reaches the signer; a
//! certificate from another CA, or none, never reaches HTTP.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use infrabroker_common::client::MtlsClient;
use infrabroker_common::pki::{TlsCa, load_ca};
use infrabroker_testbed::{bin_path, free_port, spawn_logged, sshd_or_skip};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Bed, USER, host_for, sshd};

async fn no_cert_request(addr: &str, ca: &std::path::Path) -> std::io::Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in infrabroker_common::tls::load_certs(ca).unwrap() {
        roots.add(c).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(infrabroker_common::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await?;
    let body = br#"{"host":"web","command":"echo no-cert"}"#;
    let head = format!(
        "POST /v1/ssh_run HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await?;
    tls.write_all(body).await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn ssh_run_over_mtls_takes_the_caller_from_the_client_certificate() {
    if !sshd_or_skip() {
        return;
    }
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let area = tempfile::Builder::new()
        .prefix("ib-rest-")
        .tempdir()
        .unwrap();
    // The account's own directory (the host refuses one others can write).
    let uid = infrabroker_testbed::uid_of(USER).unwrap();
    std::os::unix::fs::chown(area.path(), Some(uid), None).unwrap();
    std::fs::set_permissions(
        area.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut web = host_for(&s, "web-principal");
    web["allow_file_transfer"] = json!(true);
    web["file_transfer_paths"] = json!({"allow": [format!("{}/*", area.path().display())]});
    let bed = Bed::start(dir, pki, json!({"web": web}));
    let ca = load_ca(&bed.pki.path("ca.crt"), &bed.pki.path("ca.key")).unwrap();
    let (cert, key) = ca
        .issue_server("broker", &["localhost", "127.0.0.1"])
        .unwrap()
        .write(bed.dir.path(), "broker-server")
        .unwrap();
    let port = free_port();
    let config = bed.broker_json(json!({
        "listen": format!("127.0.0.1:{port}"),
        "server_cert": cert,
        "server_key": key,
        "client_ca": bed.pki.path("ca.crt"),
        "rest_callers": {
            "broker-1": {"allowed_groups": ["web"]},
            "operator": {"allowed_groups": ["web"]},
            "stranger": {"allowed_groups": ["db"]},
        },
    }));
    let mut cmd = Command::new(bin_path("broker").unwrap());
    cmd.args(["serve", "--config"]).arg(&config);
    let broker = spawn_logged(&mut cmd, bed.dir.path().join("serve.log")).unwrap();
    assert!(
        broker.wait_for_log("listening on", Duration::from_secs(20)),
        "{}",
        broker.log()
    );
    let url = format!("https://127.0.0.1:{port}");
    let client = |stem: &str| {
        MtlsClient::new(
            &url,
            &bed.pki.path("ca.crt"),
            &bed.pki.path(&format!("{stem}.crt")),
            &bed.pki.path(&format!("{stem}.key")),
            Duration::from_secs(30),
        )
        .unwrap()
    };
    let post_to = |c: &MtlsClient, path: &'static str, body: Value| {
        let c = c.clone();
        async move {
            c.call_raw(Method::POST, path, Some(serde_json::to_vec(&body).unwrap()))
                .await
        }
    };
    let post = |c: &MtlsClient, body: Value| post_to(c, "/v1/ssh_run", body);

    // Files over REST take the tools' arguments and give their results.
    let file = area.path().join("rest.txt").display().to_string();
    let put = json!({"host": "web", "path": file, "content_base64": "AAEC/w=="});
    let r = post_to(&client("broker-1"), "/v1/put_file", put)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let get = json!({"host": "web", "path": file});
    let r = post_to(&client("broker-1"), "/v1/get_file", get)
        .await
        .unwrap();
    let got: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (got["content_base64"].as_str(), got["size"].as_u64()),
        (Some("AAEC/w=="), Some(4)),
        "{got}"
    );
    let bad = json!({"host": "web", "path": "/etc/passwd"});
    let r = post_to(&client("broker-1"), "/v1/get_file", bad)
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("path_forbidden"));

    // broker-1 and operator both run commands, each as itself: the signer
    // sees each CN as the end user, with its configured groups.
    for stem in ["broker-1", "operator"] {
        let r = post(
            &client(stem),
            json!({"host": "web", "command": format!("echo rest-{stem}; id -un")}),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let out: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(out["stdout"], format!("rest-{stem}\nibtest\n"));
        assert_eq!(out["exit_code"], 0);
        assert_eq!(out["stdout_truncated"], false);
        let serial = out["serial"].as_u64().unwrap();
        let rec = bed
            .broker_records()
            .into_iter()
            .find(|r| r["serial"] == serial && r["outcome"] == "executed")
            .unwrap();
        assert_eq!(rec["outcome"], "executed");
        assert_eq!(rec["caller"], stem);
        assert_eq!(rec["end_user"], stem);
        let issued = bed
            .signer_records()
            .into_iter()
            .find(|r| r["serial"] == serial)
            .unwrap();
        assert_eq!(issued["end_user"], stem, "{issued}");
        assert_eq!(issued["end_user_groups"], json!(["web"]), "{issued}");
    }
    // Listed, but its groups do not meet the host's: the RBAC intersects.
    let r = post(
        &client("stranger"),
        json!({"host": "web", "command": "echo stranger"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    // A valid certificate of the same CA whose CN is not listed: refused
    // before the signer is asked anything.
    let (icert, ikey) = ca
        .issue_client("intruder")
        .unwrap()
        .write(bed.dir.path(), "intruder")
        .unwrap();
    let intruder = MtlsClient::new(
        &url,
        &bed.pki.path("ca.crt"),
        &icert,
        &ikey,
        Duration::from_secs(10),
    )
    .unwrap();
    let signer_before = bed.signer_records().len();
    for body in [
        json!({"host": "web", "command": "echo intruder"}),
        json!({"host": "web", "command": "echo intruder", "dry_run": true}),
    ] {
        let r = post(&intruder, body).await.unwrap();
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(r.status, 403, "{v}");
        assert_eq!(v["reason_code"], "caller_unknown", "{v}");
    }
    assert_eq!(
        bed.signer_records().len(),
        signer_before,
        "an unlisted CN must not reach the signer"
    );
    let operator = client("operator");
    let r = post(
        &operator,
        json!({"host": "web", "command": "rm -rf /tmp/x", "dry_run": true}),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let out: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(out["dry_run"], true);
    assert_eq!(out["decision"]["allowed"], true, "{out}");
    for (body, status, code) in [
        (
            json!({"host": "nope", "command": "id"}),
            404,
            "host_unknown",
        ),
        (
            json!({"host": "web", "command": "id", "user": "root"}),
            400,
            "invalid_arguments",
        ),
        (
            json!({"host": "web", "command": ""}),
            400,
            "invalid_arguments",
        ),
    ] {
        let r = post(&operator, body.clone()).await.unwrap();
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            (r.status.as_u16(), v["reason_code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    let big = "x".repeat(2 * 1024 * 1024);
    // The server answers 413 without reading the whole body; depending on
    // timing the client sees that answer or a reset while still sending.
    // Either way the request is refused (and nothing runs, checked below).
    match post(&operator, json!({"host": "web", "command": big})).await {
        Ok(r) => assert_eq!(r.status, 413),
        Err(e) => assert!(
            matches!(
                e,
                infrabroker_common::client::ClientError::Unreachable { .. }
            ),
            "{e}"
        ),
    }
    let executed_before = bed
        .broker_records()
        .iter()
        .filter(|r| r["outcome"] == "executed")
        .count();

    // A certificate from another CA: the handshake fails, no HTTP at all.
    let foreign = TlsCa::generate("foreign CA").unwrap();
    let (fcert, fkey) = foreign
        .issue_client("broker-1")
        .unwrap()
        .write(bed.dir.path(), "foreign")
        .unwrap();
    let foreign_client = MtlsClient::new(
        &url,
        &bed.pki.path("ca.crt"),
        &fcert,
        &fkey,
        Duration::from_secs(10),
    )
    .unwrap();
    let r = post(
        &foreign_client,
        json!({"host": "web", "command": "echo foreign"}),
    )
    .await;
    assert!(
        r.is_err(),
        "a foreign-CA certificate must be refused, got {r:?}"
    );
    // No certificate at all.
    let r = no_cert_request(&format!("127.0.0.1:{port}"), &bed.pki.path("ca.crt")).await;
    assert!(
        match &r {
            Err(_) => true,
            Ok(text) => !text.contains("HTTP/"),
        },
        "no client cert: the server must not answer HTTP, got {r:?}"
    );
    assert!(
        broker.wait_for_log("TLS handshake refused", Duration::from_secs(5)),
        "{}",
        broker.log()
    );
    let executed_after = bed
        .broker_records()
        .iter()
        .filter(|r| r["outcome"] == "executed")
        .count();
    assert_eq!(
        executed_before, executed_after,
        "nothing ran for refused peers"
    );
    assert!(!s.log().contains("echo foreign") && !s.log().contains("no-cert"));
}
