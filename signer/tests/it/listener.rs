//! The mTLS accept loop every service shares (`common::tls::serve_mtls`)
//! under hostile peers: a connection that never sends a request, one idle
//! after its request, and an HTTP/2 connection that only PINGs are closed
//! within the configured time; one CN's idle connections leave room for
//! another CN.

use std::sync::Arc;
use std::time::{Duration, Instant};

use infrabroker_common::tls::{self, ServeOptions};
use infrabroker_testbed::stack::Pki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Served {
    _dir: tempfile::TempDir,
    pki: Pki,
    addr: std::net::SocketAddr,
}

async fn serve(opts: ServeOptions) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path()).unwrap();
    let cfg = tls::server_config(
        &pki.path("signer.crt"),
        &pki.path("signer.key"),
        &pki.path("ca.crt"),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/ok", axum::routing::get(|| async { "ok" }));
    let hook: tls::RejectHook = Arc::new(|_, _| {});
    tokio::spawn(tls::serve_mtls(
        listener,
        Arc::new(cfg),
        app,
        opts,
        hook,
        std::future::pending(),
    ));
    Served {
        _dir: dir,
        pki,
        addr,
    }
}

fn short() -> ServeOptions {
    ServeOptions {
        header_read_timeout: Duration::from_secs(8),
        first_request_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        ..ServeOptions::default()
    }
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(s: &Served, who: &str) -> Tls {
    let cfg = tls::client_config(
        &s.pki.path("ca.crt"),
        &s.pki.path(&format!("{who}.crt")),
        &s.pki.path(&format!("{who}.key")),
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// Seconds until the server closes `c` (reads and drops what it sends).
async fn closed_after(c: &mut Tls, limit: Duration) -> Option<f64> {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((t0 + limit).into(), c.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(t0.elapsed().as_secs_f64()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed_in_time() {
    let s = serve(short()).await;
    let mut silent = connect(&s, "broker-1").await;
    let t = closed_after(&mut silent, Duration::from_secs(5)).await;
    assert!(
        t.is_some_and(|t| (0.8..3.0).contains(&t)),
        "no request: {t:?}"
    );

    let mut used = connect(&s, "broker-1").await;
    used.write_all(b"GET /ok HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = used.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let t = closed_after(&mut used, Duration::from_secs(5)).await;
    assert!(
        t.is_some_and(|t| (0.8..3.0).contains(&t)),
        "idle after a request (the header deadline is 8 s): {t:?}"
    );
}

#[tokio::test]
async fn an_http2_connection_that_only_pings_is_closed() {
    let s = serve(short()).await;
    let io = hyper_util::rt::TokioIo::new(connect(&s, "broker-1").await);
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(200))
            .keep_alive_while_idle(true)
            .handshake::<_, http_body_util::Empty<hyper::body::Bytes>>(io)
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get("https://localhost/ok")
        .body(http_body_util::Empty::new())
        .unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
    let t0 = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "PINGs kept the connection open");
    assert!(t0.elapsed() >= Duration::from_millis(800));
}

#[tokio::test]
async fn one_cns_idle_connections_leave_room_for_another() {
    let s = serve(ServeOptions {
        max_connections: 6,
        max_connections_per_cn: 4,
        first_request_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        ..ServeOptions::default()
    })
    .await;
    let mut hogs = Vec::new();
    for _ in 0..6 {
        hogs.push(connect(&s, "broker-1").await);
    }
    let mut refused = 0;
    for h in &mut hogs {
        if closed_after(h, Duration::from_millis(300)).await.is_some() {
            refused += 1;
        }
    }
    assert_eq!(refused, 2, "4 per CN are kept, the rest closed at once");
    let other = tokio::time::timeout(Duration::from_secs(5), async {
        let mut c = connect(&s, "operator").await;
        c.write_all(b"GET /ok HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = c.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .expect("another CN is served while broker-1 holds its connections");
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
}
