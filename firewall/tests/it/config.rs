//! Loading and composition rules: config errors with paths, how parts
//! combine, `explain`, and the wire shapes.

use infrabroker_firewall::{
    Decision, Enforcement, Mode, PolicyConfig, PolicyError, PolicySet, ReasonCode, RuleKind,
    compile, parse_simple_commands, render,
};

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn allowlist(allow: &[&str]) -> PolicyConfig {
    PolicyConfig {
        mode: Mode::Allowlist,
        allow: strings(allow),
        ..PolicyConfig::default()
    }
}

fn denylist(deny: &[&str]) -> PolicyConfig {
    PolicyConfig {
        mode: Mode::Denylist,
        deny: strings(deny),
        ..PolicyConfig::default()
    }
}

fn compose(parts: Vec<(&str, PolicyConfig)>) -> PolicySet {
    PolicySet::compose(
        parts
            .into_iter()
            .map(|(s, c)| (s.to_owned(), compile(&c, s).unwrap()))
            .collect(),
    )
}

#[test]
fn every_bad_regex_is_reported_with_its_path() {
    let cfg = PolicyConfig {
        mode: Mode::Allowlist,
        allow: strings(&["^ls", "^(unclosed", "^ps"]),
        deny: strings(&["[z-a]"]),
        require_approval: strings(&["ok", "(?P<x"]),
        ..PolicyConfig::default()
    };
    let errors = compile(&cfg, "hosts.web01.command_policy").unwrap_err();
    let paths: Vec<String> = errors
        .iter()
        .map(|e| match e {
            PolicyError::InvalidRegex { path, .. } => path.clone(),
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(
        paths,
        [
            "hosts.web01.command_policy.allow[1]",
            "hosts.web01.command_policy.deny[0]",
            "hosts.web01.command_policy.require_approval[1]",
        ]
    );
    for e in &errors {
        let text = e.to_string();
        assert!(!text.contains('\n'), "one line: {text}");
        assert!(text.starts_with("hosts.web01.command_policy."), "{text}");
    }
}

#[test]
fn mode_rules_are_config_errors() {
    let cfg = PolicyConfig {
        allow: strings(&["^ls"]),
        ..denylist(&["^rm"])
    };
    assert_eq!(
        compile(&cfg, "command_policies.x").unwrap_err(),
        [PolicyError::AllowInDenylist {
            path: "command_policies.x.allow".into()
        }]
    );
    let cfg = PolicyConfig {
        mode: Mode::Off,
        deny: strings(&["^rm"]),
        ..PolicyConfig::default()
    };
    let err = compile(&cfg, "p").unwrap_err();
    assert_eq!(
        err,
        [PolicyError::RulesWhenOff {
            path: "p".into(),
            list: "deny"
        }]
    );
    assert_eq!(err[0].to_string(), "p: deny has no effect when mode is off");
    let cfg = PolicyConfig {
        deny: strings(&["  "]),
        ..allowlist(&["^ls"])
    };
    assert_eq!(
        compile(&cfg, "p").unwrap_err(),
        [PolicyError::EmptyPattern {
            path: "p.deny[0]".into()
        }]
    );
    // An allowlist with deny entries is fine: deny narrows it.
    let cfg = PolicyConfig {
        deny: strings(&["^ls /root"]),
        ..allowlist(&["^ls"])
    };
    let set = PolicySet::compose(vec![("host".into(), compile(&cfg, "p").unwrap())]);
    assert!(set.decide("ls /tmp").allowed);
    assert_eq!(
        set.decide("ls /root").reason_code,
        ReasonCode::CommandDenied
    );
}

#[test]
fn config_reads_upstream_spellings() {
    let cfg: PolicyConfig = serde_json::from_str(
        r#"{"mode":"allowlist","allow":["^ls"],"shell_parse":false,"enforcement":""}"#,
    )
    .unwrap();
    assert_eq!(cfg.mode, Mode::Allowlist);
    assert_eq!(cfg.enforcement, Enforcement::Enforce);
    assert_eq!(cfg.shell_parse, Some(false));
    let off: PolicyConfig = serde_json::from_str(r#"{"mode":""}"#).unwrap();
    assert_eq!(off.mode, Mode::Off);
    assert!(serde_json::from_str::<PolicyConfig>(r#"{"mode":"allowlist","alow":[]}"#).is_err());
    assert!(serde_json::from_str::<PolicyConfig>(r#"{"mode":"blocklist"}"#).is_err());
}

#[test]
fn allowlists_are_a_union_across_parts() {
    let set = compose(vec![
        ("group:_default/a", allowlist(&["^ls( |$)"])),
        ("group:ops/b", allowlist(&["^ps( |$)"])),
        ("host", denylist(&["^ps aux$"])),
    ]);
    assert!(set.decide("ls; ps -ef").allowed);
    assert_eq!(set.decide("ps aux").reason_code, ReasonCode::CommandDenied);
    assert_eq!(set.decide("df").reason_code, ReasonCode::AllowlistNoMatch);
    // A denylist part alone never turns an allowlist off.
    let set = compose(vec![("a", denylist(&[])), ("b", allowlist(&["^ls$"]))]);
    assert_eq!(set.decide("df").reason_code, ReasonCode::AllowlistNoMatch);
}

#[test]
fn shell_parse_is_or_and_enforce_beats_audit() {
    let raw = PolicyConfig {
        shell_parse: Some(false),
        ..allowlist(&["^ps"])
    };
    let parsed = denylist(&[]);
    let set = compose(vec![("a", raw.clone()), ("b", parsed)]);
    assert!(set.explain().shell_parse);
    assert_eq!(
        set.decide("ps; rm -rf /").reason_code,
        ReasonCode::AllowlistNoMatch
    );
    let set = compose(vec![("a", raw)]);
    assert!(!set.explain().shell_parse);
    assert!(set.decide("ps; rm -rf /").allowed);

    let audit = PolicyConfig {
        enforcement: Enforcement::Audit,
        ..denylist(&["^rm "])
    };
    let set = compose(vec![("a", audit.clone())]);
    assert_eq!(set.explain().enforcement, Enforcement::Audit);
    assert!(set.decide("rm x").allowed);
    let set = compose(vec![("a", audit), ("b", denylist(&[]))]);
    assert_eq!(set.explain().enforcement, Enforcement::Enforce);
    assert!(!set.decide("rm x").allowed);
}

#[test]
fn off_parts_do_not_count() {
    let set = compose(vec![("group:_default/off", PolicyConfig::default())]);
    assert!(set.is_empty());
    assert!(set.decide("$(id)").allowed);
    assert!(PolicySet::compose(Vec::new()).is_empty());
    let set = compose(vec![
        ("off", PolicyConfig::default()),
        ("host", denylist(&[])),
    ]);
    assert!(!set.is_empty());
    assert_eq!(set.explain().parts.len(), 2);
}

#[test]
fn explain_lists_rules_with_sources() {
    let set = compose(vec![
        ("group:_default/base", denylist(&["^rm "])),
        (
            "host",
            PolicyConfig {
                require_approval: strings(&["^reboot$"]),
                ..allowlist(&["^ls"])
            },
        ),
    ]);
    let e = set.explain();
    assert_eq!(e.mode, Mode::Allowlist);
    let rules: Vec<(RuleKind, &str, &str)> = e
        .rules
        .iter()
        .map(|r| (r.kind, r.pattern.as_str(), r.source.as_str()))
        .collect();
    assert_eq!(
        rules,
        [
            (RuleKind::Deny, "^rm ", "group:_default/base"),
            (RuleKind::Allow, "^ls", "host"),
            (RuleKind::RequireApproval, "^reboot$", "host"),
        ]
    );
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["mode"], "allowlist");
    assert_eq!(json["enforcement"], "enforce");
    assert_eq!(json["rules"][2]["kind"], "require_approval");
}

#[test]
fn decision_wire_shape() {
    let set = compose(vec![("host", denylist(&["^rm "]))]);
    let d = set.decide("rm -rf /tmp");
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["allowed"], false);
    assert_eq!(json["reason_code"], "command_denied");
    assert_eq!(json["matched_rule"], "deny:^rm ");
    assert_eq!(json["rule_source"], "host");
    assert!(json.get("would_deny").is_none());
    let back: Decision = serde_json::from_value(json).unwrap();
    assert_eq!(back, d);
    for code in [
        ReasonCode::Allowed,
        ReasonCode::NeedsApproval,
        ReasonCode::CommandDenied,
        ReasonCode::AllowlistNoMatch,
        ReasonCode::ParseRejected,
        ReasonCode::CommandInvalid,
    ] {
        assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
    }
}

#[test]
fn judged_text_is_the_canonical_rendering() {
    let argv = parse_simple_commands("l''s \"-la\" 'a b' '' \"it's\"").unwrap();
    assert_eq!(argv, [["ls", "-la", "a b", "", "it's"]]);
    assert_eq!(render(&argv[0]), r#"ls -la 'a b' '' 'it'"'"'s'"#);
    // The rendering parses back to the same argv.
    assert_eq!(parse_simple_commands(&render(&argv[0])).unwrap(), argv);
}
