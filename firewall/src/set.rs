//! Composition of policies into one [`PolicySet`] and the decision itself.

use regex::{RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};

use crate::argv::ArgvRule;
use crate::decision::{Decision, ReasonCode};
use crate::exec_options::Context;
use crate::judge::{CommandExplanation, JudgedCommand, Simple};
use crate::policy::{CompiledPolicy, Enforcement, Mode, Rule};
use crate::shell::{self, Invisible, first_invisible};

/// Size limit for the combined matcher of one rule list. If a list is too big
/// for one automaton, its rules are tried one by one instead.
const SET_SIZE_LIMIT: usize = 32 << 20;

/// Longest command text quoted in a decision message.
const MESSAGE_TEXT: usize = 120;

#[derive(Debug, Clone)]
pub(crate) struct SourcedRule {
    pub(crate) source: String,
    pub(crate) pattern: String,
    regex: regex::Regex,
}

/// A structured allow rule and the part it came from.
#[derive(Debug, Clone)]
pub(crate) struct SourcedArgv {
    pub(crate) source: String,
    pub(crate) rule: ArgvRule,
}

/// One kind of rule (deny, allow or approval) from all parts, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleList {
    rules: Vec<SourcedRule>,
    set: Option<RegexSet>,
}

impl RuleList {
    fn push(&mut self, source: &str, rules: &[Rule]) {
        self.rules.extend(rules.iter().map(|r| SourcedRule {
            source: source.to_owned(),
            pattern: r.pattern.clone(),
            regex: r.regex.clone(),
        }));
    }

    fn seal(&mut self) {
        if self.rules.len() > 1 {
            self.set = RegexSetBuilder::new(self.rules.iter().map(|r| r.pattern.as_str()))
                .size_limit(SET_SIZE_LIMIT)
                .build()
                .ok();
        }
    }

    /// The earliest rule (in composition order) that matches `text`.
    pub(crate) fn first_match(&self, text: &str) -> Option<&SourcedRule> {
        match &self.set {
            Some(set) => {
                if !set.is_match(text) {
                    return None;
                }
                set.matches(text)
                    .iter()
                    .next()
                    .and_then(|i| self.rules.get(i))
            }
            None => self.rules.iter().find(|r| r.regex.is_match(text)),
        }
    }
}

/// The kind of a rule in an [`Explanation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// A `deny` entry.
    Deny,
    /// An `allow` entry of an allowlist policy.
    Allow,
    /// A `require_approval` entry.
    RequireApproval,
    /// An `allow_argv` entry (its pattern is `program subcommand…`).
    AllowArgv,
}

/// One rule as shown by `explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainedRule {
    /// Deny, allow or approval.
    pub kind: RuleKind,
    /// The pattern as written.
    pub pattern: String,
    /// Where it came from (`host`, `group:prod/readonly`, …).
    pub source: String,
}

/// One composed part as shown by `explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainedPart {
    /// Where it came from.
    pub source: String,
    /// Its own mode.
    pub mode: Mode,
    /// Its own `shell_parse`.
    pub shell_parse: bool,
    /// Its own enforcement.
    pub enforcement: Enforcement,
}

/// A serializable summary of a composed policy, for `dry_run` and operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// `allowlist` if any part is one, else `denylist` if any part is
    /// active, else `off`.
    pub mode: Mode,
    /// Whether commands are parsed (any active part asks for it).
    pub shell_parse: bool,
    /// `enforce` if any active part enforces, else `audit`.
    pub enforcement: Enforcement,
    /// The parts, in composition order (parts in mode `off` included).
    pub parts: Vec<ExplainedPart>,
    /// Every rule that takes part in decisions, in the order tried.
    pub rules: Vec<ExplainedRule>,
}

/// Every policy that applies to one host, composed: `_default` group
/// policies, then the host's group policies, then its inline policy.
///
/// Deny wins over everything; if any part is an allowlist, each simple
/// command must match the union of all allow rules; approval rules are a
/// union; `shell_parse` is on if any active part has it on; `enforce` beats
/// `audit`. Parts in mode `off` take no part in decisions.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    parts: Vec<ExplainedPart>,
    active: bool,
    pub(crate) has_allowlist: bool,
    shell_parse: bool,
    enforcement: Enforcement,
    pub(crate) deny: RuleList,
    pub(crate) allow: RuleList,
    pub(crate) allow_argv: Vec<SourcedArgv>,
    pub(crate) approval: RuleList,
}

impl PolicySet {
    /// Composes `parts` in the order given; each is `(source, policy)` with a
    /// source such as `group:_default/base`, `group:prod/readonly` or `host`.
    pub fn compose(parts: Vec<(String, CompiledPolicy)>) -> PolicySet {
        let mut set = PolicySet {
            enforcement: Enforcement::Audit,
            ..PolicySet::default()
        };
        let mut any_enforce = false;
        for (source, policy) in &parts {
            set.parts.push(ExplainedPart {
                source: source.clone(),
                mode: policy.mode,
                shell_parse: policy.shell_parse,
                enforcement: policy.enforcement,
            });
            if !policy.is_active() {
                continue;
            }
            set.active = true;
            set.shell_parse |= policy.shell_parse;
            any_enforce |= policy.enforcement == Enforcement::Enforce;
            set.deny.push(source, &policy.deny);
            set.approval.push(source, &policy.require_approval);
            if policy.mode == Mode::Allowlist {
                set.has_allowlist = true;
                set.allow.push(source, &policy.allow);
                set.allow_argv
                    .extend(policy.allow_argv.iter().map(|rule| SourcedArgv {
                        source: source.clone(),
                        rule: rule.clone(),
                    }));
            }
        }
        if any_enforce || !set.active {
            set.enforcement = Enforcement::Enforce;
        }
        set.deny.seal();
        set.allow.seal();
        set.approval.seal();
        set
    }

