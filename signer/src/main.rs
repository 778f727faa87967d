//! `signer --config signer.json` runs the signer; `signer check --config
//! signer.json` validates the file and exits.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use infrabroker_common::service;

#[derive(Parser)]
#[command(
    version,
    about = "infrabroker signer: the only holder of the SSH CA key"
)]
struct Cli {
    /// Path to signer.json.
    #[arg(long, global = true, default_value = "signer.json")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration (CA keys included) and exit: 0 valid, 64 invalid.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    service::init_logging("SIGNER_LOG");
    match cli.command {
        Some(Command::Check) => {
            service::check(&cli.config, infrabroker_signer::check(&cli.config), |rt| {
                format!("{} hosts", rt.config.hosts.len())
            })
        }
        None => service::run("signer", &cli.config, infrabroker_signer::run(&cli.config)),
    }
}
