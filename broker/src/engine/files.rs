//! `ssh_put_file` and `ssh_get_file`: a one-shot whose certificate's
//! force-command (written by the signer) performs exactly one transfer.
//! The body travels on the channel (stdin for a put, stdout for a get);
//! the execution record carries path, size, mode and SHA-256, never the
//! body.

use base64::Engine as _;
use infrabroker_common::wire::{FileTransfer, Purpose, file_exit};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::{Engine, Transfer};
use crate::api::{Caller, ExecRequest, FileResult, GetFileRequest, PutFileRequest, ToolError};
use crate::exec::Output;

/// The largest body the broker moves at all; hosts cap lower
/// (`max_file_bytes`, 512 KiB by default).
pub const MOST_BYTES: u64 = 8 * 1024 * 1024;

fn hex_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn exec_request(host: &str, sudo: bool, sudo_user: Option<String>) -> ExecRequest {
    ExecRequest {
        host: host.to_owned(),
        command: String::new(),
        sudo,
        sudo_user,
        timeout: None,
    }
}

/// A transfer that ended with a non-zero status: the host's refusal (the
/// force-command's exit statuses), or a failure with its stderr line.
fn refused(out: &Output, path: &str) -> ToolError {
    let said = String::from_utf8_lossy(&out.stderr);
    let line = said
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message")
        .trim()
        .to_owned();
    let code = match out.exit_code {
        Some(file_exit::EXISTS) => "file_exists",
        Some(file_exit::NOT_REGULAR) => "path_not_regular",
        Some(file_exit::TOO_LARGE) => "file_too_large",
        Some(file_exit::MISMATCH) => "transfer_mismatch",
        _ => "transfer_failed",
    };
    let status = out.exit_code.map_or_else(
        || format!("signal {}", out.exit_signal.as_deref().unwrap_or("?")),
        |c| format!("status {c}"),
    );
    ToolError::Denied {
        code: code.to_owned(),
        message: format!("{path}: the host refused the transfer ({status}): {line}"),
    }
}

fn file_fields(file: &FileTransfer, purpose: Purpose) -> Map<String, Value> {
    let mut rec = Map::new();
    rec.insert("file_op".into(), purpose.as_str().into());
    rec.insert("path".into(), file.path.clone().into());
    if purpose == Purpose::FilePut {
        rec.insert("size".into(), file.size.into());
        rec.insert("sha256".into(), file.sha256.clone().into());
        if let Some(m) = &file.mode {
            rec.insert("mode".into(), m.clone().into());
        }
        rec.insert("overwrite".into(), file.overwrite.into());
    }
    rec
}

impl Engine {
    /// Writes one file (see [`crate::api::Tools::put_file`]).
    pub(crate) async fn put_file_now(
        &self,
        caller: &Caller,
        req: PutFileRequest,
    ) -> Result<FileResult, ToolError> {
        let started = std::time::Instant::now();
        let size = req.content.len() as u64;
        if size > MOST_BYTES {
            return Err(ToolError::Denied {
                code: "file_too_large".into(),
                message: format!("{size} bytes is more than the broker moves ({MOST_BYTES})"),
            });
        }
        let sha256 = hex_sha256(&req.content);
        let file = FileTransfer {
            path: req.path.clone(),
            mode: req.mode.clone(),
            size,
            sha256: Some(sha256.clone()),
            overwrite: req.overwrite,
            max_bytes: None,
        };
        let extra = file_fields(&file, Purpose::FilePut);
        let transfer = Transfer {
            purpose: Purpose::FilePut,
            file,
            input: Some(&req.content),
            cap: 4096,
        };
        let ereq = exec_request(&req.host, req.sudo, req.sudo_user.clone());
        let (out, serial, _) = self.oneshot(caller, &ereq, Some(transfer), extra).await?;
        if out.exit_code != Some(0) {
            return Err(refused(&out, &req.path));
        }
        Ok(FileResult {
            path: req.path,
            size,
            sha256,
            content_base64: None,
            serial,
            duration_ms: crate::api::ms_since(started),
        })
    }

    /// Reads one file (see [`crate::api::Tools::get_file`]).
    pub(crate) async fn get_file_now(
        &self,
        caller: &Caller,
        req: GetFileRequest,
    ) -> Result<FileResult, ToolError> {
        let started = std::time::Instant::now();
        let cap = req.max_bytes.unwrap_or(MOST_BYTES).min(MOST_BYTES);
        let file = FileTransfer {
            path: req.path.clone(),
            max_bytes: req.max_bytes,
            ..FileTransfer::default()
        };
        let extra = file_fields(&file, Purpose::FileGet);
        let transfer = Transfer {
            purpose: Purpose::FileGet,
            file,
            input: None,
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
        };
        let ereq = exec_request(&req.host, req.sudo, req.sudo_user.clone());
        let (out, serial, _) = self.oneshot(caller, &ereq, Some(transfer), extra).await?;
        if out.exit_code != Some(0) {
            return Err(refused(&out, &req.path));
        }
        if out.stdout_truncated {
            return Err(ToolError::Denied {
                code: "file_too_large".into(),
                message: format!(
                    "{}: grew past max_bytes ({cap}) while it was read",
                    req.path
                ),
            });
        }
        let sha256 = hex_sha256(&out.stdout);
        tracing::debug!(path = %req.path, size = out.stdout.len(), %sha256, "file read");
        Ok(FileResult {
            path: req.path,
            size: out.stdout.len() as u64,
            sha256,
            content_base64: Some(base64::engine::general_purpose::STANDARD.encode(&out.stdout)),
            serial,
            duration_ms: crate::api::ms_since(started),
        })
    }
}
