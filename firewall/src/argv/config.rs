//! `allow_argv` entries as written in config, and their compiled form.

use std::collections::BTreeMap;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::error::PolicyError;
use crate::shell::wrappers;

/// Upper bound on one compiled value or argument pattern.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One structured allow rule as written in config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArgvRuleConfig {
    /// Program name as argv\[0\] (no `/`).
    pub program: String,
    /// Absolute paths that also name the program (`/usr/bin/git`).
    pub paths: Vec<String>,
    /// Subcommand chain that must follow (`["log"]`, `["stash", "list"]`).
    pub subcommand: Vec<String>,
    /// Options allowed before the subcommand chain is complete.
    pub global_options: BTreeMap<String, OptionSpec>,
    /// Options allowed after the chain (or anywhere, without a chain).
    pub options: BTreeMap<String, OptionSpec>,
    /// Patterns for positional arguments; each must match one (whole word).
    pub args: Vec<String>,
    /// Fewest positional arguments (default 0).
    pub min_args: Option<usize>,
    /// Most positional arguments (default: unbounded if `args` is set).
    pub max_args: Option<usize>,
    /// Read `-name` as one option name rather than bundled letters.
    pub single_dash_long: bool,
    /// Resolve abbreviated long options (`--max` → `--max-count`), as GNU
    /// getopt does. Absent means yes; `false` refuses them.
    pub abbreviations: Option<bool>,
}

/// What an option takes: `"flag"`, `"value"` (any), or `{"value": "re"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OptionSpec {
    /// `"flag"` or `"value"`.
    Simple(Arity),
    /// A value matching the pattern (whole word).
    Pattern(ValuePattern),
}

/// `"flag"` or `"value"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arity {
    /// Takes no value.
    Flag,
    /// Takes any value.
    Value,
}

/// `{"value": "<regex>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValuePattern {
    /// The pattern a value must match as a whole.
    pub value: String,
}

/// A compiled option: a flag, or a value with an optional pattern.
#[derive(Debug, Clone)]
pub(crate) enum Opt {
    Flag,
    Value(Option<Regex>),
}

/// A compiled `allow_argv` entry.
#[derive(Debug, Clone)]
pub(crate) struct ArgvRule {
    pub(crate) program: String,
    pub(crate) paths: Vec<String>,
    pub(crate) subcommand: Vec<String>,
    pub(crate) global: BTreeMap<String, Opt>,
    pub(crate) options: BTreeMap<String, Opt>,
    pub(crate) args: Vec<Regex>,
    pub(crate) min_args: usize,
    pub(crate) max_args: usize,
    pub(crate) single_dash_long: bool,
    pub(crate) abbreviations: bool,
}

impl ArgvRule {
    /// `git log`, `tar`: how the rule is named in `matched_rule`.
    pub(crate) fn label(&self) -> String {
        let mut out = self.program.clone();
        for s in &self.subcommand {
            out.push(' ');
            out.push_str(s);
        }
        out
    }
}

/// Compiles every entry, reporting each problem with its path
/// (`…allow_argv[0].options["-n"]`).
pub(crate) fn compile_rules(
    rules: &[ArgvRuleConfig],
    path: &str,
    errors: &mut Vec<PolicyError>,
) -> Vec<ArgvRule> {
    let mut out = Vec::new();
    for (i, cfg) in rules.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let before = errors.len();
        let rule = compile_one(cfg, &at, errors);
        if errors.len() == before {
            out.push(rule);
        }
    }
    out
}

fn bad(errors: &mut Vec<PolicyError>, path: String, reason: impl Into<String>) {
    errors.push(PolicyError::InvalidArgvRule {
        path,
        reason: reason.into(),
    });
}

