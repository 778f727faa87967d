//! Limits of `broker mcp-http` as a real process: body size, header and
//! body deadlines, and a clean stop on SIGTERM. Needs Node (the provider)
//! and the signer, not sshd.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::Bed;
use crate::http_harness::{McpHttp, Oidc, initialize_body, mcp_post, mcp_url, oidc_or_skip};

/// Reads until the server closes; how long that took.
fn time_to_close(tcp: &mut TcpStream) -> (Duration, String) {
    let started = Instant::now();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    (
        started.elapsed(),
        String::from_utf8_lossy(&out).into_owned(),
    )
}

#[test]
fn body_size_header_and_body_deadlines_and_sigterm() {
    if !oidc_or_skip() {
        return;
    }
    let (dir, pki) = Bed::pki();
    let bed = Bed::start(dir, pki, json!({}));
    let (port, url) = mcp_url();
    let oidc = Oidc::start(bed.dir.path(), &url);
    let mut mcp = McpHttp::start(
        &bed,
        &oidc,
        port,
        json!({}),
        json!({"http": {"max_body_bytes": 4096, "header_read_timeout_seconds": 1,
                        "body_read_timeout_seconds": 1, "shutdown_grace_seconds": 2}}),
    );
    let token = oidc.token("alice", &url);

    // A body over the cap: 413, whatever the JSON says.
    let mut big = initialize_body();
    big["params"]["clientInfo"]["name"] = json!("x".repeat(8192));
    let r = mcp_post(&mcp, Some(&token), None, &big);
    assert_eq!(r.status, 413, "{}", r.text());
    // A small one is served.
    let r = mcp_post(&mcp, Some(&token), None, &initialize_body());
    assert_eq!(r.status, 200, "{}", r.text());

    // Headers that never finish: the connection is closed.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .unwrap();
    let (took, _) = time_to_close(&mut slow);
    assert!(took < Duration::from_secs(5), "header deadline: {took:?}");

    // A body that never finishes: 408.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\naccept: application/json, text/event-stream\r\n\
         content-length: 100\r\n\r\n{{\"jsonrpc\""
    );
    slow.write_all(head.as_bytes()).unwrap();
    let (took, answer) = time_to_close(&mut slow);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < Duration::from_secs(5), "body deadline: {took:?}");

    // SIGTERM: a clean, prompt exit.
    let started = Instant::now();
    let status = mcp.child.stop().unwrap();
    assert!(status.success(), "{status:?}\n{}", mcp.child.log());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        mcp.child.log().contains("broker mcp-http stopped"),
        "{}",
        mcp.child.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_crowding_and_ping_only_connections_are_closed() {
    if !oidc_or_skip() {
        return;
    }
    let (dir, pki) = Bed::pki();
    let bed = Bed::start(dir, pki, json!({}));
    let (port, url) = mcp_url();
    let oidc = Oidc::start(bed.dir.path(), &url);
    let mcp = McpHttp::start(
        &bed,
        &oidc,
        port,
        json!({}),
        json!({"http": {"header_read_timeout_seconds": 3, "idle_timeout_seconds": 20,
                        "max_connections_per_ip": 2}}),
    );
    // Two silent connections are held until the first-request deadline;
    // a third from the same address is closed at once.
    let mut silent: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut third = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (took, _) = time_to_close(&mut third);
    assert!(took < Duration::from_secs(1), "per-address cap: {took:?}");
    for s in &mut silent {
        let (took, _) = time_to_close(s);
        assert!(
            took < Duration::from_secs(5),
            "first-request deadline: {took:?}"
        );
    }

    // HTTP/2 that only PINGs after one request is closed at the idle timeout.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(500))
            .keep_alive_while_idle(true)
            .handshake::<_, http_body_util::Empty<hyper::body::Bytes>>(
                hyper_util::rt::TokioIo::new(tcp),
            )
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(format!("{}/.well-known/oauth-protected-resource", mcp.base))
        .header("host", format!("127.0.0.1:{port}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let status = send.send_request(req).await.unwrap().status();
    assert!(status.is_success(), "{status}");
    let t0 = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(35), conn).await;
    assert!(ended.is_ok(), "PINGs kept the connection open");
    assert!(
        t0.elapsed() >= Duration::from_secs(15),
        "{:?}",
        t0.elapsed()
    );
}
