//! The official MCP conformance suite (`@modelcontextprotocol/conformance`,
//! installed with `npm ci --prefix broker/tests/conformance`, which brings
//! its own Node 22) against the real `broker mcp-http`.
//!
//! The suite sends no credentials and has no server-side authorization
//! scenario, so it talks to a small proxy that adds a real access token from
//! the test OpenID provider to every request and passes everything else
//! (Host, Origin, bodies, SSE streams) through unchanged. The broker's own
//! token checks are tested in `http_mcp.rs`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use infrabroker_testbed::{require, sshd_or_skip};
use serde_json::json;

use crate::http_harness::{McpHttp, Oidc, mcp_url, oidc_or_skip, two_teams};

/// Scenarios that apply to a server whose only features are its tools.
/// Left out (and why) is listed in README.md "MCP conformance".
const SCENARIOS: &[&str] = &[
    "server-initialize",
    "ping",
    "tools-list",
    "server-sse-polling",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
];

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

fn suite_or_skip() -> bool {
    let dir = suite_dir();
    require(
        "the MCP conformance suite (npm ci --prefix broker/tests/conformance)",
        dir.join("node_modules/.bin/conformance").is_file()
            && dir.join("node_modules/node/bin/node").is_file(),
    )
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Forwards every request to `upstream` with `Authorization: Bearer token`.
async fn proxy(upstream: SocketAddr, token: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (client, token) = (client.clone(), token.clone());
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                forward(client.clone(), upstream, token.clone(), req)
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: SocketAddr,
    token: String,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("http://{upstream}{path}").parse().unwrap();
    parts.headers.insert(
        hyper::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    match client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => Ok(resp.map(BodyExt::boxed)),
        Err(e) => {
            let text = http_body_util::Full::new(Bytes::from(format!("proxy: {e}")));
            let mut resp = Response::new(text.map_err(|never| match never {}).boxed());
            *resp.status_mut() = hyper::StatusCode::BAD_GATEWAY;
            Ok(resp)
        }
    }
}

/// Runs one scenario; returns whether it passed and what the suite printed.
fn scenario(url: &str, name: &str, out: &Path) -> (bool, String) {
    let dir = suite_dir();
    let node_bin = dir.join("node_modules/node/bin");
    let path = format!(
        "{}:{}",
        node_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new(dir.join("node_modules/.bin/conformance"))
        .args(["server", "--url", url, "--scenario", name, "--output-dir"])
        .arg(out)
        .env("PATH", path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn the_official_conformance_suite_passes_every_applicable_scenario() {
    if !sshd_or_skip() || !oidc_or_skip() || !suite_or_skip() {
        return;
    }
    let (bed, _a, _b) = two_teams();
    let (port, url) = mcp_url();
    let oidc = Oidc::start(bed.dir.path(), &url);
    let mcp = McpHttp::start(&bed, &oidc, port, json!({}), json!({}));
    let token = oidc.token("alice", &mcp.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream: SocketAddr = mcp.base.trim_start_matches("http://").parse().unwrap();
    let front = rt.block_on(proxy(upstream, token));
    let front_url = format!("http://{front}/mcp");
    let out = bed.dir.path().join("conformance");
    let mut failed = Vec::new();
    for name in SCENARIOS {
        let (ok, text) = scenario(&front_url, name, &out);
        eprintln!(
            "=== {name}: {}\n{text}",
            if ok { "passed" } else { "FAILED" }
        );
        if !ok {
            failed.push(*name);
        }
    }
    assert!(
        failed.is_empty(),
        "failed scenarios: {failed:?} (output above)"
    );
}
