//! `control-plane --config control-plane.json` runs the control plane;
//! `control-plane check --config control-plane.json` validates the file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use infrabroker_common::service;

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
    service::init_logging("CONTROL_PLANE_LOG");
    match cli.command {
        Some(Command::Check) => service::check(
            &cli.config,
            infrabroker_control_plane::check(&cli.config),
            |_| String::new(),
        ),
        None => service::run(
            "control-plane",
            &cli.config,
            infrabroker_control_plane::run(&cli.config),
        ),
    }
}
