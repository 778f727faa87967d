use super::*;

const MINIMAL: &str = r#"{
    "listen": "127.0.0.1:0",
    "server_cert": "cp.crt", "server_key": "cp.key", "client_ca": "ca.crt",
    "sign_callers": ["broker-1"],
    "signer": {"url": "https://127.0.0.1:9443", "client_cert": "cp.crt",
               "client_key": "cp.key", "ca": "ca.crt"},
    "audit_log": "cp.log", "audit_key": "cp.seed", // comment
}"#;

#[test]
fn minimal_file_gets_defaults() {
    let c = ControlPlaneConfig::from_text(MINIMAL, Path::new("/etc/ib")).unwrap();
    assert_eq!(c.approval.timeout, DEFAULT_APPROVAL_TIMEOUT);
    assert_eq!(c.approval.default_tier, Tier::Human);
    assert_eq!(c.behavior.mode, GuardMode::Off);
    assert_eq!(c.audit_log, Path::new("/etc/ib/cp.log"));
    assert_eq!(c.audit_fail_mode, AuditFailMode::Closed);
}

#[test]
fn a_requester_cannot_also_be_an_approver() {
    let mut v = infrabroker_common::config::parse_jwcc(MINIMAL).unwrap();
    v["approval"] = serde_json::json!({"callers": ["operator", "broker-1"]});
    let e = ControlPlaneConfig::from_text(&v.to_string(), Path::new("/"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("approval.callers: \"broker-1\" is also in sign_callers"),
        "{e}"
    );
}

#[test]
fn the_example_file_is_valid() {
    let text = include_str!("../../control-plane.example.json");
    let c = ControlPlaneConfig::from_text(text, Path::new("/etc/infrabroker")).unwrap();
    let tiers: Vec<Tier> = c.approval.tiers.iter().map(|r| r.tier).collect();
    assert_eq!(tiers, [Tier::Auto, Tier::AiReview, Tier::UserConfirm]);
    assert_eq!(c.approval.notifier, NotifierKind::Webhook);
    assert_eq!(c.behavior.mode, GuardMode::Observe);
    assert!(c.approval.reviewer.is_some());
    let cp = c.audit_checkpoint.expect("the example keeps checkpoints");
    assert_eq!(cp.every_seconds, Some(std::time::Duration::from_secs(60)));
}

#[test]
fn go_style_listen_means_every_interface() {
    let text = MINIMAL.replace("127.0.0.1:0", ":7443");
    let c = ControlPlaneConfig::from_text(&text, Path::new("/")).unwrap();
    assert_eq!(c.listen.to_string(), "0.0.0.0:7443");
}

#[test]
fn every_error_is_reported_with_its_path() {
    let text = r#"{
        "server_cert": "", "client_ca": "ca.crt", "sign_callers": [],
        "signer": {"url": "http://x", "client_cert": "a", "client_key": "b", "ca": "c"},
        "approval": {"notifier": "webhook", "timeout_seconds": 999999,
                     "approval_url_template": "https://x/", "teams_format": "workflow",
                     "tiers": [{"match": "(", "tier": "ai"}, {"match": "^x"}],
                     "reviewer": {"listen": "0.0.0.0:1", "token_file": "t"},
                     "learn": true},
        "behavior": {"mode": "panic", "max_subjects": 0},
        "store": {"sqlite": "x.db", "postgres": {"url": "postgresql://db/ib"}},
        "audit_log": "l", "audit_key": "k"
    }"#;
    let e = ControlPlaneConfig::from_text(text, Path::new("/"))
        .unwrap_err()
        .to_string();
    for needle in [
        "server_cert: must not be empty",
        "server_key: is required",
        "sign_callers: must list at least one broker CN",
        "signer.url: must be an https:// URL",
        "approval.webhook_url: is required by this notifier",
        "approval.timeout_seconds: must be at most 86400",
        "approval.approval_url_template: must contain the {id} placeholder",
        "approval.teams_format: \"workflow\" is not implemented",
        "approval.tiers[0].match: not a valid regex",
        "approval.tiers[0].tier: \"ai\" is not",
        "approval.tiers[1].tier: is required",
        "approval.reviewer.listen: must be a loopback address",
        "approval.learn: unknown field",
        "behavior.mode: \"panic\" is not",
        "behavior.max_subjects: must be between",
        "store: name either `sqlite` or `postgres`, not both",
    ] {
        assert!(e.contains(needle), "{needle} missing in:\n{e}");
    }
}
