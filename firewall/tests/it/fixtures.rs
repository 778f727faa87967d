//! Named policy sets used by the table and the property tests.

use std::collections::HashMap;
use std::sync::LazyLock;

use infrabroker_firewall::{Enforcement, Mode, PolicyConfig, PolicySet, compile};

fn cfg(mode: Mode, allow: &[&str], deny: &[&str], approval: &[&str]) -> PolicyConfig {
    let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    PolicyConfig {
        mode,
        allow: own(allow),
        allow_argv: Vec::new(),
        deny: own(deny),
        require_approval: own(approval),
        shell_parse: None,
        enforcement: Enforcement::Enforce,
    }
}

fn set(parts: Vec<(&str, PolicyConfig)>) -> PolicySet {
    PolicySet::compose(
        parts
            .into_iter()
            .map(|(source, c)| {
                let compiled = compile(&c, source).unwrap();
                (source.to_owned(), compiled)
            })
            .collect(),
    )
}

const NAMES: &[&str] = &[
    "none",
    "allow_ps",
    "deny_rm",
    "hygiene",
    "allow_any",
    "raw",
    "both",
    "approve",
    "audit",
    "audit_mixed",
    "ops",
];

static SETS: LazyLock<HashMap<&'static str, PolicySet>> =
    LazyLock::new(|| NAMES.iter().map(|n| (*n, build(n))).collect());

/// The policy set called `name` in the table (built once).
pub fn fixture(name: &str) -> &'static PolicySet {
    SETS.get(name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

fn build(name: &str) -> PolicySet {
    use Mode::{Allowlist, Denylist};
    match name {
        // No policy at all: the firewall is off.
        "none" => PolicySet::compose(Vec::new()),
        // The issue's example: allowlist `^ps`.
        "allow_ps" => set(vec![("host", cfg(Allowlist, &["^ps"], &[], &[]))]),
        // Denylist for rm; everything else passes if it parses.
        "deny_rm" => set(vec![(
            "host",
            cfg(Denylist, &[], &[r"^(\S*/)?rm( |$)", "^shutdown"], &[]),
        )]),
        // A denylist with no rules: only shell parsing refuses.
        "hygiene" => set(vec![(
            "group:_default/hygiene",
            cfg(Denylist, &[], &[], &[]),
        )]),
        // An allowlist that matches any text: only shell parsing refuses.
        "allow_any" => set(vec![("host", cfg(Allowlist, &["."], &[], &[]))]),
        // Same allowlist with shell parsing off: the raw string is judged.
        "raw" => set(vec![(
            "host",
            PolicyConfig {
                shell_parse: Some(false),
                ..cfg(Allowlist, &["^ps"], &[], &[])
            },
        )]),
        // Allow and deny both match `rm -rf …`: deny wins.
        "both" => set(vec![("host", cfg(Allowlist, &["^rm "], &["^rm -rf"], &[]))]),
        // Allow and approval both match restarts: approval.
        "approve" => set(vec![(
            "host",
            cfg(
                Allowlist,
                &["^systemctl (status|restart) [a-z]+$"],
                &[],
                &["^systemctl restart "],
            ),
        )]),
        // Everything in audit mode.
        "audit" => set(vec![(
            "host",
            PolicyConfig {
                enforcement: Enforcement::Audit,
                ..cfg(Denylist, &[], &["^rm "], &["^reboot$"])
            },
        )]),
        // An audit part and an enforcing part: enforce beats audit.
        "audit_mixed" => set(vec![
            (
                "group:_default/audit",
                PolicyConfig {
                    enforcement: Enforcement::Audit,
                    ..cfg(Denylist, &[], &["^rm "], &[])
                },
            ),
            ("host", cfg(Denylist, &[], &[], &[])),
        ]),
        // A realistic composition: default deny, a read-only group, the host.
        "ops" => set(vec![
            (
                "group:_default/base",
                cfg(Denylist, &[], &["^rm -rf /$", "/etc/shadow"], &[]),
            ),
            (
                "group:prod/readonly",
                cfg(
                    Allowlist,
                    &[
                        "^ls( |$)",
                        "^cat /var/log/[a-z.]+$",
                        "^ps( |$)",
                        "^grep ",
                        "^echo ",
                        "^uptime$",
                        "^df( |$)",
                        "^kill ",
                    ],
                    &[],
                    &[],
                ),
            ),
            (
                "host",
                cfg(
                    Allowlist,
                    &["^systemctl restart [a-z]+$"],
                    &["^kill -9 1$"],
                    &["^systemctl restart "],
                ),
            ),
        ]),
        other => panic!("no fixture {other}"),
    }
}
