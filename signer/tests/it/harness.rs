//! A signer process over a fresh dev PKI, and helpers to call it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use infrabroker_common::client::{MtlsClient, RawResponse};
use infrabroker_testbed::stack::{Pki, SignerProc, signer_config};
use serde_json::{Value, json};
use ssh_key::{Algorithm, PrivateKey};
use tempfile::TempDir;

pub struct Stack {
    pub dir: TempDir,
    pub pki: Pki,
    pub config: Value,
    pub signer: SignerProc,
}

/// A host entry reachable by `broker-1` through group `web`.
pub fn host(addr: &str, host_key: &str, principal: &str) -> Value {
    json!({
        "addr": addr,
        "user": "ibtest",
        "host_key": host_key,
        "principal": principal,
        "groups": ["web"],
    })
}

/// Any syntactically valid host key, for hosts that are never dialled.
pub const DUMMY_HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

impl Stack {
    /// Starts a signer whose config is the base config changed by `edit`.
    pub fn start(edit: impl FnOnce(&mut Value, &Pki)) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::create(dir.path()).unwrap();
        Stack::start_in(dir, pki, edit)
    }

    /// Like [`Stack::start`] over an existing directory and PKI.
    pub fn start_in(dir: TempDir, pki: Pki, edit: impl FnOnce(&mut Value, &Pki)) -> Stack {
        Stack::start_env(dir, pki, &[], edit)
    }

    /// Like [`Stack::start_in`] with extra environment variables for the
    /// signer process.
    pub fn start_env(
        dir: TempDir,
        pki: Pki,
        env: &[(&str, &std::ffi::OsStr)],
        edit: impl FnOnce(&mut Value, &Pki),
    ) -> Stack {
        let mut config = signer_config(&pki, &dir.path().join("audit.log"));
        config["callers"] = json!({
            "broker-1": {"allowed_groups": ["web"]},
            "control-plane": {"allowed_groups": ["web"]},
        });
        config["hosts"] = json!({
            "web": host("127.0.0.1:1", DUMMY_HOST_KEY, "web-principal"),
            "jumpbox": {
                "addr": "127.0.0.1:2", "user": "jump", "host_key": DUMMY_HOST_KEY,
                "principal": "jump-principal", "groups": ["web"], "allow_as_bastion": true,
            },
        });
        edit(&mut config, &pki);
        let signer = SignerProc::start_env(dir.path(), &config, env).unwrap();
        Stack {
            dir,
            pki,
            config,
            signer,
        }
    }

    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    /// An mTLS client with the PKI's `stem` certificate.
    pub fn client(&self, stem: &str) -> MtlsClient {
        self.client_with(
            &self.pki.path(&format!("{stem}.crt")),
            &self.pki.path(&format!("{stem}.key")),
        )
    }

    pub fn client_with(&self, cert: &Path, key: &Path) -> MtlsClient {
        MtlsClient::new(
            &self.signer.url,
            &self.pki.path("ca.crt"),
            cert,
            key,
            Duration::from_secs(10),
        )
        .unwrap()
    }

    /// POST /v1/sign as `stem` with a raw body.
    pub async fn sign_raw(&self, stem: &str, body: Vec<u8>) -> RawResponse {
        self.client(stem)
            .call_raw(hyper::Method::POST, "/v1/sign", Some(body))
            .await
            .unwrap()
    }

    /// POST /v1/sign as `stem`.
    pub async fn sign(&self, stem: &str, req: &Value) -> (u16, Value) {
        let raw = self.sign_raw(stem, serde_json::to_vec(req).unwrap()).await;
        let v = serde_json::from_slice(&raw.body).unwrap_or(Value::Null);
        (raw.status.as_u16(), v)
    }

    /// Every audit record so far.
    pub fn audit_records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.audit_log())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until an audit record satisfies `pred`.
    pub fn wait_audit(&self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let mut found = None;
        infrabroker_testbed::wait_until(Duration::from_secs(5), || {
            found = self.audit_records().into_iter().find(|r| pred(r));
            found.is_some()
        });
        found
    }
}

/// A fresh Ed25519 key pair.
pub fn keypair() -> PrivateKey {
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&rand::random::<[u8; 32]>());
    let kp = ssh_key::private::Ed25519Keypair::from_seed(&seed);
    let key = PrivateKey::from(kp);
    assert_eq!(key.algorithm(), Algorithm::Ed25519);
    key
}

pub fn pubkey_line(key: &PrivateKey) -> String {
    key.public_key().to_openssh().unwrap()
}

/// A one-shot target request for `host` running `command`.
pub fn oneshot(host: &str, command: &str, key: &PrivateKey) -> Value {
    json!({
        "host": host, "role": "target", "purpose": "oneshot",
        "command": command, "pubkey": pubkey_line(key),
    })
}

/// The tree size a checkpoint note at `path` commits to (0 when absent).
pub fn checkpoint_size(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.lines().nth(1).and_then(|l| l.parse().ok()))
        .unwrap_or(0)
}
