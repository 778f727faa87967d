//! `broker-ctl krl fetch` against a real mTLS listener (the signer's accept
//! loop) that answers what a broken or hostile signer might: the installed
//! file changes only for a usable, newer KRL, and `ssh-keygen` reads it.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use infrabroker_common::krl::{CaRevocations, Krl};
use infrabroker_common::tls::{ServeOptions, server_config};
use infrabroker_testbed::stack::Pki;

use super::{ctl, text};

/// One scripted answer: status, body, ETag.
type Answer = (StatusCode, Vec<u8>, Option<String>);

#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    /// `If-None-Match` of each request.
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

async fn krl(
    axum::extract::State(s): axum::extract::State<Script>,
    headers: HeaderMap,
) -> Response {
    let tag = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    s.seen.lock().unwrap().push(tag);
    let (status, body, etag) = s.answers.lock().unwrap().pop_front().unwrap();
    let mut resp = (status, body).into_response();
    if let Some(e) = etag {
        resp.headers_mut().insert(header::ETAG, e.parse().unwrap());
    }
    resp
}

fn serve(pki: &Pki, script: Script, rt: &tokio::runtime::Runtime) -> String {
    let tls = server_config(
        &pki.path("signer.crt"),
        &pki.path("signer.key"),
        &pki.path("ca.crt"),
    )
    .unwrap();
    let app = axum::Router::new()
        .route("/v1/krl", axum::routing::get(krl))
        .with_state(script);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(infrabroker_common::tls::serve_mtls(
        listener,
        Arc::new(tls),
        app,
        ServeOptions::default(),
        Arc::new(|_, _| {}),
        std::future::pending(),
    ));
    format!("https://{addr}")
}

fn krl_with(version: u64, serials: &[u64]) -> Krl {
    let ca = ssh_key::PrivateKey::random(&mut rand::rng(), ssh_key::Algorithm::Ed25519).unwrap();
    let mut k = Krl {
        version,
        generated: 1_700_000_000,
        comment: "test".into(),
        ..Krl::default()
    };
    k.cas.insert(
        ca.public_key().to_bytes().unwrap(),
        CaRevocations::from_serials(serials.iter().copied()),
    );
    k
}

fn fetch(pki: &Pki, url: &str, out: &Path) -> std::process::Output {
    let p = |n: &str| pki.path(n).to_str().unwrap().to_owned();
    ctl(&[
        "krl",
        "fetch",
        "--url",
        url,
        "--ca",
        &p("ca.crt"),
        "--cert",
        &p("operator.crt"),
        "--key",
        &p("operator.key"),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ])
}

#[test]
fn krl_fetch_installs_only_usable_newer_lists_and_keeps_the_last_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let script = Script::default();
    let url = serve(&pki, script.clone(), &rt);
    let out = dir.path().join("revoked.krl");

    let good = krl_with(7, &[5, 6, 7, 1000]).encode_sealed();
    let newer = krl_with(8, &[5, 6, 7, 1000, 1001]).encode_sealed();
    let older = krl_with(3, &[]).encode_sealed();
    let mut cut = newer.clone();
    cut.truncate(cut.len() - 9);
    let unsealed = krl_with(9, &[1]).encode();
    let ok = |b: &[u8]| (StatusCode::OK, b.to_vec(), Some("\"x\"".to_owned()));
    script.answers.lock().unwrap().extend([
        ok(&good),
        ok(b"<html>proxy error</html>"),
        ok(b""),
        (StatusCode::INTERNAL_SERVER_ERROR, b"{}".to_vec(), None),
        ok(&cut),
        ok(&unsealed),
        ok(&older),
        (StatusCode::NOT_MODIFIED, Vec::new(), None),
        ok(&newer),
    ]);

    let o = fetch(&pki, &url, &out);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("\"result\":\"replaced\""), "{}", text(&o));
    assert_eq!(std::fs::read(&out).unwrap(), good);
    // sshd's own tool reads what was installed.
    let listed = std::process::Command::new("ssh-keygen")
        .args(["-Q", "-l", "-f"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains("1000"));

    // Garbage, empty, an error, a cut-short list, an unsealed one and an
    // older one: each refused, the file byte-identical.
    for (what, code) in [
        ("garbage", 1),
        ("empty", 1),
        ("error", 69),
        ("cut short", 1),
        ("unsealed", 1),
        ("older", 1),
    ] {
        let o = fetch(&pki, &url, &out);
        assert_eq!(o.status.code(), Some(code), "{what}: {}", text(&o));
        assert!(text(&o).contains("kept"), "{what}: {}", text(&o));
        assert_eq!(
            std::fs::read(&out).unwrap(),
            good,
            "{what} changed the file"
        );
    }
    // Unchanged (304), then a newer list replaces it.
    let o = fetch(&pki, &url, &out);
    assert!(
        text(&o).contains("\"result\":\"unchanged\""),
        "{}",
        text(&o)
    );
    let o = fetch(&pki, &url, &out);
    assert!(text(&o).contains("\"version\":8"), "{}", text(&o));
    assert_eq!(std::fs::read(&out).unwrap(), newer);
    // Every request after the first named the installed version.
    let seen = script.seen.lock().unwrap().clone();
    assert_eq!(seen[0], None);
    assert!(
        seen[1..].iter().all(|t| t.as_deref() == Some("\"7\"")),
        "{seen:?}"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&out).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644);
}
