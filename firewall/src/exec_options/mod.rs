//! Options and subcommands with which an ordinary program runs another
//! command, refused (`exec_option`) even when an allow rule admits the
//! program.
//!
//! A regex over the command text cannot tell `git rebase -x id` from
//! `git clean -x`, nor see that GNU tar reads `--rs=id` as `--rsh-command=id`.
//! So every simple command whose program is in [`PROGRAMS`] is scanned word
//! by word the way the program's option parser reads it, and refused when a
//! row of [`ROWS`] fires. The scan is deliberately more suspicious than the
//! program:
//!
//! - a long option is refused when its name is an exec option **or any
//!   prefix of one** (GNU getopt, argp and git's parse-options all accept
//!   unambiguous abbreviations; an ambiguous one is an error in the program,
//!   so refusing it costs nothing), unless the name is itself a real option
//!   listed in [`Program::exact_long`] (`tar --checkpoint`);
//! - a short-option cluster is read letter by letter (`-xzf`, `-Oid`); it
//!   stops only at a letter listed in [`Program::value_short`], whose value
//!   is the rest of the word or the next word;
//! - `--` does not stop the scan: a word after it that looks like an exec
//!   option is still refused (a false positive, never a bypass);
//! - a value taken from the next word is still checked as an option too.
//!
//! # Extending the table
//! Add a [`Program`] to [`PROGRAMS`] (how its parser reads words) if it is
//! new, then a [`Row`] to [`ROWS`] with a [`Trigger`], its [`Scope`] (a
//! subcommand chain such as `["rebase"]`), and one line of why. Add a case to
//! the table test in `exec_options/tests.rs` (it fails when a row has none).
//! Rows marked `terminal_only` apply only when the request asks for a PTY
//! (pagers and editors whose `!` escape needs a terminal).
//!
//! # Layout
//! - `table.rs`: the data, [`PROGRAMS`] and [`ROWS`].
//! - `scan.rs`: reading one argv against them.
//! - `sed.rs`: finding the `e` command and `s///e` in a sed script.

mod scan;
mod sed;
mod table;
#[cfg(test)]
mod tests;

pub use table::{PROGRAMS, ROWS};

/// How a program's parser reads its words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// GNU getopt style: `--long[=v]`, short clusters, words in any order.
    Getopt,
    /// Getopt, and a first word without `-` is a cluster of short options
    /// whose values are the following words (`tar xIf a prog`).
    OldStyleFirst,
    /// Every word is compared whole (`find -exec`, `ip -batch`).
    Words,
}

/// How one program in the table parses its arguments.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    /// Basename of the program.
    pub name: &'static str,
    /// How words are read.
    pub style: Style,
    /// Short options that take a value (the rest of the cluster or the
    /// next word). List only letters that always take one.
    pub value_short: &'static str,
    /// Short options that take a value only before the first positional
    /// word (git's `-C dir`, `-c key=value`; after the subcommand `-c` is
    /// a flag of `git log`).
    pub global_value_short: &'static str,
    /// Short options that take an optional value, attached only
    /// (`sed -i.bak`); a bare one never takes the next word.
    pub optional_short: &'static str,
    /// Long options that take their value from the next word when written
    /// without `=`. Only needed where that value could be mistaken for a
    /// subcommand (`git --git-dir x`).
    pub value_long: &'static [&'static str],
    /// Real long options that are prefixes of an exec option and must not
    /// be read as its abbreviation (`tar --checkpoint`).
    pub exact_long: &'static [&'static str],
}

/// Where in the command line a row applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Anywhere.
    Any,
    /// Before the first positional word (git's own options).
    Global,
    /// After this subcommand chain (`["rebase"]`, `["bisect", "run"]`).
    Sub(&'static [&'static str]),
}

