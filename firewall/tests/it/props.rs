//! Property tests on parse + decide: no panics, no denied command slips
//! through, and bounded work on 100 KB inputs. Case counts are fixed so the
//! suite runs in seconds.

use std::time::{Duration, Instant};

use infrabroker_firewall::{ReasonCode, parse_simple_commands};
use proptest::prelude::*;

use crate::fixtures::fixture;
use crate::generate::{encode, simple};

const NAMES: &[&str] = &["ls", "ps", "grep", "cat", "echo", "df", "kill"];
const FIXTURES: &[&str] = &[
    "deny_rm",
    "ops",
    "allow_any",
    "raw",
    "audit",
    "none",
    "hygiene",
];

fn is_rm(argv: &[String]) -> bool {
    argv.first()
        .is_some_and(|p| p == "rm" || p.ends_with("/rm"))
}

/// Text built from shell-significant pieces, so random input often gets
/// deep into the parsers instead of failing on the first byte.
fn shellish() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(
        &[
            "ls", "rm", " ", "\t", ";", "&&", "||", "|", "&", "'", "\"", "$", "(", ")", "$(", "`",
            "<", ">", ">&", "2", "1", "-", "{", "}", "*", "~", "#", "\\", "=", "X=1", "é", "；",
            "\u{202E}", "\u{200B}", "\n", "\0", "sh", "-c", "if", "then", "fi", "!", "<<", "<(",
        ][..],
    );
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_and_stays_consistent(input in prop_oneof![shellish(), any::<String>()]) {
        let parsed = parse_simple_commands(&input);
        for name in FIXTURES {
            let d = fixture(name).decide(&input);
            prop_assert!(!d.message.is_empty());
            prop_assert_eq!(d.require_approval, d.reason_code == ReasonCode::NeedsApproval);
            prop_assert_eq!(d.allowed, d.reason_code == ReasonCode::Allowed);
        }
        // Whatever the input, an allowed decision under the rm denylist means
        // the parse holds no rm command.
        let d = fixture("deny_rm").decide(&input);
        if d.allowed {
            let commands = parsed.unwrap();
            prop_assert!(!commands.iter().any(|a| is_rm(a)), "{:?} allowed: {:?}", input, commands);
        }
    }

    #[test]
    fn never_allows_a_denied_simple_command(
        before in prop::collection::vec(simple(NAMES), 0..3),
        after in prop::collection::vec(simple(NAMES), 0..3),
        rm_args in prop::collection::vec(crate::generate::word(), 0..3),
        choices in prop::collection::vec(any::<u8>(), 1..6),
        path in prop::sample::select(&["rm", "/bin/rm", "/usr/bin/rm"][..]),
        seps in prop::collection::vec(prop::sample::select(&[";", " && ", "||", " | ", "; "][..]), 6),
    ) {
        let mut rm = vec![path.to_owned()];
        rm.extend(rm_args);
        let rm_text = rm.iter().map(|w| encode(w, &choices)).collect::<Vec<_>>().join(" ");
        let mut parts: Vec<String> = before.into_iter().map(|(_, t)| t).collect();
        parts.push(rm_text);
        parts.extend(after.into_iter().map(|(_, t)| t));
        let mut text = String::new();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                text.push_str(seps[i - 1]);
            }
            text.push_str(part);
        }
        let d = fixture("deny_rm").decide(&text);
        prop_assert!(!d.allowed, "{:?} allowed", text);
        prop_assert_eq!(d.reason_code, ReasonCode::CommandDenied, "{}: {}", text, d.message);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn hundred_kb_inputs_are_bounded(
        chunk in prop_oneof![
            prop::sample::select(&[
                "a ", "a;", "'x", "$(", "((((", "ls | ", "é", "x", "{ ", "\"a b\" ", "2>&1 ", "'",
            ][..]).prop_map(str::to_owned),
            "[ -~]{1,12}",
        ],
        prefix in prop::sample::select(&["", "ls ", "rm ", "echo '"][..]),
    ) {
        let mut input = prefix.to_owned();
        while input.len() < 100 * 1024 {
            input.push_str(&chunk);
        }
        let start = Instant::now();
        for name in ["deny_rm", "ops", "raw"] {
            let _ = fixture(name).decide(&input);
        }
        // A generous bound for an unoptimized build: this guards against
        // super-linear blowups, not for speed (the bench measures that).
        prop_assert!(start.elapsed() < Duration::from_secs(3), "{:?} took {:?}", chunk, start.elapsed());
    }
}

#[test]
fn long_valid_command_is_judged_not_refused() {
    let input = format!("ls {}", "x".repeat(100 * 1024));
    let d = fixture("ops").decide(&input);
    assert!(d.allowed, "{}", d.message);
    let too_long = format!("ls {}", "x".repeat(200 * 1024));
    assert_eq!(
        fixture("ops").decide(&too_long).matched_rule.as_deref(),
        Some("shell-parse:too_long")
    );
}
