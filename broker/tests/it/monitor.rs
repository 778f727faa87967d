//! The broker's monitor listener: `/metrics` that an independent
//! OpenMetrics parser accepts, with per-stage histograms of real calls,
//! and `/readyz` that turns false while the signer is down and true again
//! after.

use std::time::Duration;

use infrabroker_testbed::monitor::{get, have_prometheus_parser, parse_openmetrics, wait_ready};
use infrabroker_testbed::{require, sshd_or_skip};
use serde_json::json;

use crate::harness::{Bed, host_for, run, sshd};

/// Linux signal numbers (no libc in these tests).
const SIGSTOP: i32 = 19;
const SIGCONT: i32 = 18;

async fn fetch(port: u16, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || get(port, path))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_readiness_follows_the_signer() {
    if !sshd_or_skip()
        || !require(
            "Python prometheus_client (pip install prometheus_client)",
            have_prometheus_parser(),
        )
    {
        return;
    }
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let mut bed = Bed::start(dir, pki, json!({"web": host_for(&s, "web-principal")}));
    let port = infrabroker_testbed::free_port();
    let engine = bed
        .engine(json!({"monitor_listen": format!("127.0.0.1:{port}")}))
        .await;
    run(&engine, "web", "echo counted").await.unwrap();
    run(&engine, "nowhere", "echo no").await.unwrap_err();

    let (status, body) = fetch(port, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let families = parse_openmetrics(&body).unwrap();
    for f in [
        "infrabroker_broker_calls",
        "infrabroker_broker_stage_seconds",
        "infrabroker_broker_sessions_open",
    ] {
        assert!(families.iter().any(|n| n == f), "{f} in {families:?}");
    }
    assert!(
        body.contains(r#"infrabroker_broker_calls_total{kind="oneshot",outcome="ok"} 1"#),
        "{body}"
    );
    assert!(
        body.contains(r#"infrabroker_broker_calls_total{kind="oneshot",outcome="host_unknown"} 1"#),
        "{body}"
    );
    for stage in ["plan", "sign", "connect", "auth", "exec", "total"] {
        let line =
            format!(r#"infrabroker_broker_stage_seconds_count{{kind="oneshot",stage="{stage}"}}"#);
        assert!(body.contains(&line), "{line} in {body}");
    }

    assert_eq!(fetch(port, "/healthz").await.0, 200);
    let (status, ready) = fetch(port, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    // The signer stops answering: not ready, with the reason.
    assert!(bed.signer.child.signal(SIGSTOP));
    // kill(2) returns before every thread has stopped; on a loaded machine
    // one could still answer. Wait until the kernel reports it stopped.
    let pid = bed.signer.child.pid();
    let stopped = infrabroker_testbed::wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
            st.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('T'))
        })
    });
    assert!(stopped, "the signer stopped");
    let (status, ready) = fetch(port, "/readyz").await;
    assert!(bed.signer.child.signal(SIGCONT));
    assert_eq!(status, 503, "{ready}");
    assert!(ready.contains("signer"), "{ready}");
    // And ready again once it is back.
    let back = tokio::task::spawn_blocking(move || wait_ready(port, 5))
        .await
        .unwrap();
    assert!(back, "ready again after the signer returned");
}
