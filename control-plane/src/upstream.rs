//! The control plane's mTLS client toward the signer. Unlike the shared
//! [`MtlsClient`](infrabroker_common::client::MtlsClient) it can send the
//! `X-On-Behalf-Of` header that `GET /v1/hosts` needs from a forwarder, and
//! it hands answers back raw so they can be relayed byte for byte.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use infrabroker_common::client::{RawResponse, error_chain};
use infrabroker_common::tls::client_config;
use infrabroker_common::wire::SignRequest;

use crate::config::SignerEndpoint;
use crate::error::StartError;

/// Largest answer relayed from the signer.
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// The signer could not be asked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("signer unreachable: {0}")]
pub struct Unreachable(pub String);

/// Calls to the signer as the control plane's own CN.
#[derive(Debug, Clone)]
pub struct Upstream {
    base: String,
    timeout: Duration,
    inner: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Upstream {
    /// A client for `endpoint`.
    pub fn new(endpoint: &SignerEndpoint) -> Result<Upstream, StartError> {
        let tls = client_config(&endpoint.ca, &endpoint.client_cert, &endpoint.client_key)
            .map_err(|e| StartError::Other(format!("signer client: {e}")))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(endpoint.request_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        // Idle connections are dropped before the signer's own idle limit
        // (10 s) so a request never goes out on one being closed.
        let inner = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(4))
            .build(connector);
        Ok(Upstream {
            base: endpoint.url.trim_end_matches('/').to_owned(),
            timeout: endpoint.request_timeout,
            inner,
        })
    }

    /// `GET /v1/hosts` for the broker `on_behalf_of`.
    pub async fn hosts(&self, on_behalf_of: &str) -> Result<RawResponse, Unreachable> {
        self.call(
            Method::GET,
            "/v1/hosts",
            None,
            Some(("x-on-behalf-of", on_behalf_of)),
        )
        .await
    }

    /// `POST /v1/sign` with `req` as is (the caller sets `on_behalf_of`).
    pub async fn sign(&self, req: &SignRequest) -> Result<RawResponse, Unreachable> {
        let body = serde_json::to_vec(req)
            .map_err(|e| Unreachable(format!("encoding the request: {e}")))?;
        self.call(Method::POST, "/v1/sign", Some(body), None).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        header: Option<(&str, &str)>,
    ) -> Result<RawResponse, Unreachable> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder().method(method).uri(&url);
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some((k, v)) = header {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Unreachable(format!("{url}: {e}")))?;
        let work = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| Unreachable(format!("{url}: {}", error_chain(&e))))?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| Unreachable(format!("{url}: reading the answer: {e}")))?
                .to_bytes();
            Ok(RawResponse {
                status,
                body,
                retry_after,
            })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Unreachable(format!(
                "{url}: no answer within {} s",
                self.timeout.as_secs()
            ))),
        }
    }
}