fn compile_one(cfg: &ArgvRuleConfig, at: &str, errors: &mut Vec<PolicyError>) -> ArgvRule {
    let program = cfg.program.as_str();
    if program.is_empty() || program.contains(['/', ' ', '\t', '=']) {
        bad(
            errors,
            format!("{at}.program"),
            "must be a program name without '/' or blanks",
        );
    } else if let Some(w) = wrappers::lookup(program) {
        let reason = format!(
            "{} runs other commands and is refused before any rule",
            w.name
        );
        bad(errors, format!("{at}.program"), reason);
    }
    for (j, p) in cfg.paths.iter().enumerate() {
        if !p.starts_with('/') || p.rsplit('/').next() != Some(program) {
            let reason = format!("{p:?} is not an absolute path ending in /{program}");
            bad(errors, format!("{at}.paths[{j}]"), reason);
        }
    }
    for (j, s) in cfg.subcommand.iter().enumerate() {
        if s.is_empty() || s.starts_with('-') {
            bad(
                errors,
                format!("{at}.subcommand[{j}]"),
                "must be a word not starting with '-'",
            );
        }
    }
    let single = cfg.single_dash_long;
    let global = options(
        &cfg.global_options,
        &format!("{at}.global_options"),
        single,
        errors,
    );
    let opts = options(&cfg.options, &format!("{at}.options"), single, errors);
    if cfg.subcommand.is_empty() && !cfg.global_options.is_empty() {
        bad(
            errors,
            format!("{at}.global_options"),
            "only means something with a subcommand; use options",
        );
    }
    let (args, min_args, max_args) = positionals(cfg, at, errors);
    ArgvRule {
        program: program.to_owned(),
        paths: cfg.paths.clone(),
        subcommand: cfg.subcommand.clone(),
        global,
        options: opts,
        args,
        min_args,
        max_args,
        single_dash_long: single,
        abbreviations: cfg.abbreviations.unwrap_or(true),
    }
}

/// `args`, `min_args`, `max_args`: the patterns and the count bounds.
fn positionals(
    cfg: &ArgvRuleConfig,
    at: &str,
    errors: &mut Vec<PolicyError>,
) -> (Vec<Regex>, usize, usize) {
    let args: Vec<Regex> = cfg
        .args
        .iter()
        .enumerate()
        .filter_map(|(j, p)| anchored(p, format!("{at}.args[{j}]"), errors))
        .collect();
    let min_args = cfg.min_args.unwrap_or(0);
    let max_args = cfg
        .max_args
        .unwrap_or(if args.is_empty() { 0 } else { usize::MAX });
    if min_args > max_args {
        bad(errors, format!("{at}.min_args"), "is larger than max_args");
    }
    if max_args > 0 && args.is_empty() {
        bad(
            errors,
            format!("{at}.args"),
            "max_args allows positionals but no pattern admits one",
        );
    }
    (args, min_args, max_args)
}

fn options(
    specs: &BTreeMap<String, OptionSpec>,
    at: &str,
    single_dash_long: bool,
    errors: &mut Vec<PolicyError>,
) -> BTreeMap<String, Opt> {
    let mut out = BTreeMap::new();
    for (name, spec) in specs {
        let path = format!("{at}[{name:?}]");
        let long = name.len() > 2 && name.starts_with("--");
        let short = name.len() == 2 && name.starts_with('-') && name != "--";
        let word = single_dash_long && name.len() > 1 && name.starts_with('-') && name != "--";
        let clean = !name.contains(['=', ' ', '\t']) && name.is_ascii();
        if !(long || short || word) || !clean {
            bad(
                errors,
                path,
                "must be --long, -x (or -word with single_dash_long), without '='",
            );
            continue;
        }
        let opt = match spec {
            OptionSpec::Simple(Arity::Flag) => Opt::Flag,
            OptionSpec::Simple(Arity::Value) => Opt::Value(None),
            OptionSpec::Pattern(p) => match anchored(&p.value, path, errors) {
                Some(re) => Opt::Value(Some(re)),
                None => continue,
            },
        };
        out.insert(name.clone(), opt);
    }
    out
}

/// `^(?:pattern)$`, or an error at `path`.
fn anchored(pattern: &str, path: String, errors: &mut Vec<PolicyError>) -> Option<Regex> {
    if pattern.is_empty() {
        bad(
            errors,
            path,
            "empty pattern; write the values you mean (\".*\" for any)",
        );
        return None;
    }
    match RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
    {
        Ok(re) => Some(re),
        Err(e) => {
            let reason = format!(
                "invalid regex {pattern:?}: {}",
                e.to_string().lines().last().unwrap_or("")
            );
            bad(errors, path, reason);
            None
        }
    }
}
