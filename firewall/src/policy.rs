//! One command policy: the plain config data and its compiled form.
//!
//! `compile` turns a [`PolicyConfig`] (as the signer's config reader builds it)
//! into a [`CompiledPolicy`] whose regexes are already built, reporting every
//! problem with its config path. After that point a policy cannot hold a bad
//! pattern.

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::argv::{ArgvRule, ArgvRuleConfig, compile_rules};
use crate::error::PolicyError;

/// Upper bound on one compiled pattern. The `regex` crate matches in linear
/// time; this only stops a pathological pattern from taking memory at load.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// How a policy's `allow` list is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every simple command must match an `allow` rule (and no `deny` rule).
    Allowlist,
    /// Anything not matched by a `deny` rule passes.
    Denylist,
    /// The policy does nothing. Upstream also spells this as an empty string.
    #[default]
    #[serde(alias = "")]
    Off,
}

/// Whether a policy's verdicts are applied or only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Refusals refuse.
    #[default]
    #[serde(alias = "")]
    Enforce,
    /// Refusals become warnings on an allowed decision.
    Audit,
}

/// A command policy as written in config (`command_policy` on a host, or an
/// entry of the `command_policies` library). Plain data: nothing is checked
/// until [`compile`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// `allowlist`, `denylist` or `off` (the default).
    pub mode: Mode,
    /// Regexes a command must match in allowlist mode (unanchored, like
    /// upstream; write `^…$` to anchor).
    pub allow: Vec<String>,
    /// Structured allow rules (program, subcommand, options, arguments);
    /// see [`crate::argv`]. Allowlist mode only.
    pub allow_argv: Vec<ArgvRuleConfig>,
    /// Regexes that refuse a command in any active mode.
    pub deny: Vec<String>,
    /// Regexes that make an otherwise allowed command wait for approval.
    pub require_approval: Vec<String>,
    /// Judge each simple command on its shell AST. Absent means on.
    pub shell_parse: Option<bool>,
    /// `enforce` (default) or `audit`.
    pub enforcement: Enforcement,
}

/// A pattern and the regex built from it.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) pattern: String,
    pub(crate) regex: Regex,
}

/// A policy whose patterns all compiled. Build it with [`compile`].
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub(crate) mode: Mode,
    pub(crate) allow: Vec<Rule>,
    pub(crate) allow_argv: Vec<ArgvRule>,
    pub(crate) deny: Vec<Rule>,
    pub(crate) require_approval: Vec<Rule>,
    pub(crate) shell_parse: bool,
    pub(crate) enforcement: Enforcement,
}

impl CompiledPolicy {
    /// The policy's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the policy restricts anything (its mode is not `off`).
    pub fn is_active(&self) -> bool {
        self.mode != Mode::Off
    }
}

/// Compiles one policy. `path` is where it sits in config, such as
/// `hosts.web01.command_policy` or `command_policies.readonly`; errors name
/// entries below it (`…allow[2]`). All problems are reported, not just the
/// first.
///
/// Rules: `deny` and `require_approval` count in both active modes; `allow`
/// counts only in allowlist mode, so `allow` entries on a denylist are an
/// error rather than silently ignored. A policy in mode `off` must carry no
/// rules. Unlike upstream, an allowlist may carry `deny` entries: deny always
/// wins, so they narrow the allowlist.
pub fn compile(cfg: &PolicyConfig, path: &str) -> Result<CompiledPolicy, Vec<PolicyError>> {
    let mut errors = Vec::new();
    if cfg.mode == Mode::Off {
        for (list, empty) in [
            ("allow", cfg.allow.is_empty()),
            ("allow_argv", cfg.allow_argv.is_empty()),
            ("deny", cfg.deny.is_empty()),
            ("require_approval", cfg.require_approval.is_empty()),
        ] {
            if !empty {
                errors.push(PolicyError::RulesWhenOff {
                    path: path.to_owned(),
                    list,
                });
            }
        }
    }
    for (list, empty) in [
        ("allow", cfg.allow.is_empty()),
        ("allow_argv", cfg.allow_argv.is_empty()),
    ] {
        if cfg.mode == Mode::Denylist && !empty {
            errors.push(PolicyError::AllowInDenylist {
                path: format!("{path}.{list}"),
            });
        }
    }
    if !cfg.allow_argv.is_empty() && cfg.shell_parse == Some(false) {
        errors.push(PolicyError::InvalidArgvRule {
            path: format!("{path}.allow_argv"),
            reason: "structured rules need shell_parse (they match decoded words)".into(),
        });
    }
    let allow = compile_list(&cfg.allow, &format!("{path}.allow"), &mut errors);
    let allow_argv = compile_rules(&cfg.allow_argv, &format!("{path}.allow_argv"), &mut errors);
    let deny = compile_list(&cfg.deny, &format!("{path}.deny"), &mut errors);
    let require_approval = compile_list(
        &cfg.require_approval,
        &format!("{path}.require_approval"),
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(CompiledPolicy {
        mode: cfg.mode,
        allow,
        allow_argv,
        deny,
        require_approval,
        shell_parse: cfg.shell_parse.unwrap_or(true),
        enforcement: cfg.enforcement,
    })
}

fn compile_list(patterns: &[String], path: &str, errors: &mut Vec<PolicyError>) -> Vec<Rule> {
    let mut rules = Vec::with_capacity(patterns.len());
    for (i, pattern) in patterns.iter().enumerate() {
        let entry = format!("{path}[{i}]");
        if pattern.trim().is_empty() {
            errors.push(PolicyError::EmptyPattern { path: entry });
            continue;
        }
        match RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(regex) => rules.push(Rule {
                pattern: pattern.clone(),
                regex,
            }),
            Err(e) => errors.push(PolicyError::InvalidRegex {
                path: entry,
                pattern: pattern.clone(),
                reason: one_line(&e.to_string()),
            }),
        }
    }
    rules
}

/// The regex crate's messages span several lines with a caret diagram; config
/// errors are one line each.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ")
}
