//! The one rule that turns a judged command into the string sshd hands to
//! the account's login shell, used for one-shot certificates (the signer's
//! `force-command`) and for each command of an exec session (the broker's
//! exec request).
//!
//! # Why an encoding
//!
//! sshd runs a force-command (or an exec request) as `$SHELL -c STRING`,
//! with the *account's* login shell. Quoting the command for POSIX sh
//! (`/bin/sh -c '…'\''…'`) is read differently by other shells: fish
//! treats `\'` and `\\` as escapes inside single quotes (so a crafted
//! argument can end the quote early and add words), tcsh and csh expand
//! history (`!`) inside single quotes ("Event not found"). So the command
//! never passes through the login shell's quoting at all. [`wrap`] produces
//!
//! ```text
//! exec [PREFIX…] /bin/sh -c '<DECODER>' infrabroker <BASE64>
//! ```
//!
//! where `<BASE64>` is the command in standard base64 (RFC 4648, padded)
//! and [`DECODER`] is a fixed POSIX sh script that decodes `$1` with
//! `base64 -d` and `exec`s `/bin/sh -c "<command>"`. So the second `/bin/sh`
//! receives the judged command byte for byte, with `$0` = `/bin/sh` and no
//! positional parameters, exactly like the `/bin/sh -c '<command>'` form
//! before it.
//!
//! # Why it is inert in every login shell
//!
//! What the login shell parses is only this fixed text plus base64, and
//! every part of it is read the same way by sh/dash, bash, zsh, fish, tcsh,
//! csh, busybox sh and mksh:
//!
//! - Outside the quotes there are only words of `A–Z a–z 0–9 + / = - _ . :
//!   ,` separated by single spaces: `exec`, the prefix words (checked by
//!   [`is_safe_word`]), `/bin/sh`, `-c`, `infrabroker` and the base64 text.
//!   None of these characters is special to any of those shells in those
//!   positions: there is no `$`, quote, backslash, `!` (csh history), `^`
//!   (csh `^old^new` at line start), `%` (fish/csh job syntax), `~`, glob
//!   or brace character, `#`, `;`, `&`, `|`, `(`, `<` or `>`. A word never
//!   starts with `=` (zsh `=cmd` expansion, tcsh `=N` directory stack):
//!   base64 only ends in `=`, and prefix words may not start with it.
//! - The decoder is one single-quoted word. Inside single quotes every
//!   shell in the list takes every character literally except: `'` (ends
//!   the quote everywhere), `\` (fish: `\'` and `\\` are escapes), `!`
//!   (csh/tcsh history expansion) and a newline (csh/tcsh refuse it). The
//!   decoder contains none of them and is plain ASCII, so all of them pass
//!   the same bytes to `/bin/sh`. A unit test checks this character rule.
//! - The command itself only ever exists as base64 (letters, digits, `+`,
//!   `/`, `=`): no byte of it can be read as syntax by the login shell.
//!
//! Two things the login shell still does: it reads its own start-up files
//! (`~/.zshenv`, `config.fish`, `~/.tcshrc`, …) before running the string,
//! as sshd always made it do; those belong to the host's owner. And an
//! account whose "shell" refuses `-c` or paths with `/` (nologin,
//! git-shell, rbash) cannot run commands at all, as before.
//!
//! # What the host needs
//!
//! `/bin/sh` (any POSIX sh) and `base64` with `-d` (GNU coreutils, and
//! busybox's applet) on the `PATH` that sshd sets. If `base64` is missing or
//! fails, the decoder runs nothing and exits 126 with a message on stderr
//! (fail closed, never a half-decoded command). `printf` is a builtin of
//! every common `/bin/sh` (or coreutils).
//!
//! # Limits
//!
//! Linux refuses an `exec` argument longer than 128 KiB (`MAX_ARG_STRLEN`),
//! and the whole string is one argument of the login shell, so [`wrap`]
//! refuses a result longer than [`MAX_FORCE_COMMAND_BYTES`]: commands up to
//! about 95 KiB fit (the signer accepts request bodies of 64 KiB anyway).
//!
//! # Extending
//!
//! Another wrapper in front of `/bin/sh` (such as `timeout -k 5 60`) goes
//! into `prefix` next to `sudo -n -u USER --`; each prefix word must pass
//! [`is_safe_word`], so the argument about the login shell above still
//! holds. Never add text to the decoder that contains `'`, `\`, `!`, a
//! newline or non-ASCII: [`wrap`] refuses to run with such a decoder.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The fixed POSIX sh script run by the first `/bin/sh`: decode `$1`, then
/// `exec /bin/sh -c` it; if decoding fails, run nothing and exit 126.
pub const DECODER: &str = concat!(
    r#"c=$(printf %s "$1" | base64 -d) && exec /bin/sh -c "$c"; "#,
    r#"echo "infrabroker: cannot decode the command (is base64 -d available?)" >&2; "#,
    "exit 126",
);

