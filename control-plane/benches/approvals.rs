//! Approval throughput: full hold → decide → collect cycles per second
//! through real `control-plane` and `signer` release binaries, with one
//! control plane on its embedded SQLite store next to two control planes
//! on one PostgreSQL (fsync on), where every cycle is held on one replica,
//! decided on the other and collected on the first. N concurrent cycles;
//! each level is bounded by a cycle count and a deadline. Prints numbers;
//! asserts nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench code: a failed setup aborts the run with its message"
)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use infrabroker_common::client::MtlsClient;
use infrabroker_testbed::postgres::{Postgres, have_postgres};
use infrabroker_testbed::stack::{Pki, SignerProc, signer_config};
use infrabroker_testbed::{ChildGuard, bin_path, spawn_service, wait_until};
use serde_json::{Value, json};

const CYCLES: usize = 3_000;
const DEADLINE: Duration = Duration::from_secs(8);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Starts a control plane named `name` in `dir`; returns it and its URL.
fn control_plane(
    dir: &Path,
    pki: &Pki,
    signer: &str,
    name: &str,
    store: Option<Value>,
) -> (ChildGuard, String) {
    let mut cfg = json!({
        "listen": "127.0.0.1:0",
        "server_cert": pki.path("control-plane.crt"),
        "server_key": pki.path("control-plane.key"),
        "client_ca": pki.path("ca.crt"),
        "sign_callers": ["broker-1"],
        "signer": {"url": signer, "client_cert": pki.path("control-plane.crt"),
                   "client_key": pki.path("control-plane.key"), "ca": pki.path("ca.crt")},
        "approval": {"timeout_seconds": 60, "callers": ["operator"], "max_pending_per_caller": 1000},
        "audit_log": dir.join(format!("{name}-audit.log")),
        "audit_key": pki.path("control-plane-audit.seed"),
    });
    if let Some(store) = store {
        cfg["store"] = store;
    }
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let child = spawn_service(
        bin_path("control-plane").unwrap(),
        [Path::new("--config").as_os_str(), path.as_os_str()],
        dir.join(format!("{name}.stderr")),
    )
    .unwrap();
    let marker = "control plane listening on ";
    wait_until(Duration::from_secs(20), || child.log().contains(marker));
    let log = child.log();
    let url = log
        .split(marker)
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("control plane did not start:\n{log}"))
        .to_owned();
    (child, url)
}

fn client(url: &str, pki: &Pki, who: &str) -> MtlsClient {
    MtlsClient::new(
        url,
        &pki.path("ca.crt"),
        &pki.path(&format!("{who}.crt")),
        &pki.path(&format!("{who}.key")),
        Duration::from_secs(10),
    )
    .unwrap()
}

/// One hold (on `hold`) → approve (on `decide`) → collect (on `hold`).
async fn cycle(broker: &MtlsClient, operator: &MtlsClient, body: &[u8]) -> bool {
    let Ok(held) = broker
        .call_raw(hyper::Method::POST, "/v1/sign", Some(body.to_vec()))
        .await
    else {
        return false;
    };
    let id = serde_json::from_slice::<Value>(&held.body)
        .ok()
        .and_then(|v| v["approval_id"].as_str().map(str::to_owned));
    let Some(id) = id else {
        eprintln!("not held: {}", held.status);
        return false;
    };
    let decision = br#"{"approve": true, "reason": "bench"}"#.to_vec();
    let path = format!("/v1/approvals/{id}");
    let ok = operator
        .call_raw_with_headers(
            hyper::Method::POST,
            &path,
            Some(decision),
            &[("content-type", "application/json")],
        )
        .await
        .is_ok_and(|r| r.status.is_success());
    if !ok {
        return false;
    }
    broker
        .call_raw(hyper::Method::GET, &format!("/v1/sign/result/{id}"), None)
        .await
        .is_ok_and(|r| r.status.is_success())
}

fn level(rt: &tokio::runtime::Runtime, pki: &Pki, hold: &str, decide: &str, n: usize) {
    let left = Arc::new(AtomicUsize::new(CYCLES));
    let deadline = Instant::now() + DEADLINE;
    let start = Instant::now();
    let lat = rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..n {
            let (broker, operator) = (
                client(hold, pki, "broker-1"),
                client(decide, pki, "operator"),
            );
            let left = left.clone();
            let pubkey = ssh_key::PublicKey::from(
                ssh_key::private::Ed25519Keypair::from_seed(&[w as u8; 32]).public,
            )
            .to_openssh()
            .unwrap();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = 0;
                while Instant::now() < deadline
                    && left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
                        .is_ok()
                {
                    i += 1;
                    let body = serde_json::to_vec(
                        &json!({"host": "web", "role": "target", "purpose": "oneshot",
                        "command": format!("echo bench {w} {i}"), "pubkey": pubkey}),
                    )
                    .unwrap();
                    let t = Instant::now();
                    if cycle(&broker, &operator, &body).await {
                        lat.push(t.elapsed());
                    }
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let secs = start.elapsed().as_secs_f64();
    let mut lat = lat;
    lat.sort();
    println!(
        "{n:>4} {:>8} {:>10.0} {:>9.2} {:>9.2}",
        lat.len(),
        lat.len() as f64 / secs,
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
    );
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::create(dir.path())?;
    let mut cfg = signer_config(&pki, &dir.path().join("signer-audit.log"));
    cfg["callers"] = json!({"broker-1": {"allowed_groups": ["web"]}});
    cfg["hosts"] = json!({"web": {
        "addr": "127.0.0.1:22", "user": "x", "principal": "p", "groups": ["web"],
        "host_key": pki.ssh_ca_pub()?,
        "command_policy": {"mode": "denylist", "deny": ["^rm "], "require_approval": ["^echo bench"]},
    }});
    let signer = SignerProc::start(dir.path(), &cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let header = || {
        println!(
            "{:>4} {:>8} {:>10} {:>9} {:>9}",
            "N", "cycles", "cycles/s", "p50 ms", "p99 ms"
        )
    };

    println!("1 control plane, embedded SQLite store (hold, decide and collect on it):");
    header();
    let (one, url) = control_plane(dir.path(), &pki, &signer.url, "cp-sqlite", None);
    for n in [1usize, 8] {
        level(&rt, &pki, &url, &url, n);
    }
    drop(one);

    if !have_postgres() {
        println!("(PostgreSQL not installed: replica section skipped)");
        return Ok(());
    }
    let pg = Postgres::start(true)?;
    pg.create_db("cp")?;
    let store = json!({"postgres": {"url": pg.url("cp"), "pool_size": 8}});
    let (_a, a) = control_plane(dir.path(), &pki, &signer.url, "cp-a", Some(store.clone()));
    let (_b, b) = control_plane(dir.path(), &pki, &signer.url, "cp-b", Some(store));
    println!("2 control planes, PostgreSQL 15 (fsync on): held and collected on a, decided on b:");
    header();
    for n in [1usize, 8] {
        level(&rt, &pki, &a, &b, n);
    }
    Ok(())
}
