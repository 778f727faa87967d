//! Guardrail memory in PostgreSQL, shared by every control plane on the
//! database: one history per subject. Each operation is one transaction;
//! the upsert of the subject's row locks it until the commit, so two
//! replicas checking the same subject at once are serialised (the rate
//! window cannot be overrun by a race).

use deadpool_postgres::Transaction;

use super::{Postgres, fail};
use crate::rows::{GuardCheck, GuardLimits};
use crate::{Result, from_db, to_db};

async fn admit(tx: &Transaction<'_>, subject: &str, now: u64, max: u64) -> Result<()> {
    let known = tx
        .query_opt(
            "SELECT 1 FROM guard_subjects WHERE subject = $1",
            &[&subject],
        )
        .await
        .map_err(fail)?;
    if known.is_none() {
        let n: i64 = tx
            .query_one("SELECT count(*) FROM guard_subjects", &[])
            .await
            .map_err(fail)?
            .try_get(0)
            .map_err(fail)?;
        if from_db(n)? >= max
            && let Some(row) = tx
                .query_opt(
                    "SELECT subject FROM guard_subjects ORDER BY last_active, subject LIMIT 1",
                    &[],
                )
                .await
                .map_err(fail)?
        {
            let old: String = row.try_get(0).map_err(fail)?;
            forget_subject(tx, &old).await?;
        }
    }
    tx.execute(
        "INSERT INTO guard_subjects (subject, last_active) VALUES ($1, $2)
         ON CONFLICT (subject) DO UPDATE SET last_active = excluded.last_active",
        &[&subject, &to_db(now)],
    )
    .await
    .map_err(fail)?;
    Ok(())
}

async fn forget_subject(tx: &Transaction<'_>, subject: &str) -> Result<()> {
    for sql in [
        "DELETE FROM guard_seen WHERE subject = $1",
        "DELETE FROM guard_hits WHERE subject = $1",
        "DELETE FROM guard_subjects WHERE subject = $1",
    ] {
        tx.execute(sql, &[&subject]).await.map_err(fail)?;
    }
    Ok(())
}

impl Postgres {
    pub(crate) async fn guard_check(
        &self,
        subject: &str,
        host: &str,
        shapes: &[String],
        now: u64,
        lim: GuardLimits,
    ) -> Result<GuardCheck> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(fail)?;
        admit(&tx, subject, now, lim.max_subjects).await?;
        let cutoff = to_db(now).saturating_sub(to_db(lim.window_ms));
        tx.execute(
            "DELETE FROM guard_hits WHERE subject = $1 AND at_ms <= $2",
            &[&subject, &cutoff],
        )
        .await
        .map_err(fail)?;
        let row = tx
            .query_one(
                "SELECT count(*), min(at_ms) FROM guard_hits WHERE subject = $1",
                &[&subject],
            )
            .await
            .map_err(fail)?;
        let hits = from_db(row.try_get(0).map_err(fail)?)?;
        let oldest: Option<i64> = row.try_get(1).map_err(fail)?;
        if lim.counts(hits) {
            tx.execute(
                "INSERT INTO guard_hits (subject, at_ms) VALUES ($1, $2)",
                &[&subject, &to_db(now)],
            )
            .await
            .map_err(fail)?;
        }
        let host_known = tx
            .query_opt(
                "SELECT 1 FROM guard_seen WHERE subject = $1 AND kind = 'host' AND item = $2",
                &[&subject, &host],
            )
            .await
            .map_err(fail)?
            .is_some();
        let known = tx
            .query(
                "SELECT item FROM guard_seen WHERE subject = $1 AND kind = 'command' AND item = ANY($2)",
                &[&subject, &shapes],
            )
            .await
            .map_err(fail)?;
        let known: Vec<String> = known
            .iter()
            .map(|r| r.try_get(0).map_err(fail))
            .collect::<Result<_>>()?;
        tx.commit().await.map_err(fail)?;
        // In the order asked, like the SQLite backend.
        let known_commands = shapes
            .iter()
            .filter(|s| known.contains(s))
            .cloned()
            .collect();
        Ok(GuardCheck {
            hits,
            oldest_hit_ms: oldest.map(from_db).transpose()?,
            host_known,
            known_commands,
        })
    }

    pub(crate) async fn guard_learn(
        &self,
        subject: &str,
        items: &[(String, String)],
        now: u64,
        lim: GuardLimits,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(fail)?;
        admit(&tx, subject, now, lim.max_subjects).await?;
        for (kind, item) in items {
            let known = tx
                .query_opt(
                    "SELECT 1 FROM guard_seen WHERE subject = $1 AND kind = $2 AND item = $3",
                    &[&subject, kind, item],
                )
                .await
                .map_err(fail)?;
            if known.is_none() {
                let n: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM guard_seen WHERE subject = $1 AND kind = $2",
                        &[&subject, kind],
                    )
                    .await
                    .map_err(fail)?
                    .try_get(0)
                    .map_err(fail)?;
                if from_db(n)? >= lim.max_items {
                    tx.execute(
                        "DELETE FROM guard_seen WHERE subject = $1 AND kind = $2 AND item =
                         (SELECT item FROM guard_seen WHERE subject = $1 AND kind = $2
                          ORDER BY last_ms, item LIMIT 1)",
                        &[&subject, kind],
                    )
                    .await
                    .map_err(fail)?;
                }
            }
            tx.execute(
                "INSERT INTO guard_seen (subject, kind, item, last_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (subject, kind, item) DO UPDATE SET last_ms = excluded.last_ms",
                &[&subject, kind, item, &to_db(now)],
            )
            .await
            .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)
    }

    pub(crate) async fn guard_touch(
        &self,
        subject: &str,
        items: &[(String, String)],
        now: u64,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(fail)?;
        for (kind, item) in items {
            tx.execute(
                "UPDATE guard_seen SET last_ms = $4 WHERE subject = $1 AND kind = $2 AND item = $3",
                &[&subject, kind, item, &to_db(now)],
            )
            .await
            .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)
    }

    pub(crate) async fn guard_sweep(&self, now: u64, ttl_ms: u64) -> Result<u64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(fail)?;
        let cutoff = to_db(now).saturating_sub(to_db(ttl_ms));
        let idle = "SELECT subject FROM guard_subjects WHERE last_active <= $1";
        for table in ["guard_seen", "guard_hits"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE subject IN ({idle})"),
                &[&cutoff],
            )
            .await
            .map_err(fail)?;
        }
        let n = tx
            .execute(
                "DELETE FROM guard_subjects WHERE last_active <= $1",
                &[&cutoff],
            )
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(n)
    }

    pub(crate) async fn guard_subjects(&self) -> Result<u64> {
        self.count("SELECT count(*) FROM guard_subjects", &[]).await
    }
}
