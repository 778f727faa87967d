//! The signer replicas' global audit chain in PostgreSQL:
//! `broker-ctl audit export --postgres URL` writes it as a JSON-lines file
//! (the same bytes a log file holds), and `audit verify --postgres URL`
//! exports it to a private temporary file and verifies that like any log
//! (with `--checkpoint`, against a replica's checkpoint of the chain).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use infrabroker_store::{PostgresConfig, Store, StoreConfig};

use super::{Failure, Outcome, runtime};

/// Lines fetched per query.
const PAGE: u32 = 10_000;

fn open(url: &str, ca: Option<&Path>) -> Result<(tokio::runtime::Runtime, Store), Failure> {
    let rt = runtime()?;
    let cfg = StoreConfig::Postgres(PostgresConfig {
        url: url.to_owned(),
        ca: ca.map(Path::to_path_buf),
        pool_size: 1,
    });
    let store = rt
        .block_on(Store::open(&cfg))
        .map_err(|e| Failure::other(format!("{}: {e}", cfg.describe())))?;
    Ok((rt, store))
}

/// Writes every record of the chain to `out`, in order; returns how many.
fn copy_chain(url: &str, ca: Option<&Path>, out: &mut dyn Write) -> Result<u64, Failure> {
    let (rt, store) = open(url, ca)?;
    let (mut after, mut n) = (0u64, 0u64);
    loop {
        let lines = rt
            .block_on(store.audit_lines(after, PAGE))
            .map_err(|e| Failure::other(e.to_string()))?;
        if lines.is_empty() {
            return Ok(n);
        }
        for line in &lines {
            writeln!(out, "{line}").map_err(|e| Failure::other(format!("writing: {e}")))?;
        }
        n += lines.len() as u64;
        after += lines.len() as u64;
    }
}

/// `audit export --postgres URL`: the chain on stdout.
pub fn export(url: &str, ca: Option<&Path>) -> Outcome {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let n = copy_chain(url, ca, &mut out)?;
    out.flush()
        .map_err(|e| Failure::other(format!("writing: {e}")))?;
    eprintln!("exported {n} records");
    Ok(ExitCode::SUCCESS)
}

/// `audit verify --postgres URL --pubkey P [--checkpoint FILE]` (a
/// replica's checkpoint of the chain: a chain cut short or changed below
/// it fails).
pub fn verify(
    url: &str,
    ca: Option<&Path>,
    pubkey: &Path,
    all_signatures: bool,
    checkpoint: Option<&Path>,
    json: bool,
) -> Outcome {
    let mut file = tempfile::NamedTempFile::new()
        .map_err(|e| Failure::other(format!("temporary file: {e}")))?;
    copy_chain(url, ca, &mut file)?;
    file.flush()
        .map_err(|e| Failure::other(format!("writing: {e}")))?;
    let path: PathBuf = file.path().to_owned();
    super::audit::verify_labelled(
        &path,
        "postgres audit chain",
        pubkey,
        all_signatures,
        checkpoint,
        json,
    )
}
