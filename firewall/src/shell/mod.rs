//! Shell parsing: from a command string to the argv of each simple command,
//! exactly as `/bin/sh -c` will run them, or a refusal naming the construct.
//!
//! Two independent parsers look at every command and must agree:
//!
//! 1. The gate (`lexer.rs`), a strict lexer written for this crate. It accepts only a tiny,
//!    flat language (words of literal and quoted text, `|`, `&&`, `||`, `;`
//!    and fd duplication) and names the first construct outside it. It runs
//!    in one linear pass with no recursion, so hostile input (deep nesting,
//!    100 KB strings) costs microseconds and never reaches anything deeper.
//! 2. The cross-check (`crosscheck.rs`): the real POSIX/bash parser `brush-parser`, run in sh
//!    mode on what the gate accepted. Its AST is walked with an allowlist of
//!    node kinds and its words are decoded by its own word parser.
//!
//! If the two argv lists differ in any byte, the command is refused
//! (`parser_disagreement`): a construct one parser reads differently from the
//! other is exactly the kind an attacker would use, and dash and bash (both
//! ship as `/bin/sh`) differ in places such as `echo 10>&1`. Finally the
//! [`wrappers`] table refuses programs that hide another command.
//!
//! # Parser choice
//!
//! The design card named `conch-parser`. Its last release (0.1.1, 2017)
//! builds on Rust 1.95 only with a future-incompatibility warning and fails
//! to parse `cat <(ls)`, so it cannot tell a process substitution from a
//! syntax error. `brush-parser` 0.4 (MIT, maintained) has an sh mode and a
//! distinct AST node for every construct we refuse; `yash-syntax` is
//! GPL-3.0. So brush-parser is the parser. It still sits behind the gate
//! because it is a bash parser (it reads `echo 10>&1` as a redirect where
//! dash passes `10` as an argument), it recurses (deep nesting would cost
//! stack), and it allows `unwrap` internally (hence `catch_unwind`). The gate
//! keeps every input brush sees flat and bounded, and the comparison makes
//! any remaining disagreement a refusal rather than a bypass.
//!
//! # Layout
//! - `lexer.rs`: the gate and its grammar.
//! - `crosscheck.rs`: the brush-parser walk.
//! - `wrappers.rs`: the table of command-hiding programs and options.
//! - `chars.rs`: which characters may appear where.

mod chars;
mod crosscheck;
mod lexer;
pub mod wrappers;

use serde::{Deserialize, Serialize};

pub use chars::{Invisible, first_invisible};

/// Inputs longer than this are refused before parsing (`too_long`).
pub const MAX_COMMAND_BYTES: usize = 128 * 1024;
/// At most this many simple commands in one command line (`too_complex`).
pub const MAX_SIMPLE_COMMANDS: usize = 256;
/// At most this many words across all simple commands (`too_complex`).
pub const MAX_WORDS: usize = 8192;

