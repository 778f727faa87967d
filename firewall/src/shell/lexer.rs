//! The gate: a strict, flat lexer for the only shell language we accept.
//!
//! Grammar (blanks are space and tab; nothing else separates words):
//!
//! ```text
//! line     := blank* pipeline ( op pipeline )* [ ';' ] blank*
//! op       := ';' | '&&' | '||'
//! pipeline := command ( '|' command )*
//! command  := ( word | dup )+            -- at least one word
//! dup      := [digit] ( '>&' | '<&' ) blank* ( digit | '-' )
//! word     := ( plain | '\'' any* '\'' | '"' dq* '"' )+
//! plain    := A-Z a-z 0-9 % + , - . / : = @ _
//! dq       := any character but $ ` \ "
//! ```
//!
//! The first word of a command may not be a reserved word (`if`, `for`, …)
//! nor contain `=` (an assignment such as `PATH=/tmp/x ls`). Anything else is
//! refused with the construct it starts. The lexer is one loop over the
//! input with no recursion, so its cost is linear in the input whatever the
//! input holds.

use super::chars::{is_plain, quoted_ok};
use super::{Construct, MAX_COMMAND_BYTES, MAX_SIMPLE_COMMANDS, MAX_WORDS, ParseRejection};

/// Words that change the grammar when they start a command, in dash or bash.
const RESERVED: &[&str] = &[
    "if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for",
    "in", "select", "function", "time", "coproc", "{", "}", "!", "[[", "]]",
];

/// Splits `input` into the decoded argv of each simple command.
pub(crate) fn lex(input: &str) -> Result<Vec<Vec<String>>, ParseRejection> {
    if input.len() > MAX_COMMAND_BYTES {
        return Err(ParseRejection::new(
            Construct::TooLong,
            format!("{} bytes, limit {MAX_COMMAND_BYTES}", input.len()),
        ));
    }
    Lexer::new(input).run()
}

#[derive(Default)]
struct Word {
    text: String,
    started: bool,
    quoted: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Semi,
    And,
    Or,
    Pipe,
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    word: Word,
    argv: Vec<String>,
    commands: Vec<Vec<String>>,
    last_op: Option<Op>,
    words: usize,
    /// The current command has a redirection (so it is not empty text).
    redirected: bool,
}

fn reject(construct: Construct, detail: impl Into<String>) -> ParseRejection {
    ParseRejection::new(construct, detail)
}

