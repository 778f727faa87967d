//! `broker-ctl recording verify CAST --audit LOG --pubkey P [--json]`:
//! proves a session recording byte-exact against the broker's audit chain,
//! or names the first chunk that was modified, removed, reordered or
//! appended to.
//!
//! The audit log is verified first (a recording is only as good as the
//! chain that holds its hashes). Its `recording_chunk` records for the
//! session (the file's name without `.cast`) give each chunk's index, byte
//! range and SHA-256, in order; the file must be exactly those chunks and
//! nothing after them. The session's close record, when there is one,
//! must agree on the size, the number of chunks and the hash over them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::ExitCode;

use infrabroker_common::audit::{VerifyOptions, verify_file};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::audit::read_pubkey;
use super::{Failure, Outcome};

/// One `recording_chunk` record.
struct Chunk {
    index: u64,
    offset: u64,
    length: u64,
    sha256: String,
}

/// `recording verify`.
pub fn verify(cast: &Path, audit: &Path, pubkey: &Path, json: bool) -> Outcome {
    let (_, key) = read_pubkey(pubkey)?;
    let refuse = |msg: String| {
        if json {
            println!("{}", json!({"ok": false, "error": msg}));
        }
        Err(Failure::bad(msg))
    };
    if let Err(e) = verify_file(audit, &key, VerifyOptions::default()) {
        return refuse(format!("{}: broken: {e}", audit.display()));
    }
    let session = cast
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (chunks, close) = read_chunks(audit, &session)
        .map_err(|e| Failure::other(format!("{}: {e}", audit.display())))?;
    if chunks.is_empty() {
        return refuse(format!(
            "{} has no recording_chunk records for session {session}",
            audit.display()
        ));
    }
    let bytes = std::fs::read(cast)
        .map_err(|e| Failure::other(format!("cannot read {}: {e}", cast.display())))?;
    let size = match check(&bytes, &chunks, close.as_ref()) {
        Ok(size) => size,
        Err(why) => return refuse(format!("{}: {why}", cast.display())),
    };
    let closed = close.is_some();
    if json {
        println!(
            "{}",
            json!({"ok": true, "session_id": session, "chunks": chunks.len(), "size": size,
                "closed": closed})
        );
    } else {
        println!(
            "{}: byte-exact, {} chunks, {size} bytes{}",
            cast.display(),
            chunks.len(),
            if closed {
                ", as its close record says"
            } else {
                " (no close record yet: checked up to the last chunk)"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The session's chunk records in chain order and its close record.
fn read_chunks(audit: &Path, session: &str) -> std::io::Result<(Vec<Chunk>, Option<Value>)> {
    let mut chunks = Vec::new();
    let mut close = None;
    for line in BufReader::new(std::fs::File::open(audit)?).lines() {
        let line = line?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v["session_id"] != session {
            continue;
        }
        if v["event"] == "recording_chunk" {
            chunks.push(Chunk {
                index: v["index"].as_u64().unwrap_or(u64::MAX),
                offset: v["offset"].as_u64().unwrap_or(u64::MAX),
                length: v["length"].as_u64().unwrap_or(0),
                sha256: v["sha256"].as_str().unwrap_or_default().to_owned(),
            });
        } else if v["outcome"] == "session_close" {
            close = Some(v);
        }
    }
    Ok((chunks, close))
}

/// The file's size when it is exactly `chunks`, else what is wrong with
/// the first chunk that does not match.
fn check(bytes: &[u8], chunks: &[Chunk], close: Option<&Value>) -> Result<u64, String> {
    let len = bytes.len() as u64;
    let mut offset = 0u64;
    let mut all = Sha256::new();
    for (i, c) in chunks.iter().enumerate() {
        if c.index != i as u64 || c.offset != offset {
            return Err(format!(
                "the audit log's chunk records are not contiguous at chunk {i} (index {}, offset {})",
                c.index, c.offset
            ));
        }
        let end = offset + c.length;
        if end > len {
            return Err(format!(
                "chunk {i} (bytes {offset}..{end}) was removed or cut short: the file ends at byte {len}"
            ));
        }
        let range = usize::try_from(offset).unwrap_or(usize::MAX)
            ..usize::try_from(end).unwrap_or(usize::MAX);
        let hash = Sha256::digest(&bytes[range]);
        let hex_hash = hex::encode(hash);
        if hex_hash != c.sha256 {
            return Err(match chunks.iter().position(|o| o.sha256 == hex_hash) {
                Some(j) => format!(
                    "chunk {i} (bytes {offset}..{end}) holds chunk {j}'s bytes: chunks were reordered"
                ),
                None => format!("chunk {i} (bytes {offset}..{end}) was modified"),
            });
        }
        all.update(hash);
        offset = end;
    }
    if len > offset {
        return Err(format!(
            "{} bytes were appended after the last recorded chunk (from byte {offset})",
            len - offset
        ));
    }
    if let Some(close) = close {
        let want = json!({
            "size": offset, "chunks": chunks.len(), "sha256": hex::encode(all.finalize()),
        });
        let said = json!({
            "size": close["recording_size"], "chunks": close["recording_chunks"],
            "sha256": close["recording_sha256"],
        });
        if said != want {
            return Err(format!(
                "the session's close record says {said}, its chunk records add up to {want}"
            ));
        }
    }
    Ok(offset)
}
