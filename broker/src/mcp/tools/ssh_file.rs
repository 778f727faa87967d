//! `ssh_put_file` and `ssh_get_file`: one file written to or read from a
//! host, each over a certificate whose force-command does exactly that
//! transfer (see `signer::issuance::files`).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rmcp::model::{CallToolResult, JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{failure, input_schema, output_schema, parse_args, success};
use crate::api::{Caller, FileResult, GetFileRequest, PutFileRequest, ToolError, Tools};

/// The tools' names on the wire.
pub(in crate::mcp) const PUT: &str = "ssh_put_file";
pub(in crate::mcp) const GET: &str = "ssh_get_file";

const PUT_DESCRIPTION: &str = "Write one file on a host, without shell tricks: the content goes \
to a temporary file beside the target, is checked against its size and SHA-256, gets `mode`, is \
synced and renamed over the target. Give the body as UTF-8 `content` or as `content_base64` \
(any bytes). `path` is absolute and canonical, and must be inside the host's allowed file paths; \
an existing file is replaced only with `overwrite: true`; a symlink at the target is refused, \
never followed. `sudo: true` writes as `sudo_user` (root by default) on hosts that allow sudo. \
The result has the size and SHA-256 written.";

const GET_DESCRIPTION: &str = "Read one regular file from a host (no symlinks followed) and \
return it as `content_base64` with its size and SHA-256. `path` is absolute and canonical and \
must be inside the host's allowed file paths; files larger than `max_bytes` (default and \
largest: the host's limit) are refused.";

/// `ssh_put_file` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PutArgs {
    /// Logical host name as listed by ssh_list_servers.
    host: String,
    /// Absolute, canonical path of the file, e.g. `/srv/app/config.yml`.
    path: String,
    /// The body as UTF-8 text (or use `content_base64`).
    content: Option<String>,
    /// The body as standard base64, for any bytes (or use `content`).
    content_base64: Option<String>,
    /// Permission bits as an octal string, e.g. `"0640"` (default `"0644"`).
    mode: Option<String>,
    /// Write through non-interactive sudo, on hosts that allow it.
    #[serde(default)]
    sudo: bool,
    /// Account sudo writes as (root when absent). Requires `sudo: true`.
    sudo_user: Option<String>,
    /// Replace the file if it exists (default false: an existing file is refused).
    #[serde(default)]
    overwrite: bool,
}

/// `ssh_get_file` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GetArgs {
    /// Logical host name as listed by ssh_list_servers.
    host: String,
    /// Absolute, canonical path of the file.
    path: String,
    /// Refuse a file larger than this many bytes (default and largest: the host's limit).
    max_bytes: Option<u64>,
    /// Read through non-interactive sudo, on hosts that allow it.
    #[serde(default)]
    sudo: bool,
    /// Account sudo reads as (root when absent). Requires `sudo: true`.
    sudo_user: Option<String>,
}

fn check_sudo(sudo: bool, user: Option<&String>) -> Result<(), ToolError> {
    match user {
        Some(_) if !sudo => Err(ToolError::Invalid(
            "`sudo_user` requires `sudo: true`".into(),
        )),
        Some(u) if u.trim().is_empty() => Err(ToolError::Invalid(
            "`sudo_user` must not be empty; omit it for root".into(),
        )),
        _ => Ok(()),
    }
}

impl TryFrom<PutArgs> for PutFileRequest {
    type Error = ToolError;

    fn try_from(a: PutArgs) -> Result<Self, ToolError> {
        check_sudo(a.sudo, a.sudo_user.as_ref())?;
        let content = match (a.content, a.content_base64) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(b64)) => STANDARD.decode(b64.trim()).map_err(|e| {
                ToolError::Invalid(format!("`content_base64` is not standard base64: {e}"))
            })?,
            _ => {
                return Err(ToolError::Invalid(
                    "give exactly one of `content` and `content_base64`".into(),
                ));
            }
        };
        Ok(PutFileRequest {
            host: a.host,
            path: a.path,
            content,
            mode: a.mode,
            sudo: a.sudo,
            sudo_user: a.sudo_user,
            overwrite: a.overwrite,
        })
    }
}