/// A construct the firewall refuses because it cannot judge it statically.
/// The snake_case name appears in `matched_rule` as `shell-parse:<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Construct {
    /// `$(…)` or backticks.
    CommandSubstitution,
    /// `<(…)` or `>(…)`.
    ProcessSubstitution,
    /// `$((…))`.
    ArithmeticExpansion,
    /// `$VAR`, `${…}`, `$1`, `$@`, or a lone `$`.
    ParameterExpansion,
    /// `$'…'` or `$"…"` (bash quoting that dash does not share).
    DollarQuote,
    /// Unquoted `*`, `?`, `[`, `]`.
    Glob,
    /// Unquoted `{` or `}` inside a word (bash brace expansion).
    BraceExpansion,
    /// Unquoted `~`.
    Tilde,
    /// A backslash anywhere outside single quotes.
    Backslash,
    /// Redirection to or from a file (`>`, `>>`, `<`, `<>`, `>|`, `&>`, `>&file`).
    FileRedirect,
    /// A file-descriptor number dash and bash read differently (`10>&1`).
    RedirectFd,
    /// `<<`, `<<-`, `<<<`.
    HereDocument,
    /// `( … )`.
    Subshell,
    /// `{ …; }`.
    BraceGroup,
    /// A trailing or separating `&`.
    Background,
    /// `f() { … }` or `function f`.
    FunctionDefinition,
    /// `if`, `while`, `for`, `case`, `until`, `select`, `[[ ]]`, `time`, `coproc` …
    CompoundCommand,
    /// `NAME=value` before a command (could set `PATH`, `LD_PRELOAD` …).
    Assignment,
    /// Unquoted `#`.
    Comment,
    /// Unquoted `!` (pipeline negation, history expansion).
    Bang,
    /// `|&` (bash: pipe stderr too).
    PipeStderr,
    /// An unquoted ASCII character with no safe literal meaning (`^`).
    SpecialChar,
    /// Non-ASCII outside quotes (fullwidth `；`, look-alike quotes and
    /// dashes …), in a program name or option name even when quoted
    /// (`'cаt'`), or a non-ASCII space inside quotes.
    NonAscii,
    /// A control character (other than tab).
    ControlChar,
    /// An invisible or bidi/format character (U+202E, U+200B, U+3164 …).
    InvisibleChar,
    /// A quote that is never closed.
    UnterminatedQuote,
    /// Empty command, dangling operator, `;;`.
    Syntax,
    /// A program that runs another command (see [`wrappers::WRAPPERS`]).
    Wrapper,
    /// An option that makes an ordinary program run a command (`find -exec`).
    ExecOption,
    /// Input over [`MAX_COMMAND_BYTES`].
    TooLong,
    /// More than [`MAX_SIMPLE_COMMANDS`] or [`MAX_WORDS`].
    TooComplex,
    /// brush-parser refused input the gate accepted.
    Unparseable,
    /// The gate and brush-parser decoded different argv.
    ParserDisagreement,
}

impl Construct {
    /// The snake_case name used in `shell-parse:<name>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CommandSubstitution => "command_substitution",
            Self::ProcessSubstitution => "process_substitution",
            Self::ArithmeticExpansion => "arithmetic_expansion",
            Self::ParameterExpansion => "parameter_expansion",
            Self::DollarQuote => "dollar_quote",
            Self::Glob => "glob",
            Self::BraceExpansion => "brace_expansion",
            Self::Tilde => "tilde",
            Self::Backslash => "backslash",
            Self::FileRedirect => "file_redirect",
            Self::RedirectFd => "redirect_fd",
            Self::HereDocument => "here_document",
            Self::Subshell => "subshell",
            Self::BraceGroup => "brace_group",
            Self::Background => "background",
            Self::FunctionDefinition => "function_definition",
            Self::CompoundCommand => "compound_command",
            Self::Assignment => "assignment",
            Self::Comment => "comment",
            Self::Bang => "bang",
            Self::PipeStderr => "pipe_stderr",
            Self::SpecialChar => "special_char",
            Self::NonAscii => "non_ascii",
            Self::ControlChar => "control_char",
            Self::InvisibleChar => "invisible_char",
            Self::UnterminatedQuote => "unterminated_quote",
            Self::Syntax => "syntax",
            Self::Wrapper => "wrapper",
            Self::ExecOption => "exec_option",
            Self::TooLong => "too_long",
            Self::TooComplex => "too_complex",
            Self::Unparseable => "unparseable",
            Self::ParserDisagreement => "parser_disagreement",
        }
    }
}

/// Why shell parsing refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shell parsing refused the command: {} ({detail})", construct.as_str())]
pub struct ParseRejection {
    /// The refused construct.
    pub construct: Construct,
    /// What exactly was found, for humans (`$(` at byte 4, `sudo`, …).
    pub detail: String,
}

impl ParseRejection {
    pub(crate) fn new(construct: Construct, detail: impl Into<String>) -> Self {
        Self {
            construct,
            detail: detail.into(),
        }
    }

