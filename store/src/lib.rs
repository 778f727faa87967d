//! The one store of a service's state (SPEC §12): approvals, serials,
//! once-only claims, freezes and grants, in SQLite (one file per service,
//! the embedded default) or in PostgreSQL (several replicas on one
//! database).
//!
//! The store knows none of the rules that use it. Every operation is one
//! atomic statement or transaction on plain rows, and the interface takes
//! no closures: a state transition is read → decide in the service →
//! [`Store::approval_replace`], a compare-and-set on the row's `version`
//! that fails (and is retried by the service) when another replica changed
//! the row in between. Expiry and purging are indexed queries on deadline
//! columns the service fills in, never a scan of everything.
//!
//! Any failure to reach or use the database is a [`StoreError`]; services
//! turn it into a refusal with reason code `store_unavailable` (fail closed)
//! and simply try again on the next request, so they recover by themselves
//! when the database returns.
//!
//! # Layout
//! - [`config`]: the `store` block of a service config (`sqlite` path or
//!   `postgres` url, CA and pool size) and its validation.
//! - [`rows`]: the row types that cross the interface.
//! - guardrail memory (per-subject hosts, command shapes and rate window)
//!   lives in `sqlite/guard.rs` and `postgres/guard.rs`; the index of live
//!   certificates and the KRL version in `sqlite/certs.rs` and
//!   `postgres/certs.rs`.
//! - [`sqlite`]: the embedded backend (WAL, `synchronous=FULL`).
//! - [`postgres`]: the shared backend (tokio-postgres with rustls on ring,
//!   a deadpool pool, migrations under an advisory lock).
//! - [`schema`]: the versioned migrations of both backends.

pub mod config;
pub mod postgres;
pub mod rows;
pub mod schema;
pub mod sqlite;

pub use config::{PostgresConfig, StoreConfig};
pub use rows::{ApprovalRow, CertSubject, Entry, GuardCheck, GuardLimits, KrlState, LiveCert};

/// Why the store could not answer. Every variant means "nothing was
/// changed that the caller can rely on": the service refuses and retries
/// later.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused the operation.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database holds something this build cannot read (a newer
    /// schema, a value out of range).
    #[error("store content not understood: {0}")]
    Corrupt(String),
}

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which kind of timed entry a call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A freeze (kill switch) of a caller, end user, host, serial or key id.
    Freeze,
    /// A runtime grant widening a host's allowlist.
    Grant,
}

impl EntryKind {
    fn table(self) -> &'static str {
        match self {
            EntryKind::Freeze => "freezes",
            EntryKind::Grant => "grants",
        }
    }
}

/// An open store: one of the two backends behind the same operations.
#[derive(Debug, Clone)]
pub enum Store {
    /// The embedded default.
    Sqlite(sqlite::Sqlite),
    /// The shared database of replicas.
    Postgres(postgres::Postgres),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call.await,
            Store::Postgres($s) => $call.await,
        }
    };
}

impl Store {
    /// Opens the store `cfg` names, creating or migrating its schema.
    pub async fn open(cfg: &StoreConfig) -> Result<Store> {
        match cfg {
            StoreConfig::Sqlite(path) => Ok(Store::Sqlite(sqlite::Sqlite::open(path).await?)),
            StoreConfig::Postgres(pg) => Ok(Store::Postgres(postgres::Postgres::open(pg).await?)),
        }
    }

