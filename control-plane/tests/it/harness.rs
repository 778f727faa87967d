//! A dev PKI, a real signer trusting `control-plane` as a forwarder, real
//! control-plane processes in front of it, broker engines pointed at them,
//! the real `broker-ctl`, and a local HTTP receiver for notifications.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infrabroker_broker::api::{Caller, ExecRequest, ExecResult, ToolError, Tools};
use infrabroker_broker::config::BrokerConfig;
use infrabroker_broker::engine::Engine;
use infrabroker_common::client::{MtlsClient, RawResponse};
use infrabroker_testbed::stack::{Pki, SignerProc, signer_config};
use infrabroker_testbed::{ChildGuard, Sshd, SshdOptions, bin_path, ensure_user, spawn_service};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const USER: &str = "ibtest";

/// Host entry for `sshd` in group `web` with a command policy that asks
/// approval for commands matching `approval`.
pub fn host_for(sshd: &Sshd, principal: &str, approval: &[&str]) -> Value {
    json!({
        "addr": sshd.addr().to_string(),
        "user": USER,
        "host_key": sshd.host_key_openssh(),
        "principal": principal,
        "groups": ["web"],
        "command_policy": {"mode": "denylist", "deny": ["^rm "], "require_approval": approval},
    })
}

/// A host nobody dials (for tests that only ask for certificates).
pub fn paper_host(pki: &Pki, approval: &[&str]) -> Value {
    json!({
        "addr": "127.0.0.1:9",
        "user": USER,
        "host_key": pki.ssh_ca_pub().unwrap(),
        "principal": "paper",
        "groups": ["web"],
        "command_policy": {"mode": "denylist", "deny": ["^rm "], "require_approval": approval},
    })
}

