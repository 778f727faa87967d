//! One-shot `ssh_execute` end to end (fresh key + mTLS sign + SSH dial +
//! exec `true`) versus OpenSSH's own client with a certificate and the same
//! key exchange, against the same sshd, interleaved in one run. Direct host
//! and a one-bastion chain (network namespaces), plus 100 concurrent calls.
//! Prints numbers; needs root and openssh-server. Run with `make bench`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench code: a failed setup aborts the run with its message"
)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use infrabroker_broker::api::{
    Caller, ExecRequest, SessionMode, SessionOpenRequest, Timings, Tools,
};
use infrabroker_broker::config::BrokerConfig;
use infrabroker_broker::engine::Engine;
use infrabroker_common::client::MtlsClient;
use infrabroker_common::wire::SignResponse;
use infrabroker_testbed::stack::{Pki, SignerProc, signer_config};
use infrabroker_testbed::{
    Sshd, SshdOptions, TestNet, ensure_user, is_root, write_cert, write_private_key,
};
use serde_json::json;

const USER: &str = "ibtest";
const ROUNDS: usize = 30;

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p = |q: f64| ms(v[((v.len() - 1) as f64 * q).round() as usize]);
    (p(0.5), p(0.99))
}

/// p50 / p99 of each stage of the calls' `timings`, hop by hop.
fn print_stages(label: &str, staged: &[Timings]) {
    let ms = |f: &dyn Fn(&Timings) -> u64| {
        stats(staged.iter().map(|t| Duration::from_millis(f(t))).collect())
    };
    let row = |name: String, (p50, p99): (f64, f64)| {
        println!("    {name:<30} {p50:>9.1} {p99:>9.1}");
    };
    row(format!("{label}: plan (host view)"), ms(&|t| t.plan_ms));
    let hops = staged.first().map_or(0, |t| t.hops.len());
    for i in 0..hops {
        let host = staged[0].hops[i].host.clone();
        row(format!("{host}: sign"), ms(&|t| t.hops[i].sign_ms));
        row(
            format!("{host}: connect (tcp + kex)"),
            ms(&|t| t.hops[i].connect_ms),
        );
        row(format!("{host}: auth"), ms(&|t| t.hops[i].auth_ms));
    }
    row(format!("{label}: exec"), ms(&|t| t.exec_ms));
}

fn sshd_in(pki: &Pki, ns: Option<(&str, std::net::Ipv4Addr)>, principal: &str) -> Sshd {
    let mut o = SshdOptions::new(pki.ssh_ca_pub().unwrap()).with_principals(USER, [principal]);
    if let Some((ns, addr)) = ns {
        o.netns = Some(ns.to_owned());
        o.listen = addr.into();
        o.port = Some(2222);
    }
    Sshd::start(o).unwrap()
}

fn entry(s: &Sshd, p: &str) -> serde_json::Value {
    json!({"addr": s.addr().to_string(), "user": USER, "host_key": s.host_key_openssh(), "principal": p, "groups": ["web"], "max_ttl_seconds": 900})
}

async fn cert_for(
    client: &MtlsClient,
    host: &str,
    role: &str,
    key: &ssh_key::PrivateKey,
) -> String {
    let mut req = json!({"host": host, "role": role, "purpose": "oneshot", "pubkey": key.public_key().to_openssh().unwrap(), "ttl_seconds": 900});
    if role == "target" {
        req["command"] = json!("true");
    }
    let r: SignResponse = client
        .call(hyper::Method::POST, "/v1/sign", Some(&req))
        .await
        .unwrap();
    r.certificate.unwrap()
}

