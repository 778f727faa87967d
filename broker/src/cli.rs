//! The `broker` command line: `mcp-stdio`, `mcp-http`, `serve` and `check`
//! (see the binary's docs), logging to stderr only — stdout belongs to the
//! protocol.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::api::Caller;
use crate::config::BrokerConfig;
use crate::engine::Engine;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "infrabroker broker: SSH for AI agents without credentials"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve MCP over stdin/stdout (caller `mcp-stdio`).
    McpStdio {
        /// Path to broker.json.
        #[arg(long, default_value = "broker.json")]
        config: PathBuf,
    },
    /// Serve MCP over Streamable HTTP behind OAuth 2.1 bearer tokens.
    McpHttp {
        /// Path to broker.json.
        #[arg(long, default_value = "broker.json")]
        config: PathBuf,
    },
    /// Serve the one-shot REST API (`POST /v1/ssh_run`) over mTLS.
    Serve {
        /// Path to broker.json.
        #[arg(long, default_value = "broker.json")]
        config: PathBuf,
    },
    /// Validate broker.json and exit: 0 valid, 64 invalid.
    Check {
        /// Path to broker.json.
        #[arg(long, default_value = "broker.json")]
        config: PathBuf,
    },
}

/// Parses the command line, sets up logging and runs the chosen mode.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Network services say where they listen; stdio stays quiet.
    let default_level = match cli.command {
        Command::McpHttp { .. } | Command::Serve { .. } => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BROKER_LOG")
                .unwrap_or_else(|_| default_level.into()),
        )
        .init();
    match cli.command {
        Command::McpHttp { config } => run(&config, crate::http::run_mcp_http),
        Command::Serve { config } => run(&config, crate::http::run_serve),
        Command::McpStdio { config } => run(&config, |cfg| async {
            let engine = Engine::start(cfg).await?;
            crate::mcp::serve_stdio(engine, Caller::local("mcp-stdio")).await
        }),
        Command::Check { config } => match BrokerConfig::load(&config) {
            Ok(_) => {
                println!("{}: valid", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::from(64)
            }
        },
    }
}

/// Loads the configuration (exit 64 if invalid) and runs `serve` on a
/// runtime until it stops.
fn run<F, Fut, E>(config: &std::path::Path, serve: F) -> ExitCode
where
    F: FnOnce(BrokerConfig) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display + ExitStatus,
{
    let cfg = match BrokerConfig::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("broker: {}: {e}", config.display());
            return ExitCode::from(64);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("broker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker: {e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The process exit code of a failed mode: 65 when the audit log's last
/// record does not verify, 1 otherwise.
trait ExitStatus {
    fn exit_code(&self) -> u8;
}

impl ExitStatus for crate::http::HttpError {
    fn exit_code(&self) -> u8 {
        crate::http::HttpError::exit_code(self)
    }
}

impl ExitStatus for anyhow::Error {
    fn exit_code(&self) -> u8 {
        self.downcast_ref::<crate::engine::EngineError>()
            .map_or(1, crate::engine::EngineError::exit_code)
    }
}
