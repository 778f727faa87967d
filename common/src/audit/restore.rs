//! Opening the log file and finding where the chain continues: the last
//! complete record, whose hash *and signature* must check out, after moving
//! a line torn by a crash into a quarantine file.
//!
//! Integrity rule: the writer never appends after a record it has not
//! verified with the audit public key. Without it, someone who can write
//! the file but holds no key could edit or append records with correct
//! `seq`/`prev_hash`/`hash` while the service is stopped, and the next
//! genuine signature would vouch for the forgery.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use time::OffsetDateTime;
use time::macros::format_description;

use super::AuditError;
use super::record::{self, GENESIS_HASH};

/// How far back one read goes while looking for a line start.
const CHUNK: usize = 64 * 1024;

/// Where the chain stands: the last record's seq and hash, and the file
/// length just after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainTail {
    pub(crate) seq: u64,
    pub(crate) hash: String,
    pub(crate) len: u64,
    /// A torn last line found on open, now in a quarantine file.
    pub(crate) torn: Option<Torn>,
}

/// A partial last line moved out of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Torn {
    /// The quarantine file, `<log>.torn-<UTC timestamp>`.
    pub(crate) path: PathBuf,
    /// How many bytes were moved.
    pub(crate) bytes: u64,
}

impl ChainTail {
    /// The state of an empty log.
    pub(crate) fn genesis() -> Self {
        ChainTail {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
            len: 0,
            torn: None,
        }
    }
}

/// Opens `path` for appending (creating it 0600), locks it and reads the
/// chain tail, whose signature must verify with `key`. Non-regular files
/// (devices, pipes) have no tail to read and start a fresh chain.
pub(crate) fn open_log(path: &Path, key: &VerifyingKey) -> Result<(File, ChainTail), AuditError> {
    let io_err = |e| AuditError::io(path, e);
    let mut options = OpenOptions::new();
    options.read(true).append(true);
    let file = match options.clone().create_new(true).mode(0o600).open(path) {
        Ok(file) => {
            // The new directory entry must survive a crash as well as the
            // records written into it.
            sync_parent(path)?;
            file
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => options.open(path).map_err(io_err)?,
        Err(e) => return Err(io_err(e)),
    };
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Ok((file, ChainTail::genesis()));
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(AuditError::Locked {
                path: path.to_path_buf(),
            });
        }
        Err(TryLockError::Error(e)) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot lock the audit log; continuing unlocked");
        }
    }
    let tail = read_tail(&file, path, key)?;
    Ok((file, tail))
}

/// Appends `bytes` and makes them durable. On failure the file is cut back
/// to `len_before`, so records whose callers are told "failed" do not
/// linger in the log.
pub(crate) fn write_durably(mut file: &File, bytes: &[u8], len_before: u64) -> io::Result<()> {
    let result = file.write_all(bytes).and_then(|()| file.sync_data());
    if result.is_err()
        && file.metadata().is_ok_and(|m| m.is_file())
        && let Err(e) = file.set_len(len_before).and_then(|()| file.sync_data())
    {
        tracing::warn!(error = %e, "cannot cut a failed audit batch back out of the log");
    }
    result
}

fn read_tail(file: &File, path: &Path, key: &VerifyingKey) -> Result<ChainTail, AuditError> {
    let io_err = |e| AuditError::io(path, e);
    let mut len = file.metadata().map_err(io_err)?.len();
    if len == 0 {
        return Ok(ChainTail::genesis());
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1).map_err(io_err)?;
    let mut torn = None;
    if last != *b"\n" {
        let cut = rfind_newline(file, len)
            .map_err(io_err)?
            .map_or(0, |p| p + 1);
        torn = Some(quarantine(file, path, cut, len)?);
        len = cut;
        if len == 0 {
            return Ok(ChainTail {
                torn,
                ..ChainTail::genesis()
            });
        }
    }
    let start = rfind_newline(file, len - 1)
        .map_err(io_err)?
        .map_or(0, |p| p + 1);
    let line_len = usize::try_from(len - 1 - start).map_err(|_| AuditError::Unverified {
        path: path.to_path_buf(),
        seq: None,
        detail: "last record is too long".to_owned(),
    })?;
    let mut line = vec![0u8; line_len];
    file.read_exact_at(&mut line, start).map_err(io_err)?;
    let unverified = |seq, fault: record::Fault| AuditError::Unverified {
        path: path.to_path_buf(),
        seq,
        detail: format!(
            "last record (byte {start}): {}: {}",
            fault.kind, fault.detail
        ),
    };
    let head = record::check_line(&line).map_err(|fault| unverified(None, fault))?;
    record::check_signature(&line, key).map_err(|fault| unverified(Some(head.seq), fault))?;
    Ok(ChainTail {
        seq: head.seq,
        hash: head.hash.to_owned(),
        len,
        torn,
    })
}

