//! `broker-ctl approval list | show ID | allow ID | deny ID --reason …`:
//! an operator's decisions on the control plane's held requests, made with
//! the operator's client certificate (its CN must be in the control
//! plane's `approval.callers`, and may not be the requester's).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use hyper::Method;
use infrabroker_common::client::{MtlsClient, RawResponse};
use infrabroker_common::display::escape;
use serde_json::{Value, json};

use super::{Failure, Outcome};

/// How to reach the control plane with the operator's certificate.
#[derive(clap::Args)]
pub struct CpArgs {
    /// Control plane URL.
    #[arg(long, default_value = "https://127.0.0.1:7443")]
    pub url: String,
    /// CA certificate of the control plane.
    #[arg(long, default_value = "pki/ca.crt")]
    pub ca: PathBuf,
    /// Operator client certificate.
    #[arg(long, default_value = "pki/operator.crt")]
    pub cert: PathBuf,
    /// Operator client key.
    #[arg(long, default_value = "pki/operator.key")]
    pub key: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The `approval` subcommands.
#[derive(Subcommand)]
pub enum ApprovalCmd {
    /// List held requests (pending ones unless --all).
    List {
        #[command(flatten)]
        cp: CpArgs,
        /// Include decided, used and expired requests.
        #[arg(long)]
        all: bool,
    },
    /// Show one request.
    Show {
        /// Approval id.
        id: String,
        #[command(flatten)]
        cp: CpArgs,
    },
    /// Approve a pending request; its broker then runs it once.
    Allow {
        /// Approval id.
        id: String,
        /// Why (stored in the audit log).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        cp: CpArgs,
    },
    /// Deny a pending request.
    Deny {
        /// Approval id.
        id: String,
        /// Why (required; stored in the audit log and shown to the agent).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        cp: CpArgs,
    },
}

/// Runs an `approval` subcommand.
pub fn run(cmd: ApprovalCmd) -> Outcome {
    let rt = super::runtime()?;
    rt.block_on(async move {
        match cmd {
            ApprovalCmd::List { cp, all } => {
                let path = if all {
                    "/v1/approvals"
                } else {
                    "/v1/approvals?status=pending"
                };
                let list = call(&cp, Method::GET, path, None).await?;
                if cp.json {
                    print_json(&list);
                } else {
                    print_table(list.as_array().map(Vec::as_slice).unwrap_or_default());
                }
                Ok(ExitCode::SUCCESS)
            }
            ApprovalCmd::Show { id, cp } => {
                let one = call(&cp, Method::GET, &format!("/v1/approvals/{id}"), None).await?;
                if cp.json {
                    print_json(&one);
                } else {
                    print_one(&one);
                }
                Ok(ExitCode::SUCCESS)
            }
            ApprovalCmd::Allow { id, reason, cp } => {
                let mut body = json!({"approve": true});
                if let Some(r) = reason {
                    body["reason"] = r.into();
                }
                decide(&cp, &id, &body).await
            }
            ApprovalCmd::Deny { id, reason, cp } => {
                decide(&cp, &id, &json!({"approve": false, "reason": reason})).await
            }
        }
    })
}

async fn decide(cp: &CpArgs, id: &str, body: &Value) -> Outcome {
    let v = call(cp, Method::POST, &format!("/v1/approvals/{id}"), Some(body)).await?;
    if cp.json {
        print_json(&v);
    } else {
        println!(
            "{} {}: {}",
            shown(&v, "status"),
            shown(&v, "id"),
            describe(&v)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn call(
    cp: &CpArgs,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, Failure> {
    let client = MtlsClient::new(&cp.url, &cp.ca, &cp.cert, &cp.key, Duration::from_secs(15))
        .map_err(|e| Failure::other(e.to_string()))?;
    let bytes = body.map(|b| b.to_string().into_bytes());
    let raw = client
        .call_raw(method, path, bytes)
        .await
        .map_err(|e| Failure::unavailable(e.to_string()))?;
    parse(&raw)
}

/// The control plane's answer, or its refusal as a failure (exit 69).
fn parse(raw: &RawResponse) -> Result<Value, Failure> {
    let v: Value = serde_json::from_slice(&raw.body).map_err(|_| {
        Failure::unavailable(format!(
            "unexpected answer ({}): {}",
            raw.status,
            escape(
                &String::from_utf8_lossy(&raw.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )
        ))
    })?;
    if raw.status.is_success() {
        return Ok(v);
    }
    Err(Failure::unavailable(format!(
        "refused ({}): {}",
        escape(text(&v, "reason_code")),
        escape(text(&v, "message"))
    )))
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A field as a human may see it: control, bidi and other invisible
/// characters escaped (the control plane passes the agent's text through).
fn shown(v: &Value, key: &str) -> String {
    escape(text(v, key)).into_owned()
}

/// `caller (for user): `cmd` on host [as root]`, every part escaped.
fn describe(v: &Value) -> String {
    let who = match v.get("end_user").and_then(Value::as_str) {
        Some(u) => format!("{} (for {})", shown(v, "caller"), escape(u)),
        None => shown(v, "caller"),
    };
    let what = match text(v, "command") {
        "" => format!("a {} certificate", shown(v, "purpose")),
        c => format!("`{}`", escape(c)),
    };
    let sudo = match v.get("sudo_user").and_then(Value::as_str) {
        Some(u) => format!(" as {}", escape(u)),
        None => String::new(),
    };
    format!("{who}: {what} on {}{sudo}", shown(v, "host"))
}

fn print_table(list: &[Value]) {
    if list.is_empty() {
        println!("no approvals");
        return;
    }
    println!(
        "{:<32}  {:<8}  {:<9}  {:<20}  REQUEST",
        "ID", "STATUS", "TIER", "EXPIRES"
    );
    for a in list {
        println!(
            "{:<32}  {:<8}  {:<9}  {:<20}  {}",
            shown(a, "id"),
            shown(a, "status"),
            shown(a, "tier"),
            shown(a, "expires_at"),
            describe(a)
        );
    }
}

fn print_one(v: &Value) {
    println!("{}  {}", shown(v, "id"), describe(v));
    for key in [
        "status",
        "tier",
        "caller",
        "end_user",
        "host",
        "role",
        "purpose",
        "session_mode",
        "command",
        "sudo_user",
        "rule",
        "created_at",
        "expires_at",
        "decided_by",
        "decided_via",
        "decided_at",
        "reason",
        "escalated_by",
        "escalation_reason",
    ] {
        if let Some(val) = v.get(key).and_then(Value::as_str) {
            println!("  {key:<18} {}", escape(val));
        }
    }
    if v.get("pty").and_then(Value::as_bool) == Some(true) {
        println!("  {:<18} yes", "pty");
    }
    if let Some(reasons) = v.get("reasons").and_then(Value::as_array) {
        for r in reasons.iter().filter_map(Value::as_str) {
            println!("  {:<18} {}", "held because", escape(r));
        }
    }
}
