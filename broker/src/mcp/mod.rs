//! The MCP frontend: exposes the engine's [`Tools`] to AI agents as MCP
//! tools, over stdio today and over Streamable HTTP later.
//!
//! Every failure an agent can act on (a refusal, an unknown host, a timeout,
//! bad arguments, even a panic inside the engine) comes back as a tool result
//! with `isError: true` and one sentence ending in `[reason_code: …]`; the
//! server itself keeps running. Protocol errors are left for requests that
//! cannot be routed at all (an unknown tool name).
//!
//! # Layout
//! - `server.rs`: [`BrokerMcp`], the rmcp `ServerHandler` holding one
//!   [`Caller`]; a frontend builds one per session.
//! - `confirm.rs`: asking the user to confirm a `user_confirm` request,
//!   by elicitation or by input requests (calls parked until the retry).
//! - `tools/`: one file per tool with its schema, argument parsing and
//!   result rendering (`ssh_list_servers`, `ssh_execute`).
//! - this file: [`serve_stdio`], which runs a [`BrokerMcp`] on stdin/stdout.

mod confirm;
mod server;
mod tools;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use anyhow::Context as _;
use rmcp::ServiceExt as _;

use crate::api::{Caller, Tools};

pub use server::{BrokerMcp, SERVER_NAME};
pub use tools::definitions as tool_definitions;
pub(crate) use tools::ssh_file::{
    get_request as get_file_request, put_request as put_file_request,
};

/// Serves MCP on stdin/stdout until the client closes its end.
///
/// Only protocol messages are written to stdout; diagnostics go through
/// `tracing`, which the binary must point at stderr.
pub async fn serve_stdio<T: Tools>(tools: Arc<T>, caller: Caller) -> anyhow::Result<()> {
    let server = BrokerMcp::new(Arc::clone(&tools), caller.clone());
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .context("MCP handshake on stdio failed")?;
    let reason = running.waiting().await;
    // The client went away: its sessions go with it.
    tools.close_sessions_of(&caller).await;
    let reason = reason.context("the MCP stdio service stopped abnormally")?;
    tracing::info!(?reason, "MCP stdio session ended");
    Ok(())
}
