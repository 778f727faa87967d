//! Guardrail memory in SQLite: the same statements as the PostgreSQL
//! backend, each operation one transaction on the single connection.

use rusqlite::{OptionalExtension as _, Transaction, params};

use super::{Sqlite, fail};
use crate::rows::{GuardCheck, GuardLimits};
use crate::{Result, from_db, to_db};

/// Makes room for `subject` (dropping the least recently active one when
/// `max` are remembered) and marks it active at `now`.
fn admit(tx: &Transaction<'_>, subject: &str, now: u64, max: u64) -> Result<()> {
    let known: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM guard_subjects WHERE subject = ?1",
            [subject],
            |r| r.get(0),
        )
        .optional()
        .map_err(fail)?;
    if known.is_none() {
        let n: i64 = tx
            .query_row("SELECT count(*) FROM guard_subjects", [], |r| r.get(0))
            .map_err(fail)?;
        if from_db(n)? >= max {
            let oldest: Option<String> = tx
                .query_row(
                    "SELECT subject FROM guard_subjects ORDER BY last_active, subject LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(fail)?;
            if let Some(old) = oldest {
                forget(tx, "subject = ?1", &old)?;
            }
        }
    }
    tx.execute(
        "INSERT INTO guard_subjects (subject, last_active) VALUES (?1, ?2)
         ON CONFLICT (subject) DO UPDATE SET last_active = excluded.last_active",
        params![subject, to_db(now)],
    )
    .map_err(fail)?;
    Ok(())
}

/// Deletes the subjects matching `filter` (over column `subject` or
/// `last_active`, one parameter) with everything remembered for them.
fn forget(tx: &Transaction<'_>, filter: &str, arg: &dyn rusqlite::ToSql) -> Result<u64> {
    let which = format!("SELECT subject FROM guard_subjects WHERE {filter}");
    for table in ["guard_seen", "guard_hits"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE subject IN ({which})"),
            [arg],
        )
        .map_err(fail)?;
    }
    let n = tx
        .execute(&format!("DELETE FROM guard_subjects WHERE {filter}"), [arg])
        .map_err(fail)?;
    Ok(n as u64)
}

fn seen(tx: &Transaction<'_>, subject: &str, kind: &str, item: &str) -> Result<bool> {
    tx.query_row(
        "SELECT 1 FROM guard_seen WHERE subject = ?1 AND kind = ?2 AND item = ?3",
        params![subject, kind, item],
        |_| Ok(()),
    )
    .optional()
    .map_err(fail)
    .map(|r| r.is_some())
}

impl Sqlite {
    pub(crate) async fn guard_check(
        &self,
        subject: &str,
        host: &str,
        shapes: &[String],
        now: u64,
        lim: GuardLimits,
    ) -> Result<GuardCheck> {
        let (subject, host, shapes) = (subject.to_owned(), host.to_owned(), shapes.to_vec());
        self.with(move |c| {
            let tx = c.transaction().map_err(fail)?;
            admit(&tx, &subject, now, lim.max_subjects)?;
            let cutoff = to_db(now).saturating_sub(to_db(lim.window_ms));
            tx.execute(
                "DELETE FROM guard_hits WHERE subject = ?1 AND at_ms <= ?2",
                params![subject, cutoff],
            )
            .map_err(fail)?;
            let (hits, oldest): (i64, Option<i64>) = tx
                .query_row(
                    "SELECT count(*), min(at_ms) FROM guard_hits WHERE subject = ?1",
                    [&subject],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(fail)?;
            let hits = from_db(hits)?;
            if lim.counts(hits) {
                tx.execute(
                    "INSERT INTO guard_hits (subject, at_ms) VALUES (?1, ?2)",
                    params![subject, to_db(now)],
                )
                .map_err(fail)?;
            }
            let host_known = seen(&tx, &subject, "host", &host)?;
            let mut known_commands = Vec::new();
            for s in &shapes {
                if seen(&tx, &subject, "command", s)? {
                    known_commands.push(s.clone());
                }
            }
            tx.commit().map_err(fail)?;
            Ok(GuardCheck {
                hits,
                oldest_hit_ms: oldest.map(from_db).transpose()?,
                host_known,
                known_commands,
            })
        })
        .await
    }

    pub(crate) async fn guard_learn(
        &self,
        subject: &str,
        items: &[(String, String)],
        now: u64,
        lim: GuardLimits,
    ) -> Result<()> {
        let (subject, items) = (subject.to_owned(), items.to_vec());
        self.with(move |c| {
            let tx = c.transaction().map_err(fail)?;
            admit(&tx, &subject, now, lim.max_subjects)?;
            for (kind, item) in &items {
                if !seen(&tx, &subject, kind, item)? {
                    let n: i64 = tx
                        .query_row(
                            "SELECT count(*) FROM guard_seen WHERE subject = ?1 AND kind = ?2",
                            params![subject, kind],
                            |r| r.get(0),
                        )
                        .map_err(fail)?;
                    if from_db(n)? >= lim.max_items {
                        tx.execute(
                            "DELETE FROM guard_seen WHERE subject = ?1 AND kind = ?2 AND item =
                             (SELECT item FROM guard_seen WHERE subject = ?1 AND kind = ?2
                              ORDER BY last_ms, item LIMIT 1)",
                            params![subject, kind],
                        )
                        .map_err(fail)?;
                    }
                }
                tx.execute(
                    "INSERT INTO guard_seen (subject, kind, item, last_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (subject, kind, item) DO UPDATE SET last_ms = excluded.last_ms",
                    params![subject, kind, item, to_db(now)],
                )
                .map_err(fail)?;
            }
            tx.commit().map_err(fail)
        })
        .await
    }

    pub(crate) async fn guard_touch(
        &self,
        subject: &str,
        items: &[(String, String)],
        now: u64,
    ) -> Result<()> {
        let (subject, items) = (subject.to_owned(), items.to_vec());
        self.with(move |c| {
            let tx = c.transaction().map_err(fail)?;
            for (kind, item) in &items {
                tx.execute(
                    "UPDATE guard_seen SET last_ms = ?4 WHERE subject = ?1 AND kind = ?2 AND item = ?3",
                    params![subject, kind, item, to_db(now)],
                )
                .map_err(fail)?;
            }
            tx.commit().map_err(fail)
        })
        .await
    }

    pub(crate) async fn guard_sweep(&self, now: u64, ttl_ms: u64) -> Result<u64> {
        self.with(move |c| {
            let tx = c.transaction().map_err(fail)?;
            let cutoff = to_db(now).saturating_sub(to_db(ttl_ms));
            let n = forget(&tx, "last_active <= ?1", &cutoff)?;
            tx.commit().map_err(fail)?;
            Ok(n)
        })
        .await
    }

    pub(crate) async fn guard_subjects(&self) -> Result<u64> {
        self.with(|c| {
            let n: i64 = c
                .query_row("SELECT count(*) FROM guard_subjects", [], |r| r.get(0))
                .map_err(fail)?;
            from_db(n)
        })
        .await
    }
}
