//! Certificate signatures per second through `infrabroker-ca`, for each
//! custody, at 1, 2 and 4 threads: a key file (in memory), a SoftHSM2
//! token (made by `broker-ctl pki init --hsm`, `CKM_EDDSA`) and a real
//! `ssh-agent`. The token's and agent's numbers are their ceiling on this
//! machine, without TLS, audit or HTTP; `sign_load` measures the signer
//! around them. Prints numbers; asserts nothing. Every loop is bounded by
//! a count and a deadline.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` when it initialises, so the benchmark
//! makes the token and then runs itself again with that variable set.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark code: a failed setup aborts with its message"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use infrabroker_ca::{Ca, CaSpec, PinSource};
use infrabroker_testbed::custody::{Agent, SOFTHSM_MODULE, SoftHsm};
use ssh_key::certificate::{Builder, CertType};

const PER_THREAD: usize = 3_000;
const DEADLINE: Duration = Duration::from_secs(10);
const TOKEN_DIR: &str = "IB_BENCH_TOKEN_DIR";

fn main() {
    let Ok(dir) = std::env::var(TOKEN_DIR) else {
        if !Path::new(SOFTHSM_MODULE).is_file() {
            println!("(SoftHSM2 not installed: token_sign skipped)");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let hsm = SoftHsm::create(&tmp.path().join("hsm")).unwrap();
        let (var, conf) = hsm.env();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .env(var, conf)
            .env(TOKEN_DIR, &hsm.dir)
            .status()
            .unwrap();
        std::process::exit(status.code().unwrap_or(1));
    };
    let dir = Path::new(&dir);
    let scratch = tempfile::tempdir().unwrap();
    let key_file = scratch.path().join("ca");
    let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[9; 32]));
    std::fs::write(
        &key_file,
        key.to_openssh(ssh_key::LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let socket = scratch.path().join("agent.sock");
    let agent = Agent::start(&socket).unwrap();
    agent.add(&key_file).unwrap();

    let cas = [
        (
            "file (in memory)",
            CaSpec::File {
                path: key_file.clone(),
            },
        ),
        (
            "SoftHSM2 token",
            CaSpec::Pkcs11 {
                module: SOFTHSM_MODULE.into(),
                token_label: "ca".into(),
                key_label: "ca".into(),
                pin: PinSource::File(dir.join("pin")),
                pool_size: 4,
            },
        ),
        (
            "ssh-agent",
            CaSpec::Agent {
                socket: socket.clone(),
                public_key: key.public_key().to_openssh().unwrap(),
                pool_size: 4,
            },
        ),
    ];
    println!("{:<18} {:>8} {:>14}", "custody", "threads", "certs/s");
    for (name, spec) in &cas {
        let ca = Ca::open(spec).unwrap();
        for threads in [1usize, 2, 4] {
            println!("{name:<18} {threads:>8} {:>14.0}", rate(&ca, threads));
        }
    }
}

/// Certificates signed per second by `threads` threads sharing `ca`.
fn rate(ca: &Ca, threads: usize) -> f64 {
    let subject = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[4; 32]));
    let deadline = Instant::now() + DEADLINE;
    let start = Instant::now();
    let done: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0;
                    while n < PER_THREAD && Instant::now() < deadline {
                        let mut b = Builder::new(
                            vec![7; 32],
                            subject.public_key().key_data().clone(),
                            1_000,
                            2_000,
                        )
                        .unwrap();
                        b.cert_type(CertType::User).unwrap();
                        b.valid_principal("p").unwrap();
                        std::hint::black_box(ca.sign_certificate(b).unwrap());
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    done as f64 / start.elapsed().as_secs_f64()
}
