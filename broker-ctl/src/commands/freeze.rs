//! `broker-ctl freeze add|list|lift`: the signer's kill switch
//! (`POST /v1/freeze`, `GET /v1/freezes`, `DELETE /v1/freeze/{id}`) with
//! the operator's certificate (a CN in the signer's `reload_callers`).

use std::process::ExitCode;
use std::time::Duration;

use infrabroker_common::client::ClientError;
use infrabroker_common::display::escape;
use infrabroker_common::wire::{CertificatesQuery, CertificatesResponse, Freeze, FreezeRequest};

use super::{Failure, Outcome, ServiceArgs};

/// One subject: `freeze add` needs it, `certs list` takes none for all.
#[derive(clap::Args, Debug)]
#[group(required = false, multiple = false)]
pub struct Subject {
    /// A caller's mTLS CN.
    #[arg(long)]
    caller: Option<String>,
    /// An end user.
    #[arg(long)]
    end_user: Option<String>,
    /// A logical host.
    #[arg(long)]
    host: Option<String>,
    /// One certificate serial.
    #[arg(long)]
    serial: Option<u64>,
    /// A certificate key id, exactly as issued.
    #[arg(long)]
    key_id: Option<String>,
}

/// `10m`, `2h`, `30s`, `1d` or plain seconds.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10m"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("{s:?}: use s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

fn failed(e: ClientError) -> Failure {
    match e {
        ClientError::Api { body, .. } => {
            Failure::bad(format!("{} ({})", body.message, body.reason_code.as_str()))
        }
        other => Failure::unavailable(other.to_string()),
    }
}

fn show(f: &Freeze) -> String {
    let until = f
        .expires_ms
        .map(|e| format!(" until {}", e / 1000))
        .unwrap_or_default();
    format!(
        "{}  {} {}  by {}{}  — {}",
        f.id,
        f.kind,
        escape(&f.value),
        escape(&f.by),
        until,
        escape(&f.reason)
    )
}

/// `freeze add`.
pub fn add(
    args: &ServiceArgs,
    who: &Subject,
    reason: &str,
    ttl: Option<Duration>,
    json: bool,
) -> Outcome {
    let named = who.caller.is_some()
        || who.end_user.is_some()
        || who.host.is_some()
        || who.serial.is_some()
        || who.key_id.is_some();
    if !named {
        return Err(Failure::usage(
            "name the subject: --caller, --end-user, --host, --serial or --key-id",
        ));
    }
    let req = FreezeRequest {
        caller: who.caller.clone(),
        end_user: who.end_user.clone(),
        host: who.host.clone(),
        serial: who.serial,
        key_id: who.key_id.clone(),
        reason: reason.to_owned(),
        ttl_seconds: ttl.map(|d| d.as_secs()),
    };
    let rt = super::runtime()?;
    rt.block_on(async {
        let client = args.client().map_err(|e| Failure::other(e.to_string()))?;
        let f: Freeze = client
            .call(hyper::Method::POST, "/v1/freeze", Some(&req))
            .await
            .map_err(failed)?;
        if json {
            println!("{}", serde_json::to_string(&f).unwrap_or_default());
        } else {
            println!("frozen: {}", show(&f));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `freeze list`.
pub fn list(args: &ServiceArgs, json: bool) -> Outcome {
    let rt = super::runtime()?;
    rt.block_on(async {
        let client = args.client().map_err(|e| Failure::other(e.to_string()))?;
        let all: Vec<Freeze> = client
            .call(hyper::Method::GET, "/v1/freezes", None::<&()>)
            .await
            .map_err(failed)?;
        if json {
            println!("{}", serde_json::to_string(&all).unwrap_or_default());
        } else if all.is_empty() {
            println!("no freezes in force");
        } else {
            for f in &all {
                println!("{}", show(f));
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `freeze lift ID`.
pub fn lift(args: &ServiceArgs, id: &str, json: bool) -> Outcome {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure::bad(format!("{id:?} is not a freeze id")));
    }
    let rt = super::runtime()?;
    rt.block_on(async {
        let client = args.client().map_err(|e| Failure::other(e.to_string()))?;
        let v: serde_json::Value = client
            .call(
                hyper::Method::DELETE,
                &format!("/v1/freeze/{id}"),
                None::<&()>,
            )
            .await
            .map_err(failed)?;
        if json {
            println!("{v}");
        } else {
            println!("lifted: {id}");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `certs list`: what a subject still holds — its live certificates, the
/// ones a freeze revoked marked.
pub fn certs(args: &ServiceArgs, who: &Subject, limit: Option<u32>, json: bool) -> Outcome {
    let q = CertificatesQuery {
        caller: who.caller.clone(),
        end_user: who.end_user.clone(),
        host: who.host.clone(),
        serial: who.serial,
        key_id: who.key_id.clone(),
        limit,
    };
    let query = serde_urlencoded::to_string(&q).map_err(|e| Failure::other(e.to_string()))?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let client = args.client().map_err(|e| Failure::other(e.to_string()))?;
        let path = format!("/v1/certificates?{query}");
        let answer: CertificatesResponse = client
            .call(hyper::Method::GET, &path, None::<&()>)
            .await
            .map_err(failed)?;
        if json {
            println!("{}", serde_json::to_string(&answer).unwrap_or_default());
            return Ok(ExitCode::SUCCESS);
        }
        for c in &answer.certificates {
            let state = c
                .revoked_by
                .as_ref()
                .map(|f| format!("revoked by {f}"))
                .unwrap_or_else(|| "live".into());
            println!(
                "{}  until {}  {}  {}",
                c.serial,
                c.valid_before,
                state,
                escape(&c.key_id)
            );
        }
        let n = answer.certificates.len();
        let more = if answer.truncated {
            " (more not shown; --limit)"
        } else {
            ""
        };
        println!("{n} live certificate(s){more}");
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_read_like_people_write_them() {
        assert_eq!(parse_ttl("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_ttl("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_ttl("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_ttl("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_ttl("10x").is_err());
        assert!(parse_ttl("m").is_err());
    }
}
