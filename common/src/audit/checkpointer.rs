//! The writer's side of checkpoints (config `audit_checkpoint`): the right
//! edge of the log's Merkle tree in memory (O(log n) hashes, a
//! [`Frontier`]), and a signed checkpoint written after every
//! `every_records` new records, after `every_seconds` when fewer arrived,
//! and when the log closes.
//!
//! A new checkpoint replaces the file atomically (temporary file, `fsync`,
//! rename, directory `fsync`); the one it replaces is kept as `<path>.1`,
//! older ones shift up to `<path>.<keep>`. The file at `path` exists at every
//! instant once the first checkpoint is written, so a crash never leaves the
//! next start without one.
//!
//! On open the log's tree is rebuilt from the file and the latest
//! checkpoint must verify with the service's audit key and be extended by
//! the log. A log cut short, or whose first `size` records no longer
//! reproduce the root, is refused like an unverified tail
//! ([`AuditError::Unverified`], exit 65): the tail-signature check alone
//! cannot see a truncation, the checkpoint can.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;

use super::checkpoint::Checkpoint;
use super::merkle::{self, Frontier};
use super::witness::{Job, WitnessSettings, WitnessStats, Witnesses};
use super::{AuditError, AuditKey};
use crate::config::Obj;

/// `every_records` when the config leaves it out.
pub const DEFAULT_EVERY_RECORDS: u64 = 1000;
/// How many previous checkpoints are kept when the config leaves `keep` out.
pub const DEFAULT_KEEP: usize = 8;
const MAX_KEEP: u64 = 1000;

/// Where and how often a service writes checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// The checkpoint file, outside the log's directory.
    pub path: PathBuf,
    /// The origin line of the checkpoints, also the signed note's signer
    /// name (unique per log, e.g. `infrabroker.example/signer`).
    pub origin: String,
    /// A checkpoint once at least this many records are not yet covered (≥ 1).
    pub every_records: u64,
    /// A checkpoint this long after the last one when records are waiting.
    pub every_seconds: Option<Duration>,
    /// How many previous checkpoints to keep beside the latest.
    pub keep: usize,
    /// Witnesses asked to cosign each checkpoint (see the `witness` module).
    pub witnesses: Vec<WitnessSettings>,
}

impl CheckpointSettings {
    /// Reads `audit_checkpoint` from a service's config object `o` (errors
    /// reported there, with their paths); `None` when absent or invalid.
    /// `audit_log` (when known) is the log it covers: the checkpoint may not
    /// live in the same directory.
    pub fn read(o: &Obj<'_>, base: &Path, audit_log: Option<&Path>) -> Option<CheckpointSettings> {
        let c = o.opt_obj("audit_checkpoint")?;
        let path = c.file_path("path", base);
        let origin = c.str("origin");
        let every_records = c.opt_u64("every_records");
        let every_seconds = c.opt_u64("every_seconds");
        let keep = c.opt_u64("keep");
        let witnesses = super::witness::read_settings(&c);
        let mut ok = true;
        let mut bad = |key: &str, msg: String| {
            c.error(key, msg);
            ok = false;
        };
        if let Some(origin) = &origin
            && let Err(msg) = check_origin(origin)
        {
            bad("origin", msg);
        }
        if every_records == Some(0) {
            bad("every_records", "must be at least 1".into());
        }
        if every_seconds == Some(0) {
            bad(
                "every_seconds",
                "must be at least 1 (leave it out for none)".into(),
            );
        }
        if keep.is_some_and(|k| k > MAX_KEEP) {
            bad(
                "keep",
                format!("at most {MAX_KEEP} previous checkpoints are kept"),
            );
        }
        if let (Some(path), Some(log)) = (&path, audit_log)
            && path.parent() == log.parent()
        {
            bad(
                "path",
                format!(
                    "{} is in the audit log's directory; put it where whoever can rewrite the log cannot (e.g. /var/lib/infrabroker/checkpoints/)",
                    path.display()
                ),
            );
        }
        c.finish();
        Some(CheckpointSettings {
            path: path?,
            origin: origin?,
            every_records: every_records.unwrap_or(DEFAULT_EVERY_RECORDS),
            every_seconds: every_seconds.map(Duration::from_secs),
            keep: keep.map_or(DEFAULT_KEEP, |k| k as usize),
            witnesses,
        })
        .filter(|_| ok)
    }
}

