//! The one decision type shared by `/v1/sign` and `dry_run`.

use serde::{Deserialize, Serialize};

/// Why a command was allowed or refused. Stable strings: they appear on the
/// wire and in audit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Nothing stopped the command.
    Allowed,
    /// A `require_approval` rule matched; the command waits for a human.
    NeedsApproval,
    /// A `deny` rule matched a simple command.
    CommandDenied,
    /// An allowlist applies and some simple command matched no `allow` rule.
    AllowlistNoMatch,
    /// Shell parsing refused a construct it cannot judge statically.
    ParseRejected,
    /// An option or subcommand that makes an allowed program run another
    /// command (`git rebase --exec`, `tar --use=…`), from the built-in table.
    ExecOption,
    /// The command is empty or carries NUL, CR, LF, other control characters
    /// or invisible/format characters. Never softened by audit mode.
    CommandInvalid,
}

impl ReasonCode {
    /// The wire string, e.g. `allowlist_no_match`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::NeedsApproval => "needs_approval",
            Self::CommandDenied => "command_denied",
            Self::AllowlistNoMatch => "allowlist_no_match",
            Self::ParseRejected => "parse_rejected",
            Self::ExecOption => "exec_option",
            Self::CommandInvalid => "command_invalid",
        }
    }
}

/// The firewall's verdict on one command.
///
/// `matched_rule` uses upstream's prefixes so callers can map it without
/// parsing prose: `deny:<pattern>`, `allow:<pattern>`,
/// `require_approval:<pattern>`, `allowlist:no-match`, `shell-parse:<class>`
/// and (ours) `invalid:<class>`. The policy that contributed the rule is in
/// `rule_source` (`host`, `group:prod/readonly`, …).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether a certificate may be issued for this command now.
    pub allowed: bool,
    /// Stable reason; `allowed` in audit mode even when a rule would refuse.
    pub reason_code: ReasonCode,
    /// The rule that decided, if any (see the type docs for the format).
    pub matched_rule: Option<String>,
    /// True only for an enforced `require_approval` match.
    pub require_approval: bool,
    /// Audit-mode notes on what enforcement would have done.
    pub warnings: Vec<String>,
    /// One human sentence.
    pub message: String,
    /// Source of `matched_rule` when it came from a policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_source: Option<String>,
    /// Audit mode: an enforced policy would have refused this command.
    #[serde(default, skip_serializing_if = "is_false")]
    pub would_deny: bool,
    /// Audit mode: an enforced policy would have required approval.
    #[serde(default, skip_serializing_if = "is_false")]
    pub would_require_approval: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Decision {
    pub(crate) fn allow(
        message: String,
        matched_rule: Option<String>,
        source: Option<String>,
    ) -> Self {
        Self {
            allowed: true,
            reason_code: ReasonCode::Allowed,
            matched_rule,
            require_approval: false,
            warnings: Vec::new(),
            message,
            rule_source: source,
            would_deny: false,
            would_require_approval: false,
        }
    }

    pub(crate) fn refuse(
        reason_code: ReasonCode,
        matched_rule: String,
        source: Option<String>,
        message: String,
    ) -> Self {
        Self {
            allowed: false,
            reason_code,
            matched_rule: Some(matched_rule),
            require_approval: reason_code == ReasonCode::NeedsApproval,
            warnings: Vec::new(),
            message,
            rule_source: source,
            would_deny: false,
            would_require_approval: false,
        }
    }

    /// Audit mode: keep the rule and reason as a warning, let the command run.
    pub(crate) fn into_audit(self) -> Self {
        if self.allowed || self.reason_code == ReasonCode::CommandInvalid {
            return self;
        }
        let approval = self.reason_code == ReasonCode::NeedsApproval;
        let what = if approval {
            "would require approval"
        } else {
            "would deny"
        };
        let warning = format!(
            "audit: {what} ({}): {}",
            self.reason_code.as_str(),
            self.message
        );
        Self {
            allowed: true,
            reason_code: ReasonCode::Allowed,
            require_approval: false,
            warnings: vec![warning],
            message: format!("allowed in audit mode; enforcement {what}"),
            would_deny: !approval,
            would_require_approval: approval,
            ..self
        }
    }
}
