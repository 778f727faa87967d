//! Structured allow rules composed into a policy set: they widen an
//! allowlist, and deny rules, wrappers and the exec-option table still hold.

use infrabroker_firewall::argv::ArgvRuleConfig;
use infrabroker_firewall::{Context, Mode, PolicyConfig, PolicySet, ReasonCode, RuleForm, compile};

fn rules(json: serde_json::Value) -> Vec<ArgvRuleConfig> {
    serde_json::from_value(json).unwrap()
}

fn set() -> PolicySet {
    let host = PolicyConfig {
        mode: Mode::Allowlist,
        allow: vec!["^uptime$".into()],
        allow_argv: rules(serde_json::json!([
            {"program": "git", "global_options": {"-C": {"value": "/srv/[a-z]+"}},
             "subcommand": ["log"], "options": {"-n": {"value": "[0-9]+"}, "--oneline": "flag"},
             "args": ["[a-z0-9]+"], "max_args": 1},
            {"program": "rg", "options": {"-n": "flag", "--pre": "value"}, "args": [".+"], "max_args": 2},
        ])),
        deny: vec!["secret".into()],
        ..PolicyConfig::default()
    };
    let base = PolicyConfig {
        mode: Mode::Denylist,
        deny: vec!["^rm ".into()],
        ..PolicyConfig::default()
    };
    PolicySet::compose(vec![
        (
            "group _default: base".into(),
            compile(&base, "base").unwrap(),
        ),
        ("host".into(), compile(&host, "host").unwrap()),
    ])
}

#[test]
fn structured_rules_admit_exactly_what_they_list() {
    let set = set();
    let d = set.decide("git -C /srv/app log -n5 --one main && uptime");
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.matched_rule.as_deref(), Some("allow_argv:git log"));
    assert_eq!(d.rule_source.as_deref(), Some("host"));
    for (command, code) in [
        ("git log --stat", ReasonCode::AllowlistNoMatch),
        ("git log -n 5 main extra", ReasonCode::AllowlistNoMatch),
        ("git -C /etc log", ReasonCode::AllowlistNoMatch),
        ("git show", ReasonCode::AllowlistNoMatch),
        // A deny regex still refuses what a structured rule admits.
        ("git log secret", ReasonCode::CommandDenied),
        // The exec table refuses an option the rule itself lists.
        ("rg --pre=id x", ReasonCode::ExecOption),
        ("rg --pr id x", ReasonCode::ExecOption),
    ] {
        let d = set.decide(command);
        assert_eq!(d.reason_code, code, "{command}: {d:?}");
        assert!(!d.allowed, "{command}");
    }
    let d = set.decide("git log --stat");
    assert!(
        d.message.contains("option --stat is not allowed"),
        "{}",
        d.message
    );
}

#[test]
fn explain_command_reports_the_normalised_argv_and_the_rule_form() {
    let set = set();
    let e = set.explain_command("uptime; git log -n5 main", Context::default());
    assert!(e.decision.allowed, "{:?}", e.decision);
    assert_eq!(e.decision, set.decide("uptime; git log -n5 main"));
    assert_eq!(e.commands.len(), 2);
    let up = e.commands[0].decided_by.as_ref().unwrap();
    assert_eq!(
        (up.form, up.rule.as_str()),
        (RuleForm::Regex, "allow:^uptime$")
    );
    let git = &e.commands[1];
    assert_eq!(git.argv, ["git", "log", "-n5", "main"]);
    assert_eq!(
        git.normalized.as_deref().unwrap(),
        ["git", "log", "-n", "5", "--", "main"]
    );
    assert_eq!(git.decided_by.as_ref().unwrap().form, RuleForm::Structured);
    let e = set.explain_command("git log --follow x", Context::default());
    assert_eq!(e.decision.reason_code, ReasonCode::AllowlistNoMatch);
    assert!(
        e.commands[0].structured_misses[0].contains("--follow"),
        "{e:?}"
    );
    let e = set.explain_command("git log", Context { terminal: true });
    assert_eq!(e.decision.reason_code, ReasonCode::ExecOption);
    assert_eq!(
        e.commands[0].decided_by.as_ref().unwrap().form,
        RuleForm::ExecTable
    );
}

#[test]
fn upstream_policies_without_structured_rules_decide_as_before() {
    let cfg: PolicyConfig = serde_json::from_str(
        r#"{"mode": "allowlist", "allow": ["^ls( |$)"], "deny": ["^ls /root"]}"#,
    )
    .unwrap();
    let set = PolicySet::compose(vec![("host".into(), compile(&cfg, "host").unwrap())]);
    assert!(set.decide("ls -la").allowed);
    assert_eq!(
        set.decide("ls /root").reason_code,
        ReasonCode::CommandDenied
    );
    assert_eq!(
        set.decide("cat x").reason_code,
        ReasonCode::AllowlistNoMatch
    );
}