    /// `sqlite` or `postgres`, for logs and metrics.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// True when the database answers a trivial query (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        dispatch!(self, s => s.ping())
    }

    /// Adds `row` (its `version` is ignored and stored as 1); false if its
    /// id is taken.
    pub async fn approval_insert(&self, row: &ApprovalRow) -> Result<bool> {
        dispatch!(self, s => s.approval_insert(row))
    }

    /// One approval, with its current version.
    pub async fn approval_get(&self, id: &str) -> Result<Option<ApprovalRow>> {
        dispatch!(self, s => s.approval_get(id))
    }

    /// Compare-and-set: replaces approval `row.id` with `row` if its stored
    /// version is still `row.version`, and bumps the version. False when
    /// the row changed (or vanished) since it was read.
    pub async fn approval_replace(&self, row: &ApprovalRow) -> Result<bool> {
        dispatch!(self, s => s.approval_replace(row))
    }

    /// Every approval, oldest first.
    pub async fn approval_list(&self) -> Result<Vec<ApprovalRow>> {
        dispatch!(self, s => s.approval_list())
    }

    /// Open approvals whose deadline is at or before `now_ms`, oldest
    /// deadline first, at most `limit`.
    pub async fn approval_due(&self, now_ms: u64, limit: u32) -> Result<Vec<ApprovalRow>> {
        dispatch!(self, s => s.approval_due(now_ms, limit))
    }

    /// Deletes approvals whose purge time is at or before `now_ms`, and
    /// the claims made on them; returns how many approvals went.
    pub async fn approval_purge(&self, now_ms: u64) -> Result<u64> {
        dispatch!(self, s => s.approval_purge(now_ms))
    }

    /// Open approvals of `caller`.
    pub async fn approval_open_count(&self, caller: &str) -> Result<u64> {
        dispatch!(self, s => s.approval_open_count(caller))
    }

    /// All approvals held.
    pub async fn approval_count(&self) -> Result<u64> {
        dispatch!(self, s => s.approval_count())
    }

    /// Claims `(topic, key)` for `owner` once: true for the first caller
    /// across every replica, false for all later ones (used so that one
    /// notification goes out per approval).
    pub async fn claim(&self, topic: &str, key: &str, owner: &str, now_ms: u64) -> Result<bool> {
        dispatch!(self, s => s.claim(topic, key, owner, now_ms))
    }

    /// Allocates `n` consecutive serials, none ever handed out before by
    /// any replica, all at or above `floor`; returns the first.
    pub async fn serial_block(&self, floor: u64, n: u64) -> Result<u64> {
        if n == 0 || floor.checked_add(n).is_none_or(|end| end > i64::MAX as u64) {
            return Err(StoreError::Corrupt(format!(
                "serial block of {n} above {floor} leaves the serial space"
            )));
        }
        dispatch!(self, s => s.serial_block(floor, n))
    }

    /// Appends `records` to the one global audit chain (PostgreSQL only),
    /// sealed with `key` over the verified head, in one transaction; see
    /// the HA section of OPERATIONS.md. Returns each record's `seq`.
    pub async fn audit_append(
        &self,
        records: Vec<serde_json::Map<String, serde_json::Value>>,
        key: &infrabroker_common::audit::AuditKey,
    ) -> Result<Vec<u64>> {
        match self {
            Store::Postgres(p) => p.audit_append(records, key).await,
            Store::Sqlite(_) => Err(no_shared_chain()),
        }
    }

    /// Up to `limit` lines of the global audit chain after `after_seq`.
    pub async fn audit_lines(&self, after_seq: u64, limit: u32) -> Result<Vec<String>> {
        match self {
            Store::Postgres(p) => p.audit_lines(after_seq, limit).await,
            Store::Sqlite(_) => Err(no_shared_chain()),
        }
    }

    /// Checks one request of guardrail `subject` for `host` and command
    /// `shapes` at `now_ms`, counting it in the rate window as `lim` says;
    /// one transaction.
    pub async fn guard_check(
        &self,
        subject: &str,
        host: &str,
        shapes: &[String],
        now_ms: u64,
        lim: GuardLimits,
    ) -> Result<GuardCheck> {
        dispatch!(self, s => s.guard_check(subject, host, shapes, now_ms, lim))
    }

    /// Remembers `items` (`("host" | "command", value)`) for `subject`.
    pub async fn guard_learn(
        &self,
        subject: &str,
        items: &[(String, String)],
        now_ms: u64,
        lim: GuardLimits,
    ) -> Result<()> {
        dispatch!(self, s => s.guard_learn(subject, items, now_ms, lim))
    }

    /// Marks already known `items` of `subject` as used at `now_ms`.
    pub async fn guard_touch(
        &self,
        subject: &str,
        items: &[(String, String)],
        now_ms: u64,
    ) -> Result<()> {
        dispatch!(self, s => s.guard_touch(subject, items, now_ms))
    }

    /// Forgets subjects idle for `ttl_ms` or longer; returns how many.
    pub async fn guard_sweep(&self, now_ms: u64, ttl_ms: u64) -> Result<u64> {
        dispatch!(self, s => s.guard_sweep(now_ms, ttl_ms))
    }

    /// Subjects remembered.
    pub async fn guard_subjects(&self) -> Result<u64> {
        dispatch!(self, s => s.guard_subjects())
    }

    /// Adds a freeze or grant; false if its id is taken.
    pub async fn entry_insert(&self, kind: EntryKind, e: &Entry) -> Result<bool> {
        dispatch!(self, s => s.entry_insert(kind, e))
    }

    /// Entries of `kind` in force at `now_ms` (not ended, not expired),
    /// oldest first.
    pub async fn entry_active(&self, kind: EntryKind, now_ms: u64) -> Result<Vec<Entry>> {
        dispatch!(self, s => s.entry_active(kind, now_ms))
    }

    /// Ends entry `id` at `now_ms` (a lifted freeze, a revoked grant);
    /// false if it does not exist or has already ended or expired.
    pub async fn entry_end(&self, kind: EntryKind, id: &str, now_ms: u64) -> Result<bool> {
        dispatch!(self, s => s.entry_end(kind, id, now_ms))
    }
}

