//! The append-only audit log every service writes: JSON lines, each record
//! signed with the service's Ed25519 audit key and chained to the one
//! before by its hash, so that modifying, deleting, inserting or reordering
//! records is detected and the first bad `seq` named.
//!
//! # Record format
//!
//! Each line is one JSON object followed by `\n`. Its members are the
//! caller's fields (`outcome`, `caller`, `host`, `serial`, …) plus:
//!
//! - `seq`: integer, 1 for the first record, +1 for each next one;
//! - `ts`: commit time, RFC 3339 UTC with milliseconds
//!   (`2026-11-23T06:00:00.123Z`);
//! - `prev_hash`: the previous record's `hash`; 64 zeros for the first;
//! - `sig`: base64 (standard alphabet, padded) of the Ed25519 signature
//!   over *body0*;
//! - `hash`: lowercase hex SHA-256 of *body1*.
//!
//! The *canonical encoding* of an object is compact JSON (no whitespace)
//! with the members of every object, nested ones included, sorted by name
//! in byte order, strings escaped as serde_json does. *body0* is the
//! canonical encoding of the record without `sig` and `hash`; *body1* is
//! the canonical encoding without `hash` (body0 plus `sig`). The line
//! written is body1 with `,"hash":"<hex>"` inserted before its final `}`:
//! `hash` is always the last member, so a verifier gets body1 back from the
//! raw bytes by cutting that suffix off, with no re-encoding.
//!
//! Because `hash` covers `sig` and each `prev_hash` covers the previous
//! `hash`, a valid signature on record *k* vouches for records 1..=*k*.
//! [`verify_file`] therefore checks hashes and links of every line in one
//! streaming pass but only the last signature, bisecting if it fails.
//!
//! # Why the head signature covers every record
//!
//! Record *k*'s signature is over body0, which contains `prev_hash` =
//! hash of record *k−1*'s body1, which contains *its* `sig` and
//! `prev_hash`, and so on down to record 1. SHA-256 is collision
//! resistant, so a valid signature on the last record commits to the exact
//! bytes of every record before it. Someone without the key who edits
//! record *j* and recomputes every later `prev_hash` and `hash` (a full
//! rewrite) changes body0 of *j..=n*; their old signatures no longer
//! verify and they cannot make new ones, so the head signature fails and
//! the bisection names *j*.
//!
//! This holds only if a genuine signature is never made over a forged
//! record. The writer guarantees that: on open and on every reopen after a
//! failed write it verifies the last record's signature (not only its hash
//! and shape) before appending, and refuses to continue otherwise
//! ([`AuditError::Unverified`], exit [`EXIT_UNVERIFIED_TAIL`]). A torn
//! last line (crash mid-write) is moved to `<log>.torn-<timestamp>` and the
//! next record (`event: audit_torn_quarantined`) names that file. What the
//! head signature cannot show is a log cut short (records removed from the
//! end): that needs a checkpoint kept elsewhere.
//!
//! # Checkpoints
//!
//! With `audit_checkpoint` configured ([`AuditLog::open_with`]) the writer
//! also keeps the RFC 6962 Merkle tree of the log's lines and, after every
//! `every_records` records (and `every_seconds`, and on close), writes a C2SP
//! `tlog-checkpoint` signed with the audit key to a file outside the log's
//! directory. On open the log must reproduce that checkpoint's root over its
//! first `size` records: a log cut short or rewritten while the service was
//! stopped is refused like an unverified tail. `broker-ctl audit verify
//! --checkpoint` makes the same check offline.
//!
//! # Rotation
//!
//! [`AuditLog::rotate`] (services: on SIGUSR1, [`rotate_on_sigusr1`]) seals
//! `event: audit_rotated` into the current file, keeps that file as
//! `<log>.<UTC timestamp>` and goes on in a new file at the same path: a
//! new chain (`seq` 1, `prev_hash` zeros) whose first record is `event:
//! audit_continued` with `previous_file`, `previous_seq`, `previous_hash`
//! (the rotated file's last record) and `previous_checkpoint: {size,
//! root}` (hex Merkle root of all its records). The new record is signed,
//! so the link is as strong as the chain; `broker-ctl audit verify OLD …
//! NEW` checks every file and every link. With checkpoints the old file
//! gets a final checkpoint (kept as `<path>.1`) and the new file its first;
//! a start that finds the new file but the old file's checkpoint (a crash
//! between the two) accepts it when the first record names exactly that
//! checkpoint.
//!
//! Caller fields must not use the reserved names in [`RESERVED_FIELDS`].
//! Values may be any JSON, but floating-point numbers should not be used:
//! a float that does not re-encode to the same digits makes its record
//! fail verification. Use integers or strings.
//!
//! # Writing
//!
//! [`AuditLog`] owns one writer thread. Appends queue up; the writer takes
//! everything queued, seals it in order, writes it with one `write` and
//! one `fsync` (group commit) and only then answers each caller, so an
//! `Ok` means the record is on disk. On a failed write the batch is cut
//! back out, every caller in it gets [`AuditError::Write`], and the next
//! batch starts by re-reading the chain head from disk.
//!
//! # Layout
//!
//! - `record`: canonical encoding, sealing and per-line checks.
//! - `key`: [`AuditKey`] and [`parse_public_key`].
//! - `writer`: [`AuditLog`], its group-commit thread and [`AuditLog::open_service`];
//!   `writer/rotation`: [`AuditLog::rotate`] and [`rotate_on_sigusr1`].
//! - `restore`: opening a log, verifying its tail and quarantining a torn line.
//! - `verify`: [`verify_file`].
//! - `checkpoint`: C2SP tlog-checkpoint notes signed with the audit key.
//! - `checkpointer`: the writer's periodic checkpoints (`audit_checkpoint`)
//!   and their check on open: [`CheckpointSettings`]; [`ChainCheckpoints`]
//!   for a chain the service follows rather than writes (the signer
//!   replicas' global chain).
//! - [`witness`]: checkpoints sent to C2SP tlog-witness witnesses for
//!   cosigning (`audit_checkpoint.witnesses`).
//! - [`sealing`]: records sealed and checked one by one, for a chain kept
//!   outside a file (the signer replicas' chain in PostgreSQL).
//! - `merkle`: RFC 6962 tree hashes, inclusion and consistency proofs, and
//!   a kept `Tree` that answers them in O(log² n).
//! - `scan`: [`max_u64_field`].
//! - `syslog`: forwarding sealed records to a syslog receiver (`audit_syslog`).
//! - `error`: [`AuditError`], [`VerifyError`].

pub mod checkpoint;
mod checkpointer;
mod error;
mod key;
pub mod merkle;
mod record;
mod restore;
mod scan;
pub mod sealing;
pub mod syslog;
mod verify;
pub mod witness;
mod writer;

#[cfg(test)]
mod rotate_tests;
#[cfg(test)]
mod tail_tests;
#[cfg(test)]
mod tests;

pub use checkpointer::{ChainCheckpoints, CheckpointSettings, DEFAULT_EVERY_RECORDS, DEFAULT_KEEP};
pub use error::{AuditError, BrokenKind, EXIT_UNVERIFIED_TAIL, VerifyError};
pub use key::{AuditKey, parse_public_key, seed_file};
pub use record::{GENESIS_HASH, RESERVED_FIELDS};
pub use scan::max_u64_field;
pub use verify::{VerifyOptions, VerifyReport, verify_file};
pub use writer::{AuditLog, AuditReceipt, Rotation, ServiceAudit, rotate_on_sigusr1};
