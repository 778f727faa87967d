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
//!
//! With `audit_checkpoint`, each replica also follows the whole chain
//! (every replica's records, polled once a second) and writes signed
//! checkpoints of it to its own local file ([`ChainCheckpoints`]). At start
//! the chain must extend the latest one (else exit 65); while running, a
//! chain that no longer holds the last record seen — rows deleted or
//! changed by someone with database access — stops the replica adding
//! records (`audit_unavailable`, `/readyz` false) until an operator looks.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use infrabroker_common::audit::merkle;
use infrabroker_common::audit::witness::WitnessStats;
use infrabroker_common::audit::{
    AuditError, AuditKey, AuditLog, ChainCheckpoints, CheckpointSettings,
};
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
            Audit::Global(chain) => chain.broken.get().cloned(),
        }
    }
}

type Job = (Map<String, Value>, oneshot::Sender<Result<u64, String>>);

/// A replica's writer to the global chain.
#[derive(Debug, Clone)]
pub struct GlobalChain {
    tx: mpsc::Sender<Job>,
    redact: Option<Arc<infrabroker_common::redact::Redactor>>,
    /// Why the chain no longer extends this replica's checkpoints, once
    /// that was seen; then nothing more is appended.
    broken: Arc<OnceLock<String>>,
    /// Witness submissions of this replica's checkpoints.
    witness: Option<WitnessStats>,
}

impl GlobalChain {
    /// Starts the writer task over `store`, sealing with `key`, and with
    /// `checkpoints` the task that follows and checkpoints the chain. A
    /// chain that does not extend the latest checkpoint is refused
    /// ([`AuditError::ChainBroken`]).
    pub async fn start(
        store: Store,
        key: AuditKey,
        redact: Option<Arc<infrabroker_common::redact::Redactor>>,
        checkpoints: Option<CheckpointSettings>,
    ) -> Result<GlobalChain, ChainStartError> {
        let key = Arc::new(key);
        let broken = Arc::new(OnceLock::new());
        let mut witness = None;
        if let Some(settings) = checkpoints {
            let follower = Follower::restore(store.clone(), settings, &key).await?;
            witness = follower.checkpoints.witness_stats();
            tokio::spawn(follower.run(key.clone(), broken.clone()));
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, key, rx));
        Ok(GlobalChain {
            tx,
            redact,
            broken,
            witness,
        })
    }

    /// Witness submission counters, when `audit_checkpoint.witnesses` is set.
    pub fn witness_stats(&self) -> Option<&WitnessStats> {
        self.witness.as_ref()
    }

    /// Appends one record; the record's `seq` once committed.
    pub async fn append(&self, mut fields: Map<String, Value>) -> Result<u64, AuditFailure> {
        if let Some(why) = self.broken.get() {
            return Err(AuditFailure::local(why.clone()));
        }
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

async fn write_batches(store: Store, key: Arc<AuditKey>, mut rx: mpsc::Receiver<Job>) {
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

/// Why a replica could not start on the global chain with checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum ChainStartError {
    /// The chain could not be read.
    #[error("reading the global audit chain: {0}")]
    Store(String),
    /// The chain does not extend the latest checkpoint (exit 65).
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Lines read from the chain per query.
const PAGE: u32 = 10_000;

/// How often a replica reads what the chain gained.
const POLL: Duration = Duration::from_secs(1);

/// Follows the global chain and checkpoints it.
struct Follower {
    store: Store,
    checkpoints: ChainCheckpoints,
    /// The last record seen (seq = `checkpoints.size()`), to check that the
    /// chain still holds it, byte for byte.
    last: Option<String>,
}

impl Follower {
    /// Reads the whole chain and checks the latest checkpoint against it.
    async fn restore(
        store: Store,
        settings: CheckpointSettings,
        key: &AuditKey,
    ) -> Result<Follower, ChainStartError> {
        let (mut leaves, mut last) = (Vec::new(), None);
        loop {
            let lines = store
                .audit_lines(leaves.len() as u64, PAGE)
                .await
                .map_err(|e| ChainStartError::Store(e.to_string()))?;
            let full = lines.len() == PAGE as usize;
            leaves.extend(lines.iter().map(|l| merkle::leaf_hash(l.as_bytes())));
            if let Some(l) = lines.into_iter().last() {
                last = Some(l);
            }
            if !full {
                break;
            }
        }
        let records = leaves.len();
        let checkpoints = ChainCheckpoints::restore(settings, leaves, &key.verifying_key())?;
        tracing::info!(
            records,
            "the global audit chain extends this replica's latest checkpoint"
        );
        Ok(Follower {
            store,
            checkpoints,
            last,
        })
    }

    async fn run(mut self, key: Arc<AuditKey>, broken: Arc<OnceLock<String>>) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.follow(&key).await {
                Ok(()) => {}
                Err(Lost::Store(e)) => {
                    tracing::warn!(error = %e, "cannot read the global audit chain; checkpoints wait");
                }
                Err(Lost::Broken(detail)) => {
                    let e = self.checkpoints.broken(detail);
                    tracing::error!(error = %e, "refusing to add audit records");
                    let _ = broken.set(e.to_string());
                    return;
                }
            }
            self.checkpoints.tick(&key);
        }
    }

    /// Reads what the chain gained since the last record seen, after
    /// checking that the chain still holds that record unchanged.
    async fn follow(&mut self, key: &AuditKey) -> Result<(), Lost> {
        loop {
            let size = self.checkpoints.size();
            let from = size.saturating_sub(1);
            let lines = self
                .store
                .audit_lines(from, PAGE)
                .await
                .map_err(|e| Lost::Store(e.to_string()))?;
            let full = lines.len() == PAGE as usize;
            let mut lines = lines.into_iter();
            if let Some(last) = &self.last {
                match lines.next() {
                    Some(line) if line == *last => {}
                    Some(_) => {
                        return Err(Lost::Broken(format!(
                            "the record at seq {size} was changed after this replica saw it"
                        )));
                    }
                    None => {
                        return Err(Lost::Broken(format!(
                            "the chain ends before seq {size}, which this replica saw (records were removed)"
                        )));
                    }
                }
            }
            for line in lines {
                self.checkpoints.add(&line, key);
                self.last = Some(line);
            }
            if !full {
                return Ok(());
            }
        }
    }
}

enum Lost {
    /// The database could not be read now.
    Store(String),
    /// The chain no longer holds what this replica saw.
    Broken(String),
}