    /// The `matched_rule` string: `shell-parse:<construct>`, with the program
    /// name for wrappers (`shell-parse:wrapper:sudo`).
    pub fn rule(&self) -> String {
        match self.construct {
            Construct::Wrapper | Construct::ExecOption => {
                format!("shell-parse:{}:{}", self.construct.as_str(), self.detail)
            }
            other => format!("shell-parse:{}", other.as_str()),
        }
    }
}

/// Parses `command` into the decoded argv of each simple command, in order,
/// or refuses it. Words are decoded as `/bin/sh` (dash, or bash as sh) will
/// see them: quotes removed, so `l''s` and `"l"s` both give `ls`.
///
/// Accepted: words made of `A–Z a–z 0–9 % + , - . / : = @ _`, single-quoted
/// text, double-quoted text without `$`, backquote or backslash; blanks
/// (space, tab); `|`, `&&`, `||`, `;` (also trailing); fd duplication
/// `[d]>&d`, `[d]<&d`, `[d]>&-` with single-digit fds. Everything else is
/// refused with the [`Construct`] found first, and so is any command whose
/// program is in the [`wrappers`] table.
pub fn parse_simple_commands(command: &str) -> Result<Vec<Vec<String>>, ParseRejection> {
    if let Some(found) = first_invisible(command) {
        let construct = match found {
            Invisible::Control(_) => Construct::ControlChar,
            Invisible::Format(_) => Construct::InvisibleChar,
        };
        return Err(ParseRejection::new(construct, found.describe()));
    }
    let gate = lexer::lex(command)?;
    let parsed = crosscheck::parse(command)?;
    if gate != parsed {
        return Err(ParseRejection::new(
            Construct::ParserDisagreement,
            "the strict lexer and brush-parser decoded different words",
        ));
    }
    for argv in &gate {
        chars::check_names(argv)?;
        wrappers::check(argv)?;
    }
    Ok(gate)
}

/// Renders one argv as the string the policy regexes see.
///
/// Words are joined by single spaces. A word made only of
/// `A–Z a–z 0–9 % + , - . / : = @ _` is written as is; any other word
/// (empty, or containing a space, quote, non-ASCII letter, …) is written in
/// single quotes, with each `'` in it as `'"'"'`. So `l''s "-la"` renders as
/// `ls -la`, `grep 'a b' f` as `grep 'a b' f`, and `echo "it's"` as
/// `echo 'it'"'"'s'`: a word that holds a space can never pass for two words,
/// and the rendering is itself a command this parser accepts and that runs
/// the same argv.
pub fn render(argv: &[String]) -> String {
    let mut out = String::new();
    for (i, word) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if !word.is_empty() && word.chars().all(chars::is_plain) {
            out.push_str(word);
        } else {
            push_single_quoted(&mut out, word, "'\"'\"'");
        }
    }
    out
}

/// Appends `word` in single quotes, writing each `'` as `quote`.
fn push_single_quoted(out: &mut String, word: &str, quote: &str) {
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str(quote);
        } else {
            out.push(c);
        }
    }
    out.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signer decides on async worker threads (2 MiB stacks). The gate
    /// caps commands and words, so the worst input brush-parser ever sees
    /// must parse on a much smaller stack.
    #[test]
    fn worst_accepted_input_fits_a_small_stack() {
        let inputs = [
            vec!["a"; MAX_SIMPLE_COMMANDS].join(" | "),
            vec!["a"; MAX_SIMPLE_COMMANDS].join(" && "),
            vec!["a"; MAX_SIMPLE_COMMANDS].join(";"),
            format!("a {}", vec!["'b'\"c\"d"; MAX_WORDS - 1].join(" ")),
            format!("a {}", "2>&1 ".repeat(5000)),
        ];
        for input in inputs {
            let handle = std::thread::Builder::new()
                .stack_size(512 * 1024)
                .spawn(move || parse_simple_commands(&input).map(|c| c.len()))
                .unwrap();
            assert!(handle.join().unwrap().is_ok());
        }
    }
}
