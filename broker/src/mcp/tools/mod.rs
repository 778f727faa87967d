//! The MCP tools, one file each, and the result shapes they share.
//!
//! Results are built here and nowhere else, so every tool answers the same
//! way: a success carries structured content matching the tool's output
//! schema plus a short text for text-only clients; a failure carries
//! `isError: true` and one sentence ending in `[reason_code: …]`.

pub(super) mod ssh_execute;
pub(super) mod ssh_file;
pub(super) mod ssh_list_servers;
pub(super) mod ssh_session;

use std::sync::{Arc, LazyLock};

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool};
use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::api::{Caller, ToolError, Tools};

/// Reason code of a tool that panicked or whose task was lost.
pub(super) const INTERNAL_ERROR: &str = "internal_error";

/// Reason code of a call the client cancelled.
pub(super) const CANCELLED: &str = "cancelled";

/// Built once: schema generation is not free and the list never changes.
static DEFINITIONS: LazyLock<Vec<Tool>> = LazyLock::new(|| {
    let mut tools = vec![ssh_list_servers::definition(), ssh_execute::definition()];
    tools.extend(ssh_session::definitions());
    tools.extend(ssh_file::definitions());
    tools
});

/// Every tool this server offers, in the order `tools/list` shows them.
pub fn definitions() -> Vec<Tool> {
    DEFINITIONS.clone()
}

/// The definition of one tool, if the name is ours.
pub(super) fn definition(name: &str) -> Option<Tool> {
    DEFINITIONS.iter().find(|tool| tool.name == name).cloned()
}

/// Our name for a tool the client named, if it is one of ours.
pub(super) fn static_name(name: &str) -> Option<&'static str> {
    [
        ssh_list_servers::NAME,
        ssh_execute::NAME,
        ssh_session::OPEN,
        ssh_session::EXEC,
        ssh_session::CLOSE,
        ssh_session::LIST,
        ssh_file::PUT,
        ssh_file::GET,
    ]
    .into_iter()
    .find(|known| *known == name)
}

/// Runs tool `name` (one of [`static_name`]'s) for `caller`.
pub(super) async fn run<T: Tools>(
    name: &'static str,
    tools: Arc<T>,
    caller: Caller,
    args: JsonObject,
) -> CallToolResult {
    let tools = &*tools;
    match name {
        ssh_list_servers::NAME => ssh_list_servers::call(tools, &caller, args).await,
        ssh_execute::NAME => ssh_execute::call(tools, &caller, args).await,
        ssh_session::OPEN => ssh_session::open(tools, &caller, args).await,
        ssh_session::EXEC => ssh_session::exec(tools, &caller, args).await,
        ssh_session::CLOSE => ssh_session::close(tools, &caller, args).await,
        ssh_session::LIST => ssh_session::list(tools, &caller, args).await,
        ssh_file::PUT => ssh_file::put(tools, &caller, args).await,
        ssh_file::GET => ssh_file::get(tools, &caller, args).await,
        other => failure_with_code(&format!("unknown tool {other:?}"), INTERNAL_ERROR),
    }
}

/// A failed call as the agent sees it: one sentence and a stable code.
pub(super) fn failure(error: &ToolError) -> CallToolResult {
    failure_with_code(&error.to_string(), error.reason_code())
}

/// A failed call whose cause is not a [`ToolError`] (panic, cancellation).
pub(super) fn failure_with_code(sentence: &str, code: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!(
        "{sentence} [reason_code: {code}]"
    ))])
}

/// A successful call: `structured` must match the tool's output schema.
pub(super) fn success(text: String, structured: &impl Serialize) -> CallToolResult {
    match serde_json::to_value(structured) {
        Ok(value) => {
            let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
            result.structured_content = Some(value);
            result
        }
        Err(error) => {
            // Our result types always serialise; if that ever breaks, the
            // agent must not get a success without its structured content.
            tracing::error!(%error, "tool result could not be serialised");
            failure_with_code(
                "internal error: the result could not be encoded",
                INTERNAL_ERROR,
            )
        }
    }
}

/// Reads a tool's arguments; a missing, unknown or mistyped field is the
/// agent's mistake and becomes `invalid_arguments`.
pub(super) fn parse_args<A: DeserializeOwned>(args: JsonObject) -> Result<A, ToolError> {
    serde_json::from_value(Value::Object(args))
        .map_err(|error| ToolError::Invalid(error.to_string()))
}

/// The JSON Schema (draft 2020-12) of what `A` accepts, as a tool's
/// `inputSchema`.
pub(super) fn input_schema<A: JsonSchema>() -> JsonObject {
    schema_object(
        schemars::generate::SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<A>(),
    )
}

/// The JSON Schema (draft 2020-12) of what `R` serialises to, as a tool's
/// `outputSchema`.
pub(super) fn output_schema<R: JsonSchema>() -> JsonObject {
    schema_object(
        schemars::generate::SchemaSettings::draft2020_12()
            .for_serialize()
            .into_generator()
            .into_root_schema_for::<R>(),
    )
}

/// Drops the root `title` and `description`: clients show the tool's own
/// name and description, and a Rust type's would only add noise. Field
/// descriptions come from doc comments; their line breaks are joined.
fn schema_object(schema: schemars::Schema) -> JsonObject {
    let mut value = schema.to_value();
    join_description_lines(&mut value);
    let mut object = match value {
        Value::Object(object) => object,
        // Schemas of structs are objects; anything else cannot describe
        // tool arguments, so advertise "any object" rather than fail.
        _ => JsonObject::from_iter([("type".to_owned(), Value::from("object"))]),
    };
    object.remove("title");
    object.remove("description");
    object
}

fn join_description_lines(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                match child {
                    Value::String(text) if key == "description" => {
                        *text = text.replace('\n', " ");
                    }
                    _ => join_description_lines(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(join_description_lines),
        _ => {}
    }
}
