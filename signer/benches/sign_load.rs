//! Signer throughput and latency: N concurrent keep-alive mTLS clients
//! against the real `signer` binary with durable audit (fsync, group
//! commit), for N = 1, 8, 64; then two replicas on one PostgreSQL (fsync
//! on) in HA mode, N = 8 and 64, side by side; and a signer writing
//! audit checkpoints every 1,000 records beside the plain one, N = 8 and
//! 64, with the ratio. Also the raw Ed25519
//! signing rate of this machine, for the ratio. Prints numbers; asserts
//! nothing.
//!
//! Run with `make bench` (builds the release binaries first). Every load
//! loop is bounded by a request count and a deadline.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed setup aborts the test with its message"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use infrabroker_common::client::MtlsClient;
use infrabroker_testbed::stack::{Pki, SignerProc, signer_config};
use serde_json::json;

const PER_LEVEL_REQUESTS: usize = 20_000;
const PER_LEVEL_DEADLINE: Duration = Duration::from_secs(8);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn raw_ed25519_rate() -> f64 {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let msg = [0u8; 300];
    let n = 20_000;
    let start = Instant::now();
    for i in 0..n {
        let mut m = msg;
        m[0] = i as u8;
        std::hint::black_box(key.sign(&m));
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::create(dir.path())?;
    let mut cfg = signer_config(&pki, &dir.path().join("audit.log"));
    cfg["callers"] = json!({"broker-1": {"allowed_groups": ["web"]}});
    cfg["hosts"] = json!({"web": {
        "addr": "127.0.0.1:22", "user": "x", "principal": "p", "groups": ["web"],
        "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    }});
    let signer = SignerProc::start(dir.path(), &cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let ed = raw_ed25519_rate();
    println!("raw Ed25519 signatures/s (one core): {ed:.0}");
    println!(
        "{:>4} {:>9} {:>10} {:>9} {:>9} {:>9}",
        "N", "requests", "certs/s", "p50 ms", "p99 ms", "max ms"
    );
    println!("1 signer, embedded SQLite store, local audit log (fsync):");
    for n in [1usize, 8, 64] {
        row(&rt, std::slice::from_ref(&signer.url), &pki, n)?;
    }
    let lines = std::fs::read_to_string(dir.path().join("audit.log"))?
        .lines()
        .count();
    println!("audit records written: {lines}");
    let beside = Beside {
        rt: &rt,
        plain: &signer,
        base: &cfg,
        pki: &pki,
        dir: dir.path(),
    };
    checkpoints(&beside)?;
    custody(&beside)?;
    drop(signer);
    replicas(&rt, &cfg, &pki, dir.path())
}

/// What a section compares against: the plain signer and its settings.
#[derive(Clone, Copy)]
struct Beside<'a> {
    rt: &'a tokio::runtime::Runtime,
    plain: &'a SignerProc,
    base: &'a serde_json::Value,
    pki: &'a Pki,
    dir: &'a std::path::Path,
}

impl Beside<'_> {
    /// A directory `name` for another signer and the plain configuration
    /// with its own audit log there.
    fn variant(&self, name: &str) -> anyhow::Result<(std::path::PathBuf, serde_json::Value)> {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d)?;
        let mut cfg = self.base.clone();
        cfg["audit_log"] = json!(d.join("audit.log"));
        Ok((d, cfg))
    }
}

/// A second signer that writes a signed checkpoint every 1,000 records
/// (issue 11 §2), each level run right after the same level on the plain
/// signer, so the ratio compares runs made side by side.
fn checkpoints(b: &Beside<'_>) -> anyhow::Result<()> {
    let (d, mut cfg) = b.variant("checkpointed")?;
    std::fs::create_dir_all(d.join("checkpoints"))?;
    cfg["audit_checkpoint"] = json!({
        "path": d.join("checkpoints/signer.cp"), "origin": "infrabroker.bench/signer",
        "every_records": 1000,
    });
    let signer = SignerProc::start(&d, &cfg)?;
    println!("plain signer, then one with audit_checkpoint every 1,000 records:");
    for n in [8usize, 64] {
        let plain = row(b.rt, std::slice::from_ref(&b.plain.url), b.pki, n)?;
        let marked = row(b.rt, std::slice::from_ref(&signer.url), b.pki, n)?;
        println!("     checkpointed / plain at N={n}: {:.3}", marked / plain);
    }
    Ok(())
}

/// The CA on a SoftHSM2 token and behind a real ssh-agent (issue 16),
/// each level right after the same level on the file-CA signer. Needs
/// `broker-ctl` built (`make bench` builds it) and the two peers.
fn custody(b: &Beside<'_>) -> anyhow::Result<()> {
    use infrabroker_testbed::custody::{Agent, SOFTHSM_MODULE, SoftHsm};
    if !std::path::Path::new(SOFTHSM_MODULE).is_file() {
        println!("(SoftHSM2 not installed: custody section skipped)");
        return Ok(());
    }
    let start = |name: &str, entry: serde_json::Value, env: &[(&str, &std::ffi::OsStr)]| {
        let (d, mut cfg) = b.variant(name)?;
        cfg.as_object_mut().map(|o| o.remove("ca_key"));
        cfg["ca_keys"] = json!({"_default": entry});
        SignerProc::start_env(&d, &cfg, env)
    };
    let hsm = SoftHsm::create(&b.dir.join("hsm"))?;
    let (var, conf) = hsm.env();
    let token = start("pkcs11", hsm.ca_entry(), &[(var, conf.as_os_str())])?;
    let socket = b.dir.join("ca-agent.sock");
    let agent = Agent::start(&socket)?;
    agent.add(&b.pki.path("ssh_user_ca"))?;
    let entry = json!({"type": "agent", "socket": socket, "public_key": b.pki.ssh_ca_pub()?});
    let agent_signer = start("agent", entry, &[])?;
    println!("file CA, then the CA on a SoftHSM2 token, then behind ssh-agent (pool 4 each):");
    for n in [8usize, 64] {
        let file = row(b.rt, std::slice::from_ref(&b.plain.url), b.pki, n)?;
        let p11 = row(b.rt, std::slice::from_ref(&token.url), b.pki, n)?;
        let ag = row(b.rt, std::slice::from_ref(&agent_signer.url), b.pki, n)?;
        println!(
            "     pkcs11 / file at N={n}: {:.3}   agent / file: {:.3}",
            p11 / file,
            ag / file
        );
    }
    Ok(())
}

/// Prints one table row for `n` clients spread over `urls`; returns the rate.
fn row(rt: &tokio::runtime::Runtime, urls: &[String], pki: &Pki, n: usize) -> anyhow::Result<f64> {
    let (count, secs, lat) = rt.block_on(level(urls, pki, n))?;
    let rate = count as f64 / secs;
    println!(
        "{n:>4} {count:>9} {rate:>10.0} {:>9.2} {:>9.2} {:>9.2}",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    Ok(rate)
}

/// Two signer replicas on one PostgreSQL (fsync on), HA mode: serials from
/// the shared counter, every record committed to the one global chain
/// before its certificate leaves. Clients alternate between the replicas.
fn replicas(
    rt: &tokio::runtime::Runtime,
    base: &serde_json::Value,
    pki: &Pki,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    use infrabroker_testbed::postgres::{Postgres, have_postgres};
    if !have_postgres() {
        println!("(PostgreSQL not installed: replica section skipped)");
        return Ok(());
    }
    let pg = Postgres::start(true)?;
    pg.create_db("bench")?;
    let mut procs = Vec::new();
    for name in ["a", "b"] {
        let d = dir.join(name);
        std::fs::create_dir_all(&d)?;
        let mut cfg = base.clone();
        cfg["store"] = json!({"postgres": {"url": pg.url("bench"), "pool_size": 8}});
        procs.push(SignerProc::start(&d, &cfg)?);
    }
    let urls: Vec<String> = procs.iter().map(|p| p.url.clone()).collect();
    println!("2 replicas, PostgreSQL 15 (fsync on), one global audit chain:");
    for n in [8usize, 64] {
        row(rt, &urls, pki, n)?;
    }
    let out = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port().to_string(),
            "-U",
            "postgres",
            "-d",
            "bench",
        ])
        .args([
            "-tA",
            "-c",
            "SELECT count(*), count(DISTINCT line) FROM audit_chain",
        ])
        .output()?;
    println!(
        "global chain records (total|distinct): {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    Ok(())
}

async fn level(
    urls: &[String],
    pki: &Pki,
    n: usize,
) -> anyhow::Result<(usize, f64, Vec<Duration>)> {
    let left = Arc::new(AtomicUsize::new(PER_LEVEL_REQUESTS));
    // A pool of public keys made up front: key generation is the broker's
    // cost, not the signer's.
    let keys: Arc<Vec<String>> = Arc::new(
        (0..256)
            .map(|i| {
                let kp = ssh_key::private::Ed25519Keypair::from_seed(&[i as u8; 32]);
                ssh_key::PublicKey::from(kp.public)
                    .to_openssh()
                    .unwrap_or_default()
            })
            .collect(),
    );
    let deadline = Instant::now() + PER_LEVEL_DEADLINE;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..n {
        let client = MtlsClient::new(
            &urls[w % urls.len()],
            &pki.path("ca.crt"),
            &pki.path("broker-1.crt"),
            &pki.path("broker-1.key"),
            Duration::from_secs(10),
        )?;
        let left = left.clone();
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = w;
            while Instant::now() < deadline
                && left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
                    .is_ok()
            {
                let body = serde_json::to_vec(&json!({
                    "host": "web", "role": "target", "purpose": "oneshot",
                    "command": "uptime", "pubkey": keys[i % keys.len()],
                }))
                .unwrap_or_default();
                i += n;
                let t = Instant::now();
                let r = client
                    .call_raw(hyper::Method::POST, "/v1/sign", Some(body))
                    .await;
                match r {
                    Ok(r) if r.status.is_success() => lat.push(t.elapsed()),
                    Ok(r) => eprintln!("refused: {}", r.status),
                    Err(e) => eprintln!("error: {e}"),
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    Ok((all.len(), secs, all))
}
