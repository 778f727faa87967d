//! `ssh_list_servers`: the hosts this caller may run commands on.

use std::{fmt::Write as _, sync::Arc};

use rmcp::model::{CallToolResult, JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{failure, input_schema, output_schema, parse_args, success};
use crate::api::{Caller, ServerInfo, Tools};

/// The tool's name on the wire.
pub(in crate::mcp) const NAME: &str = "ssh_list_servers";

const DESCRIPTION: &str = "List the hosts you may run commands on with ssh_execute. \
Each entry gives the logical name to pass as `host`, the remote account commands run as, \
whether the host allows `sudo` and PTYs, and the bastion it is reached through, if any. \
Takes no arguments. Call it first when you do not know a host's exact name.";

/// No arguments; unknown ones are refused so typos do not pass silently.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListArgs {}

/// The structured result.
#[derive(Debug, Serialize, JsonSchema)]
struct ServerList {
    /// Hosts available to you, by logical name.
    servers: Vec<ServerInfo>,
}

/// The tool as `tools/list` shows it.
pub(super) fn definition() -> Tool {
    Tool::new(NAME, DESCRIPTION, input_schema::<ListArgs>())
        .with_title("List SSH hosts")
        .with_raw_output_schema(Arc::new(output_schema::<ServerList>()))
        .with_annotations(
            ToolAnnotations::new()
                .read_only(true)
                .destructive(false)
                .idempotent(true)
                .open_world(false),
        )
}

/// Runs the tool for `caller`.
pub(in crate::mcp) async fn call<T: Tools>(
    tools: &T,
    caller: &Caller,
    args: JsonObject,
) -> CallToolResult {
    if let Err(error) = parse_args::<ListArgs>(args) {
        return failure(&error);
    }
    match tools.list_servers(caller).await {
        Ok(servers) => success(render(&servers), &ServerList { servers }),
        Err(error) => failure(&error),
    }
}

/// One line per host, for clients that only show text.
fn render(servers: &[ServerInfo]) -> String {
    if servers.is_empty() {
        return "No hosts are available to you.".to_owned();
    }
    let mut text = format!("{} host(s) available:", servers.len());
    for server in servers {
        let _ = write!(text, "\n- {} (user {}", server.name, server.user);
        if server.allow_sudo {
            text.push_str(", sudo allowed");
        }
        if server.allow_pty {
            text.push_str(", pty allowed");
        }
        if let Some(jump) = &server.jump {
            let _ = write!(text, ", via {jump}");
        }
        text.push(')');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_each_host_with_its_capabilities() {
        let servers = vec![
            ServerInfo {
                name: "web1".into(),
                user: "deploy".into(),
                allow_sudo: true,
                allow_pty: false,
                jump: Some("bastion".into()),
            },
            ServerInfo {
                name: "db1".into(),
                user: "ops".into(),
                allow_sudo: false,
                allow_pty: true,
                jump: None,
            },
        ];
        assert_eq!(
            render(&servers),
            "2 host(s) available:\n- web1 (user deploy, sudo allowed, via bastion)\n\
             - db1 (user ops, pty allowed)"
        );
        assert_eq!(render(&[]), "No hosts are available to you.");
    }
}