/// A signed note's signer name (here also the origin line) is non-empty
/// and has no spaces or `+` (C2SP signed-note).
fn check_origin(origin: &str) -> Result<(), String> {
    if origin.is_empty() {
        return Err("must not be empty".into());
    }
    if origin.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(format!(
            "{origin:?} has a space or `+`; a signed-note name cannot (use e.g. infrabroker.example/signer)"
        ));
    }
    Ok(())
}

pub(crate) struct Checkpointer {
    settings: CheckpointSettings,
    tree: Frontier,
    /// The size the latest checkpoint on disk commits to.
    last_size: u64,
    last_at: Instant,
    /// The witnesses' thread and the leaves it has not been sent yet.
    witnesses: Option<(Witnesses, Vec<merkle::Hash>)>,
}

impl Checkpointer {
    /// Rebuilds the tree from the log at `log` and checks the latest
    /// checkpoint against it.
    pub(crate) fn restore(
        settings: CheckpointSettings,
        log: &Path,
        key: &VerifyingKey,
    ) -> Result<Checkpointer, AuditError> {
        let (leaves, last_size) = rebuild(&settings, log, key)?;
        Self::start(settings, leaves, last_size).map_err(|e| AuditError::io(log, e))
    }

    fn start(
        settings: CheckpointSettings,
        leaves: Vec<merkle::Hash>,
        last_size: u64,
    ) -> io::Result<Checkpointer> {
        let witnesses = match settings.witnesses.as_slice() {
            [] => None,
            list => Some((Witnesses::start(list.to_vec(), &settings.path)?, Vec::new())),
        };
        let tree = frontier(&leaves);
        if let Some((w, _)) = &witnesses {
            w.send(Job::Leaves(leaves));
        }
        Ok(Checkpointer {
            settings,
            tree,
            last_size,
            last_at: Instant::now(),
            witnesses,
        })
    }

    /// The witnesses' counters, when witnesses are configured.
    pub(crate) fn witness_stats(&self) -> Option<WitnessStats> {
        self.witnesses.as_ref().map(|(w, _)| w.stats.clone())
    }

    /// [`restore`](Self::restore) again, after a failed write reopened the log.
    pub(crate) fn reload(&mut self, log: &Path, key: &VerifyingKey) -> Result<(), AuditError> {
        let (leaves, last_size) = rebuild(&self.settings, log, key)?;
        self.tree = frontier(&leaves);
        self.last_size = last_size;
        if let Some((w, pending)) = &mut self.witnesses {
            pending.clear();
            w.send(Job::Reset);
            w.send(Job::Leaves(leaves));
        }
        Ok(())
    }