/// The index of live certificates and the published KRL version (the
/// signer's revocation list, issue 18).
impl Store {
    /// Adds newly issued certificates, all or none.
    pub async fn cert_insert(&self, rows: Vec<LiveCert>) -> Result<()> {
        dispatch!(self, s => s.cert_insert(rows))
    }

    /// Marks every live, not yet revoked certificate of `subject` = `value`
    /// as revoked by `freeze_id`; returns how many. A revocation is never
    /// undone: lifting the freeze leaves them revoked until they expire.
    pub async fn cert_revoke(
        &self,
        subject: CertSubject,
        value: &str,
        freeze_id: &str,
        now_ms: u64,
    ) -> Result<u64> {
        dispatch!(self, s => s.cert_revoke(subject, value, freeze_id, now_ms))
    }

    /// The revoked certificates that have not expired at `now_ms`, by serial.
    pub async fn cert_revoked(&self, now_ms: u64) -> Result<Vec<LiveCert>> {
        dispatch!(self, s => s.cert_revoked(now_ms))
    }

    /// Up to `limit` certificates still valid at `now_ms`, of one subject or
    /// all, by serial.
    pub async fn cert_live(
        &self,
        filter: Option<(CertSubject, String)>,
        now_ms: u64,
        limit: u32,
    ) -> Result<Vec<LiveCert>> {
        dispatch!(self, s => s.cert_live(filter, now_ms, limit))
    }

    /// Forgets certificates expired at `now_ms`; returns how many.
    pub async fn cert_purge(&self, now_ms: u64) -> Result<u64> {
        dispatch!(self, s => s.cert_purge(now_ms))
    }

    /// The KRL version for content with `digest`: the current one when its
    /// digest is `digest`, else a new version (above the old one and at
    /// least the clock in seconds, so a reset store never goes back). The
    /// returned digest may differ when another replica published other
    /// content at the same moment; the caller then builds again.
    pub async fn krl_publish(&self, digest: &str, now_ms: u64) -> Result<KrlState> {
        dispatch!(self, s => s.krl_publish(digest, now_ms))
    }
}

fn no_shared_chain() -> StoreError {
    StoreError::Unavailable(
        "the shared audit chain lives in PostgreSQL; a SQLite store keeps none (use the audit_log file)"
            .into(),
    )
}

/// `u64` milliseconds or serials as the signed 64-bit integers both
/// databases store; values past `i64::MAX` (a deadline of "never") are
/// stored as `i64::MAX`.
pub(crate) fn to_db(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The inverse of [`to_db`]; a negative value is corruption.
pub(crate) fn from_db(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative value {v}")))
}
