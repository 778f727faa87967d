//! Which characters may appear where.
//!
//! The rule, in three parts:
//! - **Nowhere** (whatever the quoting, and even with `shell_parse` off):
//!   control characters other than tab, Unicode format characters (bidi
//!   overrides and isolates U+202A–U+202E, U+2066–U+2069, zero-width
//!   U+200B–U+200F, U+2060–U+2064, U+FEFF, tags …), line and paragraph
//!   separators, non-ASCII spaces, private-use and unassigned code points,
//!   variation selectors and the blank "letters" (U+115F, U+1160, U+3164,
//!   U+FFA0, U+17B4, U+17B5, U+2800, U+034F). They change what a human
//!   approver or log reader sees without changing what the shell runs.
//! - **Outside quotes**: printable ASCII only, so no look-alike of a shell
//!   metacharacter (fullwidth `；` U+FF1B, `｜` U+FF5C, Greek question mark
//!   U+037E, …) can pass for syntax in a review.
//! - **Inside quotes**: ASCII, or a non-ASCII letter, combining mark,
//!   number, punctuation or symbol (`grep 'café' f`, `printf '€'`,
//!   `echo '日本語 — “ok”'`). Text inside quotes is data to every shell, and
//!   the command reaches `/bin/sh` byte for byte whatever the login shell
//!   (see `infrabroker_common::force_command` and the broker's login-shell
//!   matrix test). Non-ASCII spaces stay refused (they are in the nowhere
//!   set).
//! - **Program names and options**: ASCII only, even when quoted. The first
//!   word of each simple command, and the name part of any word starting
//!   with `-` (up to its first `=`), must be ASCII, so a look-alike program
//!   (`'cаt'` with a Cyrillic `а`) or option (`'--fоrce'`) cannot pass for
//!   the one a rule or a reviewer expects.

use std::sync::LazyLock;

use regex::Regex;

use super::{Construct, ParseRejection};

/// Code points refused everywhere. Compiled once; if it ever failed to
/// compile, every non-ASCII character is treated as invisible (fail closed).
static INVISIBLE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(concat!(
        r"[[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Zs}\p{Co}\p{Cn}",
        r"\x{034F}\x{115F}\x{1160}\x{17B4}\x{17B5}\x{2800}\x{3164}\x{FFA0}",
        r"\x{FE00}-\x{FE0F}\x{E0100}-\x{E01EF}]--[\t ]]",
    ))
    .ok()
});

/// Non-ASCII characters allowed inside quotes.
static QUOTED_OK: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^[\p{L}\p{M}\p{N}\p{P}\p{S}]$").ok());

/// A character that is refused wherever it appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invisible {
    /// C0/C1 control or DEL.
    Control(char),
    /// Format, separator, private-use, unassigned or blank-looking character.
    Format(char),
}

impl Invisible {
    /// `U+202E` style description for messages.
    pub fn describe(self) -> String {
        match self {
            Self::Control(c) => format!("control character U+{:04X}", u32::from(c)),
            Self::Format(c) => format!("invisible or format character U+{:04X}", u32::from(c)),
        }
    }
}

/// The first character of `s` that is refused everywhere, if any: the
/// hidden-character rule the signer also applies to hosts without a policy.
pub fn first_invisible(s: &str) -> Option<Invisible> {
    if let Some(c) = s
        .chars()
        .find(|&c| c.is_ascii() && c.is_ascii_control() && c != '\t')
    {
        return Some(Invisible::Control(c));
    }
    if s.is_ascii() {
        return None;
    }
    let Some(re) = INVISIBLE.as_ref() else {
        return s.chars().find(|c| !c.is_ascii()).map(Invisible::Format);
    };
    let c = re.find(s)?.as_str().chars().next()?;
    Some(if c.is_control() {
        Invisible::Control(c)
    } else {
        Invisible::Format(c)
    })
}

/// Characters that stand for themselves unquoted in every POSIX shell and
/// need no quoting when a word is rendered for the regexes.
pub(crate) fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '%' | '+' | ',' | '-' | '.' | '/' | ':' | '=' | '@' | '_')
}

/// Refuses non-ASCII in the program name of `argv` and in the name part of
/// its options (see the module docs).
pub(crate) fn check_names(argv: &[String]) -> Result<(), ParseRejection> {
    for (i, word) in argv.iter().enumerate() {
        let name = if i == 0 {
            word.as_str()
        } else if word.starts_with('-') {
            word.split('=').next().unwrap_or_default()
        } else {
            continue;
        };
        if let Some(c) = name.chars().find(|c| !c.is_ascii()) {
            let what = if i == 0 {
                "the program name"
            } else {
                "an option name"
            };
            return Err(ParseRejection::new(
                Construct::NonAscii,
                format!("U+{:04X} in {what} (word {})", u32::from(c), i + 1),
            ));
        }
    }
    Ok(())
}

/// Whether `c` may appear inside single or double quotes.
pub(crate) fn quoted_ok(c: char) -> bool {
    if c.is_ascii() {
        return !c.is_ascii_control() || c == '\t';
    }
    let Some(re) = QUOTED_OK.as_ref() else {
        return false;
    };
    let mut buf = [0u8; 4];
    re.is_match(c.encode_utf8(&mut buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_set_covers_the_known_tricks() {
        for c in [
            '\u{202E}',
            '\u{2066}',
            '\u{200B}',
            '\u{FEFF}',
            '\u{00A0}',
            '\u{3164}',
            '\u{2028}',
            '\u{E0041}',
            '\u{0085}',
            '\u{FE0F}',
        ] {
            assert!(
                first_invisible(&format!("ls{c}x")).is_some(),
                "U+{:04X}",
                u32::from(c)
            );
        }
        assert_eq!(first_invisible("ls -la\tx"), None);
        assert_eq!(first_invisible("grep 'café' f"), None);
        assert_eq!(
            first_invisible("ls\x1b[2J"),
            Some(Invisible::Control('\x1b'))
        );
    }

    #[test]
    fn quoted_allows_printable_text_but_no_controls_or_spaces() {
        assert!(quoted_ok('é'));
        assert!(quoted_ok('ж'));
        assert!(quoted_ok('Ｒ'));
        // Punctuation and symbols are data inside quotes.
        for c in [
            '€', '；', '｜', '\u{2019}', '\u{2014}', '\u{037E}', '©', '😀',
        ] {
            assert!(quoted_ok(c), "U+{:04X}", u32::from(c));
        }
        // Controls and non-ASCII spaces never are.
        for c in ['\u{0085}', '\u{009B}', '\u{00A0}', '\u{2028}', '\u{3000}'] {
            assert!(!quoted_ok(c), "U+{:04X}", u32::from(c));
        }
    }
}
