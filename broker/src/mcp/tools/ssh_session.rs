//! The session tools: `ssh_session_open`, `ssh_session_exec`,
//! `ssh_session_close`, `ssh_session_list`.

use std::{fmt::Write as _, sync::Arc, time::Duration};

use rmcp::model::{CallToolResult, JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ssh_execute::render_exec;
use super::{failure, input_schema, output_schema, parse_args, success};
use crate::api::{
    Caller, ExecResult, SessionInfo, SessionMode, SessionOpenRequest, ToolError, Tools,
};

/// Names on the wire.
pub(in crate::mcp) const OPEN: &str = "ssh_session_open";
/// Names on the wire.
pub(in crate::mcp) const EXEC: &str = "ssh_session_exec";
/// Names on the wire.
pub(in crate::mcp) const CLOSE: &str = "ssh_session_close";
/// Names on the wire.
pub(in crate::mcp) const LIST: &str = "ssh_session_list";

const OPEN_DESCRIPTION: &str = "Open a session on a host to run several commands over one \
connection. mode `exec` (default) runs each command on its own channel with no shared state; \
`shell` keeps one /bin/sh open so `cd`, variables and functions persist between commands \
(stdout and stderr stay apart); `pty` does the same on a terminal (streams merged). Hosts with \
a command policy only allow `exec`. Every command is still checked against the host's policy \
before it is sent. The session ends when you close it, after a period without commands, and at \
the latest at `expires_at` (its certificate's expiry). `sudo: true` elevates every command \
(exec) or the whole shell. Returns `session_id` for ssh_session_exec.";

const EXEC_DESCRIPTION: &str = "Run one command in an open session (see ssh_session_open) and \
return stdout, stderr and exit_code like ssh_execute. The command is checked against the host's \
policy first; a refused command is not sent. In shell and pty sessions a command that passes its \
timeout closes the session (the shell's state is unknown); in exec sessions only that command \
stops.";

const CLOSE_DESCRIPTION: &str = "Close one of your sessions and its connection.";

const LIST_DESCRIPTION: &str = "List your open sessions: id, host, mode, age, idle time and \
expiry. Takes no arguments.";

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct OpenArgs {
    /// Logical host name as listed by ssh_list_servers.
    host: String,
    /// `exec` (default), `shell` or `pty`.
    #[serde(default = "default_mode")]
    mode: SessionMode,
    /// Elevate with non-interactive sudo (the host must allow it).
    #[serde(default)]
    sudo: bool,
    /// Account sudo runs as (root when absent). Requires `sudo: true`.
    sudo_user: Option<String>,
    /// Terminal width for `pty` (default 80).
    #[schemars(range(min = 20, max = 500))]
    cols: Option<u32>,
    /// Terminal height for `pty` (default 24).
    #[schemars(range(min = 5, max = 200))]
    rows: Option<u32>,
}

fn default_mode() -> SessionMode {
    SessionMode::Exec
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ExecArgs {
    /// The id returned by ssh_session_open.
    session_id: String,
    /// One command line (no newlines), e.g. `cd /srv/app && git status`.
    command: String,
    /// Seconds before the command is stopped (1 to 3600).
    #[schemars(range(min = 1, max = 3600))]
    timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CloseArgs {
    /// The id returned by ssh_session_open.
    session_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListArgs {}

#[derive(Debug, Serialize, JsonSchema)]
struct Closed {
    /// Always true.
    closed: bool,
    /// The session that was closed.
    session_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
struct SessionList {
    /// Your open sessions.
    sessions: Vec<SessionInfo>,
}

fn annotations(read_only: bool) -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(read_only)
        .destructive(!read_only)
        .idempotent(read_only)
        .open_world(!read_only)
}

/// The four tools as `tools/list` shows them.
pub(super) fn definitions() -> Vec<Tool> {
    vec![
        Tool::new(OPEN, OPEN_DESCRIPTION, input_schema::<OpenArgs>())
            .with_title("Open an SSH session")
            .with_raw_output_schema(Arc::new(output_schema::<SessionInfo>()))
            .with_annotations(annotations(false)),
        Tool::new(EXEC, EXEC_DESCRIPTION, input_schema::<ExecArgs>())
            .with_title("Run a command in a session")
            .with_raw_output_schema(Arc::new(output_schema::<ExecResult>()))
            .with_annotations(annotations(false)),
        Tool::new(CLOSE, CLOSE_DESCRIPTION, input_schema::<CloseArgs>())
            .with_title("Close a session")
            .with_raw_output_schema(Arc::new(output_schema::<Closed>()))
            .with_annotations(annotations(false)),
        Tool::new(LIST, LIST_DESCRIPTION, input_schema::<ListArgs>())
            .with_title("List your sessions")
            .with_raw_output_schema(Arc::new(output_schema::<SessionList>()))
            .with_annotations(annotations(true)),
    ]
}

fn invalid(sentence: &str) -> CallToolResult {
    failure(&ToolError::Invalid(sentence.to_owned()))
}

/// `ssh_session_open`.
pub(in crate::mcp) async fn open<T: Tools>(
    tools: &T,
    caller: &Caller,
    args: JsonObject,
) -> CallToolResult {
    let args = match parse_args::<OpenArgs>(args) {
        Ok(a) => a,
        Err(e) => return failure(&e),
    };
    if args.host.trim().is_empty() {
        return invalid("`host` must not be empty; call ssh_list_servers for host names");
    }
    if args.sudo_user.is_some() && !args.sudo {
        return invalid("`sudo_user` requires `sudo: true`");
    }
    if args.cols.is_some_and(|c| !(20..=500).contains(&c))
        || args.rows.is_some_and(|r| !(5..=200).contains(&r))
    {
        return invalid("`cols` must be 20..500 and `rows` 5..200");
    }
    let req = SessionOpenRequest {
        host: args.host,
        mode: args.mode,
        sudo: args.sudo,
        sudo_user: args.sudo_user,
        cols: args.cols,
        rows: args.rows,
    };
    match tools.session_open(caller, req).await {
        Ok(info) => success(
            format!(
                "session {} open on {} ({:?} mode), ends at unix time {} at the latest",
                info.session_id, info.host, info.mode, info.expires_at
            ),
            &info,
        ),
        Err(e) => failure(&e),
    }
}

/// `ssh_session_exec`.
pub(in crate::mcp) async fn exec<T: Tools>(
    tools: &T,
    caller: &Caller,
    args: JsonObject,
) -> CallToolResult {
    let args = match parse_args::<ExecArgs>(args) {
        Ok(a) => a,
        Err(e) => return failure(&e),
    };
    if args.command.trim().is_empty() {
        return invalid("`command` must not be empty");
    }
    if args
        .timeout_seconds
        .is_some_and(|t| !(1..=3600).contains(&t))
    {
        return invalid("`timeout_seconds` must be between 1 and 3600");
    }
    let timeout = args.timeout_seconds.map(Duration::from_secs);
    match tools
        .session_exec(caller, &args.session_id, args.command, timeout)
        .await
    {
        Ok(r) => success(render_exec(&r), &r),
        Err(e) => failure(&e),
    }
}

/// `ssh_session_close`.
pub(in crate::mcp) async fn close<T: Tools>(
    tools: &T,
    caller: &Caller,
    args: JsonObject,
) -> CallToolResult {
    let args = match parse_args::<CloseArgs>(args) {
        Ok(a) => a,
        Err(e) => return failure(&e),
    };
    match tools.session_close(caller, &args.session_id).await {
        Ok(()) => success(
            format!("session {} closed", args.session_id),
            &Closed {
                closed: true,
                session_id: args.session_id,
            },
        ),
        Err(e) => failure(&e),
    }
}

/// `ssh_session_list`.
pub(in crate::mcp) async fn list<T: Tools>(
    tools: &T,
    caller: &Caller,
    args: JsonObject,
) -> CallToolResult {
    if let Err(e) = parse_args::<ListArgs>(args) {
        return failure(&e);
    }
    match tools.session_list(caller).await {
        Ok(sessions) => {
            let mut text = format!("{} open session(s)", sessions.len());
            for s in &sessions {
                let _ = write!(
                    text,
                    "\n- {} on {} ({:?}), age {} s, idle {} s, ends at {}",
                    s.session_id, s.host, s.mode, s.age_seconds, s.idle_seconds, s.expires_at
                );
            }
            success(text, &SessionList { sessions })
        }
        Err(e) => failure(&e),
    }
}
