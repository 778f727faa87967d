//! One-shot execution on a directly reachable host.

use std::time::{Duration, Instant};

use infrabroker_broker::api::{ToolError, Tools};
use infrabroker_testbed::sshd_or_skip;

use crate::harness::{Bed, caller, host_for, req, run, sshd};

#[tokio::test]
async fn streams_exit_codes_signals_truncation_timeout_and_the_serial_join() {
    if !sshd_or_skip() {
        return;
    }
    let (dir, pki) = Bed::pki();
    let sshd = sshd(&pki, "web-principal");
    let bed = Bed::start(
        dir,
        pki,
        serde_json::json!({"web": host_for(&sshd, "web-principal")}),
    );
    let engine = bed.engine(serde_json::json!({})).await;

    let r = run(
        &engine,
        "web",
        "printf 'out\\nline2'; printf 'err' >&2; exit 3",
    )
    .await
    .unwrap();
    assert_eq!(
        (r.stdout.as_str(), r.stderr.as_str(), r.exit_code),
        ("out\nline2", "err", Some(3))
    );
    assert!(!r.stdout_truncated && !r.stderr_truncated && r.exit_signal.is_none());

    let r = run(&engine, "web", "echo ok").await.unwrap();
    assert_eq!((r.stdout.as_str(), r.exit_code), ("ok\n", Some(0)));

    // Timings: one hop, and the command's own time lands in exec_ms.
    let r = run(&engine, "web", "sleep 0.3").await.unwrap();
    assert_eq!(r.timings.hops.len(), 1, "{:?}", r.timings);
    assert_eq!(r.timings.hops[0].host, "web");
    assert!(r.timings.exec_ms >= 300, "{:?}", r.timings);
    assert!(r.timings.exec_ms <= r.duration_ms, "{:?}", r.timings);

    let r = run(&engine, "web", "kill -KILL $$").await.unwrap();
    assert_eq!(r.exit_signal.as_deref(), Some("KILL"), "{r:?}");
    assert_eq!(r.exit_code, None);

    let r = run(
        &engine,
        "web",
        "head -c 10000 /dev/zero | tr '\\0' a; head -c 5000 /dev/zero | tr '\\0' b >&2",
    )
    .await
    .unwrap();
    assert_eq!(r.stdout.len(), 4096);
    assert_eq!(r.stderr.len(), 4096);
    assert!(r.stdout_truncated && r.stderr_truncated);
    assert_eq!(r.exit_code, Some(0));

    let started = Instant::now();
    let mut q = req("web", "sleep 30");
    q.timeout = Some(Duration::from_secs(1));
    let e = engine.execute(&caller(), q).await.unwrap_err();
    assert_eq!(e, ToolError::TimedOut { seconds: 1 });
    assert!(started.elapsed() < Duration::from_secs(10));

    // The serial joins sshd's line, the signer's issuance and the broker's execution.
    let r = run(&engine, "web", "echo joined").await.unwrap();
    assert!(
        sshd.wait_for_log(&format!("(serial {})", r.serial), Duration::from_secs(5)),
        "{}",
        sshd.log()
    );
    let issued = bed
        .signer_records()
        .into_iter()
        .find(|x| x["serial"] == r.serial)
        .unwrap();
    assert_eq!(issued["outcome"], "issued");
    assert_eq!(
        issued["force_command"],
        infrabroker_common::force_command::wrap(&["timeout", "-k", "2", "30"], "echo joined")
            .unwrap()
    );
    let executed = bed
        .broker_records()
        .into_iter()
        .find(|x| x["serial"] == r.serial && x["outcome"] == "executed")
        .unwrap();
    assert_eq!(executed["outcome"], "executed");
    assert_eq!(executed["exit_code"], 0);
    assert_eq!(executed["command"], "echo joined");
    assert_eq!(executed["caller"], "mcp-stdio");
    assert!(executed["duration_ms"].is_u64());
    let timed_out = bed
        .broker_records()
        .into_iter()
        .find(|x| x["outcome"] == "timed_out")
        .unwrap();
    assert_eq!(timed_out["command"], "sleep 30");
    // The broker's log verifies with its own key.
    let key = infrabroker_common::audit::parse_public_key(
        &std::fs::read_to_string(bed.pki.path("broker-audit.pub")).unwrap(),
    )
    .unwrap();
    infrabroker_common::audit::verify_file(
        bed.dir.path().join("broker-audit.log"),
        &key,
        Default::default(),
    )
    .unwrap();
    // Nothing secret in it.
    let text = std::fs::read_to_string(bed.dir.path().join("broker-audit.log")).unwrap();
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains("cert-v01"),
        "no keys or certificates in the audit log"
    );
}

#[tokio::test]
async fn concurrency_per_caller_is_bounded() {
    if !sshd_or_skip() {
        return;
    }
    let (dir, pki) = Bed::pki();
    let sshd = sshd(&pki, "web-principal");
    let bed = Bed::start(
        dir,
        pki,
        serde_json::json!({"web": host_for(&sshd, "web-principal")}),
    );
    let engine = bed
        .engine(serde_json::json!({"max_concurrent_per_caller": 2}))
        .await;
    let slow = || {
        let e = engine.clone();
        tokio::spawn(async move { run(&e, "web", "sleep 2; echo done").await })
    };
    let (a, b) = (slow(), slow());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = run(&engine, "web", "echo third").await;
    assert_eq!(third.unwrap_err(), ToolError::Busy(2));
    assert_eq!(a.await.unwrap().unwrap().stdout, "done\n");
    assert_eq!(b.await.unwrap().unwrap().stdout, "done\n");
    assert_eq!(
        run(&engine, "web", "echo again").await.unwrap().stdout,
        "again\n"
    );
}
