//! The infrabroker command firewall.
//!
//! The signer bakes an allowed one-shot command into the certificate's
//! `force-command`, so the decision made here is the one that holds on the
//! host. This crate turns per-host `command_policy`, the named
//! `command_policies` library and `group_command_policies` (with `_default`
//! for every host) into one [`PolicySet`] and judges commands against it.
//!
//! # Use
//!
//! ```
//! use infrabroker_firewall::{compile, Mode, PolicyConfig, PolicySet, ReasonCode};
//!
//! let cfg = PolicyConfig {
//!     mode: Mode::Allowlist,
//!     allow: vec!["^ps( |$)".into()],
//!     ..PolicyConfig::default()
//! };
//! let policy = compile(&cfg, "hosts.web01.command_policy").map_err(|e| e[0].clone())?;
//! let set = PolicySet::compose(vec![("host".into(), policy)]);
//! assert!(set.decide("ps aux").allowed);
//! assert_eq!(set.decide("ps aux && kill -9 1").reason_code, ReasonCode::AllowlistNoMatch);
//! assert_eq!(set.decide("ps $(id)").reason_code, ReasonCode::ParseRejected);
//! # Ok::<(), infrabroker_firewall::PolicyError>(())
//! ```
//!
//! # How a command is judged
//!
//! 1. NUL, CR, LF or an empty command → `command_invalid`, always (even
//!    with no policy and in audit mode; the signer refuses them too).
//! 2. No active policy → `allowed`.
//! 3. Control characters (other than tab) and invisible/format characters
//!    (bidi overrides, zero-width, non-ASCII spaces, …) → `command_invalid`.
//!    The signer applies this rule ([`first_invisible`]) to every host, with
//!    or without a policy, unless the host sets `allow_invisible_characters`.
//! 4. With `shell_parse` on (the default), [`parse_simple_commands`] splits
//!    the command into simple commands and decodes their words as `/bin/sh`
//!    will; anything it cannot prove static is `parse_rejected`, with
//!    `matched_rule` `shell-parse:<construct>` (see [`Construct`]). Each
//!    simple command is then rendered by [`render`]: its decoded words joined
//!    by single spaces, a word written bare if it consists only of
//!    `A–Z a–z 0–9 % + , - . / : = @ _`, otherwise in single quotes (`'` as
//!    `'\''`). Redirections (only fd duplications pass) are not part of it.
//!    So `l''s "-la"` is judged as `ls -la` and `grep 'a b' f` as
//!    `grep 'a b' f`.
//!    With `shell_parse` off the raw string is judged once as a whole, so
//!    `ps; rm -rf /` passes an allow rule `^ps`: that is why it defaults on.
//! 5. Each simple command's argv is read against the exec-option table
//!    ([`exec_options`]): an option or subcommand that makes the program run
//!    another command (`git rebase -x`, `tar --rs=…`, `rg --pre`) →
//!    `exec_option` (`exec-option:<row>`), whatever the rules allow.
//! 6. Regexes are unanchored (`is_match`, as upstream); write `^…$`.
//!    Any simple command matching a deny rule → `command_denied`
//!    (`deny:<pattern>`). Else, if any part is an allowlist, every simple
//!    command must match some allow rule or structured `allow_argv` rule
//!    ([`argv`]; `allow_argv:<program> <subcommand…>`) → else
//!    `allowlist_no_match` (`allowlist:no-match`). Else any simple command matching an approval
//!    rule → `needs_approval` (`require_approval:<pattern>`,
//!    `allowed: false`, `require_approval: true`). Else `allowed`.
//! 7. Audit enforcement (only when no active part enforces): a refusal from
//!    steps 4–6 becomes `allowed: true`, `reason_code: allowed`, with the
//!    rule kept in `matched_rule`, a warning, and `would_deny` or
//!    `would_require_approval` set.
//!
//! How the judged command then reaches the host's `/bin/sh` unchanged,
//! whatever the account's login shell, is `infrabroker_common::force_command`
//! (used by the signer and the broker; this crate only judges).
//!
//! The shell language accepted, the character rule and the wrapper table are
//! documented in [`shell`], [`parse_simple_commands`] and
//! [`shell::wrappers`].
//!
//! # Layout
//! - `policy.rs`: [`PolicyConfig`] (plain config data) and [`compile`].
//! - `set.rs`: [`PolicySet`] composition, [`PolicySet::decide`],
//!   [`Explanation`].
//! - `judge.rs`: the per-command steps 5–6 and the trace behind
//!   [`PolicySet::explain_command`].
//! - `argv/`: structured rules, option normalisation.
//! - `exec_options/`: the exec-option table and its scanner.
//! - `decision.rs`: [`Decision`] and [`ReasonCode`].
//! - `shell/`: parsing, the character rule, the wrapper table.
//! - `error.rs`: [`PolicyError`], config errors with their paths.

pub mod argv;
mod decision;
mod error;
pub mod exec_options;
mod judge;
mod policy;
mod set;
pub mod shell;

pub use decision::{Decision, ReasonCode};
pub use error::PolicyError;
pub use exec_options::Context;
pub use judge::{CommandExplanation, DecidedBy, JudgedCommand, RuleForm};
pub use policy::{CompiledPolicy, Enforcement, Mode, PolicyConfig, compile};
pub use set::{ExplainedPart, ExplainedRule, Explanation, PolicySet, RuleKind};
pub use shell::{
    Construct, Invisible, ParseRejection, first_invisible, parse_simple_commands, render,
};
