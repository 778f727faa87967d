//! `ssh_execute`: one command on one host, or (with `dry_run`) only the
//! policy decision for it.
//!
//! One tool has two result shapes, so the output schema is an object whose
//! properties are the union of both and whose `anyOf` requires either all
//! fields of an [`ExecResult`] or `dry_run` + `decision`. Its root stays
//! `type: object` (clients and rmcp drop other roots) and both shapes
//! validate against it.

use std::{fmt::Write as _, sync::Arc, time::Duration};

use infrabroker_common::wire::Decision;
use rmcp::model::{CallToolResult, JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{failure, input_schema, output_schema, parse_args, success};
use crate::api::{Caller, ExecRequest, ExecResult, ToolError, Tools};

/// The tool's name on the wire.
pub(in crate::mcp) const NAME: &str = "ssh_execute";

/// Bounds of `timeout_seconds`; the engine may lower it further to its
/// configured maximum.
const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=3600;

const DESCRIPTION: &str = "Run one command on a host over SSH and return its output. \
Each call runs the command exactly once under a fresh key and a short-lived certificate issued \
for this command only; nothing carries over between calls (no working directory, environment \
or shell state), so put dependent steps in one command, e.g. `cd /srv/app && git status`. \
There is no terminal and no stdin: interactive programs fail or run until the timeout. \
The host's policy decides which commands may run; a refused command returns an error with a \
reason code and nothing runs. Set `dry_run: true` to see the policy decision without connecting. \
`sudo: true` runs the command via non-interactive sudo as `sudo_user` (root by default), only on \
hosts that allow it (see ssh_list_servers). stdout and stderr are each capped: when \
`stdout_truncated` or `stderr_truncated` is true, narrow the command (`| head`, `| tail`, `grep`) \
and run it again. A non-zero exit code is a normal result, not an error: read stderr and \
exit_code. Use ssh_list_servers to find host names.";

/// The arguments as the agent sends them.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ExecuteArgs {
    /// Logical host name as listed by ssh_list_servers (not an address or `user@host`).
    host: String,
    /// The exact command line, run once by the remote account's shell, e.g. `df -h /`.
    command: String,
    /// Run the command through non-interactive sudo. Only on hosts that allow sudo; the
    /// policy may still refuse.
    #[serde(default)]
    sudo: bool,
    /// Account sudo runs the command as (root when absent). Requires `sudo: true`.
    sudo_user: Option<String>,
    /// Seconds before the command is stopped and its channel closed (1 to 3600). Defaults to
    /// the broker's configured timeout and never exceeds its configured maximum.
    #[schemars(range(min = 1, max = 3600))]
    timeout_seconds: Option<u64>,
    /// Only ask the policy whether this command would be allowed: nothing connects and
    /// nothing runs. The result is `{dry_run: true, decision}`.
    #[serde(default)]
    dry_run: bool,
}

/// Arguments that passed the checks the engine should never see fail.
#[derive(Debug)]
struct Validated {
    request: ExecRequest,
    dry_run: bool,
}

impl TryFrom<ExecuteArgs> for Validated {
    type Error = ToolError;

    fn try_from(args: ExecuteArgs) -> Result<Self, ToolError> {
        let invalid = |sentence: &str| Err(ToolError::Invalid(sentence.to_owned()));
        if args.host.trim().is_empty() {
            return invalid("`host` must not be empty; call ssh_list_servers for host names");
        }
        if args.command.trim().is_empty() {
            return invalid("`command` must not be empty");
        }
        if let Some(user) = &args.sudo_user {
            if !args.sudo {
                return invalid("`sudo_user` requires `sudo: true`");
            }
            if user.trim().is_empty() {
                return invalid("`sudo_user` must not be empty; omit it for root");
            }
        }
        if let Some(seconds) = args.timeout_seconds
            && !TIMEOUT_RANGE.contains(&seconds)
        {
            return invalid("`timeout_seconds` must be between 1 and 3600");
        }
        Ok(Validated {
            request: ExecRequest {
                host: args.host,
                command: args.command,
                sudo: args.sudo,
                sudo_user: args.sudo_user,
                timeout: args.timeout_seconds.map(Duration::from_secs),
            },
            dry_run: args.dry_run,
        })
    }
}

/// The structured result of a dry run.
#[derive(Debug, Serialize)]
struct DryRunOutput<'a> {
    dry_run: bool,
    decision: &'a Decision,
}

/// The tool as `tools/list` shows it.
pub(super) fn definition() -> Tool {
    Tool::new(NAME, DESCRIPTION, input_schema::<ExecuteArgs>())
        .with_title("Run a command over SSH")
        .with_raw_output_schema(Arc::new(result_schema()))
        .with_annotations(
            ToolAnnotations::new()
                .read_only(false)
                .destructive(true)
                .idempotent(false)
                .open_world(true),
        )
}

