//! The index of live certificates and the KRL version in SQLite: the same
//! statements as the PostgreSQL backend, each operation one transaction on
//! the single connection.

use rusqlite::{Row, params};

use super::{Sqlite, fail};
use crate::rows::{CertSubject, KrlState, LiveCert};
use crate::{Result, from_db, to_db};

const COLS: &str =
    "serial, ca, key_id, caller, forwarder, end_user, host, valid_before_ms, revoked_by";

fn cert(row: &Row<'_>) -> rusqlite::Result<Result<LiveCert>> {
    let (serial, before): (i64, i64) = (row.get(0)?, row.get(7)?);
    let cert = |serial, valid_before_ms| -> rusqlite::Result<LiveCert> {
        Ok(LiveCert {
            serial,
            ca: row.get(1)?,
            key_id: row.get(2)?,
            caller: row.get(3)?,
            forwarder: row.get(4)?,
            end_user: row.get(5)?,
            host: row.get(6)?,
            valid_before_ms,
            revoked_by: row.get(8)?,
        })
    };
    match (from_db(serial), from_db(before)) {
        (Ok(s), Ok(b)) => cert(s, b).map(Ok),
        (Err(e), _) | (_, Err(e)) => Ok(Err(e)),
    }
}

/// A subject's value as the parameter its condition compares with.
fn value(subject: CertSubject, v: &str) -> Option<rusqlite::types::Value> {
    match subject {
        CertSubject::Serial => v
            .parse::<u64>()
            .ok()
            .map(|s| rusqlite::types::Value::Integer(to_db(s))),
        _ => Some(rusqlite::types::Value::Text(v.to_owned())),
    }
}

impl Sqlite {
    pub(crate) async fn cert_insert(&self, rows: Vec<LiveCert>) -> Result<()> {
        self.with(move |c| {
            let tx = c.transaction().map_err(fail)?;
            {
                let mut st = tx
                    .prepare_cached(&format!(
                        "INSERT INTO live_certs ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                    ))
                    .map_err(fail)?;
                for r in &rows {
                    st.execute(params![
                        to_db(r.serial),
                        r.ca,
                        r.key_id,
                        r.caller,
                        r.forwarder,
                        r.end_user,
                        r.host,
                        to_db(r.valid_before_ms),
                        r.revoked_by,
                    ])
                    .map_err(fail)?;
                }
            }
            tx.commit().map_err(fail)
        })
        .await
    }

    pub(crate) async fn cert_revoke(
        &self,
        subject: CertSubject,
        v: &str,
        freeze_id: &str,
        now_ms: u64,
    ) -> Result<u64> {
        let Some(v) = value(subject, v) else {
            return Ok(0);
        };
        let freeze_id = freeze_id.to_owned();
        self.with(move |c| {
            let n = c
                .prepare_cached(&format!(
                    "UPDATE live_certs SET revoked_by = ?2
                     WHERE {} AND revoked_by IS NULL AND valid_before_ms > ?3",
                    subject.condition("?1")
                ))
                .map_err(fail)?
                .execute(params![v, freeze_id, to_db(now_ms)])
                .map_err(fail)?;
            Ok(n as u64)
        })
        .await
    }

    pub(crate) async fn cert_revoked(&self, now_ms: u64) -> Result<Vec<LiveCert>> {
        self.with(move |c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {COLS} FROM live_certs
                     WHERE revoked_by IS NOT NULL AND valid_before_ms > ?1 ORDER BY serial"
                ))
                .map_err(fail)?;
            let rows = st.query_map([to_db(now_ms)], cert).map_err(fail)?;
            rows.map(|r| r.map_err(fail)?).collect()
        })
        .await
    }

    pub(crate) async fn cert_live(
        &self,
        filter: Option<(CertSubject, String)>,
        now_ms: u64,
        limit: u32,
    ) -> Result<Vec<LiveCert>> {
        let (cond, v) = match &filter {
            Some((subject, v)) => match value(*subject, v) {
                Some(v) => (subject.condition("?3"), v),
                None => return Ok(Vec::new()),
            },
            // Matches every row; keeps the parameter count fixed.
            None => ("?3 IS NULL".to_owned(), rusqlite::types::Value::Null),
        };
        self.with(move |c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {COLS} FROM live_certs WHERE valid_before_ms > ?1 AND {cond}
                     ORDER BY serial LIMIT ?2"
                ))
                .map_err(fail)?;
            let rows = st
                .query_map(params![to_db(now_ms), i64::from(limit), v], cert)
                .map_err(fail)?;
            rows.map(|r| r.map_err(fail)?).collect()
        })
        .await
    }

    pub(crate) async fn cert_purge(&self, now_ms: u64) -> Result<u64> {
        self.with(move |c| {
            let n = c
                .execute(
                    "DELETE FROM live_certs WHERE valid_before_ms <= ?1",
                    [to_db(now_ms)],
                )
                .map_err(fail)?;
            Ok(n as u64)
        })
        .await
    }

    pub(crate) async fn krl_publish(&self, digest: &str, now_ms: u64) -> Result<KrlState> {
        let digest = digest.to_owned();
        self.with(move |c| {
            let tx = c.transaction().map_err(fail)?;
            tx.execute(
                "INSERT INTO krl_state (id, version, digest, generated_ms) VALUES (1, ?3, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE
                 SET version = max(version + 1, ?3), digest = excluded.digest,
                     generated_ms = excluded.generated_ms
                 WHERE digest <> excluded.digest",
                params![digest, to_db(now_ms), to_db(now_ms / 1000)],
            )
            .map_err(fail)?;
            let (version, digest, generated): (i64, String, i64) = tx
                .query_row(
                    "SELECT version, digest, generated_ms FROM krl_state WHERE id = 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .map_err(fail)?;
            tx.commit().map_err(fail)?;
            Ok(KrlState {
                version: from_db(version)?,
                digest,
                generated_ms: from_db(generated)?,
            })
        })
        .await
    }
}
