//! Composition of policies into one [`PolicySet`] and the decision itself.

use regex::{RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};

use crate::decision::{Decision, ReasonCode};
use crate::policy::{CompiledPolicy, Enforcement, Mode, Rule};
use crate::shell::{self, Invisible, first_invisible};

/// Size limit for the combined matcher of one rule list. If a list is too big
/// for one automaton, its rules are tried one by one instead.
const SET_SIZE_LIMIT: usize = 32 << 20;

/// Longest command text quoted in a decision message.
const MESSAGE_TEXT: usize = 120;

#[derive(Debug, Clone)]
struct SourcedRule {
    source: String,
    pattern: String,
    regex: regex::Regex,
}

/// One kind of rule (deny, allow or approval) from all parts, in order.
#[derive(Debug, Clone, Default)]
struct RuleList {
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
    fn first_match(&self, text: &str) -> Option<&SourcedRule> {
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
    has_allowlist: bool,
    shell_parse: bool,
    enforcement: Enforcement,
    deny: RuleList,
    allow: RuleList,
    approval: RuleList,
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

    /// Judges `command`. See the crate docs for the exact order of checks.
    pub fn decide(&self, command: &str) -> Decision {
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
        let judged: Vec<String> = if self.shell_parse {
            match shell::parse_simple_commands(command) {
                Ok(commands) => commands.iter().map(|argv| shell::render(argv)).collect(),
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
            vec![command.to_owned()]
        };
        self.finish(self.judge(&judged))
    }

    /// Deny, then allowlist, then approval, over every simple command.
    fn judge(&self, judged: &[String]) -> Decision {
        let total = judged.len();
        for (i, text) in judged.iter().enumerate() {
            if let Some(rule) = self.deny.first_match(text) {
                let message = format!(
                    "{} matches deny rule {:?} from {}",
                    describe(i, total, text),
                    rule.pattern,
                    rule.source
                );
                return Decision::refuse(
                    ReasonCode::CommandDenied,
                    format!("deny:{}", rule.pattern),
                    Some(rule.source.clone()),
                    message,
                );
            }
        }
        let mut first_allow = None;
        if self.has_allowlist {
            for (i, text) in judged.iter().enumerate() {
                match self.allow.first_match(text) {
                    Some(rule) => {
                        first_allow.get_or_insert(rule);
                    }
                    None => {
                        let message = format!("{} matches no allow rule", describe(i, total, text));
                        return Decision::refuse(
                            ReasonCode::AllowlistNoMatch,
                            "allowlist:no-match".into(),
                            None,
                            message,
                        );
                    }
                }
            }
        }
        for (i, text) in judged.iter().enumerate() {
            if let Some(rule) = self.approval.first_match(text) {
                let message = format!(
                    "{} needs approval by rule {:?} from {}",
                    describe(i, total, text),
                    rule.pattern,
                    rule.source
                );
                return Decision::refuse(
                    ReasonCode::NeedsApproval,
                    format!("require_approval:{}", rule.pattern),
                    Some(rule.source.clone()),
                    message,
                );
            }
        }
        let message = if total == 1 {
            "command allowed by command policy".to_owned()
        } else {
            format!("all {total} simple commands allowed by command policy")
        };
        Decision::allow(
            message,
            first_allow.map(|r| format!("allow:{}", r.pattern)),
            first_allow.map(|r| r.source.clone()),
        )
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

fn describe(i: usize, total: usize, text: &str) -> String {
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
