//! Where the signer's audit records go: its own signed log file, or — with
//! a PostgreSQL store (HA mode) — the one global chain every replica
//! appends to.
//!
//! The global chain is written by one task per replica that batches what
//! is queued (group commit) and appends the batch in one transaction under
//! the chain-head lock ([`infrabroker_store::Store::audit_append`]); an
//! append answers only after that commit, so a certificate leaves only once
//! its record is in the database. The records are the same bytes a log
//! file would hold, so `broker-ctl audit export --postgres` gives a file
//! that `audit verify` checks like any other.

use std::sync::Arc;

use infrabroker_common::audit::{AuditKey, AuditLog};
use infrabroker_common::monitor;
use infrabroker_store::Store;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

/// Records a replica queues for the global chain before `append` waits.
const QUEUE: usize = 16_384;

/// Most records sealed into one transaction.
const MAX_BATCH: usize = 1_024;

/// Why a record could not be written (the caller refuses, fail-closed).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AuditFailure {
    message: String,
    /// The global chain's database could not be used (answer
    /// `store_unavailable` rather than `audit_unavailable`).
    pub store: bool,
}

impl AuditFailure {
    fn local(message: String) -> Self {
        AuditFailure {
            message,
            store: false,
        }
    }

    fn store(message: String) -> Self {
        AuditFailure {
            message,
            store: true,
        }
    }
}

/// The signer's audit sink.
#[derive(Debug, Clone)]
pub enum Audit {
    /// The local signed log (`audit_log`).
    Local(AuditLog),
    /// The global chain in PostgreSQL.
    Global(GlobalChain),
}

impl Audit {
    /// Appends one record; `Ok` once it is durable.
    pub async fn append(&self, fields: Map<String, Value>) -> Result<(), AuditFailure> {
        match self {
            Audit::Local(log) => log
                .append(fields)
                .await
                .map(|_| ())
                .map_err(|e| AuditFailure::local(e.to_string())),
            Audit::Global(chain) => chain.append(fields).await.map(|_| ()),
        }
    }

    /// Why records could not be appended now, for `/readyz` (the global
    /// chain's database is checked with the store's ping).
    pub fn problem(&self) -> Option<String> {
        match self {
            Audit::Local(log) => monitor::audit_problem(log.path()),
            Audit::Global(_) => None,
        }
    }
}

type Job = (Map<String, Value>, oneshot::Sender<Result<u64, String>>);

/// A replica's writer to the global chain.
#[derive(Debug, Clone)]
pub struct GlobalChain {
    tx: mpsc::Sender<Job>,
    redact: Option<Arc<infrabroker_common::redact::Redactor>>,
}

impl GlobalChain {
    /// Starts the writer task over `store`, sealing with `key`.
    pub fn start(
        store: Store,
        key: AuditKey,
        redact: Option<Arc<infrabroker_common::redact::Redactor>>,
    ) -> GlobalChain {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, key, rx));
        GlobalChain { tx, redact }
    }

    /// Appends one record; the record's `seq` once committed.
    pub async fn append(&self, mut fields: Map<String, Value>) -> Result<u64, AuditFailure> {
        if let Some(r) = &self.redact {
            r.record(&mut fields);
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((fields, reply))
            .await
            .map_err(|_| AuditFailure::store("the audit writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| AuditFailure::store("the audit writer has stopped".into()))?
            .map_err(AuditFailure::store)
    }
}

async fn write_batches(store: Store, key: AuditKey, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (records, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match store.audit_append(records, &key).await {
            Ok(seqs) => {
                for (reply, seq) in replies.into_iter().zip(seqs) {
                    let _ = reply.send(Ok(seq));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "audit batch not committed to the global chain");
                for reply in replies {
                    let _ = reply.send(Err(format!("global audit chain: {e}")));
                }
            }
        }
    }
}
