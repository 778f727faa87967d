//! The deadline of a one-shot command on the host.
//!
//! sshd refuses SSH `signal` requests for a forced-command session, and it
//! does not kill a command without a terminal when its channel closes. So
//! when a broker gives up on a one-shot command (`timeout_seconds`), only
//! the host can stop it: the force-command runs under coreutils/busybox
//! `timeout`, which sends `TERM` to the command's process group at the
//! deadline and `KILL` [`KILL_AFTER_SECONDS`] later.
//!
//! This is one step after the force-command is built, whatever built it:
//! the finished force-command string is handed, single-quoted, to the
//! user's login shell (`"$SHELL" -c`, the shell sshd would have run it
//! with), so its meaning does not change.

use infrabroker_common::wire::{Purpose, ReasonCode, Role, SignRequest};

use crate::issuance::{Denial, shell_quote};

/// Seconds between `TERM` and `KILL` on the host; the broker waits as long.
pub const KILL_AFTER_SECONDS: u64 = 2;

/// Longest deadline accepted (one day).
pub const MAX_TIMEOUT_SECONDS: u64 = 86_400;

/// Checks `timeout_seconds`: only one-shot targets carry one, 1 s to a day.
pub fn check(req: &SignRequest) -> Result<(), Denial> {
    let Some(t) = req.timeout_seconds else {
        return Ok(());
    };
    if req.role != Role::Target || req.purpose != Purpose::Oneshot {
        return Err(Denial::new(
            ReasonCode::InvalidRequest,
            "timeout_seconds applies to one-shot target certificates only",
        ));
    }
    if t == 0 || t > MAX_TIMEOUT_SECONDS {
        return Err(Denial::new(
            ReasonCode::InvalidRequest,
            format!("timeout_seconds must be 1 to {MAX_TIMEOUT_SECONDS}"),
        ));
    }
    Ok(())
}

/// `force_command` bounded by the request's deadline, if it has one.
pub fn bound(force_command: Option<String>, req: &SignRequest) -> Option<String> {
    match (force_command, req.timeout_seconds) {
        (Some(fc), Some(t)) if req.role == Role::Target && req.purpose == Purpose::Oneshot => {
            Some(bounded(&fc, t))
        }
        (fc, _) => fc,
    }
}

/// `timeout -k 2 SECONDS "$SHELL" -c '<force_command>'`.
pub fn bounded(force_command: &str, seconds: u64) -> String {
    format!(
        "timeout -k {KILL_AFTER_SECONDS} {seconds} \"$SHELL\" -c {}",
        shell_quote(force_command)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_force_command_is_one_quoted_argument() {
        assert_eq!(
            bounded("echo 'a b'; ls", 30),
            r#"timeout -k 2 30 "$SHELL" -c 'echo '\''a b'\''; ls'"#
        );
    }
}
