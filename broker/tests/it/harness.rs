//! A dev PKI, real sshd(s), a signer process whose hosts point at them, and
//! a broker engine (or `broker.json` for the binary).

use std::path::PathBuf;
use std::sync::Arc;

use infrabroker_broker::api::{
    Caller, ExecRequest, ExecResult, SessionMode, SessionOpenRequest, ToolError, Tools,
};
use infrabroker_broker::config::BrokerConfig;
use infrabroker_broker::engine::Engine;
use infrabroker_testbed::stack::{Pki, SignerProc, signer_config};
use infrabroker_testbed::{Sshd, SshdOptions, ensure_user};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const USER: &str = "ibtest";

pub struct Bed {
    pub dir: TempDir,
    pub pki: Pki,
    pub signer_cfg: Value,
    pub signer: SignerProc,
}

/// Host entry for `sshd` in group `web`.
pub fn host_for(sshd: &Sshd, principal: &str) -> Value {
    json!({
        "addr": sshd.addr().to_string(),
        "user": USER,
        "host_key": sshd.host_key_openssh(),
        "principal": principal,
        "groups": ["web"],
    })
}

/// An sshd on loopback trusting `pki`'s SSH CA, principal `p` for `ibtest`.
pub fn sshd(pki: &Pki, p: &str) -> Sshd {
    ensure_user(USER).unwrap();
    Sshd::start(SshdOptions::new(pki.ssh_ca_pub().unwrap()).with_principals(USER, [p])).unwrap()
}

impl Bed {
    pub fn pki() -> (TempDir, Pki) {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::create(dir.path()).unwrap();
        (dir, pki)
    }

    /// Starts a signer with `hosts`; caller `broker-1` reaches group `web`.
    pub fn start(dir: TempDir, pki: Pki, hosts: Value) -> Bed {
        Bed::start_with(dir, pki, hosts, |_| {})
    }

    /// [`Bed::start`] with `edit` applied to the signer's config first.
    pub fn start_with(dir: TempDir, pki: Pki, hosts: Value, edit: impl FnOnce(&mut Value)) -> Bed {
        let mut cfg = signer_config(&pki, &dir.path().join("signer-audit.log"));
        cfg["callers"] = json!({"broker-1": {"allowed_groups": ["web"]}});
        cfg["hosts"] = hosts;
        edit(&mut cfg);
        let signer = SignerProc::start(dir.path(), &cfg).unwrap();
        Bed {
            dir,
            pki,
            signer_cfg: cfg,
            signer,
        }
    }

    pub fn broker_json(&self, extra: Value) -> PathBuf {
        let mut cfg = json!({
            "signer": {
                "url": self.signer.url,
                "client_cert": self.pki.path("broker-1.crt"),
                "client_key": self.pki.path("broker-1.key"),
                "ca": self.pki.path("ca.crt"),
                "request_timeout_seconds": 5,
            },
            "audit_log": self.dir.path().join("broker-audit.log"),
            "audit_key": self.pki.path("broker-audit.seed"),
            "max_output_bytes": 4096,
            "exec_timeout_seconds": 30,
            "connect_timeout_seconds": 10,
        });
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        let path = self
            .dir
            .path()
            .join(format!("broker-{}.json", rand::random::<u32>()));
        std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        path
    }

    pub async fn engine(&self, extra: Value) -> Arc<Engine> {
        let cfg = BrokerConfig::load(&self.broker_json(extra)).unwrap();
        Engine::start(cfg).await.unwrap()
    }

    pub fn signer_records(&self) -> Vec<Value> {
        read_records(&self.dir.path().join("signer-audit.log"))
    }

    pub fn broker_records(&self) -> Vec<Value> {
        read_records(&self.dir.path().join("broker-audit.log"))
    }
}

pub fn read_records(p: &std::path::Path) -> Vec<Value> {
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

pub async fn run(engine: &Engine, host: &str, command: &str) -> Result<ExecResult, ToolError> {
    engine.execute(&caller(), req(host, command)).await
}

/// An `ssh_session_open` of `host` in `mode`, no sudo, default terminal.
pub fn open_req(host: &str, mode: SessionMode) -> SessionOpenRequest {
    SessionOpenRequest {
        host: host.into(),
        mode,
        sudo: false,
        sudo_user: None,
        cols: None,
        rows: None,
    }
}
