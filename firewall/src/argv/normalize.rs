//! Reading one argv against one structured rule: the normalised argv, or
//! why the rule does not match.

use std::collections::BTreeMap;

use super::config::{ArgvRule, Opt};
use crate::exec_options;

/// Why a structured rule does not admit an argv.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// argv\[0\] is not the rule's program (or a listed path).
    #[error("program is not {0}")]
    Program(String),
    /// The subcommand chain is missing or different.
    #[error("subcommand is not {0:?}")]
    Subcommand(Vec<String>),
    /// An option the rule does not list.
    #[error("option {0} is not allowed")]
    UnknownOption(String),
    /// An abbreviation that fits several known options.
    #[error("option {0} is ambiguous ({1})")]
    Ambiguous(String, String),
    /// A flag written with `=value`.
    #[error("option {0} takes no value")]
    FlagWithValue(String),
    /// A value-taking option at the end of the argv.
    #[error("option {0} needs a value")]
    MissingValue(String),
    /// A value that does not match the option's pattern.
    #[error("value of {0} does not match its pattern")]
    BadValue(String),
    /// A positional argument no `args` pattern admits.
    #[error("argument {0:?} matches no args pattern")]
    BadArgument(String),
    /// Too few or too many positional arguments.
    #[error("{got} positional arguments, allowed {min}..={max}")]
    ArgCount {
        /// Given.
        got: usize,
        /// `min_args`.
        min: usize,
        /// `max_args`.
        max: usize,
    },
}

struct Reader<'a> {
    rule: &'a ArgvRule,
    argv: &'a [String],
    i: usize,
    out: Vec<String>,
}

impl ArgvRule {
    /// Whether this rule is about `program` (argv\[0\]).
    pub(crate) fn names(&self, program: &str) -> bool {
        program == self.program || self.paths.iter().any(|p| p == program)
    }

    /// The normalised argv (`git log --max-count=5 --oneline -- HEAD`), or
    /// why this rule does not admit `argv`.
    pub(crate) fn normalize(&self, argv: &[String]) -> Result<Vec<String>, Mismatch> {
        let first = argv.first().map(String::as_str).unwrap_or_default();
        if !self.names(first) {
            return Err(Mismatch::Program(self.program.clone()));
        }
        let mut r = Reader {
            rule: self,
            argv,
            i: 1,
            out: vec![first.to_owned()],
        };
        let mut chain = 0;
        let mut positionals: Vec<&String> = Vec::new();
        let mut options_done = false;
        while let Some(a) = argv.get(r.i) {
            r.i += 1;
            let in_chain = chain < self.subcommand.len();
            if options_done || a == "-" || !a.starts_with('-') {
                if in_chain {
                    if *a != self.subcommand[chain] {
                        return Err(Mismatch::Subcommand(self.subcommand.clone()));
                    }
                    r.out.push(a.clone());
                    chain += 1;
                } else {
                    positionals.push(a);
                }
            } else if a == "--" {
                if in_chain {
                    return Err(Mismatch::Subcommand(self.subcommand.clone()));
                }
                options_done = true;
            } else {
                let table = if in_chain {
                    &self.global
                } else {
                    &self.options
                };
                r.option(a, table)?;
            }
        }
        if chain < self.subcommand.len() {
            return Err(Mismatch::Subcommand(self.subcommand.clone()));
        }
        self.check_positionals(&positionals)?;
        if !positionals.is_empty() {
            r.out.push("--".to_owned());
            r.out.extend(positionals.into_iter().cloned());
        }
        Ok(r.out)
    }

    fn check_positionals(&self, positionals: &[&String]) -> Result<(), Mismatch> {
        let got = positionals.len();
        if got < self.min_args || got > self.max_args {
            return Err(Mismatch::ArgCount {
                got,
                min: self.min_args,
                max: self.max_args,
            });
        }
        match positionals
            .iter()
            .find(|p| !self.args.iter().any(|re| re.is_match(p)))
        {
            Some(p) => Err(Mismatch::BadArgument((*p).clone())),
            None => Ok(()),
        }
    }

    /// The option `name` (as written, maybe abbreviated) resolves to.
    fn resolve<'t>(
        &self,
        name: &str,
        table: &'t BTreeMap<String, Opt>,
    ) -> Result<(&'t str, &'t Opt), Mismatch> {
        if let Some((k, v)) = table.get_key_value(name) {
            return Ok((k.as_str(), v));
        }
        if self.single_dash_long || !self.abbreviations || !name.starts_with("--") {
            return Err(Mismatch::UnknownOption(name.to_owned()));
        }
        let mut known: Vec<&str> = self
            .global
            .keys()
            .chain(self.options.keys())
            .map(String::as_str)
            .chain(exec_options::known_long(&self.program).map(|k| -> &str { k }))
            .filter(|k| k.starts_with(name))
            .collect();
        known.sort_unstable();
        known.dedup();
        match known.as_slice() {
            [one] => table
                .get_key_value(*one)
                .map(|(k, v)| (k.as_str(), v))
                .ok_or_else(|| match *one == name {
                    true => Mismatch::UnknownOption(name.to_owned()),
                    false => Mismatch::UnknownOption(format!("{name} (= {one})")),
                }),
            [] => Err(Mismatch::UnknownOption(name.to_owned())),
            many => Err(Mismatch::Ambiguous(name.to_owned(), many.join(", "))),
        }
    }
}

impl Reader<'_> {
    fn next_value(&mut self, name: &str) -> Result<String, Mismatch> {
        let v = self
            .argv
            .get(self.i)
            .ok_or_else(|| Mismatch::MissingValue(name.to_owned()))?;
        self.i += 1;
        Ok(v.clone())
    }

    /// One option word (`--name[=v]`, `-abc`, or `-word` whole).
    fn option(&mut self, a: &str, table: &BTreeMap<String, Opt>) -> Result<(), Mismatch> {
        let rule = self.rule;
        if a.starts_with("--") || rule.single_dash_long {
            let (name, attached) = match a.split_once('=') {
                Some((n, v)) if !rule.single_dash_long || a.starts_with("--") => (n, Some(v)),
                _ => (a, None),
            };
            let (canonical, opt) = rule.resolve(name, table)?;
            return match (opt, attached) {
                (Opt::Flag, Some(_)) => Err(Mismatch::FlagWithValue(canonical.to_owned())),
                (Opt::Flag, None) => {
                    self.out.push(canonical.to_owned());
                    Ok(())
                }
                (Opt::Value(re), v) => {
                    let v = match v {
                        Some(v) => v.to_owned(),
                        None => self.next_value(canonical)?,
                    };
                    check_value(canonical, re.as_ref(), &v)?;
                    self.out.push(format!("{canonical}={v}"));
                    Ok(())
                }
            };
        }
        for (i, c) in a.char_indices().skip(1) {
            let name = format!("-{c}");
            let (canonical, opt) = rule.resolve(&name, table)?;
            if let Opt::Value(re) = opt {
                let rest = &a[i + c.len_utf8()..];
                let v = if rest.is_empty() {
                    self.next_value(canonical)?
                } else {
                    rest.to_owned()
                };
                check_value(canonical, re.as_ref(), &v)?;
                self.out.push(canonical.to_owned());
                self.out.push(v);
                return Ok(());
            }
            self.out.push(canonical.to_owned());
        }
        Ok(())
    }
}

fn check_value(name: &str, re: Option<&regex::Regex>, value: &str) -> Result<(), Mismatch> {
    match re {
        Some(re) if !re.is_match(value) => Err(Mismatch::BadValue(name.to_owned())),
        _ => Ok(()),
    }
}
