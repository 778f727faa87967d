use super::*;
use infrabroker_common::wire::{Purpose, Role};

pub(crate) fn sample(tier: Tier) -> Approval {
    Approval {
        id: new_id(),
        caller: "broker-1".into(),
        subject: "broker-1".into(),
        request: SignRequest {
            host: "web".into(),
            role: Role::Target,
            purpose: Purpose::Oneshot,
            command: "systemctl restart nginx".into(),
            pubkey: "ssh-ed25519 AAAA".into(),
            sudo: true,
            sudo_user: None,
            pty: false,
            session_mode: None,
            ttl_seconds: None,
            timeout_seconds: None,
            end_user: Some("alice".into()),
            end_user_groups: None,
            dry_run: false,
            on_behalf_of: None,
            approved: false,
            file: None,
        },
        tier,
        reasons: vec!["policy".into()],
        rule: None,
        learn: Vec::new(),
        status: Status::Pending,
        created_ms: 1_000,
        expires_ms: 61_000,
        decided_by: None,
        decided_ms: None,
        reason: None,
        escalation: None,
    }
}

fn op(id: &str) -> Decider {
    Decider {
        id: id.into(),
        via: Via::Operator,
    }
}

fn ai() -> Decider {
    Decider {
        id: "ai-reviewer".into(),
        via: Via::AiReviewer,
    }
}

#[test]
fn requester_and_end_user_cannot_decide() {
    for who in ["broker-1", "alice"] {
        let mut a = sample(Tier::Human);
        let e = a.decide(&op(who), true, "ok", 2_000, 1_000).unwrap_err();
        assert!(matches!(e, Refusal::SelfApproval { .. }), "{who}");
        assert_eq!(a.status, Status::Pending);
    }
}

#[test]
fn an_operator_the_identity_map_ties_to_the_end_user_cannot_decide() {
    let text = r#"{"identities": {"alice": {"operator_cns": ["alice-ops"],
        "oidc_subjects": ["alice"]}}}"#;
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    let errs = infrabroker_common::config::Errors::new();
    let map = crate::identity::read(&infrabroker_common::config::Obj::new(&v, "", &errs).unwrap());
    let a = sample(Tier::Human);
    let e = a.refuse_tied(&op("alice-ops"), &map).unwrap_err();
    assert!(matches!(e, Refusal::TiedIdentity { .. }), "{e}");
    assert!(e.to_string().contains("alice-ops is alice"), "{e}");
    assert!(a.refuse_tied(&op("bob-ops"), &map).is_ok());
    assert!(
        a.refuse_tied(&ai(), &map).is_ok(),
        "the map ties operator CNs only"
    );
}

#[test]
fn reviewer_approves_only_ai_review_but_denies_anything() {
    let mut human = sample(Tier::Human);
    assert!(matches!(
        human.decide(&ai(), true, "fine", 2_000, 1_000),
        Err(Refusal::TierForbidden { .. })
    ));
    human.decide(&ai(), false, "no", 2_000, 1_000).unwrap();
    assert_eq!(human.status, Status::Denied);
    let mut ai_req = sample(Tier::AiReview);
    ai_req.decide(&ai(), true, "fine", 2_000, 5_000).unwrap();
    assert_eq!(ai_req.status, Status::Approved);
    assert_eq!(
        ai_req.expires_ms, 7_000,
        "collection window starts at approval"
    );
}

#[test]
fn escalation_moves_to_the_human_queue_once() {
    let mut a = sample(Tier::AiReview);
    a.escalate(&ai(), "unsure").unwrap();
    assert_eq!(a.tier, Tier::Human);
    assert!(matches!(
        a.escalate(&ai(), "again"),
        Err(Refusal::AlreadyHuman { .. })
    ));
    assert!(matches!(
        a.decide(&ai(), true, "x", 2_000, 1_000),
        Err(Refusal::TierForbidden { .. })
    ));
    a.decide(&op("operator"), true, "checked", 2_000, 1_000)
        .unwrap();
    assert_eq!(a.view().escalated_by.as_deref(), Some("ai-reviewer"));
}

#[test]
fn collected_once_then_used() {
    let mut a = sample(Tier::Human);
    assert_eq!(a.collect(), Collect::Wait(Status::Pending));
    a.decide(&op("operator"), true, "ok", 2_000, 1_000).unwrap();
    assert!(matches!(a.collect(), Collect::Issue(_)));
    assert_eq!(a.collect(), Collect::Wait(Status::Issuing));
    a.finish_issuing(true, 2_500);
    assert_eq!(a.collect(), Collect::Used);
    assert!(matches!(
        a.decide(&op("operator"), false, "late", 3_000, 1_000),
        Err(Refusal::NotPending { .. })
    ));
}

