//! The shared backend: PostgreSQL through tokio-postgres, pooled by
//! deadpool-postgres, with TLS by rustls on the workspace's ring provider
//! when `ca` is set.
//!
//! tokio-postgres rather than sqlx: it is the driver sqlx's own Postgres
//! support grew out of, without sqlx's macros, offline query cache and
//! second runtime layer, so it adds far less to a 2-core build; the queries
//! here are few and fixed.
//!
//! Every replica opens the same database; the schema is migrated at start
//! under a transaction-scoped advisory lock, so replicas starting together
//! apply each migration exactly once. Deadlines are short (connect 3 s, a
//! pooled connection within 5 s): an unreachable database turns into a
//! [`StoreError::Unavailable`] quickly, and the pool reconnects by itself
//! on the next call once it is back.

mod certs;
mod guard;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tokio_postgres::Row;
use tokio_postgres::config::SslMode;

use infrabroker_common::audit::{AuditKey, sealing};
use serde_json::{Map, Value};

use crate::config::PostgresConfig;
use crate::rows::{ApprovalRow, Entry};
use crate::schema;
use crate::sqlite::now_ms;
use crate::{EntryKind, Result, StoreError, from_db, to_db};

/// Arbitrary key of the migration advisory lock ("ib store").
const MIGRATION_LOCK: i64 = 0x6962_5f73_746f_7265;

/// Arbitrary key of the audit chain's head lock ("ib audit").
const AUDIT_LOCK: i64 = 0x6962_5f61_7564_6974;

/// An open PostgreSQL store (a pool; cheap to clone).
#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
    /// The chain head this process last verified or wrote: a batch whose
    /// head is still this one skips re-verifying its signature.
    verified_head: Arc<std::sync::Mutex<Option<(u64, String)>>>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's config holds the password: never printed.
        f.debug_struct("Postgres")
            .field("size", &self.pool.status().size)
            .finish_non_exhaustive()
    }
}

fn fail(e: tokio_postgres::Error) -> StoreError {
    // `Display` of a server error is only "db error"; name its code and text.
    match e.as_db_error() {
        Some(db) => StoreError::Unavailable(format!(
            "postgres: {} ({}): {}",
            db.severity(),
            db.code().code(),
            db.message()
        )),
        None => StoreError::Unavailable(format!("postgres: {e}")),
    }
}

fn opt_db(v: Option<u64>) -> Option<i64> {
    v.map(to_db)
}

fn opt_from(v: Option<i64>) -> Result<Option<u64>> {
    v.map(from_db).transpose()
}

fn approval(r: &Row) -> Result<ApprovalRow> {
    Ok(ApprovalRow {
        id: r.try_get(0).map_err(fail)?,
        caller: r.try_get(1).map_err(fail)?,
        open: r.try_get(2).map_err(fail)?,
        deadline_ms: opt_from(r.try_get(3).map_err(fail)?)?,
        purge_at_ms: opt_from(r.try_get(4).map_err(fail)?)?,
        created_ms: from_db(r.try_get(5).map_err(fail)?)?,
        body: r.try_get(6).map_err(fail)?,
        version: from_db(r.try_get(7).map_err(fail)?)?,
    })
}

fn entry(r: &Row) -> Result<Entry> {
    Ok(Entry {
        id: r.try_get(0).map_err(fail)?,
        created_ms: from_db(r.try_get(1).map_err(fail)?)?,
        expires_ms: opt_from(r.try_get(2).map_err(fail)?)?,
        ended_ms: opt_from(r.try_get(3).map_err(fail)?)?,
        body: r.try_get(4).map_err(fail)?,
    })
}

/// Refuses to seal over a head that is not a genuine record: its line must
/// verify with the audit key and agree with its indexed columns. A
/// database admin without the key cannot make the chain continue from a
/// forged or edited head.
fn check_head(line: &str, seq: u64, hash: &str, key: &AuditKey) -> Result<()> {
    match sealing::check_record(line, &key.verifying_key()) {
        Ok((s, h, _)) if s == seq && h == hash => Ok(()),
        Ok((s, h, _)) => Err(StoreError::Corrupt(format!(
            "audit chain head row {seq} holds record {s} with hash {h}: the table was edited"
        ))),
        Err(why) => Err(StoreError::Corrupt(format!(
            "audit chain head {seq} does not verify ({why}); nothing is appended over it. \
             Export and verify the chain (broker-ctl audit verify --postgres …)"
        ))),
    }
}

