//! Behaviour guardrails: observe only audits; enforce turns a novelty into
//! an approval (learned once collected) and a rate excess into 429.

use std::time::Duration;

use hyper::StatusCode;
use infrabroker_testbed::sshd_or_skip;
use serde_json::json;

use crate::harness::{Bed, err_of, host_for, json_of, post_sign, sign_body, spawn_run, sshd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_audits_and_enforce_holds_novelties_and_limits_the_rate() {
    if !sshd_or_skip() {
        return;
    }
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let bed = Bed::start_in(dir, pki, json!({"web": host_for(&s, "web-principal", &[])}));

    // Observe: everything runs; novelties are audited once, then learned.
    let cp = bed.control_plane("cp-observe", json!({"behavior": {"mode": "observe"}}));
    let engine = bed.engine(&cp, 10).await;
    // Novelty is per command shape (program + option set): `id -nu` is the
    // shape of `id -un`.
    for cmd in ["id -un", "id -nu", "uname -s"] {
        let r = spawn_run(&engine, "web", cmd).await.unwrap();
        assert!(r.is_ok(), "{cmd}: {r:?}");
    }
    let anomalies = cp.outcomes("anomaly");
    let found: Vec<_> = anomalies.iter().map(|r| r["anomaly"].clone()).collect();
    assert_eq!(
        found,
        vec![
            json!(["novel host web", "novel command id -n -u"]),
            json!(["novel command uname -s"]),
        ],
        "{anomalies:?}"
    );
    assert!(anomalies.iter().all(|r| r["mode"] == "observe"));
    assert!(cp.outcomes("approval-required").is_empty());
    drop(engine);
    drop(cp);

    // Enforce: the first command on a never-seen host waits for approval.
    let cp = bed.control_plane(
        "cp-enforce",
        json!({"behavior": {"mode": "enforce", "rate_limit_per_min": 3}}),
    );
    let engine = bed.engine(&cp, 30).await;
    let run = spawn_run(&engine, "web", "id -un");
    let pending = cp.pending("id -un", &[]).await;
    assert_eq!(pending["tier"], "human");
    let reasons = pending["reasons"].to_string();
    assert!(
        reasons.contains("novel host web") && reasons.contains("novel command id -n -u"),
        "{reasons}"
    );
    let id = pending["id"].as_str().unwrap();
    let (ok, _, err) = cp
        .ctl("operator", &["allow", id, "--reason", "first use"])
        .await;
    assert!(ok, "{err}");
    let r = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r.stdout, "ibtest\n");

    // Learned on collection: the same host and shape now run directly.
    let r = spawn_run(&engine, "web", "id -nu").await.unwrap();
    assert!(r.is_ok(), "{r:?}");
    let r = spawn_run(&engine, "web", "id -u -n").await.unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(cp.outcomes("approval-required").len(), 1);

    // Fourth request of the minute: 429 with Retry-After, nothing run.
    let before = s.log().matches("Accepted certificate").count();
    let (code, text) = err_of(spawn_run(&engine, "web", "id -u").await.unwrap());
    assert_eq!(code, "rate_limited", "{text}");
    assert!(text.contains("Retry-After"), "{text}");
    let raw = post_sign(
        &bed.client(&cp.url, "broker-1"),
        &sign_body("web", "id -u", &bed.pki.ssh_ca_pub().unwrap()),
    )
    .await;
    assert_eq!(raw.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(json_of(&raw)["reason_code"], "rate_limited");
    let after: u64 = raw.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=60).contains(&after), "{after}");
    assert_eq!(s.log().matches("Accepted certificate").count(), before);
    let limited = cp.outcomes("rate-limited");
    assert_eq!(limited.len(), 2);
    assert_eq!(limited[0]["subject"], "broker-1");
}
