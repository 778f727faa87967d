//! [`BrokerMcp`]: the rmcp server handler that routes `tools/call` to the
//! engine for one [`Caller`].
//!
//! Each call runs in its own task so that a panic inside the engine turns
//! into an error result for that call only, and so that a cancelled request
//! (or a closed session) aborts the work instead of leaving it running.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult,
        PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities, ServerConfig, Tool,
    },
    service::RequestContext,
};
use tokio::{task::JoinHandle, time::Instant};

use super::tools::{self, CANCELLED, INTERNAL_ERROR, ssh_execute, ssh_list_servers, ssh_session};
use crate::api::{Caller, Tools};

/// The server name announced in `initialize`.
pub const SERVER_NAME: &str = "infrabroker";

const INSTRUCTIONS: &str = "infrabroker runs shell commands on Linux hosts over SSH for you, \
without giving you any key or password. ssh_list_servers shows the hosts you may use; \
ssh_execute runs one command on one of them (each call gets its own short-lived certificate, \
valid for that command only) and returns stdout, stderr and the exit code. Every command is \
checked against the host's policy and written to an audit log; a refusal comes back as an \
error with a reason code. Use dry_run to check a command without running it. For several \
related commands, ssh_session_open keeps one connection (and, in shell mode, one shell) open; \
run commands with ssh_session_exec and close it with ssh_session_close.";

/// How often a running call reports progress, when the client asked for it.
/// Keeps clients whose request timeout resets on progress from giving up on
/// long commands.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// The MCP server for one session: every call is made as `caller`.
///
/// Cheap to clone; a Streamable HTTP frontend builds one per session with
/// the caller its authentication established.
pub struct BrokerMcp<T> {
    tools: Arc<T>,
    caller: Caller,
    heartbeat: Duration,
}

impl<T: Tools> BrokerMcp<T> {
    /// A server that calls `tools` on behalf of `caller`.
    pub fn new(tools: Arc<T>, caller: Caller) -> Self {
        BrokerMcp {
            tools,
            caller,
            heartbeat: HEARTBEAT,
        }
    }

    /// Tests wait milliseconds, not seconds, for a heartbeat.
    #[cfg(test)]
    pub(super) fn with_heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Whom this session's calls are made for.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// Runs one tool call to completion in its own task.
    async fn dispatch(
        &self,
        request: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let tools = Arc::clone(&self.tools);
        let caller = self.caller.clone();
        let result = match request.name.as_ref() {
            ssh_list_servers::NAME => {
                let work = async move { ssh_list_servers::call(&*tools, &caller, args).await };
                supervise(ssh_list_servers::NAME, context, self.heartbeat, work).await
            }
            ssh_execute::NAME => {
                let work = async move { ssh_execute::call(&*tools, &caller, args).await };
                supervise(ssh_execute::NAME, context, self.heartbeat, work).await
            }
            ssh_session::OPEN => {
                let work = async move { ssh_session::open(&*tools, &caller, args).await };
                supervise(ssh_session::OPEN, context, self.heartbeat, work).await
            }
            ssh_session::EXEC => {
                let work = async move { ssh_session::exec(&*tools, &caller, args).await };
                supervise(ssh_session::EXEC, context, self.heartbeat, work).await
            }
            ssh_session::CLOSE => {
                let work = async move { ssh_session::close(&*tools, &caller, args).await };
                supervise(ssh_session::CLOSE, context, self.heartbeat, work).await
            }
            ssh_session::LIST => {
                let work = async move { ssh_session::list(&*tools, &caller, args).await };
                supervise(ssh_session::LIST, context, self.heartbeat, work).await
            }
            other => {
                // Not the agent's command failing: the request cannot be routed.
                return Err(ErrorData::invalid_params(
                    format!("unknown tool {other:?}; call tools/list"),
                    None,
                ));
            }
        };
        Ok(result)
    }
}

impl<T> Clone for BrokerMcp<T> {
    fn clone(&self) -> Self {
        BrokerMcp {
            tools: Arc::clone(&self.tools),
            caller: self.caller.clone(),
            heartbeat: self.heartbeat,
        }
    }
}

impl<T> fmt::Debug for BrokerMcp<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerMcp")
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

impl<T: Tools> ServerHandler for BrokerMcp<T> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools::definitions()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools::definition(name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.dispatch(request, &context)
            .await
            .map(CallToolResponse::from)
    }
}

/// Aborts the task when dropped, so work never outlives its request.
struct AbortOnDrop<R>(JoinHandle<R>);

impl<R> Drop for AbortOnDrop<R> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `work` in its own task: a panic becomes an `internal_error` result,
/// a cancellation aborts it, and while it runs the client gets progress
/// heartbeats if it sent a progress token.
async fn supervise<F>(
    tool: &'static str,
    context: &RequestContext<RoleServer>,
    heartbeat: Duration,
    work: F,
) -> CallToolResult
where
    F: Future<Output = CallToolResult> + Send + 'static,
{
    let mut task = AbortOnDrop(tokio::spawn(work));
    let progress_token = context.meta.get_progress_token();
    let started = Instant::now();
    let mut ticks = tokio::time::interval_at(started + heartbeat, heartbeat);
    loop {
        tokio::select! {
            joined = &mut task.0 => {
                return match joined {
                    Ok(result) => result,
                    Err(error) => {
                        tracing::error!(tool, %error, "tool call failed unexpectedly");
                        tools::failure_with_code(
                            "internal error: the tool failed unexpectedly; \
                             the server is still running",
                            INTERNAL_ERROR,
                        )
                    }
                };
            }
            () = context.ct.cancelled() => {
                tracing::info!(tool, "tool call cancelled by the client");
                return tools::failure_with_code("the call was cancelled", CANCELLED);
            }
            _ = ticks.tick(), if progress_token.is_some() => {
                if let Some(token) = &progress_token {
                    let elapsed = started.elapsed();
                    let note = ProgressNotificationParam::new(token.clone(), elapsed.as_secs_f64())
                        .with_message(format!(
                            "{tool} still running after {} s",
                            elapsed.as_secs()
                        ));
                    if let Err(error) = context.peer.notify_progress(note).await {
                        tracing::debug!(tool, %error, "progress notification not sent");
                    }
                }
            }
        }
    }
}
