//! `broker mcp-stdio --config broker.json` serves MCP on stdin/stdout;
//! `broker mcp-http --config broker.json` serves MCP over Streamable HTTP
//! behind OAuth bearer tokens; `broker serve --config broker.json` serves
//! the mTLS REST API; `broker check --config broker.json` validates the file
//! and exits.
//! Logs go to stderr only: stdout belongs to the protocol.

use std::process::ExitCode;

fn main() -> ExitCode {
    infrabroker_broker::cli::main()
}
