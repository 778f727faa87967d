//! The embedded backend: one SQLite file per service, in WAL mode with
//! `synchronous=FULL` (a committed change survives a power cut), used
//! through one connection on tokio's blocking pool. One process owns the
//! file; SQLite's own locking refuses a second writer, and `busy_timeout`
//! covers a brief overlap during a restart.

mod certs;
mod guard;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, Row, params};

use crate::rows::{ApprovalRow, Entry};
use crate::schema;
use crate::{EntryKind, Result, StoreError, from_db, to_db};

/// An open SQLite store.
#[derive(Debug, Clone)]
pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

fn fail(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

fn opt_db(v: Option<u64>) -> Option<i64> {
    v.map(to_db)
}

fn opt_from(v: Option<i64>) -> Result<Option<u64>> {
    v.map(from_db).transpose()
}

const APPROVAL_COLS: &str = "id, caller, open, deadline_ms, purge_at_ms, created_ms, body, version";

/// A row of `approvals`. Integers are converted after the read, so a
/// bad value is [`StoreError::Corrupt`], not a driver error.
fn approval(row: &Row<'_>) -> rusqlite::Result<Result<ApprovalRow>> {
    let (created, version): (i64, i64) = (row.get(5)?, row.get(7)?);
    let (deadline, purge): (Option<i64>, Option<i64>) = (row.get(3)?, row.get(4)?);
    let (id, caller, open, body) = (
        row.get(0)?,
        row.get(1)?,
        row.get::<_, i64>(2)? != 0,
        row.get(6)?,
    );
    Ok((|| {
        Ok(ApprovalRow {
            id,
            caller,
            open,
            deadline_ms: opt_from(deadline)?,
            purge_at_ms: opt_from(purge)?,
            created_ms: from_db(created)?,
            body,
            version: from_db(version)?,
        })
    })())
}

/// A row of `freezes` or `grants`.
fn entry(row: &Row<'_>) -> rusqlite::Result<Result<Entry>> {
    let (id, created, body): (String, i64, String) = (row.get(0)?, row.get(1)?, row.get(4)?);
    let (expires, ended): (Option<i64>, Option<i64>) = (row.get(2)?, row.get(3)?);
    Ok((|| {
        Ok(Entry {
            id,
            created_ms: from_db(created)?,
            expires_ms: opt_from(expires)?,
            ended_ms: opt_from(ended)?,
            body,
        })
    })())
}

impl Sqlite {
    /// Opens (creating if needed) the file at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<Sqlite> {
        let path = path.to_owned();
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
            let mut conn = Connection::open(&p)
                .map_err(|e| StoreError::Unavailable(format!("sqlite {}: {e}", p.display())))?;
            conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
            let mode: String = conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                .map_err(fail)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Unavailable(format!(
                    "sqlite {}: WAL mode refused (journal_mode is {mode})",
                    p.display()
                )));
            }
            conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
                .map_err(fail)?;
            migrate(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("sqlite open task: {e}")))??;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut c)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("sqlite task: {e}")))?
    }

    pub(crate) async fn ping(&self) -> Result<()> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(fail))
            .await
    }

    pub(crate) async fn approval_insert(&self, row: &ApprovalRow) -> Result<bool> {
        let a = row.clone();
        self.with(move |c| {
            let n = c
                .execute(
                    "INSERT INTO approvals (id, caller, open, deadline_ms, purge_at_ms, created_ms, body, version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1) ON CONFLICT (id) DO NOTHING",
                    params![
                        a.id,
                        a.caller,
                        i64::from(a.open),
                        opt_db(a.deadline_ms),
                        opt_db(a.purge_at_ms),
                        to_db(a.created_ms),
                        a.body
                    ],
                )
                .map_err(fail)?;
            Ok(n == 1)
        })
        .await
    }

    pub(crate) async fn approval_get(&self, id: &str) -> Result<Option<ApprovalRow>> {
        let id = id.to_owned();
        self.with(move |c| {
            c.query_row(
                &format!("SELECT {APPROVAL_COLS} FROM approvals WHERE id = ?1"),
                [id],
                approval,
            )
            .optional()
            .map_err(fail)?
            .transpose()
        })
        .await
    }

    pub(crate) async fn approval_replace(&self, row: &ApprovalRow) -> Result<bool> {
        let a = row.clone();
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE approvals SET caller = ?2, open = ?3, deadline_ms = ?4, purge_at_ms = ?5,
                     created_ms = ?6, body = ?7, version = version + 1
                     WHERE id = ?1 AND version = ?8",
                    params![
                        a.id,
                        a.caller,
                        i64::from(a.open),
                        opt_db(a.deadline_ms),
                        opt_db(a.purge_at_ms),
                        to_db(a.created_ms),
                        a.body,
                        to_db(a.version)
                    ],
                )
                .map_err(fail)?;
            Ok(n == 1)
        })
        .await
    }

    async fn approvals_where(
        &self,
        clause: &'static str,
        args: Vec<i64>,
    ) -> Result<Vec<ApprovalRow>> {
        self.with(move |c| {
            let mut st = c
                .prepare_cached(&format!("SELECT {APPROVAL_COLS} FROM approvals {clause}"))
                .map_err(fail)?;
            let rows = st
                .query_map(rusqlite::params_from_iter(args), approval)
                .map_err(fail)?;
            rows.map(|r| r.map_err(fail)?).collect()
        })
        .await
    }

    pub(crate) async fn approval_list(&self) -> Result<Vec<ApprovalRow>> {
        self.approvals_where("ORDER BY created_ms, id", Vec::new())
            .await
    }

    pub(crate) async fn approval_due(&self, now_ms: u64, limit: u32) -> Result<Vec<ApprovalRow>> {
        self.approvals_where(
            "WHERE open = 1 AND deadline_ms <= ?1 ORDER BY deadline_ms LIMIT ?2",
            vec![to_db(now_ms), i64::from(limit)],
        )
        .await
    }

    pub(crate) async fn approval_purge(&self, now_ms: u64) -> Result<u64> {
        self.with(move |c| {
            let tx = c.transaction().map_err(fail)?;
            tx.execute(
                "DELETE FROM claims WHERE key IN (SELECT id FROM approvals WHERE purge_at_ms <= ?1)",
                [to_db(now_ms)],
            )
            .map_err(fail)?;
            let n = tx
                .execute("DELETE FROM approvals WHERE purge_at_ms <= ?1", [to_db(now_ms)])
                .map_err(fail)?;
            tx.commit().map_err(fail)?;
            Ok(n as u64)
        })
        .await
    }

    pub(crate) async fn approval_open_count(&self, caller: &str) -> Result<u64> {
        let caller = caller.to_owned();
        self.with(move |c| {
            let n: i64 = c
                .query_row(
                    "SELECT count(*) FROM approvals WHERE open = 1 AND caller = ?1",
                    [caller],
                    |r| r.get(0),
                )
                .map_err(fail)?;
            from_db(n)
        })
        .await
    }

    pub(crate) async fn approval_count(&self) -> Result<u64> {
        self.with(|c| {
            let n: i64 = c
                .query_row("SELECT count(*) FROM approvals", [], |r| r.get(0))
                .map_err(fail)?;
            from_db(n)
        })
        .await
    }

    pub(crate) async fn claim(
        &self,
        topic: &str,
        key: &str,
        owner: &str,
        now_ms: u64,
    ) -> Result<bool> {
        let (topic, key, owner) = (topic.to_owned(), key.to_owned(), owner.to_owned());
        self.with(move |c| {
            let n = c
                .execute(
                    "INSERT INTO claims (topic, key, owner, at_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (topic, key) DO NOTHING",
                    params![topic, key, owner, to_db(now_ms)],
                )
                .map_err(fail)?;
            Ok(n == 1)
        })
        .await
    }

    pub(crate) async fn serial_block(&self, floor: u64, n: u64) -> Result<u64> {
        self.with(move |c| {
            let first: i64 = c
                .query_row(
                    "INSERT INTO counters (name, next) VALUES ('serial', ?1 + ?2)
                     ON CONFLICT (name) DO UPDATE SET next = max(next, ?1) + ?2
                     RETURNING next - ?2",
                    params![to_db(floor), to_db(n)],
                    |r| r.get(0),
                )
                .map_err(fail)?;
            from_db(first)
        })
        .await
    }

    pub(crate) async fn entry_insert(&self, kind: EntryKind, e: &Entry) -> Result<bool> {
        let e = e.clone();
        self.with(move |c| {
            let n = c
                .execute(
                    &format!(
                        "INSERT INTO {} (id, created_ms, expires_ms, ended_ms, body)
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
                        kind.table()
                    ),
                    params![
                        e.id,
                        to_db(e.created_ms),
                        opt_db(e.expires_ms),
                        opt_db(e.ended_ms),
                        e.body
                    ],
                )
                .map_err(fail)?;
            Ok(n == 1)
        })
        .await
    }

    pub(crate) async fn entry_active(&self, kind: EntryKind, now_ms: u64) -> Result<Vec<Entry>> {
        self.with(move |c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT id, created_ms, expires_ms, ended_ms, body FROM {}
                     WHERE ended_ms IS NULL AND (expires_ms IS NULL OR expires_ms > ?1)
                     ORDER BY created_ms, id",
                    kind.table()
                ))
                .map_err(fail)?;
            let rows = st.query_map([to_db(now_ms)], entry).map_err(fail)?;
            rows.map(|r| r.map_err(fail)?).collect()
        })
        .await
    }

    pub(crate) async fn entry_end(&self, kind: EntryKind, id: &str, now_ms: u64) -> Result<bool> {
        let id = id.to_owned();
        self.with(move |c| {
            let n = c
                .execute(
                    &format!(
                        "UPDATE {} SET ended_ms = ?2 WHERE id = ?1 AND ended_ms IS NULL
                         AND (expires_ms IS NULL OR expires_ms > ?2)",
                        kind.table()
                    ),
                    params![id, to_db(now_ms)],
                )
                .map_err(fail)?;
            Ok(n == 1)
        })
        .await
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(fail)?;
    tx.execute(schema::VERSION_TABLE, []).map_err(fail)?;
    let at: i64 = tx
        .query_row(
            "SELECT coalesce(max(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .map_err(fail)?;
    let known = schema::SQLITE.len();
    if usize::try_from(at).is_ok_and(|v| v > known) {
        return Err(schema::too_new(at, known));
    }
    for (i, sql) in schema::SQLITE
        .iter()
        .enumerate()
        .skip(usize::try_from(at).unwrap_or(0))
    {
        tx.execute_batch(sql).map_err(fail)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_ms) VALUES (?1, ?2)",
            params![i64::try_from(i + 1).unwrap_or(i64::MAX), to_db(now_ms())],
        )
        .map_err(fail)?;
    }
    tx.commit().map_err(fail)
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
