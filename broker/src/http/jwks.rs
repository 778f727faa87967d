//! The issuer's signing keys: found through OIDC discovery, cached, fetched
//! again when they are old or when a token names an unknown `kid` — the
//! latter at most once per `jwks_refresh_min`, so a stream of forged `kid`s
//! cannot turn the broker into a load generator against the issuer.
//!
//! Keys that could not be refreshed for `jwks_max_stale` are not used any
//! more: an issuer that withdrew a compromised key must not have that key
//! honoured forever because the broker cannot reach it. Tokens are then
//! refused with `503` until a fetch succeeds.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use infrabroker_common::client::error_chain;
use infrabroker_common::tls;
use rustls::RootCertStore;
use serde::Deserialize;

use super::HttpError;
use super::jws::{Key, parse_jwks};
use super::settings::{OAuthSettings, check_url};

/// Deadline of one discovery or JWKS request.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest discovery document or JWKS accepted.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The key.
    Found(Key),
    /// Keys are known, but none has this `kid` (even after a refetch, when
    /// one was allowed).
    Unknown,
    /// No keys could be fetched at all.
    Unavailable(String),
}

#[derive(Debug, Default)]
struct Cache {
    keys: Vec<Key>,
    fetched: Option<Instant>,
    /// Last fetch attempt, successful or not: the refetch rate limit.
    attempted: Option<Instant>,
    jwks_uri: Option<String>,
    last_error: Option<String>,
}

/// Fetches and caches the issuer's JWKS.
#[derive(Debug)]
pub struct KeySource {
    issuer: String,
    jwks_uri: Option<String>,
    refresh_min: Duration,
    max_age: Duration,
    max_stale: Duration,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    cache: RwLock<Cache>,
    /// One fetch at a time; waiters then see its result.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl KeySource {
    /// A source for `oauth`'s issuer; nothing is fetched yet.
    pub fn new(oauth: &OAuthSettings) -> Result<Arc<KeySource>, HttpError> {
        let roots = match &oauth.ca {
            Some(ca) => {
                let mut store = RootCertStore::empty();
                for cert in tls::load_certs(ca)? {
                    store
                        .add(cert)
                        .map_err(|e| HttpError::Setup(format!("oauth.ca {}: {e}", ca.display())))?;
                }
                store
            }
            None => RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        };
        // http:// is reachable only for loopback URLs: every URL passes
        // `check_url` before it is fetched.
        let client =
            infrabroker_common::client::web_client(roots, rustls::DEFAULT_VERSIONS, FETCH_TIMEOUT)
                .map_err(|e| HttpError::Setup(format!("issuer TLS: {e}")))?;
        Ok(Arc::new(KeySource {
            issuer: oauth.issuer.trim_end_matches('/').to_owned(),
            jwks_uri: oauth.jwks_uri.clone(),
            refresh_min: oauth.jwks_refresh_min,
            max_age: oauth.jwks_max_age,
            max_stale: oauth.jwks_max_stale,
            client,
            cache: RwLock::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        }))
    }

    fn read<R>(&self, f: impl FnOnce(&Cache) -> R) -> R {
        match self.cache.read() {
            Ok(c) => f(&c),
            Err(p) => f(&p.into_inner()),
        }
    }