/// Runs the tool for `caller`.
pub(in crate::mcp) async fn call<T: Tools>(
    tools: &T,
    caller: &Caller,
    args: JsonObject,
) -> CallToolResult {
    let call = match parse_args::<ExecuteArgs>(args).and_then(Validated::try_from) {
        Ok(call) => call,
        Err(error) => return failure(&error),
    };
    if call.dry_run {
        match tools.dry_run(caller, call.request).await {
            Ok(decision) => success(
                render_decision(&decision),
                &DryRunOutput {
                    dry_run: true,
                    decision: &decision,
                },
            ),
            Err(error) => failure(&error),
        }
    } else {
        match tools.execute(caller, call.request).await {
            Ok(result) => success(render_exec(&result), &result),
            Err(error) => failure(&error),
        }
    }
}

/// The output schema described in the module docs.
fn result_schema() -> JsonObject {
    let mut schema = output_schema::<ExecResult>();
    let exec_required = schema.remove("required").unwrap_or_else(|| json!([]));
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        properties.insert(
            "dry_run".to_owned(),
            json!({
                "type": "boolean",
                "const": true,
                "description": "Present only on dry runs: nothing connected and nothing ran."
            }),
        );
        properties.insert("decision".to_owned(), decision_schema());
    }
    schema.insert(
        "description".to_owned(),
        Value::from(
            "A finished command (stdout, stderr, exit_code, …) or, for dry_run, \
             {dry_run: true, decision}.",
        ),
    );
    schema.insert(
        "anyOf".to_owned(),
        json!([
            { "required": exec_required },
            { "required": ["dry_run", "decision"] }
        ]),
    );
    schema
}

/// Written by hand: [`Decision`] lives in `common`, which does not depend on
/// schemars. Reason codes stay an open string so new ones do not break
/// validating clients.
fn decision_schema() -> Value {
    json!({
        "type": "object",
        "description": "The signer's decision for this command.",
        "properties": {
            "allowed": {
                "type": "boolean",
                "description": "A certificate would be issued for this command now."
            },
            "reason_code": {
                "type": "string",
                "description": "Stable reason, e.g. allowed, command_denied, allowlist_no_match."
            },
            "matched_rule": {
                "type": "string",
                "description": "The rule that decided, if any."
            },
            "require_approval": {
                "type": "boolean",
                "description": "The command needs an approval before it can run."
            },
            "warnings": {
                "type": "array",
                "items": { "type": "string" },
                "description": "What enforcement would have refused while the host is in audit mode."
            },
            "message": {
                "type": "string",
                "description": "One sentence for humans."
            }
        },
        "required": ["allowed", "reason_code", "message"]
    })
}

/// Status line, then each non-empty stream, for text-only clients.
pub(super) fn render_exec(result: &ExecResult) -> String {
    let status = match (result.exit_code, &result.exit_signal) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "no exit status".to_owned(),
    };
    let mut text = format!(
        "{status} (serial {}, {} ms)",
        result.serial, result.duration_ms
    );
    let before = text.len();
    push_stream(&mut text, "stdout", &result.stdout, result.stdout_truncated);
    push_stream(&mut text, "stderr", &result.stderr, result.stderr_truncated);
    if text.len() == before {
        text.push_str("\n(no output)");
    }
    text
}

fn push_stream(text: &mut String, name: &str, body: &str, truncated: bool) {
    if body.is_empty() && !truncated {
        return;
    }
    let _ = write!(text, "\n--- {name} ---\n{body}");
    if truncated {
        if !body.ends_with('\n') {
            text.push('\n');
        }
        let _ = write!(
            text,
            "[{name} truncated: output beyond the cap was dropped]"
        );
    }
}

/// "allowed" / "needs approval" / "would be refused", with the reason.
fn render_decision(decision: &Decision) -> String {
    let code = decision.reason_code.as_str();
    let mut text = if decision.allowed && !decision.require_approval {
        format!("allowed: {}", decision.message)
    } else if decision.require_approval {
        format!(
            "needs approval before it can run: {} [reason_code: {code}]",
            decision.message
        )
    } else {
        format!(
            "would be refused: {} [reason_code: {code}]",
            decision.message
        )
    };
    if let Some(rule) = &decision.matched_rule {
        let _ = write!(text, "\nmatched rule: {rule}");
    }
    for warning in &decision.warnings {
        let _ = write!(text, "\nwarning: {warning}");
    }
    text
}

#[cfg(test)]
mod tests {
    use infrabroker_common::wire::ReasonCode;

    use super::*;

    fn args(value: Value) -> Result<Validated, ToolError> {
        let Value::Object(object) = value else {
            unreachable!("test arguments are objects")
        };
        parse_args::<ExecuteArgs>(object).and_then(Validated::try_from)
    }

