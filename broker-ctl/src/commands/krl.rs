//! `broker-ctl krl fetch`: replaces a host's `RevokedKeys` file with the
//! signer's current KRL, and never with anything sshd could not use.
//!
//! sshd refuses every public-key login when its `RevokedKeys` file is
//! missing or unparsable, so a bad download must leave the last good file
//! in place: the body is parsed strictly and its seal checked
//! ([`Krl::parse_sealed`], which also catches a file cut short between two
//! sections), a KRL older than the installed one is refused (no rollback),
//! and only then is the file replaced by write-to-temp, fsync, rename and a
//! directory fsync. `If-None-Match` carries the installed KRL's version
//! (the signer's `ETag` for `/v1/krl` is the quoted `krl_version`), so an
//! unchanged list costs a `304`. With `--wait N` and a file installed, the
//! signer holds the request up to N seconds for the next change (a long
//! poll), so a timer that asks every half minute still installs a
//! revocation within a second or two.
//!
//! Exit codes: 0 replaced or already current; 1 the signer's answer was not
//! a usable KRL (the old file is kept); 69 the signer could not be reached or
//! refused; 70 the file could not be written.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use hyper::{Method, StatusCode};
use infrabroker_common::krl::Krl;

use super::{Failure, Outcome, ServiceArgs};

/// What happened, for the output line and `--json`.
#[derive(Debug, serde::Serialize)]
struct Fetched {
    /// `replaced` or `unchanged`.
    result: &'static str,
    /// Version now installed.
    version: u64,
    /// Serials revoked by the installed file (all CAs).
    serials: u64,
    /// Key ids revoked by the installed file (all CAs).
    key_ids: usize,
}

pub fn fetch(args: &ServiceArgs, out: &Path, wait: u64, json: bool) -> Outcome {
    let installed = installed(out)?;
    let rt = super::runtime()?;
    let client = args
        .client_or_plain(Duration::from_secs(15 + wait))
        .map_err(|e| Failure::unavailable(e.to_string()))?;
    let tag = installed.as_ref().map(|k| format!("\"{}\"", k.version));
    let headers: Vec<(&str, &str)> = tag.iter().map(|t| ("if-none-match", t.as_str())).collect();
    let path = if wait > 0 && tag.is_some() {
        format!("/v1/krl?wait={wait}")
    } else {
        "/v1/krl".to_owned()
    };
    let raw = rt
        .block_on(client.call_raw_with_headers(Method::GET, &path, None, &headers))
        .map_err(|e| Failure::unavailable(e.to_string()))?;
    let keep = |why: String| Failure::bad(format!("{why}; kept {}", out.display()));
    let fetched = match (raw.status, installed) {
        (StatusCode::NOT_MODIFIED, Some(current)) => summary("unchanged", &current),
        (StatusCode::OK, installed) => {
            let krl = Krl::parse_sealed(&raw.body)
                .map_err(|e| keep(format!("the signer's answer is not a usable KRL: {e}")))?;
            match installed {
                Some(current) if krl.version < current.version => {
                    return Err(keep(format!(
                        "the signer sent KRL version {}, older than the installed {}",
                        krl.version, current.version
                    )));
                }
                Some(current) if krl.version == current.version => summary("unchanged", &current),
                _ => {
                    replace(out, &raw.body)?;
                    summary("replaced", &krl)
                }
            }
        }
        (status, _) => {
            let body = String::from_utf8_lossy(&raw.body);
            return Err(Failure::unavailable(format!(
                "the signer answered {status}: {}; kept {}",
                body.trim(),
                out.display()
            )));
        }
    };
    if json {
        println!("{}", serde_json::json!(fetched));
    } else {
        println!(
            "{}: {} (version {}, {} serials, {} key ids)",
            out.display(),
            fetched.result,
            fetched.version,
            fetched.serials,
            fetched.key_ids
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(result: &'static str, krl: &Krl) -> Fetched {
    Fetched {
        result,
        version: krl.version,
        serials: krl.cas.values().map(|c| c.serial_count()).sum(),
        key_ids: krl.cas.values().map(|c| c.key_ids.len()).sum(),
    }
}

/// The KRL now at `out`, if any. One that does not parse is reported but
/// replaced: anything sshd can use is better than it.
fn installed(out: &Path) -> Result<Option<Krl>, Failure> {
    match std::fs::read(out) {
        Ok(bytes) => match Krl::parse(&bytes) {
            Ok(krl) => Ok(Some(krl)),
            Err(e) => {
                eprintln!(
                    "broker-ctl: the installed {} is unusable ({e}); replacing it",
                    out.display()
                );
                Ok(None)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Failure::other(format!(
            "cannot read {}: {e}",
            out.display()
        ))),
    }
}

/// Atomically replaces `out` with `bytes` (mode 0644, like sshd's other files).
fn replace(out: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::other(format!("cannot write {}: {e}", out.display()));
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".krl-")
        .tempfile_in(dir)
        .map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(out).map_err(|e| fail(e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail)?;
    Ok(())
}
