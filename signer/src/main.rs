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
    /// Validate the configuration (CA keys opened and test-signed) and exit:
    /// 0 valid, 64 invalid. Prints which CA signs for each host.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    service::init_logging("SIGNER_LOG");
    match cli.command {
        Some(Command::Check) => {
            let loaded = infrabroker_signer::check(&cli.config);
            let cas = loaded.as_ref().ok().map(infrabroker_signer::ca_report);
            let code = service::check(&cli.config, loaded, |rt| {
                format!("{} hosts", rt.config.hosts.len())
            });
            print!("{}", cas.unwrap_or_default());
            code
        }
        None => service::run("signer", &cli.config, infrabroker_signer::run(&cli.config)),
    }
}