/// Copies bytes `cut..len` (a line without its newline) to a new
/// `<log>.torn-<timestamp>` file, makes it durable, then cuts them off the
/// log. Nothing is ever dropped without a copy.
fn quarantine(file: &File, path: &Path, cut: u64, len: u64) -> Result<Torn, AuditError> {
    let io_err = |e| AuditError::io(path, e);
    let n = usize::try_from(len - cut).map_err(|e| io_err(io::Error::other(e)))?;
    let mut bytes = vec![0u8; n];
    file.read_exact_at(&mut bytes, cut).map_err(io_err)?;
    let stamp = OffsetDateTime::now_utc()
        .format(format_description!(
            "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
        ))
        .map_err(|e| io_err(io::Error::other(e)))?;
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".torn-{stamp}"));
    let target = PathBuf::from(name);
    let q_err = |e| AuditError::io(&target, e);
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&target)
        .map_err(q_err)?;
    out.write_all(&bytes)
        .and_then(|()| out.sync_all())
        .map_err(q_err)?;
    sync_parent(&target)?;
    tracing::warn!(
        path = %path.display(),
        quarantine = %target.display(),
        bytes = n,
        "audit log ended with a partial record (crash during a write?); moved it to the quarantine file"
    );
    file.set_len(cut)
        .and_then(|()| file.sync_data())
        .map_err(io_err)?;
    Ok(Torn {
        path: target,
        bytes: n as u64,
    })
}

/// Makes a new directory entry under `path`'s parent durable.
pub(crate) fn sync_parent(path: &Path) -> Result<(), AuditError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| AuditError::io(parent, e))
}

/// Position of the last `\n` before byte `before`, reading backwards.
fn rfind_newline(file: &File, before: u64) -> io::Result<Option<u64>> {
    let mut buf = vec![0u8; CHUNK];
    let mut end = before;
    while end > 0 {
        let start = end.saturating_sub(CHUNK as u64);
        // At most CHUNK bytes, so the conversion and the slice are in range.
        let n = (end - start) as usize;
        let chunk = buf.get_mut(..n).unwrap_or_default();
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(start + i as u64));
        }
        end = start;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn key() -> VerifyingKey {
        crate::audit::AuditKey::from_seed(zeroize::Zeroizing::new([7u8; 32])).verifying_key()
    }

    #[test]
    fn new_log_is_created_private_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (_file, tail) = open_log(&path, &key()).unwrap();
        assert_eq!(tail, ChainTail::genesis());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn missing_parent_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = open_log(&dir.path().join("nope/audit.jsonl"), &key()).unwrap_err();
        assert!(matches!(err, AuditError::Io { .. }), "{err}");
    }

    #[test]
    fn second_open_of_the_same_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let _held = open_log(&path, &key()).unwrap();
        let err = open_log(&path, &key()).unwrap_err();
        assert!(matches!(err, AuditError::Locked { .. }), "{err}");
    }

    #[test]
    fn garbage_tail_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        fs::write(&path, b"{\"seq\":1}\n").unwrap();
        let err = open_log(&path, &key()).unwrap_err();
        assert!(
            matches!(err, AuditError::Unverified { seq: None, .. }),
            "{err}"
        );
    }

    #[test]
    fn torn_only_line_is_quarantined_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        fs::write(&path, b"{\"seq\":1,\"ts\":").unwrap();
        let (_file, tail) = open_log(&path, &key()).unwrap();
        let torn = tail.torn.clone().unwrap();
        assert_eq!((tail.seq, tail.len, torn.bytes), (0, 0, 14));
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        assert_eq!(fs::read(&torn.path).unwrap(), b"{\"seq\":1,\"ts\":");
        let name = torn.path.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("audit.jsonl.torn-2"), "{name}");
        let mode = fs::metadata(&torn.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