fn definition(
    name: &'static str,
    title: &'static str,
    description: &'static str,
    schema: JsonObject,
    read_only: bool,
) -> Tool {
    Tool::new(name, description, schema)
        .with_title(title)
        .with_raw_output_schema(Arc::new(output_schema::<FileResult>()))
        .with_annotations(
            ToolAnnotations::new()
                .read_only(read_only)
                .destructive(!read_only)
                .idempotent(read_only)
                .open_world(true),
        )
}

/// Both tools as `tools/list` shows them.
pub(super) fn definitions() -> [Tool; 2] {
    [
        definition(
            PUT,
            "Write a file over SSH",
            PUT_DESCRIPTION,
            input_schema::<PutArgs>(),
            false,
        ),
        definition(
            GET,
            "Read a file over SSH",
            GET_DESCRIPTION,
            input_schema::<GetArgs>(),
            true,
        ),
    ]
}

fn render(verb: &str, r: &FileResult) -> String {
    format!(
        "{verb} {} ({} bytes, sha256 {}, serial {}, {} ms)",
        r.path, r.size, r.sha256, r.serial, r.duration_ms
    )
}

/// `ssh_put_file`'s arguments (also the body of `POST /v1/put_file`).
pub(crate) fn put_request(args: JsonObject) -> Result<PutFileRequest, ToolError> {
    parse_args::<PutArgs>(args).and_then(PutFileRequest::try_from)
}

/// `ssh_get_file`'s arguments (also the body of `POST /v1/get_file`).
pub(crate) fn get_request(args: JsonObject) -> Result<GetFileRequest, ToolError> {
    let a = parse_args::<GetArgs>(args)?;
    check_sudo(a.sudo, a.sudo_user.as_ref())?;
    Ok(GetFileRequest {
        host: a.host,
        path: a.path,
        max_bytes: a.max_bytes,
        sudo: a.sudo,
        sudo_user: a.sudo_user,
    })
}

/// Runs `ssh_put_file` for `caller`.
pub(in crate::mcp) async fn put<T: Tools>(
    tools: &T,
    caller: &Caller,
    args: JsonObject,
) -> CallToolResult {
    let req = match put_request(args) {
        Ok(r) => r,
        Err(e) => return failure(&e),
    };
    match tools.put_file(caller, req).await {
        Ok(r) => success(render("wrote", &r), &r),
        Err(e) => failure(&e),
    }
}

/// Runs `ssh_get_file` for `caller`.
pub(in crate::mcp) async fn get<T: Tools>(
    tools: &T,
    caller: &Caller,
    args: JsonObject,
) -> CallToolResult {
    let req = match get_request(args) {
        Ok(r) => r,
        Err(e) => return failure(&e),
    };
    match tools.get_file(caller, req).await {
        Ok(r) => success(render("read", &r), &r),
        Err(e) => failure(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_args(v: serde_json::Value) -> Result<PutFileRequest, ToolError> {
        put_request(v.as_object().unwrap().clone())
    }

    #[test]
    fn a_put_takes_exactly_one_body() {
        let base = serde_json::json!({"host": "web", "path": "/tmp/x"});
        let mut text = base.clone();
        text["content"] = "hi\n".into();
        assert_eq!(put_args(text).unwrap().content, b"hi\n");
        let mut bin = base.clone();
        bin["content_base64"] = STANDARD.encode([0u8, 255, 10]).into();
        assert_eq!(put_args(bin).unwrap().content, [0u8, 255, 10]);
        assert!(put_args(base.clone()).is_err(), "no body");
        let mut both = base.clone();
        both["content"] = "a".into();
        both["content_base64"] = "YQ==".into();
        assert!(put_args(both).is_err(), "two bodies");
        let mut bad = base;
        bad["content_base64"] = "%%%".into();
        assert!(put_args(bad).is_err(), "not base64");
    }
}
