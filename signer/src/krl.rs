//! The signer's KRL (issue 18 item 4): `GET /v1/krl` answers an OpenSSH
//! key revocation list that hosts install as sshd's `RevokedKeys` file
//! (`broker-ctl krl fetch` keeps it current), so a revoked certificate is
//! refused by the host itself before its TTL runs out.
//!
//! What it revokes:
//! - every live certificate in the index ([`crate::certindex`]) that a
//!   freeze of its caller (or forwarder), end user, host, serial or key id
//!   revoked — listed by serial in the section of the CA that signed it,
//!   until the certificate expires;
//! - every serial and key id under an active `serial` / `key_id` freeze,
//!   in the section of every configured CA (serials are unique across CAs,
//!   so this revokes nothing else), for as long as the freeze is in force.
//!   These cover certificates the index never saw (issued before it
//!   existed).
//!
//! A freeze revokes its subject's live certificates when it is made and
//! again when it is lifted; while it is young ([`SETTLE`]) every build
//! does it again, which catches a certificate another replica issued in
//! the second before its cached freezes showed the new one.
//!
//! `krl_version` lives in the store: replicas serving the same content
//! serve the same version, and it rises whenever the content changes (and
//! never goes below the clock in seconds). A build is cached for
//! [`REFRESH`] and dropped after every freeze change this replica makes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use infrabroker_common::krl::{CaRevocations, Krl};
use infrabroker_common::wire::{Freeze, ReasonCode};
use infrabroker_store::{CertSubject, LiveCert, Store, StoreError};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::issuance::Runtime;
use crate::ratelimit::now_ms;
use crate::server::{ApiError, Shared};

/// Longest a replica serves one build.
pub const REFRESH: Duration = Duration::from_secs(1);

/// How long after it was made a subject freeze is applied to the index
/// again on every build.
pub const SETTLE: Duration = Duration::from_secs(300);

/// The comment written into the KRL header.
const COMMENT: &str = "infrabroker signer";

/// One build of the KRL.
#[derive(Debug)]
pub struct Published {
    /// Its `krl_version`.
    pub version: u64,
    /// The sealed KRL bytes.
    pub body: Vec<u8>,
    /// Certificates it revokes by serial, all CAs together.
    pub serials: u64,
}

/// The KRL of one signer process.
#[derive(Debug)]
pub struct KrlPublisher {
    store: Store,
    cache: Mutex<Option<(Instant, Arc<Published>)>>,
}

impl KrlPublisher {
    /// A publisher over `store`.
    pub fn new(store: Store) -> KrlPublisher {
        KrlPublisher {
            store,
            cache: Mutex::new(None),
        }
    }

    /// Drops the cached build (after a freeze change).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    /// The current KRL for `rt`'s CAs and the `freezes` in force.
    pub async fn current(
        &self,
        rt: &Runtime,
        freezes: &[Freeze],
    ) -> Result<Arc<Published>, StoreError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, built)) = cache.as_ref()
            && at.elapsed() < REFRESH
        {
            return Ok(built.clone());
        }
        let now = now_ms();
        let settle = u64::try_from(SETTLE.as_millis()).unwrap_or(u64::MAX);
        for f in freezes {
            if now.saturating_sub(f.created_ms) < settle {
                revoke_covered(&self.store, f, now).await?;
            }
        }
        let revoked = self.store.cert_revoked(now).await?;
        let mut krl = contents(rt, &revoked, freezes);
        let digest = hex::encode(Sha256::digest(krl.encode()));
        let state = self.store.krl_publish(&digest, now).await?;
        krl.version = state.version;
        krl.generated = state.generated_ms / 1000;
        krl.comment = COMMENT.into();
        let serials = krl.cas.values().map(CaRevocations::serial_count).sum();
        let built = Arc::new(Published {
            version: state.version,
            body: krl.encode_sealed(),
            serials,
        });
        *cache = Some((Instant::now(), built.clone()));
        Ok(built)
    }
}