const APPROVAL_COLS: &str = "id, caller, open, deadline_ms, purge_at_ms, created_ms, body, version";

fn tls(ca: &std::path::Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let bad = |what: String| {
        StoreError::Unavailable(format!("store.postgres.ca {}: {what}", ca.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).map_err(|e| bad(e.to_string()))?;
    for c in certs {
        roots
            .add(c.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(cfg))
}

impl Postgres {
    /// Connects a pool to `cfg.url` and migrates the schema.
    pub async fn open(cfg: &PostgresConfig) -> Result<Postgres> {
        let mut pg: tokio_postgres::Config = cfg
            .url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("store.postgres.url: {e}")))?;
        pg.connect_timeout(Duration::from_secs(3));
        pg.keepalives(true);
        pg.keepalives_idle(Duration::from_secs(30));
        pg.application_name("infrabroker");
        let manager_cfg = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &cfg.ca {
            Some(ca) => {
                pg.ssl_mode(SslMode::Require);
                Manager::from_config(pg, tls(ca)?, manager_cfg)
            }
            None => Manager::from_config(pg, tokio_postgres::NoTls, manager_cfg),
        };
        let pool = Pool::builder(manager)
            .max_size(cfg.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(2)))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("postgres pool: {e}")))?;
        let store = Postgres {
            pool,
            verified_head: Arc::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(format!("postgres: {e}")))
    }

    async fn migrate(&self) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(fail)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(fail)?;
        tx.batch_execute(schema::VERSION_TABLE)
            .await
            .map_err(fail)?;
        let at: i32 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
            .await
            .map_err(fail)?
            .try_get(0)
            .map_err(fail)?;
        let known = schema::POSTGRES.len();
        if usize::try_from(at).is_ok_and(|v| v > known) {
            return Err(schema::too_new(i64::from(at), known));
        }
        for (i, sql) in schema::POSTGRES
            .iter()
            .enumerate()
            .skip(usize::try_from(at).unwrap_or(0))
        {
            tx.batch_execute(sql).await.map_err(fail)?;
            let v = i32::try_from(i + 1).unwrap_or(i32::MAX);
            tx.execute(
                "INSERT INTO schema_version (version, applied_ms) VALUES ($1, $2)",
                &[&v, &to_db(now_ms())],
            )
            .await
            .map_err(fail)?;
            tracing::info!(version = v, "store schema migrated");
        }
        tx.commit().await.map_err(fail)
    }

    async fn execute(
        &self,
        sql: &str,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64> {
        let c = self.client().await?;
        let st = c.prepare_cached(sql).await.map_err(fail)?;
        c.execute(&st, args).await.map_err(fail)
    }

    async fn query(
        &self,
        sql: &str,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let c = self.client().await?;
        let st = c.prepare_cached(sql).await.map_err(fail)?;
        c.query(&st, args).await.map_err(fail)
    }

    async fn count(
        &self,
        sql: &str,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64> {
        let rows = self.query(sql, args).await?;
        let n: i64 = rows
            .first()
            .ok_or_else(|| StoreError::Corrupt("count returned no row".into()))?
            .try_get(0)
            .map_err(fail)?;
        from_db(n)
    }

    pub(crate) async fn ping(&self) -> Result<()> {
        self.query("SELECT 1", &[]).await.map(|_| ())
    }

    pub(crate) async fn approval_insert(&self, a: &ApprovalRow) -> Result<bool> {
        let n = self
            .execute(
                "INSERT INTO approvals (id, caller, open, deadline_ms, purge_at_ms, created_ms, body, version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 1) ON CONFLICT (id) DO NOTHING",
                &[
                    &a.id,
                    &a.caller,
                    &a.open,
                    &opt_db(a.deadline_ms),
                    &opt_db(a.purge_at_ms),
                    &to_db(a.created_ms),
                    &a.body,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    pub(crate) async fn approval_get(&self, id: &str) -> Result<Option<ApprovalRow>> {
        let rows = self
            .query(
                &format!("SELECT {APPROVAL_COLS} FROM approvals WHERE id = $1"),
                &[&id],
            )
            .await?;
        rows.first().map(approval).transpose()
    }

    pub(crate) async fn approval_replace(&self, a: &ApprovalRow) -> Result<bool> {
        let n = self
            .execute(
                "UPDATE approvals SET caller = $2, open = $3, deadline_ms = $4, purge_at_ms = $5,
                 created_ms = $6, body = $7, version = version + 1
                 WHERE id = $1 AND version = $8",
                &[
                    &a.id,
                    &a.caller,
                    &a.open,
                    &opt_db(a.deadline_ms),
                    &opt_db(a.purge_at_ms),
                    &to_db(a.created_ms),
                    &a.body,
                    &to_db(a.version),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    pub(crate) async fn approval_list(&self) -> Result<Vec<ApprovalRow>> {
        let rows = self
            .query(
                &format!("SELECT {APPROVAL_COLS} FROM approvals ORDER BY created_ms, id"),
                &[],
            )
            .await?;
        rows.iter().map(approval).collect()
    }

    pub(crate) async fn approval_due(&self, now_ms: u64, limit: u32) -> Result<Vec<ApprovalRow>> {
        let rows = self
            .query(
                &format!(
                    "SELECT {APPROVAL_COLS} FROM approvals WHERE open AND deadline_ms <= $1
                     ORDER BY deadline_ms LIMIT $2"
                ),
                &[&to_db(now_ms), &i64::from(limit)],
            )
            .await?;
        rows.iter().map(approval).collect()
    }

    pub(crate) async fn approval_purge(&self, now_ms: u64) -> Result<u64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(fail)?;
        let now = to_db(now_ms);
        tx.execute(
            "DELETE FROM claims WHERE key IN (SELECT id FROM approvals WHERE purge_at_ms <= $1)",
            &[&now],
        )
        .await
        .map_err(fail)?;
        let n = tx
            .execute("DELETE FROM approvals WHERE purge_at_ms <= $1", &[&now])
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(n)
    }

    pub(crate) async fn approval_open_count(&self, caller: &str) -> Result<u64> {
        self.count(
            "SELECT count(*) FROM approvals WHERE open AND caller = $1",
            &[&caller],
        )
        .await
    }

    pub(crate) async fn approval_count(&self) -> Result<u64> {
        self.count("SELECT count(*) FROM approvals", &[]).await
    }

    pub(crate) async fn claim(
        &self,
        topic: &str,
        key: &str,
        owner: &str,
        now_ms: u64,
    ) -> Result<bool> {
        let n = self
            .execute(
                "INSERT INTO claims (topic, key, owner, at_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (topic, key) DO NOTHING",
                &[&topic, &key, &owner, &to_db(now_ms)],
            )
            .await?;
        Ok(n == 1)
    }

    pub(crate) async fn serial_block(&self, floor: u64, n: u64) -> Result<u64> {
        let rows = self
            .query(
                "INSERT INTO counters (name, next) VALUES ('serial', $1::BIGINT + $2::BIGINT)
                 ON CONFLICT (name) DO UPDATE SET next = GREATEST(counters.next, $1::BIGINT) + $2::BIGINT
                 RETURNING next - $2::BIGINT",
                &[&to_db(floor), &to_db(n)],
            )
            .await?;
        let first: i64 = rows
            .first()
            .ok_or_else(|| StoreError::Corrupt("serial allocation returned no row".into()))?
            .try_get(0)
            .map_err(fail)?;
        from_db(first)
    }

    /// Appends `records` to the global audit chain in one transaction,
    /// under the head lock: the head is read (and its signature verified,
    /// unless this process wrote or verified exactly that head), the batch
    /// is sealed over it and inserted, and only the commit makes it count.
    /// Returns each record's `seq`.
    pub(crate) async fn audit_append(
        &self,
        records: Vec<Map<String, Value>>,
        key: &AuditKey,
    ) -> Result<Vec<u64>> {
        // Two round trips: BEGIN + head lock + head read pipelined, then
        // INSERT + COMMIT pipelined (statements prepared once per
        // connection). A COMMIT after a failed INSERT only rolls back.
        let c = self.client().await?;
        let lock = c
            .prepare_cached("SELECT pg_advisory_xact_lock($1)")
            .await
            .map_err(fail)?;
        let read = c
            .prepare_cached("SELECT seq, hash, line FROM audit_chain ORDER BY seq DESC LIMIT 1")
            .await
            .map_err(fail)?;
        let insert = c
            .prepare_cached(
                "INSERT INTO audit_chain (seq, hash, line)
                 SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[])",
            )
            .await
            .map_err(fail)?;
        let (begun, locked, head) = tokio::join!(
            c.batch_execute("BEGIN"),
            c.execute(&lock, &[&AUDIT_LOCK]),
            c.query_opt(&read, &[]),
        );
        let head = match begun.and(locked).and(head) {
            Ok(head) => head,
            Err(e) => {
                let _ = c.batch_execute("ROLLBACK").await;
                return Err(fail(e));
            }
        };
        let abort = |e: StoreError| async {
            let _ = c.batch_execute("ROLLBACK").await;
            e
        };
        let sealed = match self.seal_over(head.as_ref(), records, key) {
            Ok(sealed) => sealed,
            Err(e) => return Err(abort(e).await),
        };
        let seqs: Vec<i64> = sealed.iter().map(|s| to_db(s.seq)).collect();
        let hashes: Vec<&str> = sealed.iter().map(|s| s.hash.as_str()).collect();
        let lines: Vec<&str> = sealed.iter().map(|s| s.line.as_str()).collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&seqs, &hashes, &lines];
        let (inserted, committed) =
            tokio::join!(c.execute(&insert, &params), c.batch_execute("COMMIT"),);
        if let Err(e) = inserted.and(committed) {
            return Err(abort(fail(e)).await);
        }
        if let Some(last) = sealed.last() {
            *self
                .verified_head
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((last.seq, last.hash.clone()));
        }
        Ok(sealed.iter().map(|s| s.seq).collect())
    }

    /// Seals `records` over the chain head `head` (a row of seq, hash,
    /// line; `None` for an empty chain), verifying the head first unless
    /// this process wrote or verified exactly that head.
    fn seal_over(
        &self,
        head: Option<&Row>,
        records: Vec<Map<String, Value>>,
        key: &AuditKey,
    ) -> Result<Vec<sealing::Sealed>> {
        let (prev_seq, prev_hash) = match head {
            None => (0, sealing::genesis().to_owned()),
            Some(row) => {
                let seq = from_db(row.try_get(0).map_err(fail)?)?;
                let hash: String = row.try_get(1).map_err(fail)?;
                let known = self
                    .verified_head
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                if known.as_ref() != Some(&(seq, hash.clone())) {
                    let line: String = row.try_get(2).map_err(fail)?;
                    check_head(&line, seq, &hash, key)?;
                }
                (seq, hash)
            }
        };
        sealing::seal_after(records, prev_seq, &prev_hash, key)
            .map_err(|e| StoreError::Corrupt(format!("sealing audit records: {e}")))
    }

    /// Up to `limit` lines of the global chain after `after_seq`, in order.
    pub(crate) async fn audit_lines(&self, after_seq: u64, limit: u32) -> Result<Vec<String>> {
        let rows = self
            .query(
                "SELECT line FROM audit_chain WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&to_db(after_seq), &i64::from(limit)],
            )
            .await?;
        rows.iter().map(|r| r.try_get(0).map_err(fail)).collect()
    }

    pub(crate) async fn entry_insert(&self, kind: EntryKind, e: &Entry) -> Result<bool> {
        let n = self
            .execute(
                &format!(
                    "INSERT INTO {} (id, created_ms, expires_ms, ended_ms, body)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                    kind.table()
                ),
                &[
                    &e.id,
                    &to_db(e.created_ms),
                    &opt_db(e.expires_ms),
                    &opt_db(e.ended_ms),
                    &e.body,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    pub(crate) async fn entry_active(&self, kind: EntryKind, now_ms: u64) -> Result<Vec<Entry>> {
        let rows = self
            .query(
                &format!(
                    "SELECT id, created_ms, expires_ms, ended_ms, body FROM {}
                     WHERE ended_ms IS NULL AND (expires_ms IS NULL OR expires_ms > $1)
                     ORDER BY created_ms, id",
                    kind.table()
                ),
                &[&to_db(now_ms)],
            )
            .await?;
        rows.iter().map(entry).collect()
    }

    pub(crate) async fn entry_end(&self, kind: EntryKind, id: &str, now_ms: u64) -> Result<bool> {
        let n = self
            .execute(
                &format!(
                    "UPDATE {} SET ended_ms = $2 WHERE id = $1 AND ended_ms IS NULL
                     AND (expires_ms IS NULL OR expires_ms > $2)",
                    kind.table()
                ),
                &[&id, &to_db(now_ms)],
            )
            .await?;
        Ok(n == 1)
    }
}
