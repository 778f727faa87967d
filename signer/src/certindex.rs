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

use std::time::Duration;

use infrabroker_store::{LiveCert, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::ratelimit::now_ms;

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
