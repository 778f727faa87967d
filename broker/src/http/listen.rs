//! The accept loop of `broker mcp-http`: plain HTTP (loopback, or behind a
//! TLS-terminating proxy) or TLS without client certificates, with a cap on
//! open connections (in all and per remote address), a deadline for the
//! first request, an idle timeout and a graceful drain on shutdown.
//!
//! The idle timeout watches requests, not bytes ([`infrabroker_common::conn`]):
//! an open MCP event stream is a request in flight and stays open, while a
//! connection that only exchanges HTTP/2 PINGs, or nothing, is closed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use infrabroker_common::conn::{PerKey, Requests, until_quiet};
use infrabroker_common::tls;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use super::settings::HttpSettings;

/// The client's socket address, in every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RemoteAddr(pub SocketAddr);

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
    let quiet = (limits.header_read_timeout, limits.idle_timeout);
    let per_ip = PerKey::new(limits.max_connections_per_ip);
    let handle = move |tcp: tokio::net::TcpStream, addr: SocketAddr, watcher: Watcher| {
        let (acceptor, app, builder) = (acceptor.clone(), app.clone(), builder.clone());
        let slot = per_ip.try_take(&addr.ip());
        async move {
            let Some(_slot) = slot else {
                tracing::info!(%addr, "too many connections from this address; closed");
                return;
            };
            let requests = Requests::new();
            let svc = app.map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(RemoteAddr(addr));
                req
            });
            let svc = TowerToHyperService::new(tls::counted(svc, requests.clone()));
            let served = match acceptor {
                None => {
                    let conn = builder
                        .serve_connection(TokioIo::new(tcp), svc)
                        .into_owned();
                    until_quiet(watcher.watch(conn), &requests, quiet.0, quiet.1).await
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
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), svc)
                        .into_owned();
                    until_quiet(watcher.watch(conn), &requests, quiet.0, quiet.1).await
                }
            };
            match served {
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "connection ended with an error"),
                Ok(Ok(())) => {}
                Err(why) => tracing::debug!(%addr, ?why, "closing a quiet connection"),
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