#[test]
fn unreachable_signer_leaves_it_collectable() {
    let mut a = sample(Tier::Human);
    a.decide(&op("operator"), true, "ok", 2_000, 1_000).unwrap();
    assert!(matches!(a.collect(), Collect::Issue(_)));
    a.finish_issuing(false, 2_100);
    assert_eq!(a.status, Status::Approved);
}

#[test]
fn deadlines_expire_pending_and_uncollected_requests() {
    let mut a = sample(Tier::Human);
    assert!(!a.expire_if_due(60_999));
    assert!(a.expire_if_due(61_000));
    assert_eq!(a.collect(), Collect::Expired);
    let mut b = sample(Tier::Human);
    b.decide(&op("operator"), true, "ok", 2_000, 1_000).unwrap();
    assert!(b.expire_if_due(3_000));
    let mut c = sample(Tier::Human);
    c.decide(&op("operator"), false, "no", 2_000, 1_000)
        .unwrap();
    assert!(!c.expire_if_due(u64::MAX), "a final state never changes");
}

#[test]
fn ids_are_unguessable_hex() {
    let a = new_id();
    assert!(is_id(&a));
    assert_ne!(a, new_id());
    assert!(!is_id("../etc"));
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
}

#[test]
fn the_user_confirms_only_user_confirm_requests_and_it_never_counts_as_more() {
    // Accept: approved, decided by the end user via user_confirm.
    let mut a = sample(Tier::UserConfirm);
    let who = a.confirm(true, "confirmed", 2_000, 5_000).unwrap();
    assert_eq!((who.id.as_str(), who.via), ("alice", Via::UserConfirm));
    assert_eq!(a.status, Status::Approved);
    assert_eq!(a.expires_ms, 7_000, "the collection window starts now");
    // A second answer changes nothing.
    let e = a.confirm(false, "no", 2_500, 5_000).unwrap_err();
    assert!(matches!(e, Refusal::NotPending { .. }), "{e}");

    // Decline or cancel: denied.
    let mut a = sample(Tier::UserConfirm);
    a.confirm(false, "declined", 2_000, 5_000).unwrap();
    assert_eq!(a.status, Status::Denied);

    // No end user: the broker itself is named as the decider.
    let mut a = sample(Tier::UserConfirm);
    a.request.end_user = None;
    assert_eq!(a.confirm(true, "ok", 2_000, 5_000).unwrap().id, "broker-1");

    // A user's confirmation never decides a stricter tier.
    for tier in [Tier::AiReview, Tier::Human] {
        let mut a = sample(tier);
        let e = a.confirm(true, "ok", 2_000, 5_000).unwrap_err();
        assert!(matches!(e, Refusal::NotUserConfirm { .. }), "{e}");
        assert_eq!(a.status, Status::Pending);
    }
    assert!(Tier::Auto < Tier::UserConfirm);
    assert!(Tier::UserConfirm < Tier::AiReview && Tier::AiReview < Tier::Human);

    // The AI reviewer cannot approve it; an operator can.
    let mut a = sample(Tier::UserConfirm);
    let e = a.decide(&ai(), true, "ok", 2_000, 1_000).unwrap_err();
    assert!(matches!(e, Refusal::TierForbidden { .. }), "{e}");
    a.decide(&op("oscar"), true, "ok", 2_000, 1_000).unwrap();
    assert_eq!(a.status, Status::Approved);
}

#[test]
fn a_held_file_transfer_shows_what_it_moves() {
    let mut a = sample(Tier::UserConfirm);
    a.request.command = String::new();
    a.request.purpose = Purpose::FilePut;
    a.request.file = Some(infrabroker_common::wire::FileTransfer {
        path: "/srv/app/config.yml".into(),
        size: 12,
        sha256: Some("ab".repeat(32)),
        overwrite: true,
        ..Default::default()
    });
    let file = a.view().file.unwrap();
    assert!(
        file.starts_with("put /srv/app/config.yml (12 bytes, sha256 abab"),
        "{file}"
    );
    assert!(file.ends_with("mode kept, or 0644, overwrite)"), "{file}");
    assert_eq!(sample(Tier::Human).view().file, None);
}
