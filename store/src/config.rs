//! The `store` block of a service config.
//!
//! ```json
//! "store": {"sqlite": "/var/lib/infrabroker-control-plane/state.db"}
//! "store": {"postgres": {"url": "postgresql://ib@db/infrabroker", "ca": "/etc/infrabroker/db-ca.pem", "pool_size": 16}}
//! ```
//!
//! Without a `store` block a service keeps its state in SQLite beside its
//! audit log ([`StoreConfig::beside`]); upstream's top-level `state_db`
//! (a SQLite path) means the same as `{"sqlite": …}`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Largest accepted `pool_size`.
pub const MAX_POOL: usize = 256;

/// Where a service keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// One SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by replicas.
    Postgres(PostgresConfig),
}

/// Connection settings for PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// A libpq-style URL or key/value string (`postgresql://user@host:port/db`).
    /// A password in it is never logged.
    pub url: String,
    /// PEM file of the CA that signed the server's certificate; when set,
    /// the connection must use TLS (rustls) and verify the server.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Connections kept open (default 8).
    #[serde(default = "default_pool")]
    pub pool_size: usize,
}

fn default_pool() -> usize {
    8
}

/// The wire shape of the `store` block: exactly one of the two keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// SQLite file.
    #[serde(default)]
    pub sqlite: Option<PathBuf>,
    /// PostgreSQL.
    #[serde(default)]
    pub postgres: Option<PostgresConfig>,
}

