//! The accept loop of `broker mcp-http`: plain HTTP (loopback, or behind a
//! TLS-terminating proxy) or TLS without client certificates, with a cap on
//! open connections, a header deadline, an idle timeout on the socket
//! itself and a graceful drain on shutdown.
//!
//! The idle timeout watches bytes, not requests: an MCP event stream that
//! carries its keep-alive comments every few seconds stays open, while a
//! connection where nothing moves either way is closed.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use infrabroker_common::tls;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use super::settings::HttpSettings;

/// The client's socket address, in every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RemoteAddr(pub SocketAddr);

/// Milliseconds since `epoch` of the last byte read or written.
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// A stream that records when bytes last moved.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` (TLS when `tls` is set) until `shutdown`
/// resolves, then lets open requests finish for `limits.shutdown_grace`.
pub(super) async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: axum::Router,
    limits: &HttpSettings,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let builder = Arc::new(tls::http_builder(
        limits.header_read_timeout,
        limits.max_concurrent_streams,
    ));
    let handshake_timeout = limits.header_read_timeout;
    let idle_timeout = limits.idle_timeout;
    let handle = move |tcp: tokio::net::TcpStream, addr: SocketAddr, watcher: Watcher| {
        let (acceptor, app, builder) = (acceptor.clone(), app.clone(), builder.clone());
        async move {
            let activity = Activity::new();
            let svc = app.map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(RemoteAddr(addr));
                req
            });
            let svc = TowerToHyperService::new(svc);
            let served = match acceptor {
                None => {
                    let io = watched(tcp, &activity);
                    let conn = builder.serve_connection(io, svc).into_owned();
                    until_idle(watcher.watch(conn), &activity, idle_timeout).await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::info!(%addr, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::info!(%addr, "TLS handshake timed out");
                                return;
                            }
                        };
                    let io = watched(stream, &activity);
                    let conn = builder.serve_connection(io, svc).into_owned();
                    until_idle(watcher.watch(conn), &activity, idle_timeout).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%addr, error = %e, "connection ended with an error");
            }
        }
    };
    tls::accept_loop(
        listener,
        limits.max_connections,
        limits.shutdown_grace,
        shutdown,
        handle,
    )
    .await;
}

fn watched<S>(inner: S, activity: &Arc<Activity>) -> TokioIo<Watched<S>> {
    activity.touch();
    TokioIo::new(Watched {
        inner,
        activity: activity.clone(),
    })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Drives `conn` until it ends or nothing moved on its socket for `idle`;
/// then it is dropped, which closes the socket.
async fn until_idle<F>(conn: F, activity: &Activity, idle: Duration) -> Result<(), BoxError>
where
    F: Future<Output = Result<(), BoxError>>,
{
    tokio::pin!(conn);
    loop {
        let quiet = activity.idle();
        if quiet >= idle {
            tracing::debug!("closing an idle connection");
            return Ok(());
        }
        tokio::select! {
            r = &mut conn => return r,
            () = tokio::time::sleep(idle - quiet) => {}
        }
    }
}
