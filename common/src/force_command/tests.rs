use super::*;

const HOSTILE: &str =
    "printf '%s' 'it'\\''s' \"a\\\"b\" '\\\\' '!!' '$HOME' `id` * {a,b} %1 ^a^b ~ =ls 'café €'";

/// The part of a wrapped string outside the single-quoted decoder.
fn outside_quotes(wrapped: &str) -> String {
    let (head, rest) = wrapped.split_once('\'').unwrap();
    let (_, tail) = rest.split_once('\'').unwrap();
    format!("{head}{tail}")
}

#[test]
fn the_decoder_is_inert_inside_single_quotes() {
    assert!(is_inert_in_single_quotes(DECODER));
    for bad in ["a'b", "a\\b", "a!b", "a\nb", "café"] {
        assert!(!is_inert_in_single_quotes(bad), "{bad:?}");
    }
}

#[test]
fn the_login_shell_sees_only_safe_words_and_the_fixed_decoder() {
    for prefix in [
        &[][..],
        &["sudo", "-n", "--"],
        &["sudo", "-n", "-u", "pg_1", "--"],
    ] {
        let wrapped = wrap(prefix, HOSTILE).unwrap();
        // Exactly two single quotes: the decoder's.
        assert_eq!(wrapped.matches('\'').count(), 2, "{wrapped}");
        assert!(wrapped.contains(&format!("'{DECODER}'")));
        let outside = outside_quotes(&wrapped);
        for word in outside.split(' ').filter(|w| !w.is_empty()) {
            assert!(is_safe_word(word), "{word:?} in {wrapped}");
        }
        assert!(wrapped.starts_with("exec "));
    }
}

#[test]
fn unwrap_returns_the_exact_command_and_prefix() {
    for command in [HOSTILE, "ls", "a\tb", "x \u{1F600} 日本語"] {
        let wrapped = wrap_elevated(Some("sudo -n -u postgres"), command).unwrap();
        assert_eq!(
            unwrap(&wrapped),
            Some(Unwrapped {
                prefix: vec![
                    "sudo".into(),
                    "-n".into(),
                    "-u".into(),
                    "postgres".into(),
                    "--".into()
                ],
                command: command.to_owned(),
            })
        );
        let plain = wrap_elevated(None, command).unwrap();
        assert_eq!(unwrap(&plain).unwrap().command, command);
        assert!(unwrap(&plain).unwrap().prefix.is_empty());
    }
    assert_eq!(unwrap("/bin/sh -c 'ls'"), None);
    assert_eq!(unwrap(&format!("{} x", wrap(&[], "ls").unwrap())), None);
}

#[test]
fn unsafe_prefix_words_are_refused() {
    for bad in [
        "", "a b", "x;id", "$(id)", "=ls", "a'b", "~root", "!1", "é", "a\\b",
    ] {
        assert_eq!(
            wrap(&["sudo", bad], "ls"),
            Err(WrapError::UnsafePrefix(bad.to_owned())),
            "{bad:?}"
        );
    }
    // A prefix from the wire with two spaces has an empty word.
    assert!(matches!(
        wrap_elevated(Some("sudo  -n"), "ls"),
        Err(WrapError::UnsafePrefix(_))
    ));
    assert!(wrap(&["timeout", "-k", "5", "--kill-after=5", "60"], "ls").is_ok());
}

#[test]
fn too_long_for_one_exec_argument_is_refused() {
    let fits = "a".repeat(95 * 1024);
    assert!(wrap(&[], &fits).unwrap().len() <= MAX_FORCE_COMMAND_BYTES);
    let big = "a".repeat(97 * 1024);
    assert!(matches!(wrap(&[], &big), Err(WrapError::TooLong { .. })));
}
