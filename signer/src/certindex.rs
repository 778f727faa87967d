//! The index of live certificates (issue 18 item 4): every certificate the
//! signer issues is recorded in the state store — serial, CA, key id,
//! caller, forwarder, end user, host, `valid_before` — *before* it leaves,
//! so a freeze of a caller, end user or host can find and revoke every
//! live certificate of that subject on any replica (see [`crate::krl`]).
//!
//! One writer task per process batches what is queued (up to
//! [`MAX_BATCH`] rows per transaction, like the global audit chain), so
//! the index costs a few store transactions a second rather than one per
//! certificate. The same task forgets expired rows every [`PURGE_EVERY`].
//! A row that cannot be written fails the request with
//! `store_unavailable`: a certificate nobody could revoke is not issued.
//!
//! `GET /v1/certificates` ([`list`]) shows operators what a subject still
//! holds (the freeze runbook's "what does it still have").

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use infrabroker_common::tls::Peer;
use infrabroker_common::wire::{
    CertificatesQuery, CertificatesResponse, LiveCertificate, ReasonCode,
};
use infrabroker_store::{CertSubject, LiveCert, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::ratelimit::now_ms;
use crate::server::{ApiError, Shared};

/// Most entries `GET /v1/certificates` answers.
pub const MAX_LIST: u32 = 1_000;

/// Rows queued before `record` waits.
const QUEUE: usize = 16_384;

/// Most rows written in one transaction.
pub const MAX_BATCH: usize = 1_024;

/// How often expired rows are deleted.
pub const PURGE_EVERY: Duration = Duration::from_secs(60);

type Job = (LiveCert, oneshot::Sender<Result<(), String>>);

/// The writer of one signer process.
#[derive(Debug, Clone)]
pub struct CertIndex {
    tx: mpsc::Sender<Job>,
}

impl CertIndex {
    /// Starts the writer and purge task over `store`.
    pub fn start(store: Store) -> CertIndex {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, rx));
        CertIndex { tx }
    }

    /// Records one certificate; `Ok` once its row is committed.
    pub async fn record(&self, cert: LiveCert) -> Result<(), StoreError> {
        let stopped = || StoreError::Unavailable("the certificate index writer has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.tx.send((cert, reply)).await.map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(StoreError::Unavailable)
    }
}

async fn write_batches(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut purge = tokio::time::interval(PURGE_EVERY);
    purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            job = rx.recv() => match job {
                Some(job) => job,
                None => return,
            },
            _ = purge.tick() => {
                match store.cert_purge(now_ms()).await {
                    Ok(n) if n > 0 => tracing::debug!(rows = n, "expired certificates left the index"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "expired certificates could not be purged; retrying later"),
                }
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (rows, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let result = store
            .cert_insert(rows)
            .await
            .map_err(|e| format!("certificate index: {e}"));
        if let Err(e) = &result {
            tracing::error!(error = %e, "certificate index batch not committed");
        }
        for reply in replies {
            let _ = reply.send(result.clone());
        }
    }
}

/// The one subject of a query, if any.
fn filter(q: &CertificatesQuery) -> Result<Option<(CertSubject, String)>, String> {
    let mut found = Vec::new();
    let mut add = |subject, v: Option<String>| found.extend(v.map(|v| (subject, v)));
    add(CertSubject::Caller, q.caller.clone());
    add(CertSubject::EndUser, q.end_user.clone());
    add(CertSubject::Host, q.host.clone());
    add(CertSubject::Serial, q.serial.map(|s| s.to_string()));
    add(CertSubject::KeyId, q.key_id.clone());
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => Err("name at most one of caller, end_user, host, serial, key_id".into()),
    }
}

fn wire(c: LiveCert) -> LiveCertificate {
    let some = |v: String| (!v.is_empty()).then_some(v);
    LiveCertificate {
        serial: c.serial,
        key_id: c.key_id,
        caller: c.caller,
        forwarder: some(c.forwarder),
        end_user: some(c.end_user),
        host: c.host,
        valid_before: c.valid_before_ms / 1000,
        revoked_by: c.revoked_by,
    }
}

/// `GET /v1/certificates` for `reload_callers`: the live certificates of
/// one subject (or all), revoked ones marked.
pub async fn list(
    State(s): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    query: Result<Query<CertificatesQuery>, QueryRejection>,
) -> Response {
    if let Err(resp) = crate::freeze::operator(&s, &peer, "GET /v1/certificates").await {
        return resp;
    }
    let bad = |m: String| {
        ApiError::new(StatusCode::BAD_REQUEST, ReasonCode::MalformedRequest, m).into_response()
    };
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad(format!("invalid query: {e}")),
    };
    let f = match filter(&q) {
        Ok(f) => f,
        Err(m) => return bad(m),
    };
    let limit = q.limit.unwrap_or(MAX_LIST).clamp(1, MAX_LIST);
    match s.store().cert_live(f, now_ms(), limit + 1).await {
        Ok(mut rows) => {
            let truncated = rows.len() > limit as usize;
            rows.truncate(limit as usize);
            let certificates = rows.into_iter().map(wire).collect();
            axum::Json(CertificatesResponse {
                certificates,
                truncated,
            })
            .into_response()
        }
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ReasonCode::StoreUnavailable,
            format!("the state store cannot be read: {e}"),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use infrabroker_store::StoreConfig;

    use super::*;

    fn cert(serial: u64) -> LiveCert {
        LiveCert {
            serial,
            ca: "ssh-ed25519 AAAA".into(),
            key_id: format!("k{serial}"),
            caller: "b".into(),
            forwarder: String::new(),
            end_user: String::new(),
            host: "web".into(),
            valid_before_ms: now_ms() + 60_000,
            revoked_by: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_records_are_all_committed_and_a_duplicate_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::Sqlite(dir.path().join("s.db")))
            .await
            .unwrap();
        let index = CertIndex::start(store.clone());
        let jobs = (1..=3_000).map(|n| {
            let index = index.clone();
            tokio::spawn(async move { index.record(cert(n)).await })
        });
        for job in jobs.collect::<Vec<_>>() {
            job.await.unwrap().unwrap();
        }
        let live = store.cert_live(None, now_ms(), 10_000).await.unwrap();
        assert_eq!(live.len(), 3_000);
        assert!(index.record(cert(7)).await.is_err(), "serial 7 is taken");
    }
}