/// What makes a row fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A long option, also abbreviated (`--exec`, `--exe`, `--ex=`).
    Long(&'static str),
    /// A short option, alone or in a cluster (`-x`, `-ix`).
    Short(char),
    /// A short option whose value matches the (case-insensitive) regex.
    ShortValue(char, &'static str),
    /// A long option (also abbreviated) whose value matches the regex.
    LongValue(&'static str, &'static str),
    /// A whole word, or (for [`Style::Words`] programs that accept
    /// abbreviations) any prefix of it at least `min` bytes long.
    Word(&'static str, usize),
    /// A word starting with this text (`less +!cmd`).
    Starts(&'static str),
    /// The scope's subcommand chain itself (`git bisect run`).
    Subcommand,
    /// A positional word after the scope's chain matching the regex.
    Positional(&'static str),
    /// A sed script (the `-e` values, else the first positional) holding the
    /// `e` command or the `e` flag of `s`.
    SedScript,
    /// An awk program (the first positional) matching the regex.
    AwkProgram(&'static str),
    /// Every invocation.
    Program,
    /// Every invocation without one of these options (`--no-pager`).
    Unless(&'static [&'static str]),
}

/// One row: a program, where, what, and why it runs a command.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Basename of the program (a [`Program`] of that name must exist).
    pub program: &'static str,
    /// Where it applies.
    pub scope: Scope,
    /// What fires it.
    pub trigger: Trigger,
    /// Only when a terminal is attached (the request asks for a PTY).
    pub terminal_only: bool,
    /// One line: what it runs.
    pub why: &'static str,
}

impl Row {
    /// A stable, readable name: `git rebase --exec`, `tar -I`,
    /// `git bisect run`. Used in `matched_rule` as `exec-option:<id>`.
    pub fn id(&self) -> String {
        let mut out = String::from(self.program);
        if let Scope::Sub(chain) = self.scope {
            for c in chain {
                out.push(' ');
                out.push_str(c);
            }
        }
        let what = match self.trigger {
            Trigger::Long(n) => n.to_owned(),
            Trigger::Short(c) => format!("-{c}"),
            Trigger::ShortValue(c, _) => format!("-{c}=<exec>"),
            Trigger::LongValue(n, _) => format!("{n}=<exec>"),
            Trigger::Word(w, _) => w.to_owned(),
            Trigger::Starts(s) => format!("{s}…"),
            Trigger::Subcommand => return out,
            Trigger::Positional(_) => "<exec argument>".to_owned(),
            Trigger::SedScript => "<script with e>".to_owned(),
            Trigger::AwkProgram(_) => "<program with system>".to_owned(),
            Trigger::Program => return out,
            Trigger::Unless(opts) => format!("without {}", opts.join("/")),
        };
        out.push(' ');
        out.push_str(&what);
        out
    }
}

/// Whether the command runs with a terminal attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Context {
    /// The request asks for a PTY.
    pub terminal: bool,
}

/// A row that fired, and the word that fired it.
#[derive(Debug, Clone)]
pub struct ExecHit {
    /// The row.
    pub row: &'static Row,
    /// The word as written (`--rs=id`).
    pub word: String,
}

impl ExecHit {
    /// `exec-option:<row id>`.
    pub fn rule(&self) -> String {
        format!("exec-option:{}", self.row.id())
    }
}

/// The table entry for the program `argv[0]` names (by basename).
pub fn program(name: &str) -> Option<&'static Program> {
    let base = name.rsplit('/').next().unwrap_or(name);
    PROGRAMS.iter().find(|p| p.name == base)
}

/// Long option names the table knows for `program` (exec triggers and
/// exact options), for resolving abbreviations in structured rules.
pub fn known_long(program: &str) -> impl Iterator<Item = &'static str> + '_ {
    let exact = PROGRAMS
        .iter()
        .filter(move |p| p.name == program)
        .flat_map(|p| p.exact_long.iter().copied());
    let triggers = ROWS
        .iter()
        .filter(move |r| r.program == program)
        .filter_map(|r| match r.trigger {
            Trigger::Long(n) | Trigger::LongValue(n, _) => Some(n),
            _ => None,
        });
    exact.chain(triggers)
}

/// Checks one simple command's argv; the first row that fires, if any.
pub fn check(argv: &[String], ctx: Context) -> Option<ExecHit> {
    let first = argv.first()?;
    let prog = program(first)?;
    scan::scan(prog, &argv[1..], ctx)
}