/// `$0` of the decoding shell, so its error messages say who wrote them.
pub const DECODER_NAME: &str = "infrabroker";

/// The longest string [`wrap`] returns: Linux's `MAX_ARG_STRLEN` (128 KiB,
/// counting the terminating NUL) minus one.
pub const MAX_FORCE_COMMAND_BYTES: usize = 128 * 1024 - 1;

/// Why a command could not be wrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WrapError {
    /// A prefix word has a character some login shell would interpret.
    #[error(
        "prefix word {0:?} has characters outside [A-Za-z0-9+/=_.:,-] or starts with = or is empty"
    )]
    UnsafePrefix(String),
    /// The result would not fit in one `exec` argument.
    #[error(
        "the command is too long to hand to the login shell ({len} bytes wrapped, limit {MAX_FORCE_COMMAND_BYTES})"
    )]
    TooLong {
        /// Length of the wrapped string.
        len: usize,
    },
    /// The decoder itself breaks the rule (a programming error).
    #[error("the decoder script has a character some login shell would interpret")]
    UnsafeDecoder,
}

/// Whether `word` may appear unquoted in the wrapped string: non-empty, only
/// `A–Z a–z 0–9 + / = _ . : , -`, and not starting with `=`.
pub fn is_safe_word(word: &str) -> bool {
    !word.is_empty()
        && !word.starts_with('=')
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=_.:,-".contains(&b))
}

/// Whether `text` is read literally inside single quotes by every login
/// shell listed in the module docs: printable ASCII without `'`, `\`, `!`.
pub fn is_inert_in_single_quotes(text: &str) -> bool {
    text.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && !b"'\\!".contains(&b))
}

/// The string for sshd: `exec [PREFIX…] /bin/sh -c '<DECODER>' infrabroker
/// <BASE64>`. `prefix` holds whole words (e.g. `["sudo", "-n", "--"]`).
pub fn wrap(prefix: &[&str], command: &str) -> Result<String, WrapError> {
    if let Some(bad) = prefix.iter().find(|w| !is_safe_word(w)) {
        return Err(WrapError::UnsafePrefix((*bad).to_owned()));
    }
    if !is_inert_in_single_quotes(DECODER) {
        return Err(WrapError::UnsafeDecoder);
    }
    let mut out = String::from("exec ");
    for word in prefix {
        out.push_str(word);
        out.push(' ');
    }
    out.push_str("/bin/sh -c '");
    out.push_str(DECODER);
    out.push_str("' ");
    out.push_str(DECODER_NAME);
    out.push(' ');
    STANDARD.encode_string(command.as_bytes(), &mut out);
    if out.len() > MAX_FORCE_COMMAND_BYTES {
        return Err(WrapError::TooLong { len: out.len() });
    }
    Ok(out)
}

/// [`wrap`] behind an elevation prefix as the signer hands it out
/// (`sudo -n` or `sudo -n -u USER`, words separated by single spaces),
/// which gets `--` appended; `None` runs `/bin/sh` directly.
pub fn wrap_elevated(elevation_prefix: Option<&str>, command: &str) -> Result<String, WrapError> {
    let mut words: Vec<&str> = Vec::new();
    if let Some(p) = elevation_prefix {
        words.extend(p.split(' '));
        words.push("--");
    }
    wrap(&words, command)
}

/// A string made by [`wrap`], taken apart again (for audit readers and
/// tests). `None` if `wrapped` is not of that form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwrapped {
    /// The prefix words.
    pub prefix: Vec<String>,
    /// The command `/bin/sh` receives.
    pub command: String,
}

/// Reverses [`wrap`]; `None` unless `wrapped` has exactly its form.
pub fn unwrap(wrapped: &str) -> Option<Unwrapped> {
    let rest = wrapped.strip_prefix("exec ")?;
    let marker = format!("/bin/sh -c '{DECODER}' {DECODER_NAME} ");
    let at = rest.find(&marker)?;
    let prefix: Vec<String> = rest[..at].split_whitespace().map(str::to_owned).collect();
    let bytes = STANDARD.decode(&rest[at + marker.len()..]).ok()?;
    let command = String::from_utf8(bytes).ok()?;
    (wrap(
        &prefix.iter().map(String::as_str).collect::<Vec<_>>(),
        &command,
    )
    .ok()?
        == wrapped)
        .then_some(Unwrapped { prefix, command })
}

#[cfg(test)]
mod tests;
