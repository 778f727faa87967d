//! `make demo`: the main job on an embedded default. Makes a dev PKI, starts
//! the signer and a throwaway sshd on loopback, asks the signer for a
//! one-shot certificate exactly as a broker does (fresh Ed25519 key, mTLS),
//! runs the command with OpenSSH's `ssh`, and prints the result and the
//! correlated audit trail: the signer's record and sshd's log line share the
//! certificate serial.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use infrabroker_common::client::MtlsClient;
use infrabroker_common::wire::SignResponse;
use infrabroker_testbed::stack::{Pki, SignerProc, signer_config};
use infrabroker_testbed::{SshClient, Sshd, SshdOptions, ensure_user, have_sshd, is_root};
use serde_json::json;

const USER: &str = "ibdemo";
const COMMAND: &str = "echo \"hello from $(hostname) as $(id -un)\"; uptime";

fn main() -> anyhow::Result<()> {
    if !is_root() || !have_sshd() {
        bail!(
            "the demo starts a private sshd and a test account: run it as root with openssh-server installed (apt-get install -y openssh-server)"
        );
    }
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "demo-out".into()));
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    std::fs::create_dir_all(&out)?;
    let out = out.canonicalize()?;
    println!("== 1. dev PKI in {}", out.join("pki").display());
    let pki = Pki::create(&out)?;

    println!("== 2. throwaway sshd trusting the SSH user CA");
    ensure_user(USER)?;
    let sshd =
        Sshd::start(SshdOptions::new(pki.ssh_ca_pub()?).with_principals(USER, ["demo-principal"]))?;
    println!(
        "   sshd on {} (host key pinned in the signer's config)",
        sshd.addr()
    );

    println!("== 3. signer (the only holder of the CA key)");
    let audit_log = out.join("signer-audit.log");
    let mut cfg = signer_config(&pki, &audit_log);
    cfg["callers"] = json!({"broker-1": {"allowed_groups": ["demo"]}});
    cfg["hosts"] = json!({"demo": {
        "addr": sshd.addr().to_string(), "user": USER, "host_key": sshd.host_key_openssh(),
        "principal": "demo-principal", "groups": ["demo"], "max_ttl_seconds": 60,
    }});
    let signer = SignerProc::start(&out, &cfg)?;
    println!("   signer on {}", signer.url);

    println!("== 4. fresh Ed25519 key + one-shot certificate for: {COMMAND}");
    let key =
        ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&rand::random()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let resp: SignResponse = rt.block_on(async {
        let client = MtlsClient::new(
            &signer.url,
            &pki.path("ca.crt"),
            &pki.path("broker-1.crt"),
            &pki.path("broker-1.key"),
            Duration::from_secs(10),
        )?;
        let req = json!({"host": "demo", "role": "target", "purpose": "oneshot",
            "command": COMMAND, "pubkey": key.public_key().to_openssh()?});
        anyhow::Ok(
            client
                .call(hyper::Method::POST, "/v1/sign", Some(&req))
                .await?,
        )
    })?;
    let serial = resp.serial.context("no serial")?;
    println!(
        "   serial {serial}, valid until unix {}",
        resp.valid_before.unwrap_or(0)
    );

    println!(
        "== 5. ssh with the certificate (the client asks for `rm -rf /`; the force-command wins)"
    );
    let client = SshClient::create(
        &out,
        &key,
        resp.certificate.as_deref().context("no certificate")?,
    )?;
    let result = client.run(&sshd.target(), USER, "rm -rf /", &[])?;
    print!("{}", String::from_utf8_lossy(&result.stdout));
    println!("   exit code {:?}", result.status.code());

    println!("== 6. audit trail, joined by serial {serial}");
    sshd.wait_for_log(&format!("serial {serial}"), Duration::from_secs(5));
    for line in std::fs::read_to_string(&audit_log)?.lines() {
        if line.contains(&format!("\"serial\":{serial}")) {
            println!("   signer: {line}");
        }
    }
    for line in sshd
        .log()
        .lines()
        .filter(|l| l.contains(&format!("serial {serial}")))
    {
        println!("   sshd:   {}", line.trim());
    }
    let verify = std::process::Command::new(infrabroker_testbed::bin_path("broker-ctl")?)
        .args(["audit", "verify"])
        .arg(&audit_log)
        .arg("--pubkey")
        .arg(pki.path("signer-audit.pub"))
        .output()?;
    print!("   {}", String::from_utf8_lossy(&verify.stdout));
    Ok(())
}
