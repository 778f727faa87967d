//! Revocation end to end, against the real `signer`, `broker-ctl krl
//! fetch` and OpenSSH `sshd` with `RevokedKeys`: how long from `POST
//! /v1/freeze` of a certificate's serial until sshd refuses that
//! certificate, with a fetch every second and with the shipped timer's
//! schedule (`--wait 25` long polls, 5 s apart); and sshd's login time
//! with 10,000- and 100,000-serial KRLs beside one with an empty KRL. Prints numbers;
//! asserts nothing.
//!
//! Needs root and sshd (skips without them). Every loop is bounded by a
//! count and a deadline.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench code: a failed setup aborts the run with its message"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use infrabroker_common::client::MtlsClient;
use infrabroker_common::krl::{CaRevocations, Krl};
use infrabroker_testbed::stack::{Pki, SignerProc, signer_config};
use infrabroker_testbed::{SshClient, Sshd, SshdOptions, bin_path, ensure_user, free_port};
use serde_json::{Value, json};
use ssh_key::{Algorithm, PrivateKey};

const USER: &str = "ibtest";
/// Freezes timed per schedule.
const TRIALS: usize = 8;
/// Longest one freeze may take to reach sshd before the trial is abandoned.
const TRIAL_DEADLINE: Duration = Duration::from_secs(60);
/// Logins timed per sshd.
const LOGINS: usize = 40;

struct Bed {
    _dir: tempfile::TempDir,
    pki: Pki,
    sshd: Sshd,
    krl: PathBuf,
    plain: String,
    signer: SignerProc,
}

fn key() -> PrivateKey {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap()
}

fn client(b: &Bed, who: &str) -> MtlsClient {
    MtlsClient::new(
        &b.signer.url,
        &b.pki.path("ca.crt"),
        &b.pki.path(&format!("{who}.crt")),
        &b.pki.path(&format!("{who}.key")),
        Duration::from_secs(10),
    )
    .unwrap()
}

async fn call(c: &MtlsClient, method: hyper::Method, path: &str, body: &Value) -> Value {
    let raw = c
        .call_raw(method, path, Some(serde_json::to_vec(body).unwrap()))
        .await
        .unwrap();
    assert!(raw.status.is_success(), "{path}: {}", raw.status);
    serde_json::from_slice(&raw.body).unwrap()
}

/// A one-shot certificate for `web` and its key.
async fn issue(c: &MtlsClient) -> (PrivateKey, String, u64) {
    let k = key();
    let req = json!({
        "host": "web", "role": "target", "purpose": "oneshot", "command": "true",
        "pubkey": k.public_key().to_openssh().unwrap(),
    });
    let v = call(c, hyper::Method::POST, "/v1/sign", &req).await;
    let cert = v["certificate"].as_str().unwrap().to_owned();
    (k, cert, v["serial"].as_u64().unwrap())
}

fn logs_in(sshd: &Sshd, key: &PrivateKey, cert: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let c = SshClient::create(dir.path(), key, cert).unwrap();
    c.run(&sshd.target(), USER, "true", &[])
        .unwrap()
        .status
        .success()
}

fn fetch(out: &Path, url: &str, wait: u64) -> bool {
    std::process::Command::new(bin_path("broker-ctl").unwrap())
        .args([
            "krl",
            "fetch",
            "--url",
            url,
            "--wait",
            &wait.to_string(),
            "--out",
        ])
        .arg(out)
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn bed() -> Option<Bed> {
    if !infrabroker_testbed::sshd_or_skip() {
        return None;
    }
    ensure_user(USER).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path()).unwrap();
    let krl = dir.path().join("revoked.krl");
    let mut opts = SshdOptions::new(pki.ssh_ca_pub().unwrap()).with_principals(USER, ["p"]);
    opts.extra_config
        .push(format!("RevokedKeys {}", krl.display()));
    let sshd = Sshd::start(opts).unwrap();
    let port = free_port();
    let mut cfg = signer_config(&pki, &dir.path().join("audit.log"));
    cfg["callers"] = json!({"broker-1": {"allowed_groups": ["web"]}});
    cfg["hosts"] = json!({"web": {
        "addr": sshd.addr().to_string(), "user": USER, "principal": "p", "groups": ["web"],
        "host_key": sshd.host_key_openssh(),
    }});
    cfg["krl_listen"] = json!(format!("127.0.0.1:{port}"));
    let signer = SignerProc::start(dir.path(), &cfg).unwrap();
    let plain = format!("http://127.0.0.1:{port}");
    assert!(fetch(&krl, &plain, 0), "first fetch");
    Some(Bed {
        _dir: dir,
        pki,
        sshd,
        krl,
        plain,
        signer,
    })
}

/// Runs `fetch` on the schedule until `stop`: every `every` without a long
/// poll, or long polls of `wait` seconds `gap` apart.
fn schedule(
    b: &Bed,
    stop: Arc<AtomicBool>,
    wait: u64,
    gap: Duration,
) -> std::thread::JoinHandle<()> {
    let (krl, url) = (b.krl.clone(), b.plain.clone());
    std::thread::spawn(move || {
        let end = Instant::now() + TRIAL_DEADLINE * (TRIALS as u32 + 1);
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            fetch(&krl, &url, wait);
            std::thread::sleep(gap);
        }
    })
}