/// Marks the live certificates `f` covers as revoked by it; how many were
/// newly revoked.
pub async fn revoke_covered(store: &Store, f: &Freeze, now: u64) -> Result<u64, StoreError> {
    match CertSubject::parse(&f.kind) {
        Some(subject) => store.cert_revoke(subject, &f.value, &f.id, now).await,
        None => Ok(0),
    }
}

/// The KRL's revocations (version, time and comment left zero): the
/// revoked rows under their CAs, and the serial and key id freezes under
/// every CA `rt` signs with.
fn contents(rt: &Runtime, revoked: &[LiveCert], freezes: &[Freeze]) -> Krl {
    let mut cas: BTreeMap<Vec<u8>, CaRevocations> = BTreeMap::new();
    for cert in revoked {
        match ca_blob(&cert.ca) {
            Some(blob) => cas.entry(blob).or_default().revoke_serial(cert.serial),
            None => tracing::error!(serial = cert.serial, "the index names an unreadable CA key"),
        }
    }
    for ca in rt.cas() {
        let entry = cas.entry(ca.public_blob()).or_default();
        for f in freezes {
            match f.kind.as_str() {
                "serial" => {
                    if let Ok(serial) = f.value.parse() {
                        entry.revoke_serial(serial);
                    }
                }
                "key_id" => {
                    entry.key_ids.insert(f.value.clone());
                }
                _ => {}
            }
        }
    }
    Krl {
        cas,
        ..Krl::default()
    }
}

fn ca_blob(line: &str) -> Option<Vec<u8>> {
    ssh_key::PublicKey::from_openssh(line).ok()?.to_bytes().ok()
}

/// Longest `GET /v1/krl?wait=` a request may hold.
pub const MAX_WAIT: Duration = Duration::from_secs(55);

/// `GET /v1/krl` query: `wait` (seconds) holds a request whose
/// `If-None-Match` names the current version until the list changes or the
/// time is up (a long poll: hosts learn of a freeze within a second or two
/// while asking only every half minute).
#[derive(Debug, Default, serde::Deserialize)]
pub struct KrlQuery {
    /// Seconds to wait for a change, at most [`MAX_WAIT`].
    #[serde(default)]
    pub wait: u64,
}

/// `GET /v1/krl`: the KRL, with `ETag: "<krl_version>"`; `If-None-Match`
/// with the current tag answers `304` (after `wait` seconds without a
/// change). A store that cannot be read answers `503 store_unavailable`
/// (hosts keep the file they have).
pub async fn serve(s: &Shared, headers: &HeaderMap, query: &KrlQuery) -> Response {
    let deadline = Instant::now() + Duration::from_secs(query.wait).min(MAX_WAIT);
    let asked = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    loop {
        let built = match build(s).await {
            Ok(b) => b,
            Err(refused) => return refused,
        };
        let etag = format!("\"{}\"", built.version);
        let tag = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\""));
        let unchanged = asked
            .split(',')
            .any(|t| t.trim() == etag || t.trim() == "*");
        if !unchanged {
            return full(&built, tag);
        }
        let now = Instant::now();
        if now >= deadline {
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response();
        }
        tokio::time::sleep(REFRESH.min(deadline - now)).await;
    }
}

async fn build(s: &Shared) -> Result<Arc<Published>, Response> {
    let freezes = s
        .freezes()
        .active()
        .await
        .map_err(IntoResponse::into_response)?;
    s.krl().current(&s.runtime(), &freezes).await.map_err(|e| {
        tracing::error!(error = %e, "the KRL could not be built");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ReasonCode::StoreUnavailable,
            "the state store cannot be read, so the KRL cannot be built; keep the last one",
        )
        .into_response()
    })
}

fn full(built: &Published, tag: HeaderValue) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::ETAG, tag),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from(built.body.clone()),
    )
        .into_response()
}
