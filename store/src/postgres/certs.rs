//! The index of live certificates and the KRL version in PostgreSQL,
//! shared by every signer replica on the database. A batch of new
//! certificates is one multi-row `INSERT`; a version bump is one upsert
//! that changes the row only when the content's digest differs.

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{Postgres, fail};
use crate::rows::{CertSubject, KrlState, LiveCert};
use crate::{Result, StoreError, from_db, to_db};

const COLS: &str =
    "serial, ca, key_id, caller, forwarder, end_user, host, valid_before_ms, revoked_by";

/// Columns per row of an insert.
const WIDTH: usize = 9;

/// Rows per `INSERT` statement (PostgreSQL allows 65,535 parameters).
const CHUNK: usize = 1024;

fn cert(r: &Row) -> Result<LiveCert> {
    let serial: i64 = r.try_get(0).map_err(fail)?;
    let before: i64 = r.try_get(7).map_err(fail)?;
    Ok(LiveCert {
        serial: from_db(serial)?,
        ca: r.try_get(1).map_err(fail)?,
        key_id: r.try_get(2).map_err(fail)?,
        caller: r.try_get(3).map_err(fail)?,
        forwarder: r.try_get(4).map_err(fail)?,
        end_user: r.try_get(5).map_err(fail)?,
        host: r.try_get(6).map_err(fail)?,
        valid_before_ms: from_db(before)?,
        revoked_by: r.try_get(8).map_err(fail)?,
    })
}

/// A subject's value as the parameter its condition compares with.
enum Param {
    Int(i64),
    Text(String),
}

impl Param {
    fn of(subject: CertSubject, v: &str) -> Option<Param> {
        match subject {
            CertSubject::Serial => v.parse::<u64>().ok().map(|s| Param::Int(to_db(s))),
            _ => Some(Param::Text(v.to_owned())),
        }
    }

    fn sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Param::Int(i) => i,
            Param::Text(t) => t,
        }
    }
}

impl Postgres {
    pub(crate) async fn cert_insert(&self, rows: Vec<LiveCert>) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(fail)?;
        for chunk in rows.chunks(CHUNK) {
            let ints: Vec<[i64; 2]> = chunk
                .iter()
                .map(|r| [to_db(r.serial), to_db(r.valid_before_ms)])
                .collect();
            let mut args: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(chunk.len() * WIDTH);
            let mut values = Vec::with_capacity(chunk.len());
            for (i, (r, n)) in chunk.iter().zip(&ints).enumerate() {
                let b = i * WIDTH;
                values.push(format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8,
                    b + 9
                ));
                args.extend_from_slice(&[
                    &n[0],
                    &r.ca,
                    &r.key_id,
                    &r.caller,
                    &r.forwarder,
                    &r.end_user,
                    &r.host,
                    &n[1],
                    &r.revoked_by,
                ]);
            }
            let sql = format!(
                "INSERT INTO live_certs ({COLS}) VALUES {}",
                values.join(", ")
            );
            tx.execute(sql.as_str(), &args).await.map_err(fail)?;
        }
        tx.commit().await.map_err(fail)
    }

    pub(crate) async fn cert_revoke(
        &self,
        subject: CertSubject,
        v: &str,
        freeze_id: &str,
        now_ms: u64,
    ) -> Result<u64> {
        let Some(v) = Param::of(subject, v) else {
            return Ok(0);
        };
        self.execute(
            &format!(
                "UPDATE live_certs SET revoked_by = $2
                 WHERE {} AND revoked_by IS NULL AND valid_before_ms > $3",
                subject.condition("$1")
            ),
            &[v.sql(), &freeze_id, &to_db(now_ms)],
        )
        .await
    }

    pub(crate) async fn cert_revoked(&self, now_ms: u64) -> Result<Vec<LiveCert>> {
        let rows = self
            .query(
                &format!(
                    "SELECT {COLS} FROM live_certs
                     WHERE revoked_by IS NOT NULL AND valid_before_ms > $1 ORDER BY serial"
                ),
                &[&to_db(now_ms)],
            )
            .await?;
        rows.iter().map(cert).collect()
    }

    pub(crate) async fn cert_live(
        &self,
        filter: Option<(CertSubject, String)>,
        now_ms: u64,
        limit: u32,
    ) -> Result<Vec<LiveCert>> {
        let (now, limit) = (to_db(now_ms), i64::from(limit));
        let rows = match &filter {
            Some((subject, v)) => {
                let Some(v) = Param::of(*subject, v) else {
                    return Ok(Vec::new());
                };
                self.query(
                    &format!(
                        "SELECT {COLS} FROM live_certs WHERE valid_before_ms > $1 AND {}
                         ORDER BY serial LIMIT $2",
                        subject.condition("$3")
                    ),
                    &[&now, &limit, v.sql()],
                )
                .await?
            }
            None => {
                self.query(
                    &format!(
                        "SELECT {COLS} FROM live_certs WHERE valid_before_ms > $1
                         ORDER BY serial LIMIT $2"
                    ),
                    &[&now, &limit],
                )
                .await?
            }
        };
        rows.iter().map(cert).collect()
    }

    pub(crate) async fn cert_purge(&self, now_ms: u64) -> Result<u64> {
        self.execute(
            "DELETE FROM live_certs WHERE valid_before_ms <= $1",
            &[&to_db(now_ms)],
        )
        .await
    }

    pub(crate) async fn krl_publish(&self, digest: &str, now_ms: u64) -> Result<KrlState> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(fail)?;
        tx.execute(
            "INSERT INTO krl_state (id, version, digest, generated_ms) VALUES (1, $3, $1, $2)
             ON CONFLICT (id) DO UPDATE
             SET version = GREATEST(krl_state.version + 1, $3), digest = EXCLUDED.digest,
                 generated_ms = EXCLUDED.generated_ms
             WHERE krl_state.digest <> EXCLUDED.digest",
            &[&digest, &to_db(now_ms), &to_db(now_ms / 1000)],
        )
        .await
        .map_err(fail)?;
        let row = tx
            .query_opt(
                "SELECT version, digest, generated_ms FROM krl_state WHERE id = 1",
                &[],
            )
            .await
            .map_err(fail)?
            .ok_or_else(|| StoreError::Corrupt("krl_state has no row after the upsert".into()))?;
        let (version, digest, generated): (i64, String, i64) = (
            row.try_get(0).map_err(fail)?,
            row.try_get(1).map_err(fail)?,
            row.try_get(2).map_err(fail)?,
        );
        tx.commit().await.map_err(fail)?;
        Ok(KrlState {
            version: from_db(version)?,
            digest,
            generated_ms: from_db(generated)?,
        })
    }
}
