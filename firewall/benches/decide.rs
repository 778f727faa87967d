//! Decision latency for a 100-rule composed policy with shell parsing on
//! (SPEC §11 target: p50 < 20 µs).
//!
//! Criterion measures the mean per command; afterwards the bench times
//! single calls to print p50/p99 directly, since the target is a percentile.

#![allow(clippy::unwrap_used, reason = "bench setup fails loudly")]

use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use infrabroker_firewall::argv::ArgvRuleConfig;
use infrabroker_firewall::{Mode, PolicyConfig, PolicySet, compile, parse_simple_commands};

const COMMANDS: &[(&str, &str)] = &[
    ("allowed_pipeline", "ps aux | grep nginx"),
    (
        "allowed_list",
        "systemctl status nginx && journalctl -u nginx -n 50 --no-pager",
    ),
    (
        "quoted_args",
        "grep -r 'connection refused' /var/log/nginx/error.log",
    ),
    ("denied", "ls /tmp; rm -rf /var/lib/postgresql"),
    (
        "no_match",
        "curl -s http://169.254.169.254/latest/meta-data/",
    ),
    ("parse_rejected", "cat /etc/hosts $(id)"),
    // Admitted by a structured rule after every regex missed.
    (
        "structured",
        "git -C /srv/repos/app log -n 5 --oneline HEAD",
    ),
    // Refused by the exec-option table (abbreviated tar option).
    (
        "exec_option",
        "tar --checkpoint=1 --checkpoint-=exec=id -cf /dev/null x",
    ),
];

fn strings(v: impl IntoIterator<Item = String>) -> Vec<String> {
    v.into_iter().collect()
}

/// 100 rules over four parts, shaped like a real config: a `_default` deny
/// list, two group allowlists and a host policy with deny and approval.
fn hundred_rule_set() -> PolicySet {
    let programs = [
        "ls",
        "cat",
        "ps",
        "grep",
        "df",
        "du",
        "uptime",
        "free",
        "journalctl",
        "systemctl",
        "ss",
        "ip",
        "dig",
        "host",
        "tail",
        "head",
        "wc",
        "sort",
        "uniq",
        "stat",
    ];
    let default = PolicyConfig {
        mode: Mode::Denylist,
        deny: strings((0..20).map(|i| format!(r"^(\S*/)?rm( |$)|/etc/secret{i}\b"))),
        ..PolicyConfig::default()
    };
    let readonly = PolicyConfig {
        mode: Mode::Allowlist,
        allow: strings(programs.iter().map(|p| format!("^{p}( |$)"))),
        deny: strings((0..10).map(|i| format!("^cat /root/file{i}$"))),
        ..PolicyConfig::default()
    };
    let logs = PolicyConfig {
        mode: Mode::Allowlist,
        allow: strings((0..30).map(|i| format!(r"^tail -n [0-9]+ /var/log/app{i}/[a-z]+\.log$"))),
        ..PolicyConfig::default()
    };
    let host = PolicyConfig {
        mode: Mode::Allowlist,
        allow: strings((0..10).map(|i| format!("^systemctl (status|restart) svc{i}$"))),
        allow_argv: structured_rules(),
        deny: strings((0..5).map(|i| format!("^kill -9 {i}$"))),
        require_approval: strings((0..5).map(|i| format!("^systemctl restart svc{i}$"))),
        ..PolicyConfig::default()
    };
    let parts = [
        ("group:_default/base", default),
        ("group:prod/readonly", readonly),
        ("group:prod/logs", logs),
        ("host", host),
    ];
    let total: usize = parts
        .iter()
        .map(|(_, c)| c.allow.len() + c.deny.len() + c.require_approval.len())
        .sum();
    assert_eq!(total, 100);
    PolicySet::compose(
        parts
            .into_iter()
            .map(|(s, c)| (s.to_owned(), compile(&c, s).unwrap()))
            .collect(),
    )
}

/// Five structured rules (not counted in the 100 regexes), the git one last.
fn structured_rules() -> Vec<ArgvRuleConfig> {
    let mut rules: Vec<ArgvRuleConfig> = ["df", "free", "uptime", "id"]
        .iter()
        .map(|p| {
            serde_json::from_value(serde_json::json!({"program": p, "options": {"-h": "flag"}}))
                .unwrap()
        })
        .collect();
    rules.push(
        serde_json::from_value(serde_json::json!({
            "program": "git",
            "global_options": {"-C": {"value": "/srv/repos/[a-z0-9-]+"}},
            "subcommand": ["log"],
            "options": {"--oneline": "flag", "-n": {"value": "[0-9]{1,3}"}, "--max-count": {"value": "[0-9]{1,3}"}},
            "args": ["[A-Za-z0-9._/~^-]+"],
            "max_args": 2,
        }))
        .unwrap(),
    );
    rules
}

fn percentiles(set: &PolicySet) {
    const N: usize = 20_000;
    for (name, command) in COMMANDS {
        let mut samples = Vec::with_capacity(N);
        for _ in 0..N {
            let start = Instant::now();
            black_box(set.decide(black_box(command)));
            samples.push(start.elapsed());
        }
        samples.sort();
        let p = |q: f64| samples[((N as f64) * q) as usize].as_secs_f64() * 1e6;
        println!(
            "decide/{name:<16} p50 {:>6.2} µs   p99 {:>6.2} µs",
            p(0.50),
            p(0.99)
        );
    }
}

fn main() {
    let set = hundred_rule_set();
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("decide");
    for (name, command) in COMMANDS {
        group.bench_function(*name, |b| b.iter(|| set.decide(black_box(command))));
    }
    group.finish();
    c.bench_function("parse_simple_commands", |b| {
        b.iter(|| parse_simple_commands(black_box("ps aux | grep nginx")))
    });
    c.final_summary();
    percentiles(&set);
}
