//! `infrabroker-shim [--config PATH]`: the force-command of sealed hosts.
//! Runs the command of a valid envelope in `SSH_ORIGINAL_COMMAND`, or
//! refuses with one stderr line, a syslog record and exit status 126.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitCode};
use std::time::{SystemTime, UNIX_EPOCH};

use infrabroker_shim::host::{config_path, own_uid, syslog};
use infrabroker_shim::{Config, Refusal, config, decide};

/// What sshd and the shell use for "found but cannot be run".
const REFUSED: u8 = 126;

fn main() -> ExitCode {
    let request = std::env::var("SSH_ORIGINAL_COMMAND").ok();
    let Err(refusal) = run(request.as_deref());
    let line = format!("refused ({}): {refusal}", refusal.code());
    eprintln!("infrabroker-shim: {line}");
    syslog(4, &line);
    ExitCode::from(REFUSED)
}

/// Checks the request and `exec`s it; returns only on refusal.
fn run(request: Option<&str>) -> Result<std::convert::Infallible, Refusal> {
    let config = Config::load(&config_path(std::env::args().skip(1))?)?;
    let keys = config::load_keys(&config.keys_file)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Refusal::Config("the clock is before 1970".into()))?
        .as_secs();
    let plan = decide(&config, &keys, request, own_uid()?, now)?;
    let (nonce, principal) = (&plan.claims.nonce, &plan.claims.principal);
    syslog(
        6,
        &format!(
            "running nonce {nonce} for principal {principal} (sudo: {})",
            plan.claims.sudo
        ),
    );
    let err = Command::new(&plan.program)
        .args(&plan.args)
        .env_remove("SSH_ORIGINAL_COMMAND")
        .exec();
    Err(Refusal::Exec(err.to_string()))
}
