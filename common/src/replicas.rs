//! Calls to one of several replicas of the same service (signers on one
//! store, control planes on one store): [`Replicas`] holds one
//! [`MtlsClient`] per URL and tries them in turn from the one that
//! answered last (a sticky preference), moving on only when a replica
//! cannot be reached or does not answer in time. An answer of any kind — a
//! refusal included — is final: replicas share one policy and one store,
//! so another would answer the same. The one exception is
//! `503 ca_unavailable`: a replica's own token or agent cannot sign, and
//! another replica's may (nothing was issued, so asking it is safe); when
//! none can, that answer is returned.
//!
//! [`read_urls`] reads the `url` member that names them: one `https://`
//! URL or a list of up to [`MAX_URLS`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::Method;

use crate::client::{ClientError, MtlsClient, RawResponse};
use crate::config::Obj;

/// Most replicas one `url` may list.
pub const MAX_URLS: usize = 8;

/// Clients for every replica, in order of preference.
#[derive(Debug, Clone)]
pub struct Replicas {
    clients: Arc<[(String, MtlsClient)]>,
    preferred: Arc<AtomicUsize>,
}

impl Replicas {
    /// One client per URL, all with the same identity and deadline.
    pub fn new(
        urls: &[String],
        ca: &Path,
        cert: &Path,
        key: &Path,
        timeout: Duration,
    ) -> Result<Replicas, ClientError> {
        let clients = urls
            .iter()
            .map(|url| Ok((url.clone(), MtlsClient::new(url, ca, cert, key, timeout)?)))
            .collect::<Result<Vec<_>, ClientError>>()?;
        if clients.is_empty() {
            return Err(ClientError::Url(String::new()));
        }
        Ok(Replicas {
            clients: clients.into(),
            preferred: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The index of the replica calls go to first.
    pub fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed)
    }

    /// [`MtlsClient::call_raw`] on the preferred replica, failing over.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        self.call_raw_with_headers(method, path, body, &[]).await
    }

    /// [`MtlsClient::call_raw_with_headers`] on the preferred replica; on a
    /// connection error or timeout the next one is tried. The error of the
    /// last replica tried if none answered.
    pub async fn call_raw_with_headers(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<RawResponse, ClientError> {
        let n = self.clients.len();
        let start = self.preferred() % n;
        let mut last = ClientError::Url(String::new());
        let mut cannot_sign = None;
        for k in 0..n {
            let i = (start + k) % n;
            let (url, client) = &self.clients[i];
            match client
                .call_raw_with_headers(method.clone(), path, body.clone(), headers)
                .await
            {
                Err(e @ ClientError::Unreachable { .. }) => {
                    if n > 1 {
                        tracing::warn!(%url, error = %e, "replica unreachable; trying the next");
                    }
                    last = e;
                }
                Ok(raw) if k + 1 < n && ca_unavailable(&raw) => {
                    tracing::warn!(%url, "the replica's CA cannot sign; trying the next");
                    cannot_sign = Some(raw);
                }
                answer => {
                    if i != start {
                        tracing::info!(%url, "calls now go to this replica first");
                        self.preferred.store(i, Ordering::Relaxed);
                    }
                    return answer;
                }
            }
        }
        cannot_sign.ok_or(last)
    }
}

/// Whether `raw` is a `503` whose reason is `ca_unavailable`.
fn ca_unavailable(raw: &RawResponse) -> bool {
    raw.status == hyper::StatusCode::SERVICE_UNAVAILABLE
        && serde_json::from_slice::<serde_json::Value>(&raw.body)
            .is_ok_and(|v| v["reason_code"] == "ca_unavailable")
}

/// `url`: one `https://` URL, or a list of them (replicas), reported on `o`.
pub fn read_urls(o: &Obj<'_>) -> Option<Vec<String>> {
    let urls = match o.raw("url") {
        Some(serde_json::Value::Array(_)) => o.str_list("url"),
        Some(_) => o.str("url").into_iter().collect(),
        None => {
            o.error("url", "is required");
            return None;
        }
    };
    let mut ok = !urls.is_empty();
    if urls.is_empty() {
        o.error("url", "must name at least one https:// URL");
    }
    if urls.len() > MAX_URLS {
        o.error("url", format!("at most {MAX_URLS} URLs"));
        ok = false;
    }
    for (i, u) in urls.iter().enumerate() {
        if !u.starts_with("https://") {
            o.error("url", "must be an https:// URL");
            ok = false;
        } else if urls[..i].contains(u) {
            o.error("url", format!("{u:?} is listed twice"));
            ok = false;
        }
    }
    ok.then_some(urls)
}
