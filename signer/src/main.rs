//! `signer --config signer.json` runs the signer; `signer check --config
//! signer.json` validates the file and exits.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use infrabroker_signer::StartError;

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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIGNER_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Some(Command::Check) = cli.command {
        return match infrabroker_signer::check(&cli.config) {
            Ok(rt) => {
                println!(
                    "{}: valid ({} hosts)",
                    cli.config.display(),
                    rt.config.hosts.len()
                );
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
            eprintln!("signer: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(infrabroker_signer::run(&cli.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError::Config(e)) => {
            eprintln!("signer: {}: {e}", cli.config.display());
            ExitCode::from(64)
        }
        Err(e) => {
            eprintln!("signer: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
