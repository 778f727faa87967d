//! An mTLS JSON client for talking to the signer or the control plane.
//! Connections are pooled, HTTP/2 when the server offers it; every call has
//! a deadline.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::tls::{TlsError, client_config};
use crate::wire::ErrorBody;

/// Largest response body accepted (host lists can be long, but not this long).
const MAX_RESPONSE: usize = 8 * 1024 * 1024;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not an `https://` URL.
    #[error("invalid URL {0:?}: expected https://host:port")]
    Url(String),
    /// Building TLS failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// No connection or no answer in time. The message leaves the URL
    /// out (a broker relays it to agents, who have no business knowing
    /// where the signer lives); the URL is logged where it happens.
    #[error("unreachable (signer_unreachable): {reason}")]
    Unreachable {
        /// What was called (for logs, never for messages).
        url: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an error body.
    #[error("{status}: {} ({})", body.message, body.reason_code)]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The decoded error.
        body: ErrorBody,
    },
    /// The server answered something that is not the expected JSON.
    #[error("unexpected answer ({status}): {detail}")]
    Protocol {
        /// HTTP status.
        status: StatusCode,
        /// What was wrong.
        detail: String,
    },
}

/// A pooled HTTPS client presenting a client certificate.
#[derive(Debug, Clone)]
pub struct MtlsClient {
    base: String,
    timeout: Duration,
    inner: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// Raw answer of a call: status and body bytes.
#[derive(Debug, Clone, Default)]
pub struct RawResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Body.
    pub body: Bytes,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The `Date` header, if any (for clock-skew checks).
    pub date: Option<String>,
    /// The `ETag` header, if any.
    pub etag: Option<String>,
}

impl MtlsClient {
    /// A client for `base_url` (e.g. `https://127.0.0.1:9443`) trusting
    /// `ca` and presenting `cert`/`key`; each call must finish in `timeout`.
    pub fn new(
        base_url: &str,
        ca: &Path,
        cert: &Path,
        key: &Path,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !base.starts_with("https://") || base.len() <= "https://".len() {
            return Err(ClientError::Url(base_url.to_owned()));
        }
        let tls = client_config(ca, cert, key)?;
        Ok(Self::build(base, tls, timeout, true))
    }

    /// A client for a plain `http://` base URL (the signer's `krl_listen`,
    /// the only plain endpoint a command needs): no TLS, no identity. It
    /// refuses to dial `https://`, which needs [`MtlsClient::new`].
    pub fn plain(base_url: &str, timeout: Duration) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(ClientError::Url(base_url.to_owned()));
        }
        // No roots: a redirect or typo can never turn into a TLS session
        // that trusts something.
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ClientError::Tls(TlsError::from(e)))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        Ok(Self::build(base, tls, timeout, false))
    }

    /// A client for an `https://` base URL that authenticates the server
    /// only, against the public web PKI roots (a witness, say): no client
    /// certificate.
    pub fn server_auth(base_url: &str, timeout: Duration) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !base.starts_with("https://") || base.len() <= "https://".len() {
            return Err(ClientError::Url(base_url.to_owned()));
        }
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ClientError::Tls(TlsError::from(e)))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self::build(base, tls, timeout, true))
    }

    fn build(base: String, tls: rustls::ClientConfig, timeout: Duration, https: bool) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
        let builder = if https {
            builder.https_only()
        } else {
            builder.https_or_http()
        };
        let connector = builder.enable_http1().enable_http2().wrap_connector(http);
        // ALPN prefers HTTP/2: concurrent calls share one connection (the
        // servers allow 64 streams each; more wait in the client), so a busy
        // broker stays far below the servers' per-CN connection cap.
        // Idle pooled connections are dropped well before the server's own
        // idle limit (ServeOptions::header_read_timeout, 10 s), so a request
        // is never sent on a connection the server is closing.
        let inner = Client::builder(TokioExecutor::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(4))
            .build(connector);
        MtlsClient {
            base,
            timeout,
            inner,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and returns status and body without interpreting them.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        self.call_raw_with_headers(method, path, body, &[]).await
    }

    /// [`MtlsClient::call_raw`] with extra request headers (a forwarder's
    /// `X-On-Behalf-Of`, say).
    pub async fn call_raw_with_headers(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<RawResponse, ClientError> {
        let url = format!("{}{}", self.base, path);
        let unreachable = |reason: String| {
            tracing::warn!(%url, %reason, "upstream unreachable");
            ClientError::Unreachable {
                url: url.clone(),
                reason,
            }
        };
        let mut req = Request::builder().method(method).uri(&url);
        let typed = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if body.is_some() && !typed {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Url(e.to_string()))?;
        let work = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let status = resp.status();
            let header = |name| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let retry_after = header(hyper::header::RETRY_AFTER);
            let date = header(hyper::header::DATE);
            let etag = header(hyper::header::ETAG);
            let body = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok(RawResponse {
                status,
                body,
                retry_after,
                date,
                etag,
            })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(unreachable(format!(
                "no answer within {} s",
                self.timeout.as_secs_f64()
            ))),
        }
    }

    /// Sends JSON (or nothing) and decodes a JSON answer; error statuses
    /// become [`ClientError::Api`].
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let bytes = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| ClientError::Protocol {
                status: StatusCode::OK,
                detail: format!("encoding the request: {e}"),
            })?),
            None => None,
        };
        let raw = self.call_raw(method, path, bytes).await?;
        decode(raw)
    }
}

/// Turns a raw answer into `T` or a typed API error.
pub fn decode<T: DeserializeOwned>(raw: RawResponse) -> Result<T, ClientError> {
    if raw.status.is_success() {
        serde_json::from_slice(&raw.body).map_err(|e| ClientError::Protocol {
            status: raw.status,
            detail: e.to_string(),
        })
    } else {
        match serde_json::from_slice::<ErrorBody>(&raw.body) {
            Ok(body) => Err(ClientError::Api {
                status: raw.status,
                body,
            }),
            Err(_) => Err(ClientError::Protocol {
                status: raw.status,
                detail: String::from_utf8_lossy(&raw.body)
                    .chars()
                    .take(200)
                    .collect(),
            }),
        }
    }
}

/// Flattens an error and its sources into one line: hyper's top-level
/// messages alone ("client error (Connect)") do not say what happened.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}

/// The HTTP/1.1 client for web endpoints outside the deployment's own PKI
/// (an OpenID provider's JWKS, an approval webhook): `https://` with the
/// server authenticated against `roots` at `versions`, no client
/// certificate, and plain `http://` where the caller's own URL checks allow
/// it. Connects within `connect_timeout`; idle connections are kept 30 s.
pub fn web_client<B>(
    roots: rustls::RootCertStore,
    versions: &[&'static rustls::SupportedProtocolVersion],
    connect_timeout: Duration,
) -> Result<Client<hyper_rustls::HttpsConnector<HttpConnector>, B>, TlsError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(versions)
        .map_err(TlsError::from)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector))
}
