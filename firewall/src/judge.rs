//! The decision over the simple commands of one command line: exec-option
//! table, then deny, then allow (regex or structured), then approval, and
//! optionally a trace of what decided each simple command, for `explain`.

use serde::{Deserialize, Serialize};

use crate::decision::{Decision, ReasonCode};
use crate::exec_options::{self, Context};
use crate::set::{PolicySet, describe};
use crate::shell;

/// One simple command as judged: its decoded words (absent with
/// `shell_parse` off) and the text the regexes see.
#[derive(Debug, Clone)]
pub(crate) struct Simple {
    argv: Option<Vec<String>>,
    text: String,
}

impl Simple {
    pub(crate) fn parsed(argv: Vec<String>) -> Self {
        let text = shell::render(&argv);
        Self {
            argv: Some(argv),
            text,
        }
    }

    pub(crate) fn raw(command: &str) -> Self {
        Self {
            argv: None,
            text: command.to_owned(),
        }
    }
}

/// Which form of rule decided a simple command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleForm {
    /// A regex of `allow`, `deny` or `require_approval`.
    Regex,
    /// An `allow_argv` entry.
    Structured,
    /// The built-in exec-option table.
    ExecTable,
}

/// The rule that decided one simple command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedBy {
    /// Regex, structured or the exec table.
    pub form: RuleForm,
    /// In `matched_rule` form: `allow:^ls`, `allow_argv:git log`,
    /// `exec-option:git rebase --exec`, `deny:…`, `require_approval:…`.
    pub rule: String,
    /// The part it came from, for policy rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One simple command as `policy explain` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgedCommand {
    /// The decoded words (empty with `shell_parse` off).
    pub argv: Vec<String>,
    /// The text the regexes were matched against.
    pub text: String,
    /// The normalised argv, when a structured rule admitted the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalized: Option<Vec<String>>,
    /// What decided it; absent if judging stopped before it, or if nothing
    /// had to (a denylist that does not match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<DecidedBy>,
    /// Why structured rules for the same program did not admit it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub structured_misses: Vec<String>,
}

/// [`PolicySet::explain_command`]: the decision and each simple command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandExplanation {
    /// Exactly what [`PolicySet::decide_in`] returns.
    pub decision: Decision,
    /// The simple commands, in order (empty if refused before splitting).
    pub commands: Vec<JudgedCommand>,
}

/// Records into the explain trace, when there is one.
struct Trace<'a>(Option<&'a mut Vec<JudgedCommand>>);

impl Trace<'_> {
    fn entry(&mut self, i: usize) -> Option<&mut JudgedCommand> {
        self.0.as_deref_mut().and_then(|t| t.get_mut(i))
    }

    fn decided(&mut self, i: usize, form: RuleForm, rule: &str, source: Option<&str>) {
        if let Some(e) = self.entry(i) {
            e.decided_by = Some(DecidedBy {
                form,
                rule: rule.to_owned(),
                source: source.map(str::to_owned),
            });
        }
    }
}

