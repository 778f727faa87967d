//! [`BrokerMcp`]: the rmcp server handler that routes `tools/call` to the
//! engine for one [`Caller`].
//!
//! Each call runs in its own task so that a panic inside the engine turns
//! into an error result for that call only, and so that a cancelled request
//! (or a closed session) aborts the work instead of leaving it running.

use std::{fmt, sync::Arc, time::Duration};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, JsonObject,
        ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ProtocolVersion,
        ServerCapabilities, ServerConfig, Tool,
    },
    service::RequestContext,
};
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};

use super::confirm;
use super::tools::{self, CANCELLED, INTERNAL_ERROR};
use crate::api::{Caller, Tools};
use crate::confirm::Confirm;

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

    /// Runs one tool call in its own task: to completion, or until it asks
    /// the user something the client must answer in a retry.
    async fn dispatch(
        &self,
        request: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(tool) = tools::static_name(&request.name) else {
            // Not the agent's command failing: the request cannot be routed.
            return Err(ErrorData::invalid_params(
                format!("unknown tool {:?}; call tools/list", request.name),
                None,
            ));
        };
        let args = request.arguments.unwrap_or_default();
        let call = confirm::Call {
            caller: &self.caller,
            tool,
            args: &args,
        };
        if let Some(handle) = request.request_state.as_deref() {
            let Some(parked) = confirm::resume(handle, call) else {
                return Ok(tools::failure_with_code(
                    "this confirmation is unknown or has expired; call the tool again",
                    "approval_expired",
                )
                .into());
            };
            let answer = confirm::answer_in(request.input_responses.as_ref());
            let (task, questions) = parked.answer(answer);
            return Ok(self
                .follow(tool, &args, context, task, Some(questions))
                .await);
        }
        let (asker, questions) = Self::asker(context);
        let work = tools::run(
            tool,
            Arc::clone(&self.tools),
            self.caller.clone(),
            args.clone(),
        );
        let task = AbortOnDrop(tokio::spawn(crate::confirm::scope(asker, work)));
        Ok(self.follow(tool, &args, context, task, questions).await)
    }

    /// How this call can ask the user, if the client can answer: input
    /// requests on 2026-07-28 and later, else elicitation.
    fn asker(
        context: &RequestContext<RoleServer>,
    ) -> (
        Option<Arc<dyn Confirm>>,
        Option<mpsc::Receiver<confirm::Ask>>,
    ) {
        let modern = context
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28);
        if modern {
            let can = context
                .client_capabilities()
                .is_some_and(|c| c.elicitation.is_some());
            if !can {
                return (None, None);
            }
            let (parker, questions) = confirm::Parker::new();
            return (Some(Arc::new(parker)), Some(questions));
        }
        match confirm::Elicit::for_client(&context.peer) {
            Some(elicit) => (Some(Arc::new(elicit)), None),
            None => (None, None),
        }
    }

    /// Supervises `task` until it ends, or parks it when it asks the user.
    async fn follow(
        &self,
        tool: &'static str,
        args: &JsonObject,
        context: &RequestContext<RoleServer>,
        mut task: AbortOnDrop<CallToolResult>,
        mut questions: Option<mpsc::Receiver<confirm::Ask>>,
    ) -> CallToolResponse {
        loop {
            match supervise(tool, context, self.heartbeat, &mut task, questions.as_mut()).await {
                Supervised::Done(result) => return result.into(),
                Supervised::Asked(ask) => {
                    let call = confirm::Call {
                        caller: &self.caller,
                        tool,
                        args,
                    };
                    if !confirm::room(&call) {
                        // Not parked: unasked (its reply dropped), the
                        // request waits for an operator.
                        drop(ask);
                        continue;
                    }
                    // Questions only come from `questions`.
                    let Some(q) = questions.take() else { continue };
                    return confirm::park(call, task, q, *ask).into();
                }
            }
        }
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
        self.dispatch(request, &context).await
    }
}

/// Aborts the task when dropped, so work never outlives its request.
pub(super) struct AbortOnDrop<R>(pub(super) JoinHandle<R>);

impl<R> Drop for AbortOnDrop<R> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How a supervised stretch of a call ended.
enum Supervised {
    /// The call's result.
    Done(CallToolResult),
    /// The call asks the user (it waits, alive, for the answer).
    Asked(Box<confirm::Ask>),
}

/// Follows `task`: a panic becomes an `internal_error` result, a
/// cancellation aborts it, a question from it is handed back, and while it
/// runs the client gets progress heartbeats if it sent a progress token.
async fn supervise(
    tool: &'static str,
    context: &RequestContext<RoleServer>,
    heartbeat: Duration,
    task: &mut AbortOnDrop<CallToolResult>,
    mut questions: Option<&mut mpsc::Receiver<confirm::Ask>>,
) -> Supervised {
    let progress_token = context.meta.get_progress_token();
    let started = Instant::now();
    let mut ticks = tokio::time::interval_at(started + heartbeat, heartbeat);
    loop {
        tokio::select! {
            joined = &mut task.0 => {
                return Supervised::Done(match joined {
                    Ok(result) => result,
                    Err(error) => {
                        tracing::error!(tool, %error, "tool call failed unexpectedly");
                        tools::failure_with_code(
                            "internal error: the tool failed unexpectedly; \
                             the server is still running",
                            INTERNAL_ERROR,
                        )
                    }
                });
            }
            () = context.ct.cancelled() => {
                tracing::info!(tool, "tool call cancelled by the client");
                task.0.abort();
                return Supervised::Done(tools::failure_with_code("the call was cancelled", CANCELLED));
            }
            Some(ask) = async { questions.as_mut()?.recv().await }, if questions.is_some() => {
                return Supervised::Asked(Box::new(ask));
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
