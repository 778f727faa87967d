//! The start of every long-running service binary (signer, control plane):
//! logs to stderr, one runtime, and the exit code of how it ended — 0, 64
//! for an invalid configuration, 65 for an audit log whose tail does not
//! verify, 1 otherwise — so the binaries' `main` stays a few lines.

use std::fmt::Display;
use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

/// A service's start-up failure: its message and its exit code.
pub trait StartFailure: Display {
    /// The process exit code.
    fn exit_code(&self) -> u8;
    /// Whether it is the configuration file's fault (the message then
    /// follows the file's path).
    fn is_config(&self) -> bool {
        self.exit_code() == 64
    }
}

/// `tracing` to stderr without colours (journald keeps them literally),
/// the level from `env_var` (e.g. `SIGNER_LOG=debug`), `info` by default.
pub fn init_logging(env_var: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(env_var).unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// Runs `service` on a new runtime until it ends; its error is printed as
/// `name: [config: ]message` and becomes the exit code.
pub fn run<E: StartFailure>(
    name: &str,
    config: &Path,
    service: impl Future<Output = Result<(), E>>,
) -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(service) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.is_config() {
                eprintln!("{name}: {}: {e}", config.display());
            } else {
                eprintln!("{name}: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// The `check` subcommand: `path: valid[ (detail)]` and 0, or every error
/// and 64.
pub fn check<T, E: Display>(
    path: &Path,
    loaded: Result<T, E>,
    detail: impl FnOnce(&T) -> String,
) -> ExitCode {
    match loaded {
        Ok(v) => {
            let d = detail(&v);
            if d.is_empty() {
                println!("{}: valid", path.display());
            } else {
                println!("{}: valid ({d})", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::from(64)
        }
    }
}
