//! Opening the log file and finding where the chain continues: the last
//! complete record, after cutting off a line torn by a crash.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

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
}

impl ChainTail {
    /// The state of an empty log.
    pub(crate) fn genesis() -> Self {
        ChainTail {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
            len: 0,
        }
    }
}

/// Opens `path` for appending (creating it 0600), locks it and reads the
/// chain tail. Non-regular files (devices, pipes) have no tail to read and
/// start a fresh chain.
pub(crate) fn open_log(path: &Path) -> Result<(File, ChainTail), AuditError> {
    let io_err = |e| AuditError::io(path, e);
    let mut options = OpenOptions::new();
    options.read(true).append(true);
    let file = match options.clone().create_new(true).mode(0o600).open(path) {
        Ok(file) => {
            // The new directory entry must survive a crash as well as the
            // records written into it.
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            File::open(parent)
                .and_then(|dir| dir.sync_all())
                .map_err(|e| AuditError::io(parent, e))?;
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
    let tail = read_tail(&file, path)?;
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

fn read_tail(file: &File, path: &Path) -> Result<ChainTail, AuditError> {
    let io_err = |e| AuditError::io(path, e);
    let mut len = file.metadata().map_err(io_err)?.len();
    if len == 0 {
        return Ok(ChainTail::genesis());
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1).map_err(io_err)?;
    if last != *b"\n" {
        let cut = rfind_newline(file, len)
            .map_err(io_err)?
            .map_or(0, |p| p + 1);
        tracing::warn!(
            path = %path.display(),
            dropped_bytes = len - cut,
            "audit log ends with a partial record (crash during a write?); cutting it off"
        );
        file.set_len(cut)
            .and_then(|()| file.sync_data())
            .map_err(io_err)?;
        len = cut;
        if len == 0 {
            return Ok(ChainTail::genesis());
        }
    }
    let start = rfind_newline(file, len - 1)
        .map_err(io_err)?
        .map_or(0, |p| p + 1);
    let line_len = usize::try_from(len - 1 - start).map_err(|_| AuditError::Corrupt {
        path: path.to_path_buf(),
        detail: "last record is too long".to_owned(),
    })?;
    let mut line = vec![0u8; line_len];
    file.read_exact_at(&mut line, start).map_err(io_err)?;
    let head = record::check_line(&line).map_err(|fault| AuditError::Corrupt {
        path: path.to_path_buf(),
        detail: format!(
            "last record (byte {start}): {}: {}",
            fault.kind, fault.detail
        ),
    })?;
    Ok(ChainTail {
        seq: head.seq,
        hash: head.hash.to_owned(),
        len,
    })
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

    #[test]
    fn new_log_is_created_private_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (_file, tail) = open_log(&path).unwrap();
        assert_eq!(tail, ChainTail::genesis());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn missing_parent_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = open_log(&dir.path().join("nope/audit.jsonl")).unwrap_err();
        assert!(matches!(err, AuditError::Io { .. }), "{err}");
    }

    #[test]
    fn second_open_of_the_same_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let _held = open_log(&path).unwrap();
        let err = open_log(&path).unwrap_err();
        assert!(matches!(err, AuditError::Locked { .. }), "{err}");
    }

    #[test]
    fn garbage_tail_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        fs::write(&path, b"{\"seq\":1}\n").unwrap();
        let err = open_log(&path).unwrap_err();
        assert!(matches!(err, AuditError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn torn_only_line_is_cut_to_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        fs::write(&path, b"{\"seq\":1,\"ts\":").unwrap();
        let (_file, tail) = open_log(&path).unwrap();
        assert_eq!(tail, ChainTail::genesis());
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    }
}
