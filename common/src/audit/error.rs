//! Errors of the audit log: [`AuditError`] for keys and writing,
//! [`VerifyError`] for checking a log file.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why the audit log could not be opened, a key loaded or a record written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The audit key seed file is unusable (too short, readable by others).
    #[error("audit key {}: {reason}", path.display())]
    KeyFile {
        /// The seed file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A public key line is not a usable OpenSSH `ssh-ed25519` key.
    #[error("audit public key: {0}")]
    PublicKey(String),
    /// A caller's record used a member name the chain sets itself.
    #[error("record member {0:?} is reserved for the audit chain")]
    ReservedField(String),
    /// The last complete record of an existing log does not check out
    /// (shape, hash or signature), so the chain cannot be continued safely:
    /// a service refuses to start (exit code [`EXIT_UNVERIFIED_TAIL`]).
    #[error(
        "audit log {}: refusing to append after an unverified record{}: {detail}. \
         The log may have been edited while the service was stopped. Run \
         `broker-ctl audit verify {} --pubkey <audit key .pub> --all-signatures` to find \
         the first bad record, move the log aside (keep it as evidence), and start the \
         service on a new log; record the old head hash in the new chain \
         (OPERATIONS.md, \"Audit: recovering from a refused start\")",
        path.display(),
        seq.map(|s| format!(" (seq {s})")).unwrap_or_default(),
        path.display()
    )]
    Unverified {
        /// The log file.
        path: PathBuf,
        /// The last record's `seq`, when it could be read.
        seq: Option<u64>,
        /// What is wrong with its tail.
        detail: String,
    },
    /// The signer replicas' global chain (HA mode) no longer extends the
    /// latest checkpoint this replica wrote or the records it has seen:
    /// records were removed or changed in the database. A replica refuses
    /// to start (exit code [`EXIT_UNVERIFIED_TAIL`]) and, running, refuses
    /// to add records.
    #[error(
        "the global audit chain no longer extends checkpoint {}: {detail}. Records were removed \
         or changed in the database. Keep the database as evidence and run `broker-ctl audit \
         verify --postgres <url> --pubkey <audit key .pub> --checkpoint {}` \
         (OPERATIONS.md, \"Audit: the global chain no longer extends a checkpoint\")",
        checkpoint.display(),
        checkpoint.display()
    )]
    ChainBroken {
        /// This replica's checkpoint file.
        checkpoint: PathBuf,
        /// What no longer matches.
        detail: String,
    },
    /// Another open file handle (usually another process) holds the log's lock.
    #[error("audit log {} is in use by another writer", path.display())]
    Locked {
        /// The log file.
        path: PathBuf,
    },
    /// The record could not be made durable; it is not in the log.
    #[error("audit write failed: {0}")]
    Write(String),
    /// The writer thread is gone, so nothing can be appended any more.
    #[error("audit writer has stopped")]
    Closed,
}

/// Exit code of a service that refuses to start because its audit log's
/// last record does not verify (`EX_DATAERR`).
pub const EXIT_UNVERIFIED_TAIL: u8 = 65;

impl AuditError {
    /// Whether this error means the log's tail failed verification, so the
    /// service must stop with [`EXIT_UNVERIFIED_TAIL`].
    pub fn is_unverified_tail(&self) -> bool {
        matches!(
            self,
            AuditError::Unverified { .. } | AuditError::ChainBroken { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        AuditError::Io {
            path: path.into(),
            source,
        }
    }
}

/// What kind of break [`verify_file`](super::verify_file) found first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokenKind {
    /// The line is not a JSON object with the chain members in the expected
    /// layout (including a last line without its newline).
    Malformed,
    /// The stored `hash` does not match the record's bytes: the record was
    /// modified in place.
    HashMismatch,
    /// `seq` is not the previous one plus one: a record was deleted,
    /// inserted or moved.
    SeqMismatch,
    /// `prev_hash` does not name the previous record: the chain was spliced.
    PrevHashMismatch,
    /// The Ed25519 signature does not verify with the given key (or the
    /// record is not the canonical encoding of what was signed): the record
    /// was forged or rewritten with a recomputed chain.
    BadSignature,
}

impl fmt::Display for BrokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BrokenKind::Malformed => "malformed",
            BrokenKind::HashMismatch => "hash mismatch",
            BrokenKind::SeqMismatch => "seq mismatch",
            BrokenKind::PrevHashMismatch => "prev_hash mismatch",
            BrokenKind::BadSignature => "bad signature",
        })
    }
}

/// Why a log file failed verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The chain is broken; `seq` is the first record that cannot be trusted.
    #[error("record seq {seq} (line {line}): {kind}: {detail}")]
    Broken {
        /// The seq the first bad record has, or should have had (previous
        /// seq plus one) when its own `seq` is wrong or unreadable.
        seq: u64,
        /// 1-based line number in the file.
        line: u64,
        /// What is wrong.
        kind: BrokenKind,
        /// Human-readable specifics (expected and found values).
        detail: String,
    },
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The log file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}
