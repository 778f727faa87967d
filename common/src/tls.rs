//! TLS for every service: rustls with the ring provider, TLS 1.3 only,
//! mandatory client certificates on servers, and an accept loop that hands
//! the caller's certificate CN to HTTP handlers.
//!
//! The accept loop is written on tokio-rustls + hyper-util rather than a
//! framework server so that a failed handshake is visible (logged, counted,
//! audited by the caller's hook) and bounded by its own timeout before any
//! HTTP parsing starts.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::conn::PerKey;
use tower::ServiceExt;
use zeroize::Zeroizing;

/// Problems loading TLS material or building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file did not hold what was expected.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A private key file is readable by group or others.
    #[error("{path}: private key is accessible by group or others (mode {mode:o}); chmod 600 it")]
    KeyPermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// The crypto provider of the whole project. Passing it explicitly keeps a
/// stray aws-lc feature elsewhere in the tree from changing behaviour.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            path: path.to_owned(),
            reason: format!("bad PEM certificate: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid {
            path: path.to_owned(),
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// Reads a PEM private key, refusing files readable by group or others.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    check_private_mode(path)?;
    let pem = Zeroizing::new(std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?);
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Invalid {
        path: path.to_owned(),
        reason: format!("bad PEM private key: {e}"),
    })
}

/// Refuses a secret file whose mode lets group or others read it.
pub fn check_private_mode(path: &Path) -> Result<(), TlsError> {
    let meta = std::fs::metadata(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in load_certs(ca)? {
        store.add(cert).map_err(|e| TlsError::Invalid {
            path: ca.to_owned(),
            reason: format!("unusable CA certificate: {e}"),
        })?;
    }
    Ok(store)
}

/// A TLS 1.3 server configuration that demands a client certificate issued
/// by `client_ca`.
pub fn server_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(client_ca)?), provider.clone())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A TLS 1.3 client configuration presenting `cert`/`key` and trusting
/// only `ca`.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<ClientConfig, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(load_certs(cert)?, load_key(key)?)?)
}

/// A client configuration that checks the server against `ca` and shows
/// no certificate of its own, for receivers such as a syslog server. TLS
/// 1.2 is allowed here (rustls' safe suites only): rsyslog's GnuTLS driver
/// negotiates 1.2 by default. Every listener of ours stays TLS 1.3 only.
pub fn server_auth_config(ca: &Path) -> Result<ClientConfig, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth())
}

/// Who is on the other end of an mTLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Subject CN of the verified client certificate.
    pub cn: String,
    /// Remote socket address.
    pub addr: SocketAddr,
}

/// Extracts the subject CN of a DER certificate. A certificate with no CN,
/// more than one, or one that is not UTF-8 has no identity here.
pub fn subject_cn(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let mut names = parsed.subject().iter_common_name();
    let cn = names.next()?.as_str().ok()?.to_owned();
    if names.next().is_some() {
        return None;
    }
    Some(cn)
}

/// Limits of the accept loop.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request's headers (also bounds idle
    /// keep-alive connections).
    pub header_read_timeout: Duration,
    /// Open connections at most; further accepts wait.
    pub max_connections: usize,
    /// TLS handshakes in progress per remote IP at most; further ones from
    /// that IP wait (within `handshake_timeout`) for a turn.
    pub max_connections_per_ip: usize,
    /// Open connections per client certificate CN at most; one more is
    /// refused right after its handshake (reported to the reject hook).
    pub max_connections_per_cn: usize,
    /// Time allowed from the end of the handshake to the first request.
    pub first_request_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/2 PINGs do not count).
    pub idle_timeout: Duration,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// How long in-flight requests may take to finish after shutdown starts.
    pub grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            handshake_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_ip: 64,
            max_connections_per_cn: 256,
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_concurrent_streams: 64,
            grace: Duration::from_secs(10),
        }
    }
}

/// Called for every connection whose handshake failed: peer address and a
/// short reason. Services use it to log, count and audit.
pub type RejectHook = Arc<dyn Fn(SocketAddr, String) + Send + Sync>;

/// HTTP/2 keep-alive: a PING this often on a quiet connection...
pub const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// ...and the connection closed if its answer takes longer than this.
pub const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP/1.1 + HTTP/2 connection builder with a header deadline (which
/// also bounds idle keep-alive), HTTP/2 keep-alive with a timeout (a dead
/// peer is noticed) and a per-connection stream limit. Idle connections
/// are closed by [`crate::conn::until_quiet`], which PINGs do not fool.
pub fn http_builder(header_read_timeout: Duration, max_streams: u32) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(H2_KEEPALIVE_INTERVAL))
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT)
        .max_concurrent_streams(max_streams);
    builder
}

/// `svc` with every request counted in `requests` until its response body
/// ends (see [`crate::conn`]).
pub fn counted<S>(
    svc: S,
    requests: Arc<crate::conn::Requests>,
) -> impl tower::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone
where
    S: tower::Service<
            hyper::Request<Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    use http_body_util::BodyExt;
    tower::service_fn(move |req: hyper::Request<Incoming>| {
        let held = requests.start();
        let call = svc.clone().oneshot(req);
        async move {
            let resp = call.await?;
            Ok(resp.map(move |body| {
                axum::body::Body::new(body.map_frame(move |f| {
                    let _ = &held;
                    f
                }))
            }))
        }
    })
}

/// Resolves on SIGTERM or SIGINT: the shutdown trigger of every service.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
    tracing::info!("shutting down: draining connections");
}