impl PolicySet {
    /// Exec table, deny, allowlist, approval, over every simple command.
    pub(crate) fn judge(
        &self,
        judged: &[Simple],
        ctx: Context,
        trace: Option<&mut Vec<JudgedCommand>>,
    ) -> Decision {
        let mut trace = Trace(trace);
        if let Some(t) = trace.0.as_deref_mut() {
            t.extend(judged.iter().map(|s| JudgedCommand {
                argv: s.argv.clone().unwrap_or_default(),
                text: s.text.clone(),
                normalized: None,
                decided_by: None,
                structured_misses: Vec::new(),
            }));
        }
        let total = judged.len();
        if let Some(refusal) = exec_refusal(judged, ctx, &mut trace) {
            return refusal;
        }
        for (i, s) in judged.iter().enumerate() {
            if let Some(rule) = self.deny.first_match(&s.text) {
                let matched = format!("deny:{}", rule.pattern);
                trace.decided(i, RuleForm::Regex, &matched, Some(&rule.source));
                let message = format!(
                    "{} matches deny rule {:?} from {}",
                    describe(i, total, &s.text),
                    rule.pattern,
                    rule.source
                );
                return Decision::refuse(
                    ReasonCode::CommandDenied,
                    matched,
                    Some(rule.source.clone()),
                    message,
                );
            }
        }
        let first_allow = match self.allowlist(judged, &mut trace) {
            Ok(first) => first,
            Err(refusal) => return refusal,
        };
        for (i, s) in judged.iter().enumerate() {
            if let Some(rule) = self.approval.first_match(&s.text) {
                let matched = format!("require_approval:{}", rule.pattern);
                trace.decided(i, RuleForm::Regex, &matched, Some(&rule.source));
                let message = format!(
                    "{} needs approval by rule {:?} from {}",
                    describe(i, total, &s.text),
                    rule.pattern,
                    rule.source
                );
                return Decision::refuse(
                    ReasonCode::NeedsApproval,
                    matched,
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
        let (rule, source) = first_allow.unzip();
        Decision::allow(message, rule, source)
    }

    /// Every simple command must match an allow regex or a structured rule.
    /// The first allow rule (with its source) on success.
    fn allowlist(
        &self,
        judged: &[Simple],
        trace: &mut Trace<'_>,
    ) -> Result<Option<(String, String)>, Decision> {
        if !self.has_allowlist {
            return Ok(None);
        }
        let mut first = None;
        for (i, s) in judged.iter().enumerate() {
            if let Some(rule) = self.allow.first_match(&s.text) {
                let matched = format!("allow:{}", rule.pattern);
                trace.decided(i, RuleForm::Regex, &matched, Some(&rule.source));
                first.get_or_insert((matched, rule.source.clone()));
                continue;
            }
            match self.structured(s, i, trace) {
                Ok(found) => {
                    first.get_or_insert(found);
                }
                Err(misses) => {
                    let mut message = format!(
                        "{} matches no allow rule",
                        describe(i, judged.len(), &s.text)
                    );
                    if !misses.is_empty() {
                        message.push_str(&format!(" ({})", misses.join("; ")));
                    }
                    return Err(Decision::refuse(
                        ReasonCode::AllowlistNoMatch,
                        "allowlist:no-match".into(),
                        None,
                        message,
                    ));
                }
            }
        }
        Ok(first)
    }

    /// The first structured rule admitting `s`, or why each one for the
    /// same program did not.
    fn structured(
        &self,
        s: &Simple,
        i: usize,
        trace: &mut Trace<'_>,
    ) -> Result<(String, String), Vec<String>> {
        let Some(argv) = s.argv.as_deref() else {
            return Err(Vec::new());
        };
        let program = argv.first().map(String::as_str).unwrap_or_default();
        let mut misses = Vec::new();
        for a in self.allow_argv.iter().filter(|a| a.rule.names(program)) {
            match a.rule.normalize(argv) {
                Ok(words) => {
                    let matched = format!("allow_argv:{}", a.rule.label());
                    trace.decided(i, RuleForm::Structured, &matched, Some(&a.source));
                    if let Some(e) = trace.entry(i) {
                        e.normalized = Some(words);
                    }
                    return Ok((matched, a.source.clone()));
                }
                Err(m) => misses.push(format!(
                    "allow_argv {} from {}: {m}",
                    a.rule.label(),
                    a.source
                )),
            }
        }
        if let Some(e) = trace.entry(i) {
            e.structured_misses.clone_from(&misses);
        }
        Err(misses)
    }
}

/// The first simple command the exec-option table refuses, if any.
fn exec_refusal(judged: &[Simple], ctx: Context, trace: &mut Trace<'_>) -> Option<Decision> {
    judged.iter().enumerate().find_map(|(i, s)| {
        let hit = exec_options::check(s.argv.as_deref()?, ctx)?;
        let rule = hit.rule();
        trace.decided(i, RuleForm::ExecTable, &rule, None);
        let message = format!(
            "{}: {:?} makes {} run another command ({}); refused even when an allow rule admits the program",
            describe(i, judged.len(), &s.text),
            hit.word,
            hit.row.program,
            hit.row.why
        );
        Some(Decision::refuse(ReasonCode::ExecOption, rule, None, message))
    })
}