fn main() {
    if !is_root() {
        eprintln!("oneshot bench needs root (private sshd, network namespaces); skipped");
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
    let direct = sshd_in(&pki, None, "web-p");
    let chain = TestNet::bastion_chain(1).unwrap();
    let b = &chain.bastions[0];
    let bastion = sshd_in(&pki, Some((&b.netns, b.addr)), "b-p");
    let target = sshd_in(&pki, Some((&chain.target.netns, chain.target.addr)), "t-p");
    let mut t = entry(&target, "t-p");
    t["jump"] = json!("bastion");
    t["source_address"] = json!(b.next.unwrap().to_string());
    let mut cfg = signer_config(&pki, &dir.path().join("signer-audit.log"));
    cfg["max_ttl_seconds"] = json!(900);
    cfg["callers"] = json!({"broker-1": {"allowed_groups": ["web"]}});
    cfg["hosts"] =
        json!({"direct": entry(&direct, "web-p"), "bastion": entry(&bastion, "b-p"), "target": t});
    let signer = SignerProc::start(dir.path(), &cfg).unwrap();
    let broker_json = dir.path().join("broker.json");
    std::fs::write(&broker_json, serde_json::to_vec(&json!({
        "signer": {"url": signer.url, "client_cert": pki.path("broker-1.crt"), "client_key": pki.path("broker-1.key"), "ca": pki.path("ca.crt")},
        "audit_log": dir.path().join("broker-audit.log"), "audit_key": pki.path("broker-audit.seed"),
        "max_concurrent_per_caller": 128,
    })).unwrap()).unwrap();
    let engine = rt
        .block_on(Engine::start(BrokerConfig::load(&broker_json).unwrap()))
        .unwrap();
    let caller = Caller::local("bench");
    let client = MtlsClient::new(
        &signer.url,
        &pki.path("ca.crt"),
        &pki.path("broker-1.crt"),
        &pki.path("broker-1.key"),
        Duration::from_secs(10),
    )
    .unwrap();

    // OpenSSH's side: one key and certificate per hop, issued once.
    let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[5u8; 32]));
    write_private_key(&dir.path().join("id"), &key).unwrap();
    let kh = dir.path().join("known_hosts");
    std::fs::write(
        &kh,
        format!(
            "[{}]:{} {}\n[{}]:{} {}\n[{}]:{} {}\n",
            direct.addr().ip(),
            direct.addr().port(),
            direct.host_key_openssh(),
            bastion.addr().ip(),
            bastion.addr().port(),
            bastion.host_key_openssh(),
            target.addr().ip(),
            target.addr().port(),
            target.host_key_openssh()
        ),
    )
    .unwrap();
    let direct_cert = dir.path().join("direct-cert.pub");
    write_cert(
        &direct_cert,
        &rt.block_on(cert_for(&client, "direct", "target", &key)),
    )
    .unwrap();
    let bkey = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[6u8; 32]));
    write_private_key(&dir.path().join("bid"), &bkey).unwrap();
    let bastion_cert = dir.path().join("bastion-cert.pub");
    write_cert(
        &bastion_cert,
        &rt.block_on(cert_for(&client, "bastion", "bastion", &bkey)),
    )
    .unwrap();
    let target_cert = dir.path().join("target-cert.pub");
    write_cert(
        &target_cert,
        &rt.block_on(cert_for(&client, "target", "target", &key)),
    )
    .unwrap();

    let d = dir.path().to_owned();
    let openssh = |addr: std::net::SocketAddr, cert: &std::path::Path, proxy: Option<String>| {
        let mut c = Command::new("/usr/bin/ssh");
        c.args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "KexAlgorithms=curve25519-sha256",
        ])
        .arg("-i")
        .arg(d.join("id"))
        .arg("-o")
        .arg(format!("CertificateFile={}", cert.display()))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-p",
            &addr.port().to_string(),
        ]);
        if let Some(p) = proxy {
            c.arg("-o").arg(format!("ProxyCommand={p}"));
        }
        c.arg(format!("{USER}@{}", addr.ip())).arg("true");
        let t = Instant::now();
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "openssh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.elapsed()
    };
    let proxy = format!(
        "/usr/bin/ssh -F /dev/null -o BatchMode=yes -o KexAlgorithms=curve25519-sha256 -i {} -o CertificateFile={} -o UserKnownHostsFile={} -p {} -W %h:%p {USER}@{}",
        d.join("bid").display(),
        bastion_cert.display(),
        kh.display(),
        bastion.addr().port(),
        bastion.addr().ip()
    );
    let ours = |host: &str| {
        let t = Instant::now();
        let r = rt
            .block_on(engine.execute(
                &caller,
                ExecRequest {
                    host: host.into(),
                    command: "true".into(),
                    sudo: false,
                    sudo_user: None,
                    timeout: None,
                },
            ))
            .unwrap();
        assert_eq!(r.exit_code, Some(0));
        (t.elapsed(), r.timings)
    };

    println!(
        "{:<34} {:>9} {:>9}",
        "one-shot `true`, interleaved", "p50 ms", "p99 ms"
    );
    for (label, host, addr, cert, px) in [
        ("direct", "direct", direct.addr(), direct_cert.clone(), None),
        (
            "one bastion (netns)",
            "target",
            target.addr(),
            target_cert.clone(),
            Some(proxy.clone()),
        ),
    ] {
        let (mut a, mut o, mut staged) = (Vec::new(), Vec::new(), Vec::new());
        ours(host);
        openssh(addr, &cert, px.clone());
        for _ in 0..ROUNDS {
            let (took, timings) = ours(host);
            a.push(took);
            staged.push(timings);
            o.push(openssh(addr, &cert, px.clone()));
        }
        let (ap50, ap99) = stats(a);
        let (op50, op99) = stats(o);
        println!(
            "{:<34} {:>9.1} {:>9.1}",
            format!("infrabroker ssh_execute, {label}"),
            ap50,
            ap99
        );
        println!(
            "{:<34} {:>9.1} {:>9.1}",
            format!("OpenSSH ssh + cert, {label}"),
            op50,
            op99
        );
        println!(
            "{:<34} {:>9.2}",
            format!("ratio (ours / OpenSSH), {label}"),
            ap50 / op50
        );
        print_stages(label, &staged);
    }

    // A command in an open exec session versus OpenSSH's multiplexed exec
    // (ControlMaster) over an already established master connection.
    let session = rt
        .block_on(engine.session_open(
            &caller,
            SessionOpenRequest {
                host: "direct".into(),
                mode: SessionMode::Exec,
                sudo: false,
                sudo_user: None,
                cols: None,
                rows: None,
            },
        ))
        .unwrap();
    // OpenSSH needs a certificate without a force-command for a master
    // that runs several commands: a session certificate.
    let session_cert = dir.path().join("session-cert.pub");
    let r: SignResponse = rt
        .block_on(client.call(
            hyper::Method::POST,
            "/v1/sign",
            Some(&json!({
                "host": "direct", "role": "target", "purpose": "session", "session_mode": "exec",
                "pubkey": key.public_key().to_openssh().unwrap(), "ttl_seconds": 900,
            })),
        ))
        .unwrap();
    write_cert(&session_cert, &r.certificate.unwrap()).unwrap();
    let control = dir.path().join("cm.sock");
    let mux = |extra: &[&str]| {
        let mut c = Command::new("/usr/bin/ssh");
        c.args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "KexAlgorithms=curve25519-sha256",
        ])
        .arg("-i")
        .arg(d.join("id"))
        .arg("-o")
        .arg(format!("CertificateFile={}", session_cert.display()))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .arg("-o")
        .arg(format!("ControlPath={}", control.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-p",
            &direct.addr().port().to_string(),
        ])
        .args(extra)
        .arg(format!("{USER}@{}", direct.addr().ip()));
        c
    };
    let st = mux(&[
        "-o",
        "ControlMaster=yes",
        "-o",
        "ControlPersist=120",
        "-N",
        "-f",
    ])
    .status()
    .unwrap();
    assert!(st.success(), "ControlMaster did not start");
    let (mut ours_s, mut theirs_s) = (Vec::new(), Vec::new());
    for i in 0..=ROUNDS * 2 {
        let t = Instant::now();
        let r = rt
            .block_on(engine.session_exec(&caller, &session.session_id, "true".into(), None))
            .unwrap();
        assert_eq!(r.exit_code, Some(0));
        let a = t.elapsed();
        let t = Instant::now();
        let out = mux(&["-o", "ControlMaster=no"])
            .arg("true")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let b = t.elapsed();
        if i > 0 {
            ours_s.push(a);
            theirs_s.push(b);
        }
    }
    let _ = mux(&["-O", "exit"]).output();
    let (sp50, sp99) = stats(ours_s);
    let (mp50, mp99) = stats(theirs_s);
    println!(
        "{:<34} {:>9.1} {:>9.1}",
        "exec session: ssh_session_exec", sp50, sp99
    );
    println!(
        "{:<34} {:>9.1} {:>9.1}",
        "OpenSSH ControlMaster exec", mp50, mp99
    );
    println!(
        "{:<34} {:>9.2}",
        "ratio (ours / OpenSSH), session",
        sp50 / mp50
    );

    let engine = Arc::new(engine);
    let lat = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let e = engine.clone();
            let c = caller.clone();
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                let r = e
                    .execute(
                        &c,
                        ExecRequest {
                            host: "direct".into(),
                            command: "true".into(),
                            sudo: false,
                            sudo_user: None,
                            timeout: None,
                        },
                    )
                    .await;
                (r.map(|r| r.exit_code), t.elapsed())
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            let (r, d) = t.await.unwrap();
            assert_eq!(r.unwrap(), Some(0), "every concurrent call succeeds");
            out.push(d);
        }
        out
    });
    let (p50, p99) = stats(lat);
    println!(
        "100 concurrent calls (direct): all succeeded, p50 {p50:.1} ms, p99 {p99:.1} ms, p99/p50 {:.2}",
        p99 / p50
    );
}