    /// True when no part is active: commands are not restricted (only
    /// NUL/CR/LF and empty commands are refused).
    pub fn is_empty(&self) -> bool {
        !self.active
    }

    /// Judges `command` as run without a terminal. See the crate docs for
    /// the exact order of checks.
    pub fn decide(&self, command: &str) -> Decision {
        self.decide_in(command, Context::default())
    }

    /// Judges `command`; `ctx` says whether a terminal is attached (rows of
    /// the exec-option table for pagers apply only then).
    pub fn decide_in(&self, command: &str, ctx: Context) -> Decision {
        self.evaluate(command, ctx, None)
    }

    /// The decision and, per simple command, its decoded and normalised
    /// argv and the rule that decided (for `policy explain`).
    pub fn explain_command(&self, command: &str, ctx: Context) -> CommandExplanation {
        let mut commands = Vec::new();
        let decision = self.evaluate(command, ctx, Some(&mut commands));
        CommandExplanation { decision, commands }
    }

    fn evaluate(
        &self,
        command: &str,
        ctx: Context,
        trace: Option<&mut Vec<JudgedCommand>>,
    ) -> Decision {
        if let Some(invalid) = invalid_basic(command) {
            return invalid;
        }
        if !self.active {
            return Decision::allow("no command policy applies to this host".into(), None, None);
        }
        if let Some(found) = first_invisible(command) {
            let rule = match found {
                Invisible::Control(_) => "invalid:control_char",
                Invisible::Format(_) => "invalid:invisible_char",
            };
            let message = format!("command contains a {}", found.describe());
            return Decision::refuse(ReasonCode::CommandInvalid, rule.into(), None, message);
        }
        let judged: Vec<Simple> = if self.shell_parse {
            match shell::parse_simple_commands(command) {
                Ok(commands) => commands.into_iter().map(Simple::parsed).collect(),
                Err(rejection) => {
                    let message = rejection.to_string();
                    return self.finish(Decision::refuse(
                        ReasonCode::ParseRejected,
                        rejection.rule(),
                        None,
                        message,
                    ));
                }
            }
        } else {
            vec![Simple::raw(command)]
        };
        self.finish(self.judge(&judged, ctx, trace))
    }

    fn finish(&self, decision: Decision) -> Decision {
        match self.enforcement {
            Enforcement::Enforce => decision,
            Enforcement::Audit => decision.into_audit(),
        }
    }

    /// A serializable summary for `dry_run` output and operators.
    pub fn explain(&self) -> Explanation {
        let mode = if self.has_allowlist {
            Mode::Allowlist
        } else if self.active {
            Mode::Denylist
        } else {
            Mode::Off
        };
        let mut rules = Vec::new();
        for (kind, list) in [
            (RuleKind::Deny, &self.deny),
            (RuleKind::Allow, &self.allow),
            (RuleKind::RequireApproval, &self.approval),
        ] {
            rules.extend(list.rules.iter().map(|r| ExplainedRule {
                kind,
                pattern: r.pattern.clone(),
                source: r.source.clone(),
            }));
        }
        rules.extend(self.allow_argv.iter().map(|a| ExplainedRule {
            kind: RuleKind::AllowArgv,
            pattern: a.rule.label(),
            source: a.source.clone(),
        }));
        Explanation {
            mode,
            shell_parse: self.active && self.shell_parse,
            enforcement: self.enforcement,
            parts: self.parts.clone(),
            rules,
        }
    }
}

/// Refusals that hold even with no policy: the signer refuses the same.
fn invalid_basic(command: &str) -> Option<Decision> {
    let (rule, message) = if command.contains('\0') {
        ("invalid:nul", "command contains a NUL byte")
    } else if command.contains(['\r', '\n']) {
        (
            "invalid:line_break",
            "command contains a carriage return or line feed",
        )
    } else if command.trim_matches([' ', '\t']).is_empty() {
        ("invalid:empty", "command is empty")
    } else {
        return None;
    };
    Some(Decision::refuse(
        ReasonCode::CommandInvalid,
        rule.into(),
        None,
        message.into(),
    ))
}

pub(crate) fn describe(i: usize, total: usize, text: &str) -> String {
    let shown = if text.chars().count() > MESSAGE_TEXT {
        let mut t: String = text.chars().take(MESSAGE_TEXT).collect();
        t.push('…');
        t
    } else {
        text.to_owned()
    };
    if total == 1 {
        format!("command `{shown}`")
    } else {
        format!("simple command {} of {total} (`{shown}`)", i + 1)
    }
}