impl Lexer {
    fn new(input: &str) -> Self {
        Self {
            chars: input.chars().collect(),
            pos: 0,
            word: Word::default(),
            argv: Vec::new(),
            commands: Vec::new(),
            last_op: None,
            words: 0,
            redirected: false,
        }
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn run(mut self) -> Result<Vec<Vec<String>>, ParseRejection> {
        while let Some(c) = self.peek_at(0) {
            match c {
                ' ' | '\t' => {
                    self.pos += 1;
                    self.end_word()?;
                }
                '\'' => self.single_quoted()?,
                '"' => self.double_quoted()?,
                '|' => {
                    self.end_word()?;
                    match self.peek_at(1) {
                        Some('|') => self.operator(2, Op::Or)?,
                        Some('&') => return Err(reject(Construct::PipeStderr, "`|&`")),
                        _ => self.operator(1, Op::Pipe)?,
                    }
                }
                '&' => {
                    self.end_word()?;
                    if self.peek_at(1) != Some('&') {
                        return Err(reject(
                            Construct::Background,
                            format!("`&` at {}", self.pos),
                        ));
                    }
                    self.operator(2, Op::And)?;
                }
                ';' => {
                    self.end_word()?;
                    if self.peek_at(1) == Some(';') {
                        return Err(reject(Construct::Syntax, "`;;`"));
                    }
                    self.operator(1, Op::Semi)?;
                }
                '<' | '>' => self.redirect(c)?,
                c if is_plain(c) => {
                    self.word.text.push(c);
                    self.word.started = true;
                    self.pos += 1;
                }
                c => return Err(self.unquoted(c)),
            }
        }
        self.end_word()?;
        self.finish()
    }

    /// Names the construct an unquoted character starts.
    fn unquoted(&self, c: char) -> ParseRejection {
        let at = format!("at char {}", self.pos);
        match c {
            '$' => dollar(self.peek_at(1), self.peek_at(2), &at),
            '`' => reject(Construct::CommandSubstitution, format!("backquote {at}")),
            '\\' => reject(Construct::Backslash, format!("`\\` {at}")),
            '(' => {
                let construct = if self.word.started {
                    Construct::FunctionDefinition
                } else if self.argv.is_empty() {
                    Construct::Subshell
                } else if self.argv.len() == 1 && self.next_nonblank(1) == Some(')') {
                    Construct::FunctionDefinition
                } else {
                    Construct::Syntax
                };
                reject(construct, format!("`(` {at}"))
            }
            ')' => reject(Construct::Subshell, format!("`)` {at}")),
            '{' | '}' => {
                let alone =
                    !self.word.started && matches!(self.peek_at(1), None | Some(' ' | '\t' | ';'));
                let construct = if alone {
                    Construct::BraceGroup
                } else {
                    Construct::BraceExpansion
                };
                reject(construct, format!("`{c}` {at}"))
            }
            '*' | '?' | '[' | ']' => reject(Construct::Glob, format!("`{c}` {at}")),
            '~' => reject(Construct::Tilde, format!("`~` {at}")),
            '#' => reject(Construct::Comment, format!("`#` {at}")),
            '!' => reject(Construct::Bang, format!("`!` {at}")),
            c if c.is_ascii_control() => reject(
                Construct::ControlChar,
                format!("U+{:04X} {at}", u32::from(c)),
            ),
            c if c.is_ascii() => reject(Construct::SpecialChar, format!("`{c}` {at}")),
            c => reject(
                Construct::NonAscii,
                format!("U+{:04X} outside quotes {at}", u32::from(c)),
            ),
        }
    }

    fn next_nonblank(&self, from: usize) -> Option<char> {
        self.chars[(self.pos + from).min(self.chars.len())..]
            .iter()
            .copied()
            .find(|c| !matches!(c, ' ' | '\t'))
    }

    fn single_quoted(&mut self) -> Result<(), ParseRejection> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek_at(0) {
                None => {
                    return Err(reject(
                        Construct::UnterminatedQuote,
                        format!("`'` at char {start}"),
                    ));
                }
                Some('\'') => break,
                Some(c) => {
                    self.quoted_char(c)?;
                    self.word.text.push(c);
                }
            }
            self.pos += 1;
        }
        self.pos += 1;
        self.word.started = true;
        self.word.quoted = true;
        Ok(())
    }

    fn double_quoted(&mut self) -> Result<(), ParseRejection> {
        let start = self.pos;
        self.pos += 1;
        loop {
            let at = format!("inside double quotes at char {}", self.pos);
            match self.peek_at(0) {
                None => {
                    return Err(reject(
                        Construct::UnterminatedQuote,
                        format!("`\"` at char {start}"),
                    ));
                }
                Some('"') => break,
                Some('$') => return Err(dollar(self.peek_at(1), self.peek_at(2), &at)),
                Some('`') => {
                    return Err(reject(
                        Construct::CommandSubstitution,
                        format!("backquote {at}"),
                    ));
                }
                Some('\\') => return Err(reject(Construct::Backslash, format!("`\\` {at}"))),
                Some(c) => {
                    self.quoted_char(c)?;
                    self.word.text.push(c);
                }
            }
            self.pos += 1;
        }
        self.pos += 1;
        self.word.started = true;
        self.word.quoted = true;
        Ok(())
    }

    fn quoted_char(&self, c: char) -> Result<(), ParseRejection> {
        if quoted_ok(c) {
            return Ok(());
        }
        let construct = if c.is_control() {
            Construct::ControlChar
        } else {
            Construct::NonAscii
        };
        Err(reject(
            construct,
            format!("U+{:04X} inside quotes at char {}", u32::from(c), self.pos),
        ))
    }

    /// Handles `<` or `>` at `self.pos`. Only fd duplication passes.
    fn redirect(&mut self, c: char) -> Result<(), ParseRejection> {
        let at = format!("at char {}", self.pos);
        // A word of digits directly before the operator is its fd number in
        // POSIX; dash takes only one digit (`echo 10>&1` prints 10), bash any.
        let io_number = self.word.started
            && !self.word.quoted
            && !self.word.text.is_empty()
            && self.word.text.chars().all(|d| d.is_ascii_digit());
        if io_number {
            if self.word.text.len() > 1 {
                return Err(reject(
                    Construct::RedirectFd,
                    format!("fd `{}` {at}", self.word.text),
                ));
            }
            self.word = Word::default();
        } else {
            self.end_word()?;
        }
        let next = self.peek_at(1);
        match (c, next) {
            (_, Some('(')) => {
                return Err(reject(
                    Construct::ProcessSubstitution,
                    format!("`{c}(` {at}"),
                ));
            }
            ('<', Some('<')) => return Err(reject(Construct::HereDocument, format!("`<<` {at}"))),
            (_, Some('&')) => {}
            _ => return Err(reject(Construct::FileRedirect, format!("`{c}` {at}"))),
        }
        self.pos += 2;
        while matches!(self.peek_at(0), Some(' ' | '\t')) {
            self.pos += 1;
        }
        let target = self.peek_at(0);
        let after = self.peek_at(1);
        let target_ok = matches!(target, Some('0'..='9' | '-'));
        let ends = matches!(after, None | Some(' ' | '\t' | ';' | '|' | '&'));
        if !(target_ok && ends) {
            return Err(reject(
                Construct::FileRedirect,
                format!("`{c}&` not followed by a single fd digit or `-` {at}"),
            ));
        }
        self.pos += 1;
        self.redirected = true;
        Ok(())
    }

    fn end_word(&mut self) -> Result<(), ParseRejection> {
        if !self.word.started {
            return Ok(());
        }
        let word = std::mem::take(&mut self.word);
        if self.argv.is_empty() {
            if RESERVED.contains(&word.text.as_str()) {
                let construct = if word.text == "function" {
                    Construct::FunctionDefinition
                } else {
                    Construct::CompoundCommand
                };
                return Err(reject(construct, format!("reserved word `{}`", word.text)));
            }
            if word.text.contains('=') {
                return Err(reject(
                    Construct::Assignment,
                    format!("`{}` before the command", truncate(&word.text)),
                ));
            }
        }
        self.words += 1;
        if self.words > MAX_WORDS {
            return Err(reject(
                Construct::TooComplex,
                format!("more than {MAX_WORDS} words"),
            ));
        }
        self.argv.push(word.text);
        Ok(())
    }

    fn operator(&mut self, len: usize, op: Op) -> Result<(), ParseRejection> {
        if self.argv.is_empty() {
            return Err(reject(
                Construct::Syntax,
                format!("empty command before operator at char {}", self.pos),
            ));
        }
        self.pos += len;
        self.push_command()?;
        self.last_op = Some(op);
        Ok(())
    }

    fn push_command(&mut self) -> Result<(), ParseRejection> {
        self.redirected = false;
        self.commands.push(std::mem::take(&mut self.argv));
        if self.commands.len() > MAX_SIMPLE_COMMANDS {
            return Err(reject(
                Construct::TooComplex,
                format!("more than {MAX_SIMPLE_COMMANDS} simple commands"),
            ));
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<Vec<String>>, ParseRejection> {
        if !self.argv.is_empty() {
            self.push_command()?;
        } else if self.redirected {
            return Err(reject(Construct::Syntax, "redirection without a command"));
        } else if matches!(self.last_op, Some(Op::And | Op::Or | Op::Pipe)) {
            return Err(reject(Construct::Syntax, "operator at end of command"));
        }
        if self.commands.is_empty() {
            return Err(reject(Construct::Syntax, "no command"));
        }
        Ok(self.commands)
    }
}

/// Names what a `$` starts, given the two characters after it.
fn dollar(next: Option<char>, after: Option<char>, at: &str) -> ParseRejection {
    match (next, after) {
        (Some('('), Some('(')) => reject(Construct::ArithmeticExpansion, format!("`$((` {at}")),
        (Some('('), _) => reject(Construct::CommandSubstitution, format!("`$(` {at}")),
        (Some('\'' | '"'), _) => reject(Construct::DollarQuote, format!("`$'` or `$\"` {at}")),
        _ => reject(Construct::ParameterExpansion, format!("`$` {at}")),
    }
}

fn truncate(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Vec<Vec<String>> {
        lex(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn no(s: &str) -> Construct {
        match lex(s) {
            Ok(v) => panic!("{s:?} accepted as {v:?}"),
            Err(e) => e.construct,
        }
    }

    #[test]
    fn decodes_quotes_like_sh() {
        assert_eq!(ok("l''s \"-l\"a 'x y'"), vec![vec!["ls", "-la", "x y"]]);
        assert_eq!(
            ok("ps aux && kill -9 1"),
            vec![vec!["ps", "aux"], vec!["kill", "-9", "1"]]
        );
        assert_eq!(
            ok("a|b||c;d;"),
            vec![vec!["a"], vec!["b"], vec!["c"], vec!["d"]]
        );
        assert_eq!(ok("ls 2>&1 a2>&1 >&- x"), vec![vec!["ls", "a2", "x"]]);
        assert_eq!(ok("echo ''"), vec![vec!["echo", ""]]);
    }

    #[test]
    fn names_the_construct() {
        assert_eq!(no("echo 10>&1"), Construct::RedirectFd);
        assert_eq!(no("ls >&f"), Construct::FileRedirect);
        assert_eq!(no("ls >&1>&2"), Construct::FileRedirect);
        assert_eq!(no("f () { id; }"), Construct::FunctionDefinition);
        assert_eq!(no("ls (x)"), Construct::Syntax);
        assert_eq!(no("ls &&"), Construct::Syntax);
        assert_eq!(no("; ls"), Construct::Syntax);
        assert_eq!(no("if true"), Construct::CompoundCommand);
        assert_eq!(no("ls; >&2"), Construct::Syntax);
        assert_eq!(no(">&2; ls"), Construct::Syntax);
    }
}
