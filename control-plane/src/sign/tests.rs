use super::*;

fn req(role: Role, purpose: Purpose, dry_run: bool) -> SignRequest {
    SignRequest {
        host: "web".into(),
        role,
        purpose,
        command: "id".into(),
        pubkey: String::new(),
        sudo: false,
        sudo_user: None,
        pty: false,
        session_mode: None,
        ttl_seconds: None,
        timeout_seconds: None,
        end_user: None,
        end_user_groups: None,
        dry_run,
        on_behalf_of: None,
        approved: false,
        file: None,
    }
}

#[test]
fn actions_are_what_will_run() {
    assert!(is_action(&req(Role::Target, Purpose::Oneshot, false)));
    assert!(is_action(&req(Role::Target, Purpose::Session, false)));
    assert!(
        is_action(&req(Role::Target, Purpose::Session, true)),
        "a session command's preflight runs it next"
    );
    assert!(!is_action(&req(Role::Target, Purpose::Oneshot, true)));
    assert!(!is_action(&req(Role::Bastion, Purpose::Oneshot, false)));
}

#[test]
fn first_matching_tier_rule_wins() {
    let text = r#"{"sign_callers": ["b"], "server_cert": "c", "server_key": "k",
        "client_ca": "ca", "audit_log": "l", "audit_key": "s",
        "signer": {"url": "https://x:1", "client_cert": "c", "client_key": "k", "ca": "ca"},
        "approval": {"default_tier": "human", "tiers": [
            {"match": "^systemctl status ", "tier": "auto"},
            {"match": "^systemctl ", "hosts": ["web"], "tier": "ai_review"}]}}"#;
    let cfg =
        crate::config::ControlPlaneConfig::from_text(text, std::path::Path::new("/")).unwrap();
    let a = &cfg.approval;
    let tier = |host: &str, command: &str| {
        let mut r = req(Role::Target, Purpose::Oneshot, false);
        r.host = host.into();
        r.command = command.into();
        policy_tier(a, &r)
    };
    assert_eq!(tier("db", "systemctl status x"), Tier::Auto);
    assert_eq!(tier("web", "systemctl restart x"), Tier::AiReview);
    assert_eq!(tier("db", "systemctl restart x"), Tier::Human);
    assert_eq!(tier("web", "reboot"), Tier::Human);
    // Each simple command is tiered alone; the strictest wins.
    assert_eq!(
        tier("db", "systemctl status nginx; systemctl stop postgres"),
        Tier::Human
    );
    assert_eq!(
        tier("web", "systemctl status a && systemctl restart b"),
        Tier::AiReview
    );
    assert_eq!(
        tier("db", "systemctl status a | systemctl status b"),
        Tier::Auto
    );
    // Unparseable text never gets a lenient tier.
    assert_eq!(tier("db", "systemctl status $(reboot)"), Tier::Human);
    // Elevation never rides on a lenient rule.
    let mut r = req(Role::Target, Purpose::Oneshot, false);
    r.host = "db".into();
    r.command = "systemctl status x".into();
    r.sudo = true;
    assert_eq!(policy_tier(a, &r), Tier::Human);
}