    /// Adds the lines just made durable; writes a checkpoint when
    /// `every_records` are waiting.
    pub(crate) fn committed(&mut self, lines: &[u8], key: &AuditKey) {
        for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let leaf = merkle::leaf_hash(line);
            self.tree.push(leaf);
            if let Some((_, pending)) = &mut self.witnesses {
                pending.push(leaf);
            }
        }
        if self.tree.size() - self.last_size >= self.settings.every_records.max(1) {
            self.write(key);
        }
    }

    /// How long the writer may wait for records before [`tick`](Self::tick)
    /// is due; `None` without `every_seconds`.
    pub(crate) fn interval(&self) -> Option<Duration> {
        self.settings.every_seconds
    }

    /// The `every_seconds` check: a checkpoint when records are waiting and
    /// the last one is old enough.
    pub(crate) fn tick(&mut self, key: &AuditKey) {
        let due = self
            .settings
            .every_seconds
            .is_some_and(|t| self.last_at.elapsed() >= t);
        if due && self.tree.size() > self.last_size {
            self.write(key);
        }
    }

    /// The Merkle Tree Hash of every record so far.
    pub(crate) fn root(&self) -> merkle::Hash {
        self.tree.root()
    }

    /// Starts over for a new, empty file (a rotation).
    pub(crate) fn reset(&mut self) {
        self.tree = Frontier::default();
        self.last_size = 0;
        if let Some((w, pending)) = &mut self.witnesses {
            pending.clear();
            w.send(Job::Reset);
        }
    }

    /// A checkpoint now, due or not (the first of a rotated-in file).
    pub(crate) fn write_now(&mut self, key: &AuditKey) {
        self.write(key);
    }

    /// The final checkpoint when the log closes: it covers every record.
    pub(crate) fn close(&mut self, key: &AuditKey) {
        if self.tree.size() > self.last_size {
            self.write(key);
        }
    }

    /// Signs and writes a checkpoint of the whole tree. A checkpoint that
    /// cannot be written is logged and retried with the next records, never
    /// an append error: the records themselves are safe on disk.
    fn write(&mut self, key: &AuditKey) {
        let cp = Checkpoint {
            origin: self.settings.origin.clone(),
            size: self.tree.size(),
            root: self.tree.root(),
        };
        let note = cp.sign_audit(&self.settings.origin, key);
        match replace(&self.settings, &note) {
            Ok(()) => {
                self.last_size = cp.size;
                self.last_at = Instant::now();
                if let Some((w, pending)) = &mut self.witnesses {
                    w.send(Job::Leaves(std::mem::take(pending)));
                    w.send(Job::Checkpoint {
                        note,
                        size: cp.size,
                    });
                }
            }
            Err(e) => tracing::warn!(
                path = %self.settings.path.display(),
                error = %e,
                "cannot write the audit checkpoint; retrying after the next records"
            ),
        }
    }
}

/// The log's leaf hashes and the size its latest checkpoint commits to (0
/// when none was written yet).
fn rebuild(
    settings: &CheckpointSettings,
    log: &Path,
    key: &VerifyingKey,
) -> Result<(Vec<merkle::Hash>, u64), AuditError> {
    let leaves = merkle::log_leaves(log).map_err(|e| AuditError::io(log, e))?;
    let cp_path = &settings.path;
    let refuse = |detail: String| AuditError::Unverified {
        path: log.to_path_buf(),
        seq: None,
        detail: format!("checkpoint {}: {detail}", cp_path.display()),
    };
    // A rotation stopped between renaming the new file in and writing its
    // first checkpoint: the checkpoint is of the file this one continues,
    // and its first record says so.
    let last_size = latest_size(settings, &leaves, key, refuse, |cp| continues(log, cp))?;
    Ok((leaves, last_size))
}

fn frontier(leaves: &[merkle::Hash]) -> Frontier {
    let mut tree = Frontier::default();
    for leaf in leaves {
        tree.push(*leaf);
    }
    tree
}

/// The size the latest checkpoint at `settings.path` commits to (0 when
/// none was written yet), after checking its signature and that the chain
/// whose leaf hashes are `leaves` extends it. `refuse` words the error;
/// `continued` says whether a checkpoint the leaves do not extend is that
/// of the file this chain continues (a rotation).
fn latest_size(
    settings: &CheckpointSettings,
    leaves: &[merkle::Hash],
    key: &VerifyingKey,
    refuse: impl Fn(String) -> AuditError,
    continued: impl Fn(&Checkpoint) -> bool,
) -> Result<u64, AuditError> {
    let cp_path = &settings.path;
    match fs::read_to_string(cp_path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if numbered(cp_path, 1).exists() {
                return Err(refuse(
                    "is missing while older checkpoints are beside it; it was removed".into(),
                ));
            }
            Ok(0)
        }
        Err(e) => Err(AuditError::io(cp_path, e)),
        Ok(text) => {
            let cp = Checkpoint::open(&text, &settings.origin, key).map_err(|e| {
                refuse(format!(
                    "{e} (if audit_checkpoint.origin or the audit key changed, move the old checkpoints aside)"
                ))
            })?;
            match cp.check_log(leaves) {
                Ok(()) => Ok(cp.size),
                Err(_) if continued(&cp) => Ok(0),
                Err(why) => Err(refuse(why)),
            }
        }
    }
}

