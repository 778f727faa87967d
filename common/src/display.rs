//! Showing untrusted text to humans: every place an operator reads a
//! command, host, end user or reason (approval lists, notifications, audit
//! tails, error messages) passes it through [`escape`] first.
//!
//! A command is written by the agent, so it may carry bytes that change
//! what a terminal or chat client *shows* without changing what the shell
//! *runs*: `ESC [1A ESC [2K CR` rewrites the operator's screen, U+202E
//! (right-to-left override) reorders the rest of the line, U+200B hides
//! inside a word. [`escape`] renders each such character visibly:
//!
//! - C0 controls, DEL and C1 controls: `\t`, `\n`, `\r` by name, the others
//!   as `\x1b` / `\u{85}`. TAB is escaped too: an approver cannot see the
//!   difference between a tab and spaces, and a table row must stay a row.
//! - Unicode format characters (category Cf: soft hyphen, bidi embeddings,
//!   overrides and isolates U+202A–U+202E and U+2066–U+2069, zero-width
//!   U+200B–U+200F and U+2060–U+2064, U+FEFF, tag characters
//!   U+E0000–U+E007F, …), line and paragraph separators, non-ASCII spaces,
//!   variation selectors, private-use code points, noncharacters and the
//!   blank-looking "letters" (U+115F, U+1160, U+3164, U+FFA0, U+17B4,
//!   U+17B5, U+2800, U+034F): as `\u{202e}`.
//!
//! Text without any of them is returned unchanged (borrowed), so ordinary
//! commands, including `grep 'café' f`, read exactly as typed. When
//! anything is escaped, every backslash of the text is doubled as well, so
//! an escaped string is unambiguous: `\x1b` in the output is an ESC byte,
//! `\\x1b` the four characters the agent wrote.
//!
//! [`escape_json_line`] does the same for one line of JSON (an audit
//! record): the characters become JSON `\uXXXX` escapes, so the line stays
//! valid JSON that parses to the same value.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Inclusive ranges of code points (beyond C0/DEL/C1) that are rendered
/// escaped.
const HIDDEN: &[(u32, u32)] = &[
    (0x00A0, 0x00A0), // no-break space
    (0x00AD, 0x00AD), // soft hyphen
    (0x034F, 0x034F), // combining grapheme joiner
    (0x0600, 0x0605), // Arabic number signs
    (0x061C, 0x061C), // Arabic letter mark
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x115F, 0x1160), // Hangul fillers
    (0x1680, 0x1680), // Ogham space
    (0x17B4, 0x17B5),
    (0x180B, 0x180F), // Mongolian selectors and vowel separator
    (0x2000, 0x200F), // spaces, zero-width, LRM/RLM
    (0x2028, 0x202F), // separators, bidi embeddings/overrides, NNBSP
    (0x205F, 0x206F), // math space, invisible operators, isolates
    (0x2800, 0x2800), // braille blank
    (0x3000, 0x3000), // ideographic space
    (0x3164, 0x3164), // Hangul filler
    (0xE000, 0xF8FF), // private use
    (0xFDD0, 0xFDEF), // noncharacters
    (0xFE00, 0xFE0F), // variation selectors
    (0xFEFF, 0xFEFF), // BOM / zero-width no-break space
    (0xFFA0, 0xFFA0), // halfwidth Hangul filler
    (0xFFF0, 0xFFFB), // interlinear annotation, specials
    (0xFFFE, 0xFFFF),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),  // tags, variation selectors supplement
    (0xF0000, 0x10FFFF), // supplementary private use
];

/// Whether `c` is rendered escaped by [`escape`].
pub fn is_hidden(c: char) -> bool {
    let n = u32::from(c);
    if n < 0x20 || (0x7F..=0x9F).contains(&n) {
        return true;
    }
    if n < 0xA0 {
        return false;
    }
    // Every plane ends with two noncharacters.
    if n & 0xFFFE == 0xFFFE {
        return true;
    }
    HIDDEN.iter().any(|&(lo, hi)| (lo..=hi).contains(&n))
}

/// `text` with every hidden character rendered visibly (see the module
/// docs); unchanged when it has none.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if is_hidden(c) && u32::from(c) <= 0x7F => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if is_hidden(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// One line of JSON with every hidden character written as a JSON `\uXXXX`
/// escape (surrogate pairs above U+FFFF). In JSON text such characters can
/// only stand inside strings, so the result parses to the same value.
pub fn escape_json_line(line: &str) -> Cow<'_, str> {
    if !line.chars().any(is_hidden) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if is_hidden(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screen_rewriting_and_bidi_tricks_become_visible() {
        let rows = [
            (
                "ls\x1b[1A\x1b[2K\rrm -rf /",
                "ls\\x1b[1A\\x1b[2K\\rrm -rf /",
            ),
            ("echo \u{202e}gnp.exe", "echo \\u{202e}gnp.exe"),
            ("a\u{2066}b\u{2069}", "a\\u{2066}b\\u{2069}"),
            ("z\u{200b}ero\u{feff}", "z\\u{200b}ero\\u{feff}"),
            ("tag\u{e0041}", "tag\\u{e0041}"),
            ("c1\u{85}del\x7f", "c1\\u{85}del\\x7f"),
            ("tab\there", "tab\\there"),
            ("nb\u{a0}sp", "nb\\u{a0}sp"),
            ("soft\u{ad}", "soft\\u{ad}"),
            ("pua\u{e000}", "pua\\u{e000}"),
            ("a\\x1b\x1b", "a\\\\x1b\\x1b"),
        ];
        for (input, want) in rows {
            assert_eq!(escape(input), want, "{input:?}");
        }
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for s in [
            "systemctl restart nginx",
            "grep 'café' f",
            "printf '€ %s' \"ж\"",
            "sed 's/a\\.b/c/'",
            "日本語",
            "emoji 🙂",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(_)), "{s}");
        }
    }

    #[test]
    fn every_c0_c1_and_cf_character_of_the_brief_is_hidden() {
        let ranges = [
            (0x00, 0x1F),
            (0x7F, 0x9F),
            (0x200B, 0x200F),
            (0x202A, 0x202E),
            (0x2066, 0x2069),
            (0xFEFF, 0xFEFF),
            (0xE0000, 0xE007F),
        ];
        for (lo, hi) in ranges {
            for n in lo..=hi {
                let c = char::from_u32(n).unwrap();
                assert!(is_hidden(c), "U+{n:04X}");
            }
        }
        for c in ['a', ' ', '~', 'é', '€', '\u{ff1b}', '\u{1f642}'] {
            assert!(!is_hidden(c), "{c:?}");
        }
    }

    #[test]
    fn json_lines_stay_valid_json_with_the_same_value() {
        let value = serde_json::json!({"command": "x\u{202e}\x7f\u{85}\u{e0041}\u{1b}y"});
        let line = value.to_string();
        let shown = escape_json_line(&line);
        assert!(shown.is_ascii(), "{shown}");
        assert!(shown.contains("\\u202e") && shown.contains("\\udb40\\udc41"));
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back, value);
        assert!(matches!(
            escape_json_line("{\"a\":\"é\"}"),
            Cow::Borrowed(_)
        ));
    }
}
