//! `control-plane --config control-plane.json` runs the control plane;
//! `control-plane check --config control-plane.json` validates the file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use infrabroker_control_plane::StartError;

#[derive(Parser)]
#[command(version, about = "infrabroker control plane: approvals and guardrails")]
struct Cli {
    /// Path to control-plane.json.
    #[arg(long, global = true, default_value = "control-plane.json")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and exit: 0 valid, 64 invalid.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONTROL_PLANE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Some(Command::Check) = cli.command {
        return match infrabroker_control_plane::check(&cli.config) {
            Ok(_) => {
                println!("{}: valid", cli.config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", cli.config.display());
                ExitCode::from(64)
            }
        };
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("control-plane: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(infrabroker_control_plane::run(&cli.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError::Config(e)) => {
            eprintln!("control-plane: {}: {e}", cli.config.display());
            ExitCode::from(64)
        }
        Err(e) => {
            eprintln!("control-plane: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
