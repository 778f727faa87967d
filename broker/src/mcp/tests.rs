//! The protocol layer driven by rmcp's own client over an in-process pipe,
//! with a fake engine: what an agent sees for success, failure, panic and
//! cancellation.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use infrabroker_common::wire::{Decision, ReasonCode};
use rmcp::{
    ClientHandler, RoleClient, ServiceExt as _,
    model::{CallToolRequestParams, CallToolResult, ClientConfig, ProgressNotificationParam},
    service::{NotificationContext, RunningService},
};
use serde_json::{Value, json};

use super::BrokerMcp;
use crate::api::{Caller, ExecRequest, ExecResult, ServerInfo, ToolError, Tools};

/// Answers by host name: `web1` runs, `boom` panics, `slow` never
/// finishes, anything else is unknown.
#[derive(Default)]
struct FakeEngine {
    /// Set when a `slow` call's future is dropped (aborted).
    slow_dropped: Arc<AtomicBool>,
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Tools for FakeEngine {
    async fn list_servers(&self, caller: &Caller) -> Result<Vec<ServerInfo>, ToolError> {
        Ok(vec![ServerInfo {
            name: "web1".into(),
            user: caller.id.clone(),
            allow_sudo: true,
            allow_pty: false,
            jump: None,
        }])
    }

    async fn execute(&self, caller: &Caller, req: ExecRequest) -> Result<ExecResult, ToolError> {
        match req.host.as_str() {
            "web1" => Ok(ExecResult {
                stdout: format!("{} as {}\n", req.command, caller.id),
                stderr: if req.command == "false" {
                    "failed\n".into()
                } else {
                    String::new()
                },
                exit_code: Some(u32::from(req.command == "false")),
                exit_signal: None,
                stdout_truncated: false,
                stderr_truncated: false,
                serial: 42,
                duration_ms: 7,
                timings: Default::default(),
            }),
            "boom" => panic!("engine bug"),
            "slow" => {
                let _guard = SetOnDrop(Arc::clone(&self.slow_dropped));
                tokio::time::sleep(Duration::from_secs(300)).await;
                Err(ToolError::TimedOut { seconds: 300 })
            }
            other => Err(ToolError::UnknownHost(other.into())),
        }
    }

    async fn dry_run(&self, _caller: &Caller, req: ExecRequest) -> Result<Decision, ToolError> {
        if req.command.starts_with("rm ") {
            Ok(Decision {
                allowed: false,
                reason_code: ReasonCode::CommandDenied,
                matched_rule: None,
                require_approval: false,
                warnings: Vec::new(),
                message: "rm is denied on web1".into(),
                would_deny: false,
                would_require_approval: false,
            })
        } else {
            Ok(Decision::allowed("allowed by web1's policy"))
        }
    }
}

/// Records progress notifications.
#[derive(Clone, Default)]
struct RecordingClient {
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

impl ClientHandler for RecordingClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::default()
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params);
    }
}

struct Harness {
    client: RunningService<RoleClient, RecordingClient>,
    engine: Arc<FakeEngine>,
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

async fn start() -> Harness {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let engine = Arc::new(FakeEngine::default());
    let server = BrokerMcp::new(Arc::clone(&engine), Caller::local("mcp-stdio"))
        .with_heartbeat(Duration::from_millis(20));
    tokio::spawn(async move {
        let running = server.serve(server_io).await.unwrap();
        let _ = running.waiting().await;
    });
    let recorder = RecordingClient::default();
    let progress = Arc::clone(&recorder.progress);
    let client = recorder.serve(client_io).await.unwrap();
    Harness {
        client,
        engine,
        progress,
    }
}

async fn call(harness: &Harness, tool: &'static str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else {
        unreachable!("tool arguments are objects")
    };
    harness
        .client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(args))
        .await
        .unwrap()
}

fn text(result: &CallToolResult) -> &str {
    result.content[0].as_text().unwrap().text.as_str()
}

#[tokio::test]
async fn initialize_announces_name_version_and_instructions() {
    let harness = start().await;
    let info = harness.client.peer_info().unwrap();
    let implementation = info.server_info.as_ref().unwrap();
    assert_eq!(implementation.name, "infrabroker");
    assert_eq!(implementation.version, env!("CARGO_PKG_VERSION"));
    assert!(
        info.instructions
            .as_deref()
            .unwrap()
            .contains("ssh_execute")
    );
    assert!(info.capabilities.tools.is_some());
}

