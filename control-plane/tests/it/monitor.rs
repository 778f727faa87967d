//! The control plane's monitor listener: `/metrics` accepted by an
//! independent OpenMetrics parser, and `/readyz` false while the signer
//! does not answer, true again once it does.

use infrabroker_testbed::monitor::{get, have_prometheus_parser, parse_openmetrics, wait_ready};
use infrabroker_testbed::require;
use serde_json::json;

use crate::harness::{Bed, paper_host};

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
    if !require(
        "Python prometheus_client (pip install prometheus_client)",
        have_prometheus_parser(),
    ) {
        return;
    }
    let mut bed = Bed::start_with(|pki| json!({"web": paper_host(pki, &[])}));
    let port = infrabroker_testbed::free_port();
    let _cp = bed.control_plane(
        "cp-monitor",
        json!({"monitor_listen": format!("127.0.0.1:{port}")}),
    );
    let (status, body) = fetch(port, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let families = parse_openmetrics(&body).unwrap();
    for f in [
        "infrabroker_cp_approvals_created",
        "infrabroker_cp_approvals_held",
    ] {
        assert!(families.iter().any(|n| n == f), "{f} in {families:?}");
    }
    assert_eq!(fetch(port, "/readyz").await.0, 200);
    assert!(bed.signer.child.signal(SIGSTOP));
    let (status, ready) = fetch(port, "/readyz").await;
    assert!(bed.signer.child.signal(SIGCONT));
    assert_eq!(status, 503, "{ready}");
    assert!(ready.contains("signer"), "{ready}");
    let back = tokio::task::spawn_blocking(move || wait_ready(port, 5))
        .await
        .unwrap();
    assert!(back, "ready again after the signer returned");
}