/// Seconds from each freeze until sshd refused its certificate.
async fn trials(b: &Bed, wait: u64, gap: Duration) -> Vec<f64> {
    let (signer, operator) = (client(b, "broker-1"), client(b, "operator"));
    let stop = Arc::new(AtomicBool::new(false));
    let fetcher = schedule(b, stop.clone(), wait, gap);
    let mut out = Vec::new();
    for n in 0..TRIALS {
        let (k, cert, serial) = issue(&signer).await;
        assert!(logs_in(&b.sshd, &k, &cert), "a fresh certificate logs in");
        // Spread the freezes over the schedule's phase.
        let phase = Duration::from_millis(rand::random::<u64>() % (gap.as_millis() as u64 + 1_000));
        tokio::time::sleep(phase).await;
        let started = Instant::now();
        let body = json!({"serial": serial, "reason": format!("bench {n}")});
        call(&operator, hyper::Method::POST, "/v1/freeze", &body).await;
        while logs_in(&b.sshd, &k, &cert) && started.elapsed() < TRIAL_DEADLINE {}
        out.push(started.elapsed().as_secs_f64());
    }
    stop.store(true, Ordering::Relaxed);
    fetcher.join().unwrap();
    out
}

fn summary(label: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "{label:<44} {:>3} {:>8.2} {:>8.2} {:>8.2}",
        v.len(),
        v[v.len() / 2],
        mean,
        v[v.len() - 1]
    );
}

/// Login times (ms) of one certificate against two sshds, alternating.
fn logins(a: &Sshd, b: &Sshd, key: &PrivateKey, cert: &str) -> (Vec<f64>, Vec<f64>) {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..LOGINS {
        for (sshd, times) in [(a, &mut ta), (b, &mut tb)] {
            let t = Instant::now();
            assert!(logs_in(sshd, key, cert), "login refused: {}", sshd.log());
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    (ta, tb)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `count` serials of `ca` revoked, none of them `keep`: scattered at
/// random over the whole serial space (the worst case for a KRL: a plain
/// list), or in the signer's shape — blocks of 1,024 consecutive serials,
/// a third of each block revoked (bitmaps).
fn big_krl(ca_pub: &str, keep: u64, count: usize, scattered: bool) -> Vec<u8> {
    let blob = ssh_key::PublicKey::from_openssh(ca_pub)
        .unwrap()
        .to_bytes()
        .unwrap();
    let mut serials = std::collections::BTreeSet::new();
    while serials.len() < count {
        if scattered {
            serials.insert(rand::random::<u64>() >> 1);
        } else {
            let block = 1_700_000_000_000_000 + (rand::random::<u64>() % 1_000_000) * 1_024;
            serials.extend((block..block + 1_024).filter(|_| rand::random::<u8>() < 86));
        }
    }
    serials.remove(&keep);
    let mut krl = Krl {
        version: 1,
        ..Krl::default()
    };
    krl.cas.insert(blob, CaRevocations::from_serials(serials));
    krl.encode_sealed()
}

async fn auth_cost(b: &Bed) {
    let signer = client(b, "broker-1");
    let (k, cert, serial) = issue(&signer).await;
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.krl");
    std::fs::write(&empty, Krl::default().encode_sealed()).unwrap();
    let start = |file: &Path| {
        let mut o = SshdOptions::new(b.pki.ssh_ca_pub().unwrap()).with_principals(USER, ["p"]);
        o.extra_config
            .push(format!("RevokedKeys {}", file.display()));
        Sshd::start(o).unwrap()
    };
    let none = start(&empty);
    for (count, shape, scattered) in [
        (10_000, "in signer blocks", false),
        (100_000, "in signer blocks", false),
        (100_000, "scattered at random", true),
    ] {
        let big = dir.path().join(format!("big-{count}-{scattered}.krl"));
        let bytes = big_krl(&b.pki.ssh_ca_pub().unwrap(), serial, count, scattered);
        std::fs::write(&big, &bytes).unwrap();
        let full = start(&big);
        let (t_none, t_full) = logins(&none, &full, &k, &cert);
        let (m_none, m_full) = (median(t_none), median(t_full));
        println!(
            "sshd login p50, {LOGINS} each alternating: empty KRL {m_none:.1} ms, {count} serials {shape} ({} KiB) {m_full:.1} ms, ratio {:.3}",
            bytes.len() / 1024,
            m_full / m_none
        );
    }
}

fn main() {
    let Some(b) = bed() else {
        println!("krl_revoke: needs root and sshd; skipped");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("freeze of a serial → sshd refuses it (seconds)   n      p50     mean      max");
    let every_second = rt.block_on(trials(&b, 0, Duration::from_secs(1)));
    summary("fetch every 1 s", every_second);
    let timer = rt.block_on(trials(&b, 25, Duration::from_secs(5)));
    summary("shipped timer (--wait 25, 5 s after each run)", timer);
    rt.block_on(auth_cost(&b));
}
