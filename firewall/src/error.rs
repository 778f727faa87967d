//! Configuration errors raised while compiling a command policy.

/// A command policy that cannot be loaded. Every variant names the config path
/// it came from (for example `hosts.web01.command_policy.allow[2]`), so an
/// operator can find the line without reading code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A pattern is not a valid regular expression (or exceeds the size limit).
    #[error("{path}: invalid regex {pattern:?}: {reason}")]
    InvalidRegex {
        /// Config path of the offending list entry.
        path: String,
        /// The pattern as written.
        pattern: String,
        /// The regex compiler's explanation, on one line.
        reason: String,
    },
    /// An empty (or blank) pattern would match every command.
    #[error("{path}: empty pattern matches every command; write the rule you mean")]
    EmptyPattern {
        /// Config path of the offending list entry.
        path: String,
    },
    /// `allow` entries on a denylist policy would be silently ignored.
    #[error("{path}: allow rules have no effect in denylist mode")]
    AllowInDenylist {
        /// Config path of the `allow` list.
        path: String,
    },
    /// An `allow_argv` entry that cannot be compiled.
    #[error("{path}: {reason}")]
    InvalidArgvRule {
        /// Config path of the offending part of the entry.
        path: String,
        /// What is wrong, on one line.
        reason: String,
    },
    /// A policy in mode `off` carries rules that would be silently ignored.
    #[error("{path}: {list} has no effect when mode is off")]
    RulesWhenOff {
        /// Config path of the policy.
        path: String,
        /// Which list is non-empty.
        list: &'static str,
    },
}