#[tokio::test]
async fn tools_list_shows_every_tool_with_schemas() {
    let harness = start().await;
    let tools = harness.client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "ssh_list_servers",
            "ssh_execute",
            "ssh_session_open",
            "ssh_session_exec",
            "ssh_session_close",
            "ssh_session_list",
            "ssh_put_file",
            "ssh_get_file"
        ]
    );
    for tool in &tools {
        assert!(
            tool.output_schema.is_some(),
            "{} has an output schema",
            tool.name
        );
        assert!(!tool.description.as_deref().unwrap_or("").is_empty());
    }

    let exec = &tools[1];
    assert!(exec.description.as_deref().unwrap().contains("dry_run"));
    let input = &exec.input_schema;
    assert_eq!(input["type"], "object");
    let properties = input["properties"].as_object().unwrap();
    for field in [
        "host",
        "command",
        "sudo",
        "sudo_user",
        "timeout_seconds",
        "dry_run",
    ] {
        let description = properties[field]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(!description.is_empty(), "{field} has a description");
        assert!(!description.contains('\n'), "{field}: doc lines are joined");
    }
    assert_eq!(input["required"], json!(["host", "command"]));
    assert!(
        input.get("description").is_none(),
        "no Rust type docs at the root"
    );
    assert_eq!(properties["timeout_seconds"]["minimum"], 1);
    assert_eq!(properties["timeout_seconds"]["maximum"], 3600);
    let output = exec.output_schema.as_ref().unwrap();
    assert_eq!(output["type"], "object");
    assert!(output["properties"].get("exit_code").is_some());
    assert!(output["properties"].get("decision").is_some());

    let list = &tools[0];
    assert!(list.description.as_deref().unwrap().contains("host"));
    let output = list.output_schema.as_ref().unwrap();
    assert_eq!(output["required"], json!(["servers"]));
}

#[tokio::test]
async fn list_servers_returns_structured_and_text() {
    let harness = start().await;
    let result = call(&harness, "ssh_list_servers", json!({})).await;
    assert_eq!(result.is_error, Some(false));
    let servers = &result.structured_content.as_ref().unwrap()["servers"];
    assert_eq!(servers[0]["name"], "web1");
    assert_eq!(
        servers[0]["user"], "mcp-stdio",
        "the session's caller reaches the engine"
    );
    assert!(text(&result).contains("- web1 (user mcp-stdio, sudo allowed)"));
}

#[tokio::test]
async fn execute_returns_structured_output_and_text() {
    let harness = start().await;
    let result = call(
        &harness,
        "ssh_execute",
        json!({"host": "web1", "command": "uptime"}),
    )
    .await;
    assert_eq!(result.is_error, Some(false));
    let structured = result.structured_content.as_ref().unwrap();
    assert_eq!(structured["stdout"], "uptime as mcp-stdio\n");
    assert_eq!(structured["exit_code"], 0);
    assert_eq!(structured["exit_signal"], Value::Null);
    assert_eq!(structured["serial"], 42);
    assert_eq!(
        text(&result),
        "exit 0 (serial 42, 7 ms)\n--- stdout ---\nuptime as mcp-stdio\n"
    );
}

#[tokio::test]
async fn non_zero_exit_is_not_a_tool_error() {
    let harness = start().await;
    let result = call(
        &harness,
        "ssh_execute",
        json!({"host": "web1", "command": "false"}),
    )
    .await;
    assert_eq!(result.is_error, Some(false));
    assert_eq!(result.structured_content.as_ref().unwrap()["exit_code"], 1);
    assert!(text(&result).starts_with("exit 1 "));
    assert!(text(&result).contains("--- stderr ---\nfailed"));
}

