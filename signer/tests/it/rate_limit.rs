//! `sign_rate_limit_per_min`: per caller CN, and per broker and end user
//! behind a trusted forwarder; the excess gets `429 rate_limited` with
//! `Retry-After`, one audit record per window, and other subjects carry on.

use serde_json::json;

use crate::harness::{Stack, keypair, oneshot};

#[tokio::test]
async fn callers_over_their_rate_get_429_and_others_are_not_blocked() {
    let s = Stack::start(|cfg, _| {
        cfg["sign_rate_limit_per_min"] = json!(3);
        cfg["callers"]["operator"] = json!({"allowed_groups": ["web"]});
    });
    let key = keypair();
    let req = oneshot("web", "id", &key);
    for _ in 0..3 {
        assert_eq!(s.sign("broker-1", &req).await.0, 200);
    }
    for _ in 0..3 {
        let raw = s
            .sign_raw("broker-1", serde_json::to_vec(&req).unwrap())
            .await;
        assert_eq!(raw.status.as_u16(), 429);
        let v: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
        assert_eq!(v["reason_code"], "rate_limited", "{v}");
        let after: u64 = raw.retry_after.as_deref().unwrap().parse().unwrap();
        assert!((1..=60).contains(&after), "{after}");
    }
    // Dry runs issue nothing and are not counted.
    let mut dry = req.clone();
    dry["dry_run"] = json!(true);
    assert_eq!(s.sign("broker-1", &dry).await.0, 200);
    // Another caller has its own budget.
    assert_eq!(s.sign("operator", &req).await.0, 200);
    // Behind the trusted forwarder, each end user has their own budget.
    for user in ["alice", "bob"] {
        let mut fwd = req.clone();
        fwd["on_behalf_of"] = json!("broker-1");
        fwd["end_user"] = json!(user);
        for _ in 0..3 {
            let (st, v) = s.sign("control-plane", &fwd).await;
            assert_eq!(st, 200, "{user}: {v}");
        }
        let (st, v) = s.sign("control-plane", &fwd).await;
        assert_eq!(
            (st, v["reason_code"].as_str()),
            (429, Some("rate_limited")),
            "{user}"
        );
    }
    // One record per subject and window, however many refusals.
    let limited: Vec<_> = s
        .audit_records()
        .into_iter()
        .filter(|r| r["outcome"] == "rate_limited")
        .collect();
    let subjects: Vec<&str> = limited
        .iter()
        .map(|r| r["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        ["broker-1", "broker-1/alice", "broker-1/bob"],
        "{limited:?}"
    );
    let issued = s
        .audit_records()
        .iter()
        .filter(|r| r["outcome"] == "issued")
        .count();
    assert_eq!(issued, 3 + 1 + 6);
}
