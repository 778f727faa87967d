//! `ssh_session_exec` of `true` on a sealed host (envelope minted with the
//! preflight, the shim started by sshd, checked, then `/bin/sh -c true`)
//! next to the same command on an unsealed host of the same sshd,
//! interleaved in one run; p50/p99 and the ratio, with the preflight
//! (`plan_ms`) and the run (`exec_ms`) apart. Needs root and
//! openssh-server; run with `make bench` (after `cargo build --bins`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench code: a failed setup aborts the run with its message"
)]

use std::os::unix::fs::PermissionsExt as _;
use std::time::Instant;

use infrabroker_broker::api::{Caller, SessionMode, SessionOpenRequest, Tools};
use infrabroker_broker::config::BrokerConfig;
use infrabroker_broker::engine::Engine;
use infrabroker_testbed::shim::ShimHost;
use infrabroker_testbed::stack::{Pki, SignerProc, signer_config};
use infrabroker_testbed::{Sshd, SshdOptions, broker_ctl, ensure_user, is_root};
use serde_json::json;

const USER: &str = "ibtest";
const ROUNDS: usize = 60;

fn ms(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    if !is_root() {
        eprintln!(
            "sealed bench needs root (private sshd, the shim run as another account); skipped"
        );
        return;
    }
    ensure_user(USER).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path()).unwrap();
    let sshd =
        Sshd::start(SshdOptions::new(pki.ssh_ca_pub().unwrap()).with_principals(USER, ["web-p"]))
            .unwrap();
    let shim = ShimHost::install("sealed", "web-p", USER).unwrap();
    let host = json!({"addr": sshd.addr().to_string(), "user": USER,
        "host_key": sshd.host_key_openssh(), "principal": "web-p", "groups": ["web"]});
    let mut sealed = host.clone();
    sealed["sealed_exec"] = json!(true);
    sealed["shim_path"] = json!(shim.force_command());
    let seed = dir.path().join("envelope.seed");
    std::fs::write(&seed, rand::random::<[u8; 32]>()).unwrap();
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cfg = signer_config(&pki, &dir.path().join("signer-audit.log"));
    cfg["callers"] = json!({"broker-1": {"allowed_groups": ["web"]}});
    cfg["hosts"] = json!({"sealed": sealed, "plain": host});
    cfg["envelope_key"] = json!(seed);
    let signer = SignerProc::start(dir.path(), &cfg).unwrap();
    let config = signer.config_path.display().to_string();
    let (ok, line) = broker_ctl(&["pki", "envelope-pub", "--config", &config]).unwrap();
    assert!(ok, "{line}");
    shim.pin(&line).unwrap();
    let broker_json = dir.path().join("broker.json");
    std::fs::write(&broker_json, serde_json::to_vec(&json!({
        "signer": {"url": signer.url, "client_cert": pki.path("broker-1.crt"), "client_key": pki.path("broker-1.key"), "ca": pki.path("ca.crt")},
        "audit_log": dir.path().join("broker-audit.log"), "audit_key": pki.path("broker-audit.seed"),
    })).unwrap()).unwrap();
    let engine = rt
        .block_on(Engine::start(BrokerConfig::load(&broker_json).unwrap()))
        .unwrap();
    let caller = Caller::local("bench");
    let open = |host: &str| {
        let req = SessionOpenRequest {
            host: host.into(),
            mode: SessionMode::Exec,
            sudo: false,
            sudo_user: None,
            cols: None,
            rows: None,
        };
        rt.block_on(engine.session_open(&caller, req))
            .unwrap()
            .session_id
    };
    let (sealed_id, plain_id) = (open("sealed"), open("plain"));
    // [sealed, plain] × [total, plan, exec], in ms.
    let mut samples: [[Vec<f64>; 3]; 2] = Default::default();
    for round in 0..=ROUNDS {
        for (i, id) in [&sealed_id, &plain_id].into_iter().enumerate() {
            let t = Instant::now();
            let r = rt
                .block_on(engine.session_exec(&caller, id, "true".into(), None))
                .unwrap();
            assert_eq!(r.exit_code, Some(0), "{r:?}");
            let total = t.elapsed().as_secs_f64() * 1e3;
            if round > 0 {
                samples[i][0].push(total);
                samples[i][1].push(r.timings.plan_ms as f64);
                samples[i][2].push(r.timings.exec_ms as f64);
            }
        }
    }
    println!(
        "{:<34} {:>9} {:>9}",
        "ssh_session_exec `true`", "p50 ms", "p99 ms"
    );
    for (label, s) in ["sealed host", "unsealed host"]
        .iter()
        .zip(samples.iter_mut())
    {
        for (part, v) in ["total", "preflight (plan_ms)", "run (exec_ms)"]
            .iter()
            .zip(s.iter_mut())
        {
            println!(
                "{:<34} {:>9.1} {:>9.1}",
                format!("{label}: {part}"),
                ms(v, 0.5),
                ms(v, 0.99)
            );
        }
    }
    let ratio = ms(&mut samples[0][0], 0.5) / ms(&mut samples[1][0], 0.5);
    println!("{:<34} {:>9.2}", "ratio sealed / unsealed (p50)", ratio);
}
