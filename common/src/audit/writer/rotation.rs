//! Rotation on the writer thread ([`AuditLog::rotate`]): the final record,
//! the new file written and synced under a temporary name, the old one
//! linked to its archive name, the new one renamed over the path, the
//! checkpoints moved over (see the `Rotation` section of the `audit`
//! module docs).

use super::*;

/// What [`AuditLog::rotate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Where the previous file now is (`<log>.<UTC timestamp>`).
    pub archived: PathBuf,
    /// The previous file's last `seq` (its `audit_rotated` record).
    pub previous_seq: u64,
    /// That record's `hash`.
    pub previous_hash: String,
    /// Lowercase hex Merkle root of all the previous file's records.
    pub previous_root: String,
}

impl Writer {
    /// [`AuditLog::rotate`] on the writer thread.
    pub(super) fn rotate(&mut self) -> Result<Rotation, AuditError> {
        let path = self.shared.path.clone();
        let archived = archive_name(&path);
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        let mut fields = Map::new();
        fields.insert("event".into(), Value::from("audit_rotated"));
        fields.insert("archived_as".into(), Value::from(name(&archived)));
        let last = self.commit_one(fields)?;
        let root = match &self.checkpointer {
            Some(c) => c.root(),
            None => merkle::root(&merkle::log_leaves(&path).map_err(|e| AuditError::io(&path, e))?),
        };
        let root = hex::encode(root);
        if let Some(c) = &mut self.checkpointer {
            c.close(&self.key);
        }
        let mut next = path.as_os_str().to_owned();
        next.push(".next");
        let next = PathBuf::from(next);
        match self.start_next(&next, &archived, &last, &root) {
            Ok(()) => Ok(Rotation {
                archived,
                previous_seq: last.seq,
                previous_hash: last.hash,
                previous_root: root,
            }),
            Err(e) => {
                // Back to the old file, re-read from disk (the checkpointer too).
                self.file = None;
                let _ = std::fs::remove_file(&next);
                Err(e)
            }
        }
    }

    /// Writes the new file's first record under `next`, links the current
    /// file to `archived`, renames `next` over the log's path, and moves
    /// the checkpoints over to the new file.
    fn start_next(
        &mut self,
        next: &Path,
        archived: &Path,
        last: &AuditReceipt,
        root: &str,
    ) -> Result<(), AuditError> {
        let path = self.shared.path.clone();
        let _ = std::fs::remove_file(next);
        let (file, tail) = restore::open_log(next, &self.key.verifying_key())?;
        let old = self.file.replace(file);
        let old_tail = std::mem::replace(&mut self.tail, tail);
        if let Some(c) = &mut self.checkpointer {
            c.reset();
        }
        let mut fields = Map::new();
        fields.insert("event".into(), Value::from("audit_continued"));
        fields.insert(
            "previous_file".into(),
            Value::from(
                archived
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned()),
            ),
        );
        fields.insert("previous_seq".into(), Value::from(last.seq));
        fields.insert("previous_hash".into(), Value::from(last.hash.clone()));
        fields.insert(
            "previous_checkpoint".into(),
            serde_json::json!({"size": old_tail.seq, "root": root}),
        );
        let first = self.commit_one(fields);
        let moved = first.and_then(|_| {
            let io = |e| AuditError::io(&path, e);
            std::fs::hard_link(&path, archived).map_err(io)?;
            std::fs::rename(next, &path).map_err(io)?;
            restore::sync_parent(&path)
        });
        // The old file's lock goes with its handle; the new one is locked.
        drop(old);
        moved?;
        if let Some(c) = &mut self.checkpointer {
            c.write_now(&self.key);
        }
        Ok(())
    }
}

/// `<log>.<UTC timestamp>`, with `-1`, `-2`… when that name is taken.
fn archive_name(path: &Path) -> PathBuf {
    let stamp = OffsetDateTime::now_utc()
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| "rotated".to_owned());
    let with = |suffix: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".{stamp}{suffix}"));
        PathBuf::from(s)
    };
    let mut candidate = with("");
    let mut n = 1;
    while candidate.exists() {
        candidate = with(&format!("-{n}"));
        n += 1;
    }
    candidate
}

/// Rotates `log` ([`AuditLog::rotate`]) on every SIGUSR1, logging the
/// outcome; needs a Tokio runtime. Services call it once at start-up. The
/// watcher holds the log weakly: it never keeps a closed log open, and
/// ends at the first signal after the log is gone.
pub fn rotate_on_sigusr1(log: &AuditLog) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let weak = Arc::downgrade(&log.inner);
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            let Some(inner) = weak.upgrade() else { return };
            let log = AuditLog { inner };
            match log.rotate().await {
                Ok(r) => tracing::info!(
                    path = %log.path().display(),
                    archived = %r.archived.display(),
                    previous_seq = r.previous_seq,
                    "audit log rotated"
                ),
                Err(e) => tracing::error!(
                    path = %log.path().display(),
                    error = %e,
                    "audit log rotation failed; the current file goes on"
                ),
            }
        }
    });
    Ok(())
}
