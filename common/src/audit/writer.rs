//! [`AuditLog`]: the appending side. One writer thread owns the file and
//! commits queued records in groups that share a single `fsync`; with
//! checkpoints configured it also keeps the log's Merkle tree and signs
//! checkpoints (`checkpointer`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use tokio::sync::{mpsc, oneshot};

use super::checkpointer::{CheckpointSettings, Checkpointer};
use super::merkle;
use super::record::{self, RESERVED_FIELDS};
use super::restore::{self, ChainTail};
use super::syslog::{Forwarder, SyslogSettings};
use super::{AuditError, AuditKey};

mod rotation;
mod ticker;

pub use rotation::{Rotation, rotate_on_sigusr1};

/// Requests that may wait for the writer before `append` itself waits.
const QUEUE_CAPACITY: usize = 16_384;

/// Most records committed by one `write` + `fsync`.
const MAX_BATCH: usize = 4_096;

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-23T06:00:00.123Z`.
pub(crate) const TS_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Proof that a record is durably in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReceipt {
    /// The record's `seq`.
    pub seq: u64,
    /// The record's `hash` (hex SHA-256).
    pub hash: String,
}

/// Handle to an open audit log. Cheap to clone and shareable across tasks
/// and threads.
///
/// Dropping the last handle stops the writer thread and waits for it (at
/// most one batch in progress), so the file is closed and unlocked once the
/// drop returns and the log can be reopened straight away.
#[derive(Debug, Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

/// What the handles share; its drop shuts the writer down.
#[derive(Debug)]
struct Inner {
    /// Always `Some` until the drop takes it to close the queue.
    tx: Option<mpsc::Sender<Msg>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The service's `redact` rules, applied to every record before it
    /// is queued.
    redact: std::sync::OnceLock<Arc<crate::redact::Redactor>>,
}

/// What the writer thread is asked to do.
#[derive(Debug)]
enum Msg {
    Append(Request),
    /// `every_seconds` passed: a checkpoint if records are waiting.
    Tick,
    /// Start a new file ([`AuditLog::rotate`]).
    Rotate(oneshot::Sender<Result<Rotation, AuditError>>),
}

/// What a service's `audit_*` settings ask of its log
/// ([`AuditLog::open_service`]).
#[derive(Debug, Clone, Default)]
pub struct ServiceAudit<'a> {
    /// `audit_checkpoint`.
    pub checkpoints: Option<CheckpointSettings>,
    /// `redact`.
    pub redact: Option<Arc<crate::redact::Redactor>>,
    /// `audit_syslog`.
    pub syslog: Option<SyslogSettings>,
    /// The syslog APP-NAME, e.g. `infrabroker-signer`.
    pub app: &'a str,
}

/// One queued record and where its outcome goes.
#[derive(Debug)]
struct Request {
    fields: Map<String, Value>,
    reply: oneshot::Sender<Result<AuditReceipt, AuditError>>,
}

/// State the writer publishes for handles to read.
#[derive(Debug)]
struct Shared {
    path: PathBuf,
    head: Mutex<ChainTail>,
    batches: AtomicU64,
    /// `audit_syslog`, once started ([`AuditLog::forward_to_syslog`]).
    syslog: std::sync::OnceLock<Mutex<Forwarder>>,
    /// Records syslog forwarding dropped (exported even without syslog).
    syslog_dropped: prometheus_client::metrics::counter::Counter,
    /// Witness submissions (`audit_checkpoint.witnesses`).
    witness: Option<super::witness::WitnessStats>,
}

impl AuditLog {
    /// Opens (creating with mode 0600 if missing; the parent directory must
    /// exist) the log at `path`, restores the chain head from its last
    /// complete record and starts the writer thread.
    ///
    /// A partial last line left by a crash is moved to
    /// `<log>.torn-<timestamp>` and a record (`event:
    /// audit_torn_quarantined`) naming that file is appended first. A last
    /// complete record whose hash or signature (checked with `key`'s public
    /// half) does not verify is [`AuditError::Unverified`]: appending after
    /// it would make a genuine signature vouch for a forgery. The file is
    /// locked (`flock`) so two writers cannot interleave chains. Blocking:
    /// call it at start-up or from `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>, key: AuditKey) -> Result<AuditLog, AuditError> {
        Self::open_with(path, key, None)
    }

    /// [`open`](Self::open), also keeping signed checkpoints as
    /// `checkpoints` says (see the `checkpointer` module). The latest
    /// checkpoint must verify and the log must extend it, else
    /// [`AuditError::Unverified`]: the log was cut short or rewritten.
    pub fn open_with(
        path: impl AsRef<Path>,
        key: AuditKey,
        checkpoints: Option<CheckpointSettings>,
    ) -> Result<AuditLog, AuditError> {
        let path = path.as_ref().to_path_buf();
        let (file, tail) = restore::open_log(&path, &key.verifying_key())?;
        let checkpointer = checkpoints
            .map(|s| Checkpointer::restore(s, &path, &key.verifying_key()))
            .transpose()?;
        let interval = checkpointer.as_ref().and_then(Checkpointer::interval);
        let torn = tail.torn.clone();
        let shared = Arc::new(Shared {
            path: path.clone(),
            head: Mutex::new(tail.clone()),
            batches: AtomicU64::new(0),
            syslog: std::sync::OnceLock::new(),
            syslog_dropped: Default::default(),
            witness: checkpointer.as_ref().and_then(Checkpointer::witness_stats),
        });
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let mut writer = Writer {
            file: Some(file),
            tail,
            key,
            shared: Arc::clone(&shared),
            scratch: Vec::new(),
            out: Vec::new(),
            checkpointer,
        };
        if let Some(torn) = torn {
            let (notice, mut rx) = torn_notice(&torn);
            writer.commit(&mut vec![notice]);
            match rx.try_recv() {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(AuditError::Closed),
            }
        }
        let thread = std::thread::Builder::new()
            .name("audit-writer".to_owned())
            .spawn(move || writer.run(rx))
            .map_err(|e| AuditError::io(&path, e))?;
        if let Some(every) = interval {
            ticker::spawn_ticker(&tx, every).map_err(|e| AuditError::io(&path, e))?;
        }
        Ok(AuditLog {
            inner: Arc::new(Inner {
                tx: Some(tx),
                shared,
                thread: Some(thread),
                redact: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Appends a record made of `fields` plus the chain members and returns
    /// once it is on disk (after `fsync`). Records appended concurrently are
    /// committed together.
    ///
    /// `fields` must not contain the reserved members (`seq`, `ts`,
    /// `prev_hash`, `sig`, `hash`). Avoid floating-point numbers: they may
    /// not re-encode to the same bytes, which makes the record fail
    /// signature verification.
    pub async fn append(&self, fields: Map<String, Value>) -> Result<AuditReceipt, AuditError> {
        check_reserved(&fields)?;
        let fields = self.redacted(fields);
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(Msg::Append(Request { fields, reply }))
            .await
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// [`append`](Self::append) for synchronous code such as the CLI. Works
    /// without a Tokio runtime.
    ///
    /// # Panics
    ///
    /// Like Tokio's blocking channel calls, panics if called from within an
    /// asynchronous execution context; use `append` there.
    pub fn append_blocking(&self, fields: Map<String, Value>) -> Result<AuditReceipt, AuditError> {
        check_reserved(&fields)?;
        let fields = self.redacted(fields);
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .blocking_send(Msg::Append(Request { fields, reply }))
            .map_err(|_| AuditError::Closed)?;
        rx.blocking_recv().map_err(|_| AuditError::Closed)?
    }

    /// Seals a final record (`event: audit_rotated`) into the current file,
    /// moves it to `<log>.<UTC timestamp>` and continues in a new file at
    /// the same path whose first record (`event: audit_continued`) names
    /// the previous file, its last `seq` and `hash` and the Merkle root of
    /// all its records (see the `rotation` section of the module docs).
    /// The path names a complete log at every instant: the new file is
    /// written and synced under a temporary name, the old one hard-linked
    /// to its archive name, then the new one renamed over the path. On an
    /// error nothing moved and the current file goes on.
    pub async fn rotate(&self) -> Result<Rotation, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(Msg::Rotate(reply))
            .await
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// The last committed record's `seq` and `hash` (`0` and 64 zeros for an
    /// empty log). Appends in flight are not included.
    pub fn head(&self) -> (u64, String) {
        let tail = self
            .inner
            .shared
            .head
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (tail.seq, tail.hash.clone())
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.inner.shared.path
    }

    /// Witness submission counters, when `audit_checkpoint.witnesses` is set.
    pub fn witness_stats(&self) -> Option<super::witness::WitnessStats> {
        self.inner.shared.witness.clone()
    }

    /// How many group commits (`write` + `fsync`) have succeeded. Lets
    /// tests and metrics see how well concurrent appends are batched.
    pub fn batches(&self) -> u64 {
        self.inner.shared.batches.load(Ordering::Relaxed)
    }

    /// How a service opens its log: [`open_with`](Self::open_with) its
    /// checkpoints, then its `redact` rules, its `audit_syslog` forwarding
    /// and rotation on SIGUSR1. Blocking (call it from `spawn_blocking` in
    /// async code); needs a Tokio runtime for the signal watcher.
    pub fn open_service(
        path: impl AsRef<Path>,
        key: AuditKey,
        opts: ServiceAudit<'_>,
    ) -> Result<AuditLog, AuditError> {
        let log = Self::open_with(path, key, opts.checkpoints)?;
        if let Some(r) = opts.redact {
            log.set_redactor(r);
        }
        if let Some(s) = opts.syslog {
            log.forward_to_syslog(s, opts.app)
                .map_err(|e| AuditError::Write(format!("audit_syslog: {e}")))?;
        }
        rotate_on_sigusr1(&log)
            .map_err(|e| AuditError::Write(format!("cannot watch SIGUSR1: {e}")))?;
        Ok(log)
    }

    /// Forwards every record sealed from now on to syslog as `settings`
    /// say, with `app` as its APP-NAME (see the `syslog` module). Once, at
    /// start-up; a second call is ignored.
    pub fn forward_to_syslog(&self, settings: SyslogSettings, app: &str) -> std::io::Result<()> {
        let dropped = self.inner.shared.syslog_dropped.clone();
        let forwarder = Forwarder::start(settings, app, dropped)?;
        let _ = self.inner.shared.syslog.set(Mutex::new(forwarder));
        Ok(())
    }

    /// The count of records syslog forwarding dropped, for `/metrics`.
    pub fn syslog_dropped(&self) -> prometheus_client::metrics::counter::Counter {
        self.inner.shared.syslog_dropped.clone()
    }

    /// Redacts every record appended from now on with `rules` (the
    /// service's `redact`); set once, at start-up.
    pub fn set_redactor(&self, rules: Arc<crate::redact::Redactor>) {
        let _ = self.inner.redact.set(rules);
    }

    /// The `redact` rules records get, for other writers of the same
    /// service's secrets (recordings).
    pub fn redactor(&self) -> Option<&Arc<crate::redact::Redactor>> {
        self.inner.redact.get()
    }

    fn redacted(&self, mut fields: Map<String, Value>) -> Map<String, Value> {
        if let Some(r) = self.redactor() {
            r.record(&mut fields);
        }
        fields
    }

    fn sender(&self) -> Result<&mpsc::Sender<Msg>, AuditError> {
        self.inner.tx.as_ref().ok_or(AuditError::Closed)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the writer's loop once it is drained.
        self.tx = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("audit writer thread panicked");
        }
    }
}

fn check_reserved(fields: &Map<String, Value>) -> Result<(), AuditError> {
    match RESERVED_FIELDS
        .iter()
        .find(|name| fields.contains_key(**name))
    {
        Some(name) => Err(AuditError::ReservedField((*name).to_owned())),
        None => Ok(()),
    }
}

/// The writer thread's state.
struct Writer {
    /// `None` after a failed commit: the head must be re-read from disk.
    file: Option<File>,
    tail: ChainTail,
    key: AuditKey,
    shared: Arc<Shared>,
    scratch: Vec<u8>,
    out: Vec<u8>,
    checkpointer: Option<Checkpointer>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut msgs = Vec::with_capacity(MAX_BATCH);
        let mut batch = Vec::with_capacity(MAX_BATCH);
        // Blocks for the first request, then takes whatever else is queued:
        // everything that arrived during the previous fsync shares the next.
        while rx.blocking_recv_many(&mut msgs, MAX_BATCH) > 0 {
            let mut tick = false;
            for msg in msgs.drain(..) {
                match msg {
                    Msg::Append(request) => batch.push(request),
                    Msg::Tick => tick = true,
                    Msg::Rotate(reply) => {
                        // Records queued before the request stay in the old file.
                        if !batch.is_empty() {
                            self.commit(&mut batch);
                            batch.clear();
                        }
                        let _ = reply.send(self.rotate());
                    }
                }
            }
            if !batch.is_empty() {
                self.commit(&mut batch);
                batch.clear();
            }
            if let Some(c) = self.checkpointer.as_mut().filter(|_| tick) {
                c.tick(&self.key);
            }
            self.record_syslog_drops();
        }
        if let Some(c) = &mut self.checkpointer {
            c.close(&self.key);
        }
    }

    /// The open file, or after a failed write the file reopened from disk
    /// with its tail (and checkpoint) verified again; `None` (every
    /// request in `batch` failed) when that does not verify.
    fn file_for(&mut self, batch: &mut Vec<Request>) -> Option<File> {
        if let Some(file) = self.file.take() {
            return Some(file);
        }
        let path = self.shared.path.clone();
        let reopened =
            restore::open_log(&path, &self.key.verifying_key()).and_then(|(file, tail)| {
                if let Some(c) = &mut self.checkpointer {
                    c.reload(&path, &self.key.verifying_key())?;
                }
                Ok((file, tail))
            });
        match reopened {
            Ok((file, tail)) => {
                if let Some(torn) = &tail.torn {
                    // The caller of this notice is nobody; its reply is dropped.
                    batch.insert(0, torn_notice(torn).0);
                }
                self.tail = tail;
                self.publish_head();
                Some(file)
            }
            Err(e) => {
                fail_all(batch, &format!("reopening after a failed write: {e}"));
                None
            }
        }
    }

    fn commit(&mut self, batch: &mut Vec<Request>) {
        let path = self.shared.path.clone();
        let Some(file) = self.file_for(batch) else {
            return;
        };
        let now = OffsetDateTime::now_utc();
        let ts = match now.format(TS_FORMAT) {
            Ok(ts) => ts,
            Err(e) => {
                self.file = Some(file);
                return fail_all(batch, &format!("formatting the time: {e}"));
            }
        };

        self.out.clear();
        let mut next = self.tail.clone();
        let mut sealed = Vec::with_capacity(batch.len());
        for request in batch.drain(..) {
            let Request { mut fields, reply } = request;
            match record::seal(
                &mut fields,
                next.seq + 1,
                &ts,
                &next.hash,
                self.key.signing_key(),
                &mut self.scratch,
                &mut self.out,
            ) {
                Ok(hash) => {
                    next.seq += 1;
                    next.hash = hash;
                    sealed.push((
                        reply,
                        AuditReceipt {
                            seq: next.seq,
                            hash: next.hash.clone(),
                        },
                    ));
                }
                Err(e) => {
                    let _ = reply.send(Err(AuditError::Write(format!("encoding the record: {e}"))));
                }
            }
        }
        if sealed.is_empty() {
            self.file = Some(file);
            return;
        }

        match restore::write_durably(&file, &self.out, self.tail.len) {
            Ok(()) => {
                next.len = self.tail.len + self.out.len() as u64;
                self.tail = next;
                self.after_commit();
                self.file = Some(file);
                self.publish_head();
                self.shared.batches.fetch_add(1, Ordering::Relaxed);
                for (reply, receipt) in sealed {
                    // A caller that gave up waiting still has its record
                    // logged; nobody is left to tell.
                    let _ = reply.send(Ok(receipt));
                }
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "audit write failed");
                // Dropping the file (and its lock) makes the next batch
                // re-read the head from disk instead of trusting memory.
                drop(file);
                let msg = format!("{}: {e}", path.display());
                for (reply, _) in sealed {
                    let _ = reply.send(Err(AuditError::Write(msg.clone())));
                }
            }
        }
    }

    /// What follows every durable batch: the checkpointer and syslog see
    /// its lines.
    fn after_commit(&mut self) {
        if let Some(c) = &mut self.checkpointer {
            c.committed(&self.out, &self.key);
        }
        if let Some(f) = self.shared.syslog.get() {
            f.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .offer(&self.out);
        }
    }

    /// Tells the chain how many records syslog forwarding dropped, when
    /// that grew (at most once a minute).
    fn record_syslog_drops(&mut self) {
        let total = match self.shared.syslog.get() {
            Some(f) => f
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .drops_to_record(),
            None => None,
        };
        if let Some(total) = total {
            let mut fields = Map::new();
            fields.insert("event".into(), Value::from("audit_syslog_dropped"));
            fields.insert("dropped_total".into(), Value::from(total));
            let _ = self.commit_one(fields);
        }
    }

    /// Seals and commits one record outside any caller's batch.
    fn commit_one(&mut self, fields: Map<String, Value>) -> Result<AuditReceipt, AuditError> {
        let (reply, mut rx) = oneshot::channel();
        self.commit(&mut vec![Request { fields, reply }]);
        match rx.try_recv() {
            Ok(result) => result,
            Err(_) => Err(AuditError::Closed),
        }
    }

    fn publish_head(&self) {
        let mut head = self
            .shared
            .head
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *head = self.tail.clone();
    }
}

/// The record that says a torn line was quarantined, and where its
/// outcome will arrive.
fn torn_notice(
    torn: &restore::Torn,
) -> (Request, oneshot::Receiver<Result<AuditReceipt, AuditError>>) {
    let mut fields = Map::new();
    fields.insert("event".into(), Value::from("audit_torn_quarantined"));
    fields.insert(
        "quarantine_file".into(),
        Value::from(torn.path.display().to_string()),
    );
    fields.insert("torn_bytes".into(), Value::from(torn.bytes));
    let (reply, rx) = oneshot::channel();
    (Request { fields, reply }, rx)
}

fn fail_all(batch: &mut Vec<Request>, msg: &str) {
    for request in batch.drain(..) {
        let _ = request.reply.send(Err(AuditError::Write(msg.to_owned())));
    }
}
