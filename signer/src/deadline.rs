//! The deadline of a one-shot command on the host.
//!
//! sshd refuses SSH `signal` requests for a forced-command session, and it
//! does not kill a command without a terminal when its channel closes. So
//! when a broker gives up on a one-shot command (`timeout_seconds`), only
//! the host can stop it: the force-command runs under coreutils/busybox
//! `timeout`, which sends `TERM` to the command's process group at the
//! deadline and `KILL` [`KILL_AFTER_SECONDS`] later.
//!
//! The wrapper is prefix words of [`infrabroker_common::force_command::wrap`]
//! (`exec timeout -k 2 T [sudo -n -u U --] /bin/sh -c '<decoder>' …`), so the
//! force-command stays the same string under every login shell. `timeout`
//! sits outside `sudo` so that sudoers rules naming `/bin/sh` keep matching;
//! sudo relays the `TERM` to the command, the `KILL` reaches sudo only.

use infrabroker_common::wire::{Purpose, ReasonCode, Role, SignRequest};

use crate::issuance::Denial;

/// Seconds between `TERM` and `KILL` on the host; the broker waits as long.
pub const KILL_AFTER_SECONDS: u64 = 2;

/// Longest deadline accepted (one day).
pub const MAX_TIMEOUT_SECONDS: u64 = 86_400;

/// Checks `timeout_seconds`: only one-shot targets carry one, 1 s to a day.
pub fn check(req: &SignRequest) -> Result<(), Denial> {
    let Some(t) = req.timeout_seconds else {
        return Ok(());
    };
    // A session command's preflight names its deadline too: a sealed
    // host's shim enforces it (see `issuance::envelope`).
    let preflight = req.purpose == Purpose::Session && req.dry_run;
    if req.role != Role::Target || !(one_shot(req.purpose) || preflight) {
        return Err(Denial::new(
            ReasonCode::InvalidRequest,
            "timeout_seconds applies to one-shot target certificates (commands and file transfers) and session preflights only",
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

/// Whether `purpose` runs one fixed force-command.
fn one_shot(purpose: Purpose) -> bool {
    matches!(
        purpose,
        Purpose::Oneshot | Purpose::FilePut | Purpose::FileGet
    )
}

/// The `timeout -k 2 SECONDS` words in front of a one-shot target's
/// command, if the request has a deadline.
pub fn prefix(req: &SignRequest) -> Vec<String> {
    match req.timeout_seconds {
        Some(t) if req.role == Role::Target && one_shot(req.purpose) => vec![
            "timeout".to_owned(),
            "-k".to_owned(),
            KILL_AFTER_SECONDS.to_string(),
            t.to_string(),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_shot_targets_with_a_deadline_get_the_timeout_words() {
        let mut req = SignRequest {
            host: "web".into(),
            role: Role::Target,
            purpose: Purpose::Oneshot,
            command: "id".into(),
            pubkey: String::new(),
            sudo: false,
            sudo_user: None,
            pty: false,
            session_mode: None,
            ttl_seconds: None,
            end_user: None,
            end_user_groups: None,
            dry_run: false,
            on_behalf_of: None,
            approved: false,
            file: None,
            timeout_seconds: Some(30),
        };
        assert_eq!(prefix(&req), ["timeout", "-k", "2", "30"]);
        req.purpose = Purpose::Session;
        assert!(prefix(&req).is_empty());
        req.purpose = Purpose::Oneshot;
        req.timeout_seconds = None;
        assert!(prefix(&req).is_empty());
    }
}
