//! `infrabroker-shim [--config PATH]`: the force-command of sealed hosts.
//! Runs the command of a valid envelope in `SSH_ORIGINAL_COMMAND`, or
//! refuses with one stderr line, a syslog record and exit status 126.

use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{SystemTime, UNIX_EPOCH};

use infrabroker_shim::{Config, Refusal, config, decide};

/// What sshd and the shell use for "found but cannot be run".
const REFUSED: u8 = 126;

fn main() -> ExitCode {
    let request = std::env::var("SSH_ORIGINAL_COMMAND").ok();
    let refusal = match run(request.as_deref()) {
        Ok(never) => match never {},
        Err(refusal) => refusal,
    };
    let line = format!("refused ({}): {refusal}", refusal.code());
    eprintln!("infrabroker-shim: {line}");
    syslog(4, &line);
    ExitCode::from(REFUSED)
}

/// Checks the request and `exec`s it; returns only on refusal.
fn run(request: Option<&str>) -> Result<std::convert::Infallible, Refusal> {
    let config_path = config_path()?;
    let config = Config::load(&config_path)?;
    let keys = config::load_keys(&config.keys_file)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Refusal::Config("the clock is before 1970".into()))?
        .as_secs();
    let plan = decide(&config, &keys, request, own_uid()?, now)?;
    syslog(
        6,
        &format!(
            "running nonce {} for principal {} (sudo: {})",
            plan.claims.nonce, plan.claims.principal, plan.claims.sudo
        ),
    );
    let err = Command::new(&plan.program)
        .args(&plan.args)
        .env_remove("SSH_ORIGINAL_COMMAND")
        .exec();
    Err(Refusal::Exec(err.to_string()))
}

fn config_path() -> Result<PathBuf, Refusal> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, ..) => Ok(PathBuf::from(config::DEFAULT_PATH)),
        (Some("--config"), Some(path), None) => Ok(PathBuf::from(path)),
        _ => Err(Refusal::Config(
            "usage: infrabroker-shim [--config PATH]".into(),
        )),
    }
}

/// The real uid, from `/proc/self/status` (no `unsafe` libc call needed).
fn own_uid() -> Result<u32, Refusal> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next()?.parse().ok())
        })
        .ok_or_else(|| Refusal::Config("cannot read the uid from /proc/self/status".into()))
}

/// One RFC 3164 record to `/dev/log` (facility auth = 4), best effort: a
/// host without syslog still gets the stderr line.
fn syslog(severity: u8, message: &str) {
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let record = format!(
        "<{}>infrabroker-shim[{}]: {}",
        4 * 8 + severity,
        std::process::id(),
        message.replace(['\n', '\r'], " ")
    );
    let _ = socket.send_to(record.as_bytes(), "/dev/log");
}
