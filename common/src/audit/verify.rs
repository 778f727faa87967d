//! Verifying a log file: one streaming pass over the chain, then as few
//! signature checks as the chain structure allows.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;

use ed25519_dalek::VerifyingKey;

use super::record::{self, Fault, GENESIS_HASH, HEX_LEN};
use super::{BrokenKind, VerifyError};

/// How to verify.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Check every record's signature instead of only the last one (plus a
    /// bisection when it fails). Slower; the default already proves every
    /// record, because each signature vouches for all records before it.
    pub all_signatures: bool,
}

/// A successfully verified log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of records.
    pub records: u64,
    /// `seq` of the last record (0 for an empty log).
    pub head_seq: u64,
    /// `hash` of the last record (64 zeros for an empty log).
    pub head_hash: String,
}

/// Verifies the log at `path` against the audit public key and names the
/// first record that cannot be trusted.
///
/// Every line must be a complete record whose `hash` matches its bytes,
/// with `seq` counting up from 1 and `prev_hash` naming the line before.
/// Then the last record's signature is checked; if it fails, a bisection
/// finds the first record whose signature fails (signatures are valid up
/// to some record and invalid after, since each one covers the whole chain
/// before it). A chain break and a signature failure before it are both
/// considered; the earlier one is reported. The file is streamed; memory
/// grows by 8 bytes per record.
pub fn verify_file(
    path: impl AsRef<Path>,
    key: &VerifyingKey,
    options: VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    let path = path.as_ref();
    let io_err = |source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let mut reader = BufReader::with_capacity(1 << 20, &file);
    // Byte offset where each line starts, plus where the last good one ends.
    let mut starts: Vec<u64> = Vec::new();
    let mut offset = 0u64;
    let mut line = Vec::with_capacity(1024);
    let mut prev = [b'0'; HEX_LEN];
    let mut seq = 0u64;
    let mut broken = None;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io_err)?;
        if n == 0 {
            starts.push(offset);
            break;
        }
        starts.push(offset);
        offset += n as u64;
        let expected = seq + 1;
        let result = match line.strip_suffix(b"\n") {
            None => Err(Fault {
                kind: BrokenKind::Malformed,
                detail: "last line is incomplete (no trailing newline)".to_owned(),
            }),
            Some(body) => check_linked(body, expected, &prev).and_then(|hash| {
                if options.all_signatures {
                    record::check_signature(body, key)?;
                }
                Ok(hash)
            }),
        };
        match result {
            Ok(hash) => {
                prev = hash;
                seq = expected;
            }
            Err(fault) => {
                broken = Some(broken_at(expected, fault));
                break;
            }
        }
    }

    if !options.all_signatures && seq > 0 {
        // Only the valid prefix is searched, so a hit here is always
        // earlier than a chain break found above.
        if let Some(bad) = first_bad_signature(&file, &starts, key).map_err(io_err)? {
            broken = Some(bad);
        }
    }
    match broken {
        Some(err) => Err(err),
        None => Ok(VerifyReport {
            records: seq,
            head_seq: seq,
            head_hash: String::from_utf8_lossy(&prev).into_owned(),
        }),
    }
}

/// The error for a bad record; with a valid prefix the line number is the
/// seq the record should have.
fn broken_at(seq: u64, fault: Fault) -> VerifyError {
    VerifyError::Broken {
        seq,
        line: seq,
        kind: fault.kind,
        detail: fault.detail,
    }
}

/// Checks a line's own hash and its link to the previous record; returns
/// its hash.
fn check_linked(body: &[u8], expected: u64, prev: &[u8; HEX_LEN]) -> Result<[u8; HEX_LEN], Fault> {
    let head = record::check_line(body)?;
    if head.seq != expected {
        return Err(Fault {
            kind: BrokenKind::SeqMismatch,
            detail: format!("expected seq {expected}, found {}", head.seq),
        });
    }
    if head.prev_hash.as_bytes() != prev {
        let expected_hash = String::from_utf8_lossy(prev);
        let detail = if expected == 1 {
            format!(
                "first record must have prev_hash {GENESIS_HASH}, found {}",
                head.prev_hash
            )
        } else {
            format!("expected {expected_hash}, found {}", head.prev_hash)
        };
        return Err(Fault {
            kind: BrokenKind::PrevHashMismatch,
            detail,
        });
    }
    // check_line already matched it against a computed 64-digit hash.
    <[u8; HEX_LEN]>::try_from(head.hash.as_bytes()).map_err(|_| Fault {
        kind: BrokenKind::Malformed,
        detail: "\"hash\" is not 64 hex digits".to_owned(),
    })
}

/// The first record (of those whose lines `starts` delimits) whose
/// signature fails, or `None` if the last one verifies.
fn first_bad_signature(
    file: &File,
    starts: &[u64],
    key: &VerifyingKey,
) -> io::Result<Option<VerifyError>> {
    let count = starts.len().saturating_sub(1);
    let mut buf = Vec::new();
    let mut check = |index: usize| -> io::Result<Result<(), Fault>> {
        let (Some(&start), Some(&end)) = (starts.get(index), starts.get(index + 1)) else {
            return Ok(Ok(()));
        };
        // The range ends with the newline, which the check does not want.
        let len = usize::try_from(end - start - 1).map_err(io::Error::other)?;
        buf.resize(len, 0);
        file.read_exact_at(&mut buf, start)?;
        Ok(record::check_signature(&buf, key))
    };
    let Some(last) = count.checked_sub(1) else {
        return Ok(None);
    };
    let mut fault = match check(last)? {
        Ok(()) => return Ok(None),
        Err(fault) => fault,
    };
    let (mut lo, mut hi) = (0, last);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match check(mid)? {
            Err(f) => {
                hi = mid;
                fault = f;
            }
            Ok(()) => lo = mid + 1,
        }
    }
    // `fault` belongs to `hi` unless the loop never lowered it, in which
    // case `hi` is still `last`, whose fault it already holds.
    Ok(Some(broken_at(hi as u64 + 1, fault)))
}
