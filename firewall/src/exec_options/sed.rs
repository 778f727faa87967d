//! Does a GNU sed script run a command? The `e` command (`e id`, or `e` on
//! its own: run the pattern space) and the `e` flag of `s` (`s/.*/id/e`)
//! do. The script is walked command by command; anything this walk cannot
//! read counts as running a command (fail closed), so an odd but harmless
//! script may be refused, never an exec one admitted.
//!
//! Commands end at `;`, `}` or the end (the firewall refuses newlines).
//! `a`, `i`, `c`, `r`, `R`, `w`, `W` and `#` take the rest of the script.

/// True if `script` may run a command (or could not be read).
pub(super) fn runs_command(script: &str) -> bool {
    let mut w = Walker {
        b: script.as_bytes(),
        i: 0,
    };
    w.script().unwrap_or(true)
}

struct Walker<'a> {
    b: &'a [u8],
    i: usize,
}

impl Walker<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// `Some(true)`: runs a command; `Some(false)`: does not; `None`: unreadable.
    fn script(&mut self) -> Option<bool> {
        loop {
            while matches!(self.peek(), Some(b' ' | b'\t' | b';' | b'}')) {
                self.i += 1;
            }
            let Some(_) = self.peek() else {
                return Some(false);
            };
            self.address()?;
            self.skip_blanks();
            if self.peek() == Some(b'!') {
                self.i += 1;
                self.skip_blanks();
            }
            let cmd = self.peek()?;
            self.i += 1;
            match cmd {
                b'e' => return Some(true),
                b's' => {
                    if self.substitute()? {
                        return Some(true);
                    }
                }
                b'y' => {
                    let d = self.delimiter()?;
                    self.until(d)?;
                    self.until(d)?;
                }
                b'a' | b'i' | b'c' | b'r' | b'R' | b'w' | b'W' | b'#' => return Some(false),
                b':' | b'b' | b't' | b'T' | b'v' => self.label(),
                b'l' | b'L' | b'q' | b'Q' => self.number(),
                b'{' | b'=' | b'd' | b'D' | b'g' | b'G' | b'h' | b'H' | b'n' | b'N' | b'p'
                | b'P' | b'x' | b'z' | b'F' => {}
                _ => return None,
            }
        }
    }

    /// Zero, one or two addresses (`1`, `$`, `/re/I`, `\%re%`, `1,+3`, `0~4`).
    fn address(&mut self) -> Option<()> {
        for _ in 0..2 {
            match self.peek() {
                Some(b'0'..=b'9') => {
                    self.number();
                    if matches!(self.peek(), Some(b'~')) {
                        self.i += 1;
                        self.number();
                    }
                }
                Some(b'$') => self.i += 1,
                Some(b'+' | b'~') => {
                    self.i += 1;
                    self.number();
                }
                Some(b'/') => {
                    self.i += 1;
                    self.until(b'/')?;
                    self.regex_flags();
                }
                Some(b'\\') => {
                    self.i += 1;
                    let d = self.peek()?;
                    self.i += 1;
                    self.until(d)?;
                    self.regex_flags();
                }
                _ => return Some(()),
            }
            self.skip_blanks();
            if self.peek() != Some(b',') {
                return Some(());
            }
            self.i += 1;
            self.skip_blanks();
        }
        Some(())
    }

    fn regex_flags(&mut self) {
        while matches!(self.peek(), Some(b'I' | b'M')) {
            self.i += 1;
        }
    }

    fn number(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
    }

    fn label(&mut self) {
        while !matches!(self.peek(), None | Some(b';' | b'}')) {
            self.i += 1;
        }
    }

    fn delimiter(&mut self) -> Option<u8> {
        let d = self.peek()?;
        if matches!(d, b'\\' | b'\n' | b' ') {
            return None;
        }
        self.i += 1;
        Some(d)
    }

    /// Moves past the next unescaped `d`.
    fn until(&mut self, d: u8) -> Option<()> {
        loop {
            let c = self.peek()?;
            self.i += 1;
            if c == b'\\' {
                self.peek()?;
                self.i += 1;
            } else if c == d {
                return Some(());
            }
        }
    }

    /// After `s`: pattern, replacement, flags. True if the flags hold `e`.
    fn substitute(&mut self) -> Option<bool> {
        let d = self.delimiter()?;
        self.until(d)?;
        self.until(d)?;
        loop {
            match self.peek() {
                Some(b'e') => return Some(true),
                Some(b'w') => return Some(false),
                Some(b'g' | b'p' | b'i' | b'I' | b'm' | b'M' | b'0'..=b'9') => self.i += 1,
                None | Some(b';' | b'}' | b' ' | b'\t') => return Some(false),
                Some(_) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::runs_command;

    #[test]
    fn finds_e_and_s_e_and_passes_ordinary_scripts() {
        for s in [
            "e id",
            "e",
            "1e id",
            "/x/e id",
            "s/a/id/e",
            "s|a|id|ge",
            "s/a/b/;e id",
            "1,3{s/a/b/;e}",
            "$!e id",
            "\\%x%e",
            "s/a\\/b/c/e",
            "y/ab/cd/;e",
            "s/a/b/x",
            "k",
        ] {
            assert!(runs_command(s), "{s:?}");
        }
        for s in [
            "1,5p",
            "s/a/b/g",
            "s/e/E/2",
            "/error/d",
            "$d",
            "s/a/b/w /dev/stdout",
            "1~2p",
            "/start/,/end/p",
            "y/abc/xyz/",
            "a text with e",
            "s/x/e/;s/y/z/I",
            "n;d",
            ":a;N;ba",
            "",
        ] {
            assert!(!runs_command(s), "{s:?}");
        }
    }
}
