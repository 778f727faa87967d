//! `make demo`: the main job on an embedded default. Makes a dev PKI, starts
//! the signer and a throwaway sshd on loopback, starts `broker mcp-stdio`,
//! calls `ssh_execute` over MCP exactly as an agent would, and prints the
//! result and the three correlated audit lines: the signer's issuance, the
//! broker's execution and sshd's login share the certificate serial.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use infrabroker_testbed::stack::{Pki, SignerProc, signer_config};
use infrabroker_testbed::{Sshd, SshdOptions, ensure_user, have_sshd, is_root};
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
    let signer = start_signer(&out, &pki, &sshd)?;
    println!("   signer on {}", signer.url);

    println!("== 4. broker over MCP stdio (caller mcp-stdio, mTLS CN broker-1 toward the signer)");
    let serial = execute_through_broker(&out, &pki, &signer)?;

    println!("== 5. the same serial in the three audit trails");
    show_audit_trails(&out, &pki, &sshd, serial)
}

/// The signer, with the demo host pinned to `sshd`.
fn start_signer(out: &Path, pki: &Pki, sshd: &Sshd) -> anyhow::Result<SignerProc> {
    let mut cfg = signer_config(pki, &out.join("signer-audit.log"));
    cfg["callers"] = json!({"broker-1": {"allowed_groups": ["demo"]}});
    cfg["hosts"] = json!({"demo": {
        "addr": sshd.addr().to_string(), "user": USER, "host_key": sshd.host_key_openssh(),
        "principal": "demo-principal", "groups": ["demo"], "max_ttl_seconds": 60,
    }});
    SignerProc::start(out, &cfg)
}

/// Starts the stdio broker, runs `ssh_execute` through it and prints the
/// result; the certificate's serial.
fn execute_through_broker(out: &Path, pki: &Pki, signer: &SignerProc) -> anyhow::Result<u64> {
    let broker_json = out.join("broker.json");
    std::fs::write(
        &broker_json,
        serde_json::to_vec_pretty(&json!({
            "signer": {
                "url": signer.url,
                "client_cert": pki.path("broker-1.crt"),
                "client_key": pki.path("broker-1.key"),
                "ca": pki.path("ca.crt"),
            },
            "audit_log": out.join("broker-audit.log"),
            "audit_key": pki.path("broker-audit.seed"),
        }))?,
    )?;
    let mut mcp = Mcp::start(&broker_json, &out.join("broker.log"))?;
    mcp.call(
        "initialize",
        json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "infrabroker-demo", "version": "0"},
        }),
    )?;
    mcp.notify("notifications/initialized")?;
    println!("   ssh_execute host=demo command={COMMAND:?}");
    let result = mcp.call(
        "tools/call",
        json!({
            "name": "ssh_execute",
            "arguments": {"host": "demo", "command": COMMAND},
        }),
    )?;
    let r = &result["structuredContent"];
    if result["isError"] == true || r.is_null() {
        bail!("ssh_execute failed: {result}");
    }
    println!(
        "   exit code {}, serial {}, {} ms",
        r["exit_code"], r["serial"], r["duration_ms"]
    );
    for line in r["stdout"].as_str().unwrap_or_default().lines() {
        println!("   | {line}");
    }
    r["serial"].as_u64().context("no serial")
}

/// The record of certificate `serial` in the signer's and the broker's
/// audit logs and sshd's log, and both logs verified.
fn show_audit_trails(out: &Path, pki: &Pki, sshd: &Sshd, serial: u64) -> anyhow::Result<()> {
    let (signer_log, broker_log) = (out.join("signer-audit.log"), out.join("broker-audit.log"));
    sshd.wait_for_log(&format!("serial {serial}"), Duration::from_secs(5));
    let find = |path: &Path| -> anyhow::Result<Option<String>> {
        Ok(std::fs::read_to_string(path)?
            .lines()
            .find(|l| l.contains(&format!("\"serial\":{serial}")))
            .map(str::to_owned))
    };
    println!("   signer: {}", find(&signer_log)?.unwrap_or_default());
    println!("   broker: {}", find(&broker_log)?.unwrap_or_default());
    for line in sshd
        .log()
        .lines()
        .filter(|l| l.contains(&format!("serial {serial}")) && l.contains("Accepted publickey"))
    {
        println!("   sshd:   {}", line.trim());
    }
    for (log, key) in [
        (signer_log, "signer-audit.pub"),
        (broker_log, "broker-audit.pub"),
    ] {
        let verify = std::process::Command::new(infrabroker_testbed::bin_path("broker-ctl")?)
            .args(["audit", "verify"])
            .arg(&log)
            .arg("--pubkey")
            .arg(pki.path(key))
            .output()?;
        print!("   {}", String::from_utf8_lossy(&verify.stdout));
    }
    Ok(())
}

/// A minimal MCP client over the broker's stdin/stdout: newline-delimited
/// JSON-RPC, enough for the demo (the tests use the Python SDK).
struct Mcp {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    next_id: u64,
}

impl Mcp {
    fn start(config: &std::path::Path, log: &std::path::Path) -> anyhow::Result<Mcp> {
        use std::process::{Command, Stdio};
        let mut child = Command::new(infrabroker_testbed::bin_path("broker")?)
            .arg("mcp-stdio")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .context("starting broker mcp-stdio")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = std::io::BufReader::new(child.stdout.take().context("no stdout")?);
        Ok(Mcp {
            child,
            stdin,
            stdout,
            next_id: 1,
        })
    }

    fn notify(&mut self, method: &str) -> anyhow::Result<()> {
        use std::io::Write;
        writeln!(
            self.stdin,
            "{}",
            json!({"jsonrpc": "2.0", "method": method})
        )?;
        Ok(())
    }

    fn call(
        &mut self,
        method: &str,
        params: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        use std::io::{BufRead, Write};
        let id = self.next_id;
        self.next_id += 1;
        writeln!(
            self.stdin,
            "{}",
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        )?;
        let mut line = String::new();
        loop {
            line.clear();
            if self.stdout.read_line(&mut line)? == 0 {
                bail!("the broker closed its output");
            }
            let msg: serde_json::Value = serde_json::from_str(&line)?;
            if msg["id"] == id {
                if let Some(err) = msg.get("error") {
                    bail!("{method}: {err}");
                }
                return Ok(msg["result"].clone());
            }
        }
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
