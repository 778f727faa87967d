//! PTY sessions: the terminal's line discipline edits what the broker types
//! before the shell reads it. After `stty kill Q`, the line
//! `echo okQrm -rf ~/data` reaches the shell as `rm -rf ~/data`, while the
//! audit, the recording, the guardrails and the approvers saw `echo …`. So
//! a PTY command that would change terminal settings is refused before it
//! is sent: `stty` with anything but a query (`size`, `speed`, `-a`, `-g`).
//!
//! This is a word scan, not a shell parse: PTY sessions exist only on hosts
//! without a command policy, whose commands need not parse. It sees `stty`
//! (or a path ending in `/stty`) as a word anywhere in the line; it does not
//! see settings changed by other means (`s""tty`, `$(printf stty)`, an
//! interpreter calling `tcsetattr`). THREAT_MODEL.md lists that gap.

/// Words after `stty` that only report settings.
const QUERIES: &[&str] = &["size", "speed", "-a", "--all", "-g", "--save"];

/// Characters that end a simple command (or start a redirection) for the scan.
fn is_break(c: char) -> bool {
    matches!(
        c,
        ';' | '|' | '&' | '<' | '>' | '(' | ')' | '`' | '\n' | '{' | '}'
    )
}

/// Whether `command` runs `stty` with a setting rather than a query.
pub fn changes_settings(command: &str) -> bool {
    for segment in command.split(is_break) {
        let mut words = segment.split_whitespace();
        while let Some(word) = words.next() {
            let word = word.trim_matches(|c| c == '"' || c == '\'');
            if word != "stty" && !word.ends_with("/stty") {
                continue;
            }
            let args: Vec<&str> = words.by_ref().collect();
            if args.is_empty() {
                // Bare `stty` prints the settings that differ from sane.
                return false;
            }
            if !args.iter().all(|a| QUERIES.contains(a)) {
                return true;
            }
            break;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::changes_settings;

    #[test]
    fn settings_are_seen_and_queries_pass() {
        for refused in [
            "stty kill Q",
            "stty -icanon",
            "/bin/stty erase x </dev/tty",
            "echo hi; stty raw",
            "true && 'stty' intr ^X",
            "(stty sane)",
            "stty -F /dev/pts/0 kill Q",
        ] {
            assert!(changes_settings(refused), "{refused}");
        }
        for allowed in [
            "stty size </dev/tty",
            "stty -a",
            "stty -g > /tmp/modes",
            "stty",
            "echo stty-like; ls /usr/bin/sttyx",
            "ls -la",
        ] {
            assert!(!changes_settings(allowed), "{allowed}");
        }
    }
}