#[tokio::test]
async fn dry_run_returns_the_decision() {
    let harness = start().await;
    let allowed = call(
        &harness,
        "ssh_execute",
        json!({"host": "web1", "command": "ls", "dry_run": true}),
    )
    .await;
    assert_eq!(allowed.is_error, Some(false));
    let structured = allowed.structured_content.as_ref().unwrap();
    assert_eq!(structured["dry_run"], true);
    assert_eq!(structured["decision"]["allowed"], true);
    assert_eq!(text(&allowed), "allowed: allowed by web1's policy");

    let refused = call(
        &harness,
        "ssh_execute",
        json!({"host": "web1", "command": "rm -rf /", "dry_run": true}),
    )
    .await;
    assert_eq!(
        refused.is_error,
        Some(false),
        "a refusal is the dry run's answer"
    );
    assert_eq!(
        refused.structured_content.as_ref().unwrap()["decision"]["reason_code"],
        "command_denied"
    );
    assert!(text(&refused).starts_with("would be refused: rm is denied on web1"));
}

#[tokio::test]
async fn tool_error_becomes_is_error_with_reason_code() {
    let harness = start().await;
    let result = call(
        &harness,
        "ssh_execute",
        json!({"host": "nope", "command": "id"}),
    )
    .await;
    assert_eq!(result.is_error, Some(true));
    assert_eq!(result.content.len(), 1);
    assert_eq!(
        text(&result),
        "unknown host \"nope\": call ssh_list_servers to see the hosts you can reach \
         [reason_code: host_unknown]"
    );
}

#[tokio::test]
async fn invalid_arguments_become_is_error() {
    let harness = start().await;
    for args in [
        json!({"host": "", "command": "id"}),
        json!({"host": "web1", "command": "id", "timeout_seconds": 0}),
        json!({"host": "web1", "command": "id", "sudo_user": "root"}),
        json!({"host": "web1"}),
    ] {
        let result = call(&harness, "ssh_execute", args.clone()).await;
        assert_eq!(result.is_error, Some(true), "{args}");
        assert!(text(&result).starts_with("invalid arguments: "), "{args}");
        assert!(
            text(&result).ends_with("[reason_code: invalid_arguments]"),
            "{args}"
        );
    }
    let result = call(&harness, "ssh_list_servers", json!({"verbose": true})).await;
    assert!(text(&result).ends_with("[reason_code: invalid_arguments]"));
}

#[tokio::test]
async fn unknown_tool_is_a_protocol_error() {
    let harness = start().await;
    let outcome = harness
        .client
        .call_tool(CallToolRequestParams::new("ssh_nothing"))
        .await;
    assert!(outcome.is_err());
    // The session survives it.
    let result = call(&harness, "ssh_list_servers", json!({})).await;
    assert_eq!(result.is_error, Some(false));
}

#[tokio::test]
async fn panicking_tool_yields_internal_error_and_server_keeps_answering() {
    let harness = start().await;
    let result = call(
        &harness,
        "ssh_execute",
        json!({"host": "boom", "command": "id"}),
    )
    .await;
    assert_eq!(result.is_error, Some(true));
    assert!(text(&result).ends_with("[reason_code: internal_error]"));
    assert!(
        !text(&result).contains("engine bug"),
        "panic details stay in the log"
    );

    let next = call(
        &harness,
        "ssh_execute",
        json!({"host": "web1", "command": "id"}),
    )
    .await;
    assert_eq!(next.is_error, Some(false));
}

#[tokio::test]
async fn long_call_sends_progress_and_cancel_aborts_it() {
    let harness = start().await;
    // rmcp's client puts a progress token on every request.
    let params = CallToolRequestParams::new("ssh_execute").with_arguments(
        json!({"host": "slow", "command": "sleep 300"})
            .as_object()
            .unwrap()
            .clone(),
    );
    // Dropping the pending call makes rmcp's client send notifications/cancelled.
    let pending = harness.client.call_tool(params);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), pending)
            .await
            .is_err()
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !harness.engine.slow_dropped.load(Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the engine call was not aborted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let progress = harness.progress.lock().unwrap().clone();
    assert!(!progress.is_empty(), "heartbeats were sent");
    assert!(
        progress
            .iter()
            .all(|p| p.progress_token == progress[0].progress_token)
    );
    assert!(
        progress.windows(2).all(|w| w[0].progress < w[1].progress),
        "progress increases"
    );
    assert!(
        progress[0]
            .message
            .as_deref()
            .unwrap()
            .contains("ssh_execute still running")
    );

    let next = call(&harness, "ssh_list_servers", json!({})).await;
    assert_eq!(next.is_error, Some(false));
}