impl StoreConfig {
    /// The store a service uses: its `store` block, else upstream's
    /// `state_db`, else SQLite at `default`. Relative paths are taken
    /// against `base` (the config file's directory).
    pub fn resolve(
        raw: Option<RawStore>,
        state_db: Option<PathBuf>,
        base: &Path,
        default: PathBuf,
    ) -> Result<StoreConfig, String> {
        let cfg = match (raw, state_db) {
            (Some(_), Some(_)) => {
                return Err(
                    "`store` and `state_db` both name a store; keep one (state_db is the same as store.sqlite)"
                        .into(),
                );
            }
            (
                Some(RawStore {
                    sqlite: Some(_),
                    postgres: Some(_),
                }),
                None,
            ) => {
                return Err("store: name either `sqlite` or `postgres`, not both".into());
            }
            (
                Some(RawStore {
                    sqlite: Some(p),
                    postgres: None,
                }),
                None,
            )
            | (None, Some(p)) => StoreConfig::Sqlite(base.join(p)),
            (
                Some(RawStore {
                    sqlite: None,
                    postgres: Some(pg),
                }),
                None,
            ) => StoreConfig::Postgres(PostgresConfig {
                ca: pg.ca.map(|c| base.join(c)),
                ..pg
            }),
            (
                Some(RawStore {
                    sqlite: None,
                    postgres: None,
                }),
                None,
            ) => {
                return Err("store: name `sqlite` (a file) or `postgres` (a url)".into());
            }
            (None, None) => StoreConfig::Sqlite(default),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The default SQLite file of a service whose audit log is `audit_log`:
    /// `<audit_log>.state.db` beside it, in a directory the service can
    /// already write.
    pub fn beside(audit_log: &Path) -> PathBuf {
        let mut name = audit_log.file_name().unwrap_or_default().to_os_string();
        name.push(".state.db");
        audit_log.with_file_name(name)
    }

    /// Reads `store` and upstream's `state_db` from a service's config
    /// object `o` (reporting errors there); `audit_log` gives the default.
    pub fn read(
        o: &infrabroker_common::config::Obj<'_>,
        base: &Path,
        audit_log: Option<&Path>,
    ) -> Option<StoreConfig> {
        let raw = match o.raw("store") {
            Some(v) => match serde_json::from_value::<RawStore>(v.clone()) {
                Ok(r) => Some(r),
                Err(e) => {
                    o.error("store", e.to_string());
                    return None;
                }
            },
            None => None,
        };
        let state_db = o.opt_str("state_db").map(PathBuf::from);
        let default = StoreConfig::beside(audit_log?);
        match StoreConfig::resolve(raw, state_db, base, default) {
            Ok(c) => Some(c),
            Err(msg) => {
                o.error("store", msg);
                None
            }
        }
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            StoreConfig::Sqlite(p) if p.as_os_str().is_empty() => {
                Err("store.sqlite: empty path".into())
            }
            StoreConfig::Sqlite(_) => Ok(()),
            StoreConfig::Postgres(pg) => {
                if pg.pool_size == 0 || pg.pool_size > MAX_POOL {
                    return Err(format!(
                        "store.postgres.pool_size: {} is outside 1..={MAX_POOL}",
                        pg.pool_size
                    ));
                }
                pg.url
                    .parse::<tokio_postgres::Config>()
                    .map(|_| ())
                    .map_err(|e| {
                        format!("store.postgres.url: not a PostgreSQL connection string ({e})")
                    })
            }
        }
    }

    /// A description safe for logs: the SQLite path, or the PostgreSQL
    /// hosts and database without user or password.
    pub fn describe(&self) -> String {
        match self {
            StoreConfig::Sqlite(p) => format!("sqlite {}", p.display()),
            StoreConfig::Postgres(pg) => match pg.url.parse::<tokio_postgres::Config>() {
                Ok(c) => format!(
                    "postgres {:?} db {}",
                    c.get_hosts(),
                    c.get_dbname().unwrap_or("(default)")
                ),
                Err(_) => "postgres (unparsable url)".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> RawStore {
        serde_json::from_str(json).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn resolves_each_spelling_and_refuses_ambiguity() {
        let base = Path::new("/etc/ib");
        let dflt = PathBuf::from("/var/log/a.log.state.db");
        assert_eq!(
            StoreConfig::resolve(None, None, base, dflt.clone()),
            Ok(StoreConfig::Sqlite(dflt.clone()))
        );
        assert_eq!(
            StoreConfig::resolve(None, Some("s.db".into()), base, dflt.clone()),
            Ok(StoreConfig::Sqlite("/etc/ib/s.db".into()))
        );
        assert_eq!(
            StoreConfig::resolve(Some(raw(r#"{"sqlite":"/x.db"}"#)), None, base, dflt.clone()),
            Ok(StoreConfig::Sqlite("/x.db".into()))
        );
        let pg = StoreConfig::resolve(
            Some(raw(
                r#"{"postgres":{"url":"postgresql://u:secret@db:5433/ib","ca":"ca.pem"}}"#,
            )),
            None,
            base,
            dflt.clone(),
        );
        let Ok(StoreConfig::Postgres(p)) = &pg else {
            unreachable!("{pg:?}")
        };
        assert_eq!(p.ca.as_deref(), Some(Path::new("/etc/ib/ca.pem")));
        assert_eq!(p.pool_size, 8);
        let shown = pg.as_ref().map(StoreConfig::describe).unwrap_or_default();
        assert!(!shown.contains("secret") && shown.contains("ib"), "{shown}");
        for bad in [
            r#"{"sqlite":"/a","postgres":{"url":"postgresql://db/x"}}"#,
            "{}",
            r#"{"postgres":{"url":"postgresql://db/x","pool_size":0}}"#,
            r#"{"postgres":{"url":"postgresql://db/x","pool_size":100000}}"#,
            r#"{"postgres":{"url":"postgresql://db:notaport/x"}}"#,
        ] {
            assert!(
                StoreConfig::resolve(Some(raw(bad)), None, base, dflt.clone()).is_err(),
                "{bad}"
            );
        }
        assert!(
            StoreConfig::resolve(
                Some(raw(r#"{"sqlite":"/a"}"#)),
                Some("/b".into()),
                base,
                dflt
            )
            .is_err()
        );
        assert!(serde_json::from_str::<RawStore>(r#"{"sqlit":"/a"}"#).is_err());
    }

    #[test]
    fn default_file_sits_beside_the_audit_log() {
        assert_eq!(
            StoreConfig::beside(Path::new("/var/log/ib/control-plane-audit.log")),
            PathBuf::from("/var/log/ib/control-plane-audit.log.state.db")
        );
    }
}