    #[test]
    fn valid_arguments_become_a_request() {
        let call = args(json!({
            "host": "web1", "command": "id", "sudo": true, "sudo_user": "www",
            "timeout_seconds": 30, "dry_run": true
        }))
        .unwrap();
        assert!(call.dry_run);
        assert_eq!(
            call.request,
            ExecRequest {
                host: "web1".into(),
                command: "id".into(),
                sudo: true,
                sudo_user: Some("www".into()),
                timeout: Some(Duration::from_secs(30)),
            }
        );
        let minimal = args(json!({"host": "web1", "command": "id"})).unwrap();
        assert!(!minimal.dry_run && !minimal.request.sudo && minimal.request.timeout.is_none());
    }

    #[test]
    fn bad_arguments_are_invalid_arguments() {
        // Each row: the rule it guards, then arguments breaking it.
        let rows = [
            ("host required", json!({"command": "id"})),
            ("host not blank", json!({"host": " ", "command": "id"})),
            ("command not empty", json!({"host": "web1", "command": ""})),
            (
                "timeout >= 1",
                json!({"host": "a", "command": "id", "timeout_seconds": 0}),
            ),
            (
                "timeout <= 3600",
                json!({"host": "a", "command": "id", "timeout_seconds": 3601}),
            ),
            (
                "timeout unsigned",
                json!({"host": "a", "command": "id", "timeout_seconds": -1}),
            ),
            (
                "sudo_user needs sudo",
                json!({"host": "a", "command": "id", "sudo_user": "x"}),
            ),
            (
                "sudo_user not empty",
                json!({"host": "a", "command": "id", "sudo": true, "sudo_user": ""}),
            ),
            (
                "no unknown fields",
                json!({"host": "a", "command": "id", "user": "root"}),
            ),
            (
                "typed fields",
                json!({"host": "a", "command": "id", "sudo": "yes"}),
            ),
        ];
        for (rule, value) in rows {
            let error = args(value).unwrap_err();
            assert_eq!(error.reason_code(), "invalid_arguments", "{rule}");
        }
    }

    #[test]
    fn exec_text_shows_status_streams_and_truncation() {
        let mut result = ExecResult {
            stdout: "hello\n".into(),
            stderr: String::new(),
            exit_code: Some(0),
            exit_signal: None,
            stdout_truncated: false,
            stderr_truncated: false,
            serial: 123,
            duration_ms: 45,
            timings: Default::default(),
        };
        assert_eq!(
            render_exec(&result),
            "exit 0 (serial 123, 45 ms)\n--- stdout ---\nhello\n"
        );
        result.stdout = String::new();
        assert_eq!(
            render_exec(&result),
            "exit 0 (serial 123, 45 ms)\n(no output)"
        );
        result.exit_code = None;
        result.exit_signal = Some("KILL".into());
        result.stderr = "partial".into();
        result.stderr_truncated = true;
        assert_eq!(
            render_exec(&result),
            "killed by signal KILL (serial 123, 45 ms)\n--- stderr ---\npartial\n\
             [stderr truncated: output beyond the cap was dropped]"
        );
    }

    #[test]
    fn decision_text_says_allowed_or_why_not() {
        assert_eq!(render_decision(&Decision::allowed("ok")), "allowed: ok");
        let refused = Decision {
            allowed: false,
            reason_code: ReasonCode::CommandDenied,
            matched_rule: Some("host: deny:^rm ".into()),
            require_approval: false,
            warnings: vec!["w".into()],
            message: "rm is denied".into(),
            would_deny: false,
            would_require_approval: false,
        };
        assert_eq!(
            render_decision(&refused),
            "would be refused: rm is denied [reason_code: command_denied]\n\
             matched rule: host: deny:^rm \nwarning: w"
        );
    }

    #[test]
    fn output_schema_accepts_both_shapes() {
        let schema = result_schema();
        assert_eq!(schema["type"], "object");
        let properties = schema["properties"].as_object().unwrap();
        for field in [
            "stdout",
            "stderr",
            "exit_code",
            "exit_signal",
            "stdout_truncated",
            "stderr_truncated",
            "serial",
            "duration_ms",
            "timings",
            "dry_run",
            "decision",
        ] {
            assert!(properties.contains_key(field), "{field}");
        }
        let branches = schema["anyOf"].as_array().unwrap();
        let exec_required = branches[0]["required"].as_array().unwrap();
        assert_eq!(
            exec_required.len(),
            9,
            "every ExecResult field is always written"
        );
        // Every key of a serialised dry run is declared and required keys are present.
        let dry = serde_json::to_value(DryRunOutput {
            dry_run: true,
            decision: &Decision::allowed("ok"),
        })
        .unwrap();
        let decision_schema = &properties["decision"];
        for key in dry["decision"].as_object().unwrap().keys() {
            assert!(decision_schema["properties"].get(key).is_some(), "{key}");
        }
        for key in decision_schema["required"].as_array().unwrap() {
            assert!(
                dry["decision"].get(key.as_str().unwrap()).is_some(),
                "{key}"
            );
        }
    }
}
