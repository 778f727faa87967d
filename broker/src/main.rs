//! `broker mcp-stdio --config broker.json` serves MCP on stdin/stdout;
//! `broker mcp-http --config broker.json` serves MCP over Streamable HTTP
//! behind OAuth bearer tokens; `broker serve --config broker.json` serves
//! the mTLS REST API; `broker check --config broker.json` validates the file
//! and exits.
//! Logs go to stderr only: stdout belongs to the protocol.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use infrabroker_broker::api::Caller;
use infrabroker_broker::config::BrokerConfig;
use infrabroker_broker::engine::Engine;

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

fn main() -> ExitCode {
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
        Command::McpHttp { config } => network(&config, infrabroker_broker::http::run_mcp_http),
        Command::Serve { config } => network(&config, infrabroker_broker::http::run_serve),
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
        Command::McpStdio { config } => {
            let cfg = match BrokerConfig::load(&config) {
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
            let result = rt.block_on(async {
                let engine = Engine::start(cfg).await?;
                infrabroker_broker::mcp::serve_stdio(engine, Caller::local("mcp-stdio")).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("broker: {e:#}");
                    let engine = e.downcast_ref::<infrabroker_broker::engine::EngineError>();
                    ExitCode::from(engine.map_or(1, |e| e.exit_code()))
                }
            }
        }
    }
}

/// Loads the configuration and runs a network frontend until it stops.
fn network<F, Fut>(config: &std::path::Path, run: F) -> ExitCode
where
    F: FnOnce(BrokerConfig) -> Fut,
    Fut: std::future::Future<Output = Result<(), infrabroker_broker::http::HttpError>>,
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
    match rt.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