    fn write<R>(&self, f: impl FnOnce(&mut Cache) -> R) -> R {
        match self.cache.write() {
            Ok(mut c) => f(&mut c),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// The key named `kid`, refetching the JWKS when it is stale or does
    /// not have it (rate-limited).
    pub async fn key(&self, kid: &str) -> Lookup {
        let fresh = self.read(|c| {
            let stale = c.fetched.is_none_or(|t| t.elapsed() >= self.max_age);
            c.keys
                .iter()
                .find(|k| k.kid == kid)
                .filter(|_| !stale)
                .cloned()
        });
        if let Some(key) = fresh {
            return Lookup::Found(key);
        }
        // Waits for a fetch in progress (the first one at start-up), and
        // fetches only if the last attempt is older than the rate limit.
        self.refresh_once().await;
        self.read(|c| {
            let age = c.fetched.map(|t| t.elapsed());
            if let Some(age) = age.filter(|a| *a > self.max_stale) {
                Lookup::Unavailable(format!(
                    "the JWKS could not be refreshed for {} s (jwks_max_stale_seconds {}): {}",
                    age.as_secs(),
                    self.max_stale.as_secs(),
                    c.last_error.as_deref().unwrap_or("no successful fetch")
                ))
            } else if let Some(key) = c.keys.iter().find(|k| k.kid == kid) {
                Lookup::Found(key.clone())
            } else if c.keys.is_empty() {
                Lookup::Unavailable(
                    c.last_error
                        .clone()
                        .unwrap_or_else(|| "no usable signing keys".into()),
                )
            } else {
                Lookup::Unknown
            }
        })
    }

    /// Fetches unless another caller is already doing so (then waits for
    /// it) or one was attempted within the rate limit. Also the start-up
    /// fetch, so that the first tokens wait for it.
    pub async fn refresh_once(&self) {
        let _guard = self.fetching.lock().await;
        let recent = self.read(|c| c.attempted.is_some_and(|t| t.elapsed() < self.refresh_min));
        if recent {
            return;
        }
        if let Err(e) = self.refresh().await {
            tracing::warn!(issuer = %self.issuer, error = %e, "JWKS refresh failed; keeping the previous keys");
        }
    }

    /// Fetches the JWKS now (discovering its location first if needed).
    async fn refresh(&self) -> Result<usize, String> {
        self.write(|c| c.attempted = Some(Instant::now()));
        let result = self.fetch_keys().await;
        self.write(|c| match &result {
            Ok((uri, keys)) => {
                c.keys = keys.clone();
                c.fetched = Some(Instant::now());
                c.jwks_uri = Some(uri.clone());
                c.last_error = None;
            }
            Err(e) => {
                // Discover again next time: the location may have moved.
                c.jwks_uri = None;
                c.last_error = Some(e.clone());
            }
        });
        let (uri, keys) = result?;
        tracing::info!(jwks_uri = %uri, keys = keys.len(), "JWKS fetched");
        Ok(keys.len())
    }

    async fn fetch_keys(&self) -> Result<(String, Vec<Key>), String> {
        let uri = match self
            .jwks_uri
            .clone()
            .or_else(|| self.read(|c| c.jwks_uri.clone()))
        {
            Some(u) => u,
            None => self.discover().await?,
        };
        let body = self.get(&uri).await?;
        let keys = parse_jwks(&body).map_err(|e| format!("{uri}: {e}"))?;
        if keys.is_empty() {
            return Err(format!("{uri}: no RS256, ES256 or EdDSA signing key"));
        }
        Ok((uri, keys))
    }

    async fn discover(&self) -> Result<String, String> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let body = self.get(&url).await?;
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|e| format!("{url}: not a discovery document: {e}"))?;
        // OIDC Discovery §4.3: the document must name the issuer it was
        // fetched for, or its keys are not that issuer's.
        if doc.issuer.trim_end_matches('/') != self.issuer {
            return Err(format!(
                "{url}: names issuer {:?}, expected {:?}",
                doc.issuer, self.issuer
            ));
        }
        check_url(&doc.jwks_uri).map_err(|e| format!("jwks_uri {:?} {e}", doc.jwks_uri))?;
        Ok(doc.jwks_uri)
    }

    async fn get(&self, url: &str) -> Result<Bytes, String> {
        let uri = check_url(url).map_err(|e| format!("{url} {e}"))?;
        let req = Request::get(uri)
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("{url}: {}", error_chain(&e)))?;
            if resp.status() != StatusCode::OK {
                return Err(format!("{url}: HTTP {}", resp.status()));
            }
            Limited::new(resp.into_body(), MAX_DOCUMENT)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| format!("{url}: reading the answer: {e}"))
        };
        tokio::time::timeout(FETCH_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| Err(format!("{url}: no answer within {FETCH_TIMEOUT:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(issuer: String) -> OAuthSettings {
        OAuthSettings {
            issuer,
            audience: None,
            required_scopes: vec![],
            user_claim: "sub".into(),
            groups_claim: None,
            max_token_age: None,
            clock_skew: Duration::from_secs(60),
            jwks_uri: None,
            ca: None,
            jwks_refresh_min: Duration::from_secs(1),
            jwks_max_age: Duration::from_secs(60),
            jwks_max_stale: Duration::from_secs(120),
            accepted_token_types: vec!["at+jwt".into()],
        }
    }

    /// Keys fetched `ago` before now from an issuer that no longer answers.
    fn cached(ago: Duration) -> Arc<KeySource> {
        // A port nobody listens on any more: every refresh fails at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let src = KeySource::new(&settings(format!("http://127.0.0.1:{port}"))).unwrap();
        let jwk = br#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "ed-1",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        let keys = parse_jwks(jwk).unwrap();
        assert_eq!(keys.len(), 1);
        let when = Instant::now().checked_sub(ago).unwrap();
        src.write(|c| {
            c.keys = keys;
            c.fetched = Some(when);
        });
        src
    }

    #[tokio::test]
    async fn stale_keys_are_used_until_max_stale_then_refused() {
        // Past max_age (a refresh is tried and fails) but within max_stale:
        // the previous keys still serve.
        let src = cached(Duration::from_secs(90));
        assert!(matches!(src.key("ed-1").await, Lookup::Found(_)));
        // Past max_stale: nothing is accepted with those keys.
        let src = cached(Duration::from_secs(121));
        match src.key("ed-1").await {
            Lookup::Unavailable(why) => assert!(why.contains("could not be refreshed"), "{why}"),
            other => panic!("stale keys were used: {other:?}"),
        }
    }
}