/// The accept loop every listener shares: at most `max_connections` open
/// (further accepts wait), each accepted socket handed to `handle` in its
/// own task with a graceful-shutdown watcher; when `shutdown` resolves, no
/// more accepts, and open connections get `grace` to finish.
pub async fn accept_loop<H, F>(
    listener: TcpListener,
    max_connections: usize,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
    handle: H,
) where
    H: Fn(tokio::net::TcpStream, SocketAddr, Watcher) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, addr) = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let work = handle(tcp, addr, graceful.watcher());
        tokio::spawn(async move {
            let _permit = permit;
            work.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
    }
}

/// Serves `app` over mTLS on `listener` until `shutdown` resolves, then
/// drains open connections for at most `opts.grace`. Every request carries
/// a [`Peer`] extension with the verified client CN; a connection whose
/// certificate has no CN is closed before any request is read.
pub async fn serve_mtls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: axum::Router,
    opts: ServeOptions,
    on_reject: RejectHook,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let builder = Arc::new(http_builder(
        opts.header_read_timeout,
        opts.max_concurrent_streams,
    ));
    let per_ip = PerKey::new(opts.max_connections_per_ip);
    let per_cn = PerKey::new(opts.max_connections_per_cn);
    let handshake_timeout = opts.handshake_timeout;
    let quiet = (opts.first_request_timeout, opts.idle_timeout);
    let handle = move |tcp: tokio::net::TcpStream, addr: SocketAddr, watcher: Watcher| {
        let (acceptor, app, on_reject, builder, per_ip, per_cn) = (
            acceptor.clone(),
            app.clone(),
            on_reject.clone(),
            builder.clone(),
            per_ip.clone(),
            per_cn.clone(),
        );
        async move {
            let deadline = tokio::time::Instant::now() + handshake_timeout;
            let Some(slot) = per_ip.take(&addr.ip(), handshake_timeout).await else {
                return on_reject(addr, "too many handshakes from this address".into());
            };
            let handshake = tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await;
            drop(slot);
            let stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return on_reject(addr, e.to_string()),
                Err(_) => return on_reject(addr, "TLS handshake timed out".into()),
            };
            let cn = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(subject_cn);
            let Some(cn) = cn else {
                return on_reject(addr, "client certificate has no single subject CN".into());
            };
            let Some(_cn_slot) = per_cn.try_take(&cn) else {
                return on_reject(addr, format!("too many open connections for CN {cn}"));
            };
            let peer = Peer { cn, addr };
            let svc = app.map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(peer.clone());
                req
            });
            let requests = crate::conn::Requests::new();
            let svc = counted(svc, requests.clone());
            let conn = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                .into_owned();
            match crate::conn::until_quiet(watcher.watch(conn), &requests, quiet.0, quiet.1).await {
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "connection ended with an error"),
                Ok(Ok(())) => {}
                Err(why) => tracing::debug!(%addr, ?why, "closing a quiet connection"),
            }
        }
    };
    accept_loop(listener, opts.max_connections, opts.grace, shutdown, handle).await;
}

/// Serves `app` over plain HTTP (the monitor and reviewer listeners, on
/// loopback) with the same limits as [`serve_mtls`] short of TLS: a cap on
/// connections in all and per remote address, a first-request deadline and
/// a request-based idle timeout. Runs until the process ends.
pub async fn serve_plain(listener: TcpListener, app: axum::Router, opts: ServeOptions) {
    let builder = Arc::new(http_builder(
        opts.header_read_timeout,
        opts.max_concurrent_streams,
    ));
    let per_ip = PerKey::new(opts.max_connections_per_ip);
    let quiet = (opts.first_request_timeout, opts.idle_timeout);
    let handle = move |tcp: tokio::net::TcpStream, addr: SocketAddr, watcher: Watcher| {
        let (app, builder) = (app.clone(), builder.clone());
        let slot = per_ip.try_take(&addr.ip());
        async move {
            let Some(_slot) = slot else {
                return tracing::info!(%addr, "too many connections from this address; closed");
            };
            let requests = crate::conn::Requests::new();
            let svc = counted(app, requests.clone());
            let conn = builder
                .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(svc))
                .into_owned();
            if let Err(why) =
                crate::conn::until_quiet(watcher.watch(conn), &requests, quiet.0, quiet.1).await
            {
                tracing::debug!(%addr, ?why, "closing a quiet connection");
            }
        }
    };
    let forever = std::future::pending::<()>();
    accept_loop(listener, opts.max_connections, opts.grace, forever, handle).await;
}

/// At most [`RejectBudget::PER_SECOND`] audit records of refused handshakes
/// per second; the rest are counted and reported with the next record. The
/// signer and the control plane share it: a handshake flood must not fill
/// the audit disk and turn `audit_fail_mode: closed` into refusing every
/// request.
#[derive(Debug, Default)]
pub struct RejectBudget {
    state: std::sync::Mutex<(u64, u64, u64)>,
}

impl RejectBudget {
    /// Records admitted per second.
    pub const PER_SECOND: u64 = 20;

    /// `Some(suppressed since the last admitted record)` if this one may be
    /// written.
    pub fn admit(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (second, used, suppressed) = &mut *st;
        if *second != now {
            *second = now;
            *used = 0;
        }
        if *used >= Self::PER_SECOND {
            *suppressed += 1;
            return None;
        }
        *used += 1;
        Some(std::mem::take(suppressed))
    }
}
