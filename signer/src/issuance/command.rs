//! What the signer checks in every command whatever the host's policy, and
//! how a judged command becomes a one-shot certificate's `force-command`.
//!
//! - NUL, CR and LF are refused on every host, always: sshd and the shells
//!   would split or cut the command there.
//! - Characters a human cannot see or that rewrite a terminal — C0/C1
//!   controls other than tab, DEL, Unicode format and bidi characters
//!   (U+200B–U+200F, U+202A–U+202E, U+2066–U+2069, U+FEFF, tags …),
//!   non-ASCII spaces, private-use and unassigned code points: the firewall's
//!   hidden-character rule ([`infrabroker_firewall::first_invisible`]) — are
//!   refused with `command_invalid` on every host too, so what an approver
//!   or audit reader is shown is what runs. A host may opt out with
//!   `allow_invisible_characters: true`; its command policy (if any) still
//!   refuses them.
//! - The force-command is [`infrabroker_common::force_command::wrap`] behind
//!   the deadline's `timeout` words ([`crate::deadline`]) and the elevation
//!   prefix: the same string whatever the account's login shell is.

use infrabroker_common::force_command::{WrapError, wrap};
use infrabroker_common::wire::ReasonCode;

use super::Denial;
use crate::config::Host;

/// The character checks above, in order.
pub(super) fn check_characters(host: &Host, command: &str) -> Result<(), Denial> {
    if command.contains(['\n', '\r', '\0']) {
        return Err(Denial::new(
            ReasonCode::CommandInvalid,
            "the command contains a newline, carriage return or NUL",
        ));
    }
    if host.allow_invisible_characters {
        return Ok(());
    }
    match infrabroker_firewall::first_invisible(command) {
        None => Ok(()),
        Some(found) => Err(Denial::new(
            ReasonCode::CommandInvalid,
            format!(
                "the command contains a {} (refused on every host unless it sets allow_invisible_characters)",
                found.describe()
            ),
        )),
    }
}

/// The `force-command` for a one-shot target certificate: `deadline` words
/// (`timeout -k 2 T`, or none), then `elevation_prefix` (`sudo -n [-u USER]`)
/// and `--` when elevated.
pub(super) fn force_command(
    deadline: &[String],
    elevation_prefix: Option<&str>,
    command: &str,
) -> Result<String, Denial> {
    let mut words: Vec<&str> = deadline.iter().map(String::as_str).collect();
    if let Some(p) = elevation_prefix {
        words.extend(p.split(' '));
        words.push("--");
    }
    wrap(&words, command).map_err(|e| {
        let code = match e {
            WrapError::TooLong { .. } => ReasonCode::CommandInvalid,
            WrapError::UnsafePrefix(_) | WrapError::UnsafeDecoder => ReasonCode::SigningFailed,
        };
        Denial::new(code, e.to_string())
    })
}