/// Checkpoints of a chain the service reads rather than writes: the signer
/// replicas' one global chain in PostgreSQL (HA mode). Each replica keeps
/// the chain's tree in memory and writes its own checkpoint file
/// (`audit_checkpoint.path`, local to the replica, where a database
/// administrator cannot reach it); the caller feeds it the chain's records
/// in order and checks that the chain still extends what it has seen.
pub struct ChainCheckpoints {
    inner: Checkpointer,
}

impl std::fmt::Debug for ChainCheckpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainCheckpoints")
            .field("path", &self.inner.settings.path)
            .field("size", &self.inner.tree.size())
            .field("checkpointed", &self.inner.last_size)
            .finish()
    }
}

impl ChainCheckpoints {
    /// Checks the latest checkpoint at `settings.path` (signature, and that
    /// the chain whose records have leaf hashes `leaves` — all of them, in
    /// order — extends it) and starts the tree from `leaves`. A chain that
    /// does not extend it is [`AuditError::ChainBroken`] (exit 65).
    pub fn restore(
        settings: CheckpointSettings,
        leaves: Vec<merkle::Hash>,
        key: &VerifyingKey,
    ) -> Result<ChainCheckpoints, AuditError> {
        let checkpoint = settings.path.clone();
        let refuse = |detail: String| AuditError::ChainBroken {
            checkpoint: checkpoint.clone(),
            detail,
        };
        let last_size = latest_size(&settings, &leaves, key, refuse, |_| false)?;
        let path = settings.path.clone();
        let inner = Checkpointer::start(settings, leaves, last_size)
            .map_err(|e| AuditError::io(path, e))?;
        Ok(ChainCheckpoints { inner })
    }

    /// How many records the tree holds.
    pub fn size(&self) -> u64 {
        self.inner.tree.size()
    }

    /// Adds the chain's next record (its line, without `\n`); writes a
    /// checkpoint when `every_records` are waiting.
    pub fn add(&mut self, line: &str, key: &AuditKey) {
        self.inner.committed(line.as_bytes(), key);
    }

    /// The `every_seconds` check (see [`CheckpointSettings`]).
    pub fn tick(&mut self, key: &AuditKey) {
        self.inner.tick(key);
    }

    /// A checkpoint of every record seen, when one is not yet written.
    pub fn close(&mut self, key: &AuditKey) {
        self.inner.close(key);
    }

    /// The witnesses' counters, when witnesses are configured.
    pub fn witness_stats(&self) -> Option<WitnessStats> {
        self.inner.witness_stats()
    }

    /// The error that says the chain no longer extends what this replica
    /// has seen (`detail` says how).
    pub fn broken(&self, detail: String) -> AuditError {
        AuditError::ChainBroken {
            checkpoint: self.inner.settings.path.clone(),
            detail,
        }
    }
}

/// Whether the log's first record is an `audit_continued` whose
/// `previous_checkpoint` is `cp`.
fn continues(log: &Path, cp: &Checkpoint) -> bool {
    use std::io::BufRead as _;
    let Ok(file) = File::open(log) else {
        return false;
    };
    let mut first = String::new();
    if io::BufReader::new(file).read_line(&mut first).is_err() {
        return false;
    }
    let Ok(record) = serde_json::from_str::<serde_json::Value>(&first) else {
        return false;
    };
    record["event"] == "audit_continued"
        && record["previous_checkpoint"]["size"] == cp.size
        && record["previous_checkpoint"]["root"] == hex::encode(cp.root)
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Shifts `path.1` → `path.2` … (dropping the oldest), links the current
/// checkpoint as `path.1`, then writes `note` to a temporary file and
/// renames it over `path`.
fn replace(settings: &CheckpointSettings, note: &str) -> io::Result<()> {
    let path = &settings.path;
    if settings.keep > 0 && path.exists() {
        for n in (1..settings.keep).rev() {
            if numbered(path, n).exists() {
                fs::rename(numbered(path, n), numbered(path, n + 1))?;
            }
        }
        let previous = numbered(path, 1);
        match fs::remove_file(&previous) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::hard_link(path, &previous)?;
    }
    write_atomic(path, note)
}

/// Writes `text` to a temporary file beside `path`, `fsync`s it, renames
/// it over `path` and `fsync`s the directory: `path` holds the old or the
/// new text at every instant.
pub(crate) fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => File::open(p)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
