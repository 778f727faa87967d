//! asciicast v2 recordings of shell and pty sessions: a JSON header line,
//! then one `[seconds, kind, data]` line per event — `i` for what was sent,
//! `o` for stdout, `e` for stderr (`e` is our extension; players ignore it).
//!
//! # In the audit chain
//!
//! The file is written in chunks: a chunk ends once it holds
//! [`CHUNK_BYTES`] or [`CHUNK_SECONDS`] have passed since the last one
//! ended, and when the recording finishes. Each chunk's index, byte range
//! and SHA-256 go into the broker's audit chain as a `recording_chunk`
//! record (after the bytes are synced), and the session's close record
//! carries the final size, the number of chunks and a SHA-256 over all
//! chunk hashes. `broker-ctl recording verify` then proves a cast
//! byte-exact or names the first chunk that was modified, removed,
//! reordered or appended. Chunks are byte ranges of the file, not of the
//! terminal stream, so a chunk boundary never splits what a player reads.
//!
//! # Writing off the runtime
//!
//! [`Recorder::event`] only queues the bytes (an unbounded channel: it
//! never blocks the runtime thread that read them); one thread per
//! recording owns the file, turns bytes into text and writes. A multi-byte
//! UTF-8 character split across two reads is held back until its last
//! byte arrives, per stream, so it is recorded whole. If the file or its
//! audit records cannot be written the recording stops and
//! [`Recorder::failure`] says why; with `recording_required` (the
//! default) the session is then closed before it runs another command.
//!
//! The broker's `redact` rules apply to each event's text before it is
//! written (the audit log's rules, [`AuditLog::redactor`]). A secret that
//! arrives split across two reads of the same stream is not seen whole by
//! the patterns; what the broker sends (`i` events) is always whole.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use infrabroker_common::audit::AuditLog;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// A chunk ends once it holds this many bytes.
pub const CHUNK_BYTES: u64 = 64 * 1024;
/// … or this long after the previous chunk ended.
pub const CHUNK_SECONDS: u64 = 5;

/// What the session's close record says about its recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Bytes in the file.
    pub size: u64,
    /// Chunks recorded in the audit chain.
    pub chunks: u64,
    /// Hex SHA-256 over the chunk hashes (32 bytes each) in order.
    pub chunks_sha256: String,
}

enum Cmd {
    Event { at: f64, kind: Kind, data: Vec<u8> },
    Finish(tokio::sync::oneshot::Sender<Summary>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    In,
    Out,
    Err,
}

impl Kind {
    fn parse(kind: &str) -> Option<Kind> {
        match kind {
            "i" => Some(Kind::In),
            "o" => Some(Kind::Out),
            "e" => Some(Kind::Err),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::In => "i",
            Kind::Out => "o",
            Kind::Err => "e",
        }
    }
}

/// One session's recording file (mode 0600).
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    start: Instant,
    tx: mpsc::Sender<Cmd>,
    failed: Arc<OnceLock<String>>,
    /// `recording_required`: a failed recording ends the session.
    required: bool,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

impl Recorder {
    /// Creates `<dir>/<session_id>.cast`, writes the header and starts the
    /// writer thread, which records each chunk in `audit`.
    pub fn create(
        dir: &Path,
        session_id: &str,
        (cols, rows): (u32, u32),
        title: &str,
        audit: AuditLog,
    ) -> std::io::Result<Recorder> {
        Self::create_with(dir, session_id, (cols, rows), title, audit, CHUNK_SECONDS)
    }

    /// [`create`](Self::create) with the time limit of a chunk in seconds
    /// (tests use a short one).
    pub fn create_with(
        dir: &Path,
        session_id: &str,
        (cols, rows): (u32, u32),
        title: &str,
        audit: AuditLog,
        chunk_seconds: u64,
    ) -> std::io::Result<Recorder> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{session_id}.cast"));
        let file = File::options()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&path)?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = json!({
            "version": 2, "width": cols, "height": rows, "timestamp": timestamp,
            "title": title, "env": {"TERM": "xterm", "SHELL": "/bin/sh"},
        });
        let failed = Arc::new(OnceLock::new());
        let (tx, rx) = mpsc::channel();
        let redact = audit.redactor().cloned();
        let mut writer = Writer {
            file,
            redact,
            path: path.clone(),
            session_id: session_id.to_owned(),
            audit,
            failed: Arc::clone(&failed),
            every: Duration::from_secs(chunk_seconds.max(1)),
            size: 0,
            chunk_start: 0,
            chunk: Sha256::new(),
            hashes: Vec::new(),
            carry: Default::default(),
            line: Vec::new(),
        };
        writer.write_line(&format!("{header}\n"));
        std::thread::Builder::new()
            .name("recording".to_owned())
            .spawn(move || writer.run(rx))?;
        Ok(Recorder {
            path,
            start: Instant::now(),
            tx,
            failed,
            required: true,
        })
    }

    /// Whether a failed recording ends the session (`recording_required`,
    /// the default) or only stops the recording.
    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// Why the session must not run another command: the recording failed
    /// and is required.
    pub fn refusal(&self) -> Option<&str> {
        self.failure().filter(|_| self.required)
    }

    /// Where the recording is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues one event (`kind` is `i`, `o` or `e`); never blocks.
    pub fn event(&self, kind: &str, data: &[u8]) {
        let Some(kind) = Kind::parse(kind) else {
            return;
        };
        let at = self.start.elapsed().as_secs_f64();
        let _ = self.tx.send(Cmd::Event {
            at,
            kind,
            data: data.to_vec(),
        });
    }

    /// Why the recording stopped, once it has.
    pub fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// Writes what is queued and the last chunk, and stops the recording;
    /// `None` if it had already stopped.
    pub async fn finish(&self) -> Option<Summary> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx.send(Cmd::Finish(reply)).ok()?;
        rx.await.ok()
    }
}

