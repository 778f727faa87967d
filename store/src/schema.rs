//! The versioned schema of both backends. A migration is applied once, in
//! order, inside one transaction that also records its number in
//! `schema_version`; a database whose version is newer than this build
//! knows is refused (an older replica must not write to a newer schema).
//!
//! Version 2 adds `audit_chain`, the one global audit chain of signer
//! replicas (used on PostgreSQL only; SQLite has the table so both
//! backends stay at the same version); version 3 the guardrail memory
//! (`guard_subjects`, `guard_seen`, `guard_hits`); version 4 the index of
//! live certificates (`live_certs`) and the published KRL version
//! (`krl_state`).
//!
//! The two dialects differ only where they must (`BIGINT` vs `INTEGER`,
//! `BOOLEAN` vs `INTEGER`), so the same queries work on both.

/// Migrations for SQLite, by version (index + 1).
pub const SQLITE: &[&str] = &[
    r"
CREATE TABLE approvals (
    id          TEXT PRIMARY KEY,
    caller      TEXT NOT NULL,
    open        INTEGER NOT NULL,
    deadline_ms INTEGER,
    purge_at_ms INTEGER,
    created_ms  INTEGER NOT NULL,
    body        TEXT NOT NULL,
    version     INTEGER NOT NULL
);
CREATE INDEX approvals_deadline ON approvals (deadline_ms) WHERE open = 1;
CREATE INDEX approvals_purge ON approvals (purge_at_ms) WHERE purge_at_ms IS NOT NULL;
CREATE INDEX approvals_caller_open ON approvals (caller) WHERE open = 1;
CREATE TABLE claims (
    topic  TEXT NOT NULL,
    key    TEXT NOT NULL,
    owner  TEXT NOT NULL,
    at_ms  INTEGER NOT NULL,
    PRIMARY KEY (topic, key)
);
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);
CREATE TABLE freezes (
    id         TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    ended_ms   INTEGER,
    body       TEXT NOT NULL
);
CREATE TABLE grants (
    id         TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    ended_ms   INTEGER,
    body       TEXT NOT NULL
);
",
    r"
CREATE TABLE audit_chain (
    seq  INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    line TEXT NOT NULL
);
",
    r"
CREATE TABLE guard_subjects (
    subject     TEXT PRIMARY KEY,
    last_active INTEGER NOT NULL
);
CREATE INDEX guard_subjects_active ON guard_subjects (last_active);
CREATE TABLE guard_seen (
    subject TEXT NOT NULL,
    kind    TEXT NOT NULL,
    item    TEXT NOT NULL,
    last_ms INTEGER NOT NULL,
    PRIMARY KEY (subject, kind, item)
);
CREATE TABLE guard_hits (
    subject TEXT NOT NULL,
    at_ms   INTEGER NOT NULL
);
CREATE INDEX guard_hits_subject ON guard_hits (subject, at_ms);
",
    r"
CREATE TABLE live_certs (
    serial          INTEGER PRIMARY KEY,
    ca              TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    caller          TEXT NOT NULL,
    forwarder       TEXT NOT NULL,
    end_user        TEXT NOT NULL,
    host            TEXT NOT NULL,
    valid_before_ms INTEGER NOT NULL,
    revoked_by      TEXT
);
CREATE INDEX live_certs_expiry ON live_certs (valid_before_ms);
CREATE INDEX live_certs_revoked ON live_certs (valid_before_ms) WHERE revoked_by IS NOT NULL;
CREATE INDEX live_certs_caller ON live_certs (caller);
CREATE INDEX live_certs_forwarder ON live_certs (forwarder) WHERE forwarder <> '';
CREATE INDEX live_certs_end_user ON live_certs (end_user) WHERE end_user <> '';
CREATE INDEX live_certs_host ON live_certs (host);
CREATE INDEX live_certs_key_id ON live_certs (key_id);
CREATE TABLE krl_state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    version      INTEGER NOT NULL,
    digest       TEXT NOT NULL,
    generated_ms INTEGER NOT NULL
);
",
];

/// Migrations for PostgreSQL, by version (index + 1).
pub const POSTGRES: &[&str] = &[
    r"
CREATE TABLE approvals (
    id          TEXT PRIMARY KEY,
    caller      TEXT NOT NULL,
    open        BOOLEAN NOT NULL,
    deadline_ms BIGINT,
    purge_at_ms BIGINT,
    created_ms  BIGINT NOT NULL,
    body        TEXT NOT NULL,
    version     BIGINT NOT NULL
);
CREATE INDEX approvals_deadline ON approvals (deadline_ms) WHERE open;
CREATE INDEX approvals_purge ON approvals (purge_at_ms) WHERE purge_at_ms IS NOT NULL;
CREATE INDEX approvals_caller_open ON approvals (caller) WHERE open;
CREATE TABLE claims (
    topic  TEXT NOT NULL,
    key    TEXT NOT NULL,
    owner  TEXT NOT NULL,
    at_ms  BIGINT NOT NULL,
    PRIMARY KEY (topic, key)
);
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    next BIGINT NOT NULL
);
CREATE TABLE freezes (
    id         TEXT PRIMARY KEY,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT,
    ended_ms   BIGINT,
    body       TEXT NOT NULL
);
CREATE TABLE grants (
    id         TEXT PRIMARY KEY,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT,
    ended_ms   BIGINT,
    body       TEXT NOT NULL
);
",
    r"
CREATE TABLE audit_chain (
    seq  BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    line TEXT NOT NULL
);
",
    r"
CREATE TABLE guard_subjects (
    subject     TEXT PRIMARY KEY,
    last_active BIGINT NOT NULL
);
CREATE INDEX guard_subjects_active ON guard_subjects (last_active);
CREATE TABLE guard_seen (
    subject TEXT NOT NULL,
    kind    TEXT NOT NULL,
    item    TEXT NOT NULL,
    last_ms BIGINT NOT NULL,
    PRIMARY KEY (subject, kind, item)
);
CREATE TABLE guard_hits (
    subject TEXT NOT NULL,
    at_ms   BIGINT NOT NULL
);
CREATE INDEX guard_hits_subject ON guard_hits (subject, at_ms);
",
    r"
CREATE TABLE live_certs (
    serial          BIGINT PRIMARY KEY,
    ca              TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    caller          TEXT NOT NULL,
    forwarder       TEXT NOT NULL,
    end_user        TEXT NOT NULL,
    host            TEXT NOT NULL,
    valid_before_ms BIGINT NOT NULL,
    revoked_by      TEXT
);
CREATE INDEX live_certs_expiry ON live_certs (valid_before_ms);
CREATE INDEX live_certs_revoked ON live_certs (valid_before_ms) WHERE revoked_by IS NOT NULL;
CREATE INDEX live_certs_caller ON live_certs (caller);
CREATE INDEX live_certs_forwarder ON live_certs (forwarder) WHERE forwarder <> '';
CREATE INDEX live_certs_end_user ON live_certs (end_user) WHERE end_user <> '';
CREATE INDEX live_certs_host ON live_certs (host);
CREATE INDEX live_certs_key_id ON live_certs (key_id);
CREATE TABLE krl_state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    version      BIGINT NOT NULL,
    digest       TEXT NOT NULL,
    generated_ms BIGINT NOT NULL
);
",
];

/// The version table both backends create first.
pub const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL)";

/// The refusal for a database newer than this build.
pub fn too_new(found: i64, known: usize) -> crate::StoreError {
    crate::StoreError::Corrupt(format!(
        "the database is at schema version {found}, newer than this build knows ({known}); \
         upgrade this service before pointing it at that database"
    ))
}
