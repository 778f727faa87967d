//! Structured allow rules (`allow_argv`): a program, an optional
//! subcommand chain, the options it may take and its positional arguments,
//! matched on the decoded argv of a simple command after its options are
//! normalised.
//!
//! ```json
//! "allow_argv": [{
//!   "program": "git", "paths": ["/usr/bin/git"],
//!   "global_options": {"-C": {"value": "/srv/repos/[a-z0-9-]+"}},
//!   "subcommand": ["log"],
//!   "options": {"--oneline": "flag", "-n": {"value": "[0-9]{1,3}"},
//!               "--max-count": {"value": "[0-9]{1,3}"}, "--stat": "flag"},
//!   "args": ["[A-Za-z0-9._/~^-]+"], "max_args": 2
//! }]
//! ```
//!
//! # Normalisation
//! - `--opt=v` and `--opt v` are the same; so are `-n5` and `-n 5`.
//! - Short flags may be bundled (`-xzf a.tgz` is `-x -z -f a.tgz`); a
//!   letter that takes a value ends the bundle.
//! - `--` ends the options; every later word is positional.
//! - A long option may be abbreviated as GNU getopt allows: `--max` is
//!   `--max-count` if no other known option of the program starts with
//!   `--max`. Known = the rule's options plus the built-in exec table's
//!   options for the program, so `--ex` can never resolve to an allowed
//!   `--ex…` when the program also has `--exec`. Ambiguous → refused.
//! - Options before the subcommand chain is complete are looked up in
//!   `global_options`, after it in `options`.
//! - `single_dash_long: true` reads every `-word` whole (`find -name`).
//!
//! # Matching
//! Every option must be listed (unknown → no match); a flag given a value,
//! a missing value or a value not matching its pattern → no match. Values
//! and `args` patterns must match the **whole** word (they are anchored,
//! unlike the regex lists). Without `args`, no positional is allowed; with
//! it each positional must match one pattern, and `min_args`/`max_args`
//! bound their count. `program` matches argv\[0\] exactly; an absolute path
//! matches only if listed in `paths`.
//!
//! A structured rule only widens an allowlist. `deny` and
//! `require_approval` regexes, the wrapper table and the exec-option table
//! still apply to commands it admits.

mod config;
mod normalize;
#[cfg(test)]
mod tests;

pub(crate) use config::{ArgvRule, compile_rules};
pub use config::{ArgvRuleConfig, Arity, OptionSpec, ValuePattern};
pub use normalize::Mismatch;