/// The JSON summary (last stdout line) of a test client that must exit 0
/// within `secs`; `Err` with its output otherwise.
pub async fn summary_of(
    what: &str,
    secs: u64,
    output: impl std::future::Future<Output = std::io::Result<std::process::Output>>,
) -> Result<Value, String> {
    let out = tokio::time::timeout(Duration::from_secs(secs), output)
        .await
        .map_err(|_| format!("{what} did not finish within {secs} s"))?
        .map_err(|e| format!("{what} could not run: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed = || {
        format!(
            "{what} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    if !out.status.success() {
        return Err(failed());
    }
    stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(failed)
}

/// Whether the Python `mcp` SDK 2.x can be imported; a skip (a failure
/// under `CI=true`) when not.
pub fn python_mcp_or_skip() -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", "import mcp.client.client, mcp.client.streamable_http"])
        .output()
        .is_ok_and(|o| o.status.success());
    infrabroker_testbed::require(
        "the Python `mcp` package 2.x (pip install 'mcp>=2.3')",
        found,
    )
}

/// An sshd on loopback trusting `pki`'s SSH CA, principal `p` for `ibtest`.
pub fn sshd(pki: &Pki, p: &str) -> Sshd {
    ensure_user(USER).unwrap();
    Sshd::start(SshdOptions::new(pki.ssh_ca_pub().unwrap()).with_principals(USER, [p])).unwrap()
}

/// The PKI and the signer.
pub struct Bed {
    pub dir: TempDir,
    pub pki: Pki,
    pub signer: SignerProc,
}

impl Bed {
    /// A signer with hosts built from its PKI; `broker-1` reaches group
    /// `web`; it trusts `control-plane` as a forwarder.
    pub fn start_with(hosts: impl FnOnce(&Pki) -> Value) -> Bed {
        let (dir, pki) = Self::pki();
        let hosts = hosts(&pki);
        Self::start_in(dir, pki, hosts)
    }

    /// A signer whose host `web` is a real sshd (principal
    /// `web-principal`) that asks approval for commands matching
    /// `approval`; the sshd lives as long as the returned handle.
    pub fn with_web_sshd(approval: &[&str]) -> (Bed, Sshd) {
        let (dir, pki) = Self::pki();
        let s = sshd(&pki, "web-principal");
        let hosts = json!({"web": host_for(&s, "web-principal", approval)});
        (Self::start_in(dir, pki, hosts), s)
    }

    /// A fresh directory and dev PKI (to start sshds before the signer).
    pub fn pki() -> (TempDir, Pki) {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::create(dir.path()).unwrap();
        (dir, pki)
    }

    /// Starts the signer in `dir` over `pki` with `hosts`.
    pub fn start_in(dir: TempDir, pki: Pki, hosts: Value) -> Bed {
        let mut cfg = signer_config(&pki, &dir.path().join("signer-audit.log"));
        cfg["callers"] = json!({"broker-1": {"allowed_groups": ["web"]}});
        cfg["hosts"] = hosts;
        assert_eq!(cfg["trusted_forwarders"], json!(["control-plane"]));
        let signer = SignerProc::start(dir.path(), &cfg).unwrap();
        Bed { dir, pki, signer }
    }

    pub fn signer_records(&self) -> Vec<Value> {
        read_records(&self.dir.path().join("signer-audit.log"))
    }

    /// A control plane named `name` with the base config merged with
    /// `extra` (objects merged one level deep).
    pub fn control_plane(&self, name: &str, extra: Value) -> Cp {
        let audit = self.dir.path().join(format!("{name}-audit.log"));
        let mut cfg = json!({
            "listen": "127.0.0.1:0",
            "server_cert": self.pki.path("control-plane.crt"),
            "server_key": self.pki.path("control-plane.key"),
            "client_ca": self.pki.path("ca.crt"),
            "sign_callers": ["broker-1"],
            "signer": {
                "url": self.signer.url,
                "client_cert": self.pki.path("control-plane.crt"),
                "client_key": self.pki.path("control-plane.key"),
                "ca": self.pki.path("ca.crt"),
            },
            "approval": {"timeout_seconds": 60, "callers": ["operator"]},
            "audit_log": audit,
            "audit_key": self.pki.path("control-plane-audit.seed"),
        });
        for (k, v) in extra.as_object().unwrap() {
            match (cfg.get_mut(k), v) {
                (Some(Value::Object(base)), Value::Object(more)) => {
                    for (k2, v2) in more {
                        base.insert(k2.clone(), v2.clone());
                    }
                }
                _ => cfg[k] = v.clone(),
            }
        }
        let path = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        Cp::start(self.dir.path(), name, &path, audit, self.pki.clone())
    }

    /// A `broker.json` whose `signer.url` is the control plane.
    pub fn broker_json(&self, cp: &Cp, approval_wait: u64) -> PathBuf {
        let tag = rand::random::<u32>();
        let cfg = json!({
            "signer": {
                "url": cp.url,
                "client_cert": self.pki.path("broker-1.crt"),
                "client_key": self.pki.path("broker-1.key"),
                "ca": self.pki.path("ca.crt"),
                "request_timeout_seconds": 5,
                "approval_wait_seconds": approval_wait,
            },
            "audit_log": self.dir.path().join(format!("broker-audit-{tag}.log")),
            "audit_key": self.pki.path("broker-audit.seed"),
            "max_output_bytes": 4096,
            "exec_timeout_seconds": 30,
            "connect_timeout_seconds": 10,
        });
        let path = self.dir.path().join(format!("broker-{tag}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        path
    }

    /// A broker engine whose `signer.url` is the control plane.
    pub async fn engine(&self, cp: &Cp, approval_wait: u64) -> Arc<Engine> {
        let path = self.broker_json(cp, approval_wait);
        Engine::start(BrokerConfig::load(&path).unwrap())
            .await
            .unwrap()
    }

    /// An mTLS client presenting `who`'s certificate (`broker-1`, `operator`…).
    pub fn client(&self, url: &str, who: &str) -> MtlsClient {
        MtlsClient::new(
            url,
            &self.pki.path("ca.crt"),
            &self.pki.path(&format!("{who}.crt")),
            &self.pki.path(&format!("{who}.key")),
            Duration::from_secs(10),
        )
        .unwrap()
    }
}

/// A running control plane.
pub struct Cp {
    pub child: ChildGuard,
    pub url: String,
    pub reviewer_url: Option<String>,
    pub audit: PathBuf,
    pki: Pki,
}

impl Cp {
    fn start(dir: &Path, name: &str, config: &Path, audit: PathBuf, pki: Pki) -> Cp {
        let log = dir.join(format!("{name}.stderr"));
        let child = spawn_service(
            bin_path("control-plane").unwrap(),
            [Path::new("--config").as_os_str(), config.as_os_str()],
            &log,
        )
        .unwrap();
        let mut cp = Cp {
            child,
            url: String::new(),
            reviewer_url: None,
            audit,
            pki,
        };
        let marker = "control plane listening on ";
        infrabroker_testbed::wait_until(Duration::from_secs(20), || {
            cp.child.log().contains(marker) || cp.child.try_status().is_some()
        });
        let text = cp.child.log();
        let after = |m: &str| {
            text.split(m).nth(1).map(|rest| {
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
        };
        cp.url = after(marker).unwrap_or_else(|| panic!("control plane did not start:\n{text}"));
        cp.reviewer_url = after("reviewer MCP endpoint on ");
        cp
    }

    pub fn records(&self) -> Vec<Value> {
        read_records(&self.audit)
    }

    /// Records with `outcome`.
    pub fn outcomes(&self, outcome: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["outcome"] == outcome)
            .collect()
    }

    /// Runs `broker-ctl approval ARGS…` as `who`; returns (success, stdout, stderr).
    pub async fn ctl(&self, who: &str, args: &[&str]) -> (bool, String, String) {
        let mut cmd = tokio::process::Command::new(bin_path("broker-ctl").unwrap());
        cmd.arg("approval").args(args).args(["--url", &self.url]);
        cmd.arg("--ca").arg(self.pki.path("ca.crt"));
        cmd.arg("--cert").arg(self.pki.path(&format!("{who}.crt")));
        cmd.arg("--key").arg(self.pki.path(&format!("{who}.key")));
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .unwrap()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Waits (≤ 20 s) for a pending approval of `command` not in `skip`;
    /// returns its listing.
    pub async fn pending(&self, command: &str, skip: &[&str]) -> Value {
        for _ in 0..100 {
            let (ok, out, err) = self.ctl("operator", &["list", "--json"]).await;
            assert!(ok, "{err}");
            let list: Vec<Value> = serde_json::from_str(&out).unwrap();
            if let Some(a) = list.into_iter().find(|a| {
                a["command"] == command && !skip.contains(&a["id"].as_str().unwrap_or(""))
            }) {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "no pending approval for {command:?}; log:\n{}",
            self.child.log()
        );
    }
}

pub fn read_records(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn caller() -> Caller {
    Caller::local("mcp-stdio")
}

pub fn req(host: &str, command: &str) -> ExecRequest {
    ExecRequest {
        host: host.into(),
        command: command.into(),
        sudo: false,
        sudo_user: None,
        timeout: None,
    }
}

/// Runs `command` on `host` in a task (it may wait for an approval).
pub fn spawn_run(
    engine: &Arc<Engine>,
    host: &str,
    command: &str,
) -> tokio::task::JoinHandle<Result<ExecResult, ToolError>> {
    let (e, r) = (engine.clone(), req(host, command));
    tokio::spawn(async move { e.execute(&caller(), r).await })
}

/// A sign request body as broker-1 would send it.
pub fn sign_body(host: &str, command: &str, pubkey: &str) -> Value {
    json!({"host": host, "role": "target", "purpose": "oneshot", "command": command,
           "pubkey": pubkey})
}

/// POSTs `body` to `/v1/sign`.
pub async fn post_sign(client: &MtlsClient, body: &Value) -> RawResponse {
    client
        .call_raw(
            hyper::Method::POST,
            "/v1/sign",
            Some(serde_json::to_vec(body).unwrap()),
        )
        .await
        .unwrap()
}

/// The JSON of an answer.
pub fn json_of(raw: &RawResponse) -> Value {
    serde_json::from_slice(&raw.body).unwrap_or(Value::Null)
}

/// A tiny HTTP server on loopback that records `(path, body)` of every
/// request and answers 200.
pub struct Receiver {
    pub url: String,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                if reader.read_exact(&mut body).is_ok() {
                    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    sink.lock().unwrap().push((path, v));
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Receiver { url, seen }
    }

    /// Waits (≤ 10 s) for a request on `path`.
    pub async fn wait_for(&self, path: &str) -> Value {
        for _ in 0..100 {
            if let Some((_, v)) = self.seen.lock().unwrap().iter().find(|(p, _)| p == path) {
                return v.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("nothing received on {path}");
    }
}

/// Asserts `f` becomes true within `secs` seconds (polling every 100 ms).
pub async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 10 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}

/// The tool error's reason code and text.
pub fn err_of(r: Result<ExecResult, ToolError>) -> (String, String) {
    let e = r.unwrap_err();
    (e.reason_code().to_owned(), e.to_string())
}