/// The recording thread's state.
struct Writer {
    file: File,
    /// The broker's `redact` rules, applied to each event's text.
    redact: Option<Arc<infrabroker_common::redact::Redactor>>,
    path: PathBuf,
    session_id: String,
    audit: AuditLog,
    failed: Arc<OnceLock<String>>,
    every: Duration,
    /// Bytes written so far.
    size: u64,
    chunk_start: u64,
    chunk: Sha256,
    hashes: Vec<[u8; 32]>,
    /// Per stream, the first bytes of a UTF-8 character still incomplete.
    carry: [Vec<u8>; 3],
    line: Vec<u8>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut chunk_began = Instant::now();
        loop {
            let wait = self.every.saturating_sub(chunk_began.elapsed());
            match rx.recv_timeout(wait) {
                Ok(Cmd::Event { at, kind, data }) => {
                    self.event(at, kind, &data);
                    if self.size - self.chunk_start >= CHUNK_BYTES {
                        self.seal();
                        chunk_began = Instant::now();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.seal();
                    chunk_began = Instant::now();
                }
                Ok(Cmd::Finish(reply)) => {
                    let summary = self.finish();
                    let _ = reply.send(summary);
                    return;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.finish();
                    return;
                }
            }
        }
    }

    /// One `[seconds, kind, text]` line. The valid UTF-8 prefix of the
    /// carried bytes plus `data` is written; an incomplete character at the
    /// end waits for the next read of the same stream.
    fn event(&mut self, at: f64, kind: Kind, data: &[u8]) {
        let carry = &mut self.carry[kind as usize];
        carry.extend_from_slice(data);
        let keep = incomplete_tail(carry);
        let mut text = String::from_utf8_lossy(&carry[..carry.len() - keep]).into_owned();
        carry.drain(..carry.len() - keep);
        if let Some(r) = &self.redact {
            text = r.text(&text).into_owned();
        }
        if !text.is_empty() {
            self.write_line(&format!("{}\n", json!([at, kind.as_str(), text])));
        }
    }

    fn write_line(&mut self, line: &str) {
        if self.failed.get().is_some() {
            return;
        }
        self.line.clear();
        self.line.extend_from_slice(line.as_bytes());
        match self.file.write_all(&self.line) {
            Ok(()) => {
                self.chunk.update(&self.line);
                self.size += self.line.len() as u64;
            }
            Err(e) => self.fail(format!("writing {}: {e}", self.path.display())),
        }
    }

    /// Ends the current chunk: sync the bytes, then its audit record.
    fn seal(&mut self) {
        if self.size == self.chunk_start || self.failed.get().is_some() {
            return;
        }
        if let Err(e) = self.file.sync_data() {
            return self.fail(format!("syncing {}: {e}", self.path.display()));
        }
        let hash: [u8; 32] = std::mem::take(&mut self.chunk).finalize().into();
        let mut rec = Map::new();
        rec.insert("event".into(), "recording_chunk".into());
        rec.insert("session_id".into(), self.session_id.clone().into());
        rec.insert("index".into(), Value::from(self.hashes.len() as u64));
        rec.insert("offset".into(), self.chunk_start.into());
        rec.insert("length".into(), (self.size - self.chunk_start).into());
        rec.insert("sha256".into(), hex::encode(hash).into());
        if let Err(e) = self.audit.append_blocking(rec) {
            return self.fail(format!("the audit record of a recording chunk: {e}"));
        }
        self.hashes.push(hash);
        self.chunk_start = self.size;
    }

    fn finish(&mut self) -> Summary {
        for kind in [Kind::In, Kind::Out, Kind::Err] {
            // A character that never completed is written as U+FFFD.
            if !self.carry[kind as usize].is_empty() {
                let rest = std::mem::take(&mut self.carry[kind as usize]);
                let text = String::from_utf8_lossy(&rest).into_owned();
                self.write_line(&format!("{}\n", json!([0.0, kind.as_str(), text])));
            }
        }
        self.seal();
        let mut all = Sha256::new();
        for h in &self.hashes {
            all.update(h);
        }
        Summary {
            size: self.chunk_start,
            chunks: self.hashes.len() as u64,
            chunks_sha256: hex::encode(all.finalize()),
        }
    }

    fn fail(&mut self, why: String) {
        tracing::error!(path = %self.path.display(), error = %why, "session recording failed; stopping it");
        let _ = self.failed.set(why);
    }
}

/// How many bytes at the end of `b` start a UTF-8 character that is not
/// complete yet (0 when `b` ends on a boundary or the tail is not UTF-8
/// at all, which is then written as U+FFFD rather than held forever).
fn incomplete_tail(b: &[u8]) -> usize {
    for back in 1..=3.min(b.len()) {
        let byte = b[b.len() - back];
        if byte & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back
        }
        let need = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return 0,
        };
        return if need > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests;
