//! Witness cosigning of checkpoints (`audit_checkpoint.witnesses`): each
//! new checkpoint goes, with a consistency proof from the size the witness
//! last cosigned, to every witness's C2SP `tlog-witness` `add-checkpoint`
//! endpoint. A witness checks the note's signature against the log key it
//! was given (`broker-ctl audit vkey`) and the proof against what it saw
//! before, then answers with a timestamped `cosignature/v1` line. The
//! cosignatures that verify with the witness's configured key are written
//! with the checkpoint to `<path>.cosigned` (atomically replaced).
//!
//! Submissions run on their own thread and never hold up the log: a witness
//! that is down, slow or refuses is logged and counted
//! ([`WitnessStats`]), and the next checkpoint tries again. The thread
//! keeps the leaf hashes of the current file (32 bytes per record) to build
//! proofs.
//!
//! The wire format (body `old N`, proof lines, blank line, note; `409` with
//! `text/x.tlog.size` when the witness's size differs) is small enough that
//! it is written here on the shared HTTP client; no crate implements the
//! client side.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use prometheus_client::metrics::counter::Counter;

use super::merkle::{self, Hash};
use crate::config::Obj;

/// Each call to a witness must finish in this time.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Signature type byte of a `cosignature/v1` Ed25519 witness key.
const COSIGNATURE_V1: u8 = 0x04;

/// One configured witness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessSettings {
    /// The submission prefix (`POST <url>/add-checkpoint`).
    pub url: String,
    /// The witness's verifier key.
    pub key: WitnessKey,
}

/// A witness's verifier key (`<name>+<key id hex>+<base64(0x04 ‖ key)>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessKey {
    /// The cosigner name.
    pub name: String,
    /// Its key id (first 4 bytes of SHA-256(name ‖ `\n` ‖ 0x04 ‖ key)).
    pub id: [u8; 4],
    /// The Ed25519 public key.
    pub key: VerifyingKey,
}

impl WitnessKey {
    /// Parses a signed-note verifier key of type `cosignature/v1`.
    pub fn parse(vkey: &str) -> Result<WitnessKey, String> {
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("expected <name>+<key id>+<base64 key> (the witness's vkey)".into());
        };
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err(format!("{name:?} is not a witness name"));
        }
        let raw = STANDARD
            .decode(key)
            .map_err(|_| "the key part is not base64".to_owned())?;
        let (kind, pk) = raw.split_first().ok_or("the key part is empty")?;
        if *kind != COSIGNATURE_V1 {
            return Err(format!(
                "key type 0x{kind:02x} is not a cosignature/v1 witness key (0x04)"
            ));
        }
        let pk: [u8; 32] = pk
            .try_into()
            .map_err(|_| "the key is not 32 bytes of Ed25519".to_owned())?;
        let key = VerifyingKey::from_bytes(&pk).map_err(|e| format!("bad Ed25519 key: {e}"))?;
        let want = key_id(name, &key);
        if hex::encode(want) != id.to_ascii_lowercase() {
            return Err(format!(
                "key id {id} does not match the key (expected {})",
                hex::encode(want)
            ));
        }
        Ok(WitnessKey {
            name: name.to_owned(),
            id: want,
            key,
        })
    }

    /// Checks one note signature line against this key for checkpoint
    /// `body` (the note's text up to the blank line, with its final `\n`);
    /// the cosignature's timestamp when it verifies.
    pub fn verify(&self, line: &str, body: &str) -> Option<u64> {
        let b64 = line.strip_prefix(&format!("\u{2014} {} ", self.name))?;
        let blob = STANDARD.decode(b64.trim_end()).ok()?;
        let (id, rest) = blob.split_first_chunk::<4>()?;
        let (ts, sig) = rest.split_first_chunk::<8>()?;
        if *id != self.id {
            return None;
        }
        let ts = u64::from_be_bytes(*ts);
        let msg = format!("cosignature/v1\ntime {ts}\n{body}");
        let sig = Signature::from_slice(sig).ok()?;
        self.key.verify_strict(msg.as_bytes(), &sig).ok()?;
        Some(ts)
    }
}

fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    super::checkpoint::typed_key_id(name, COSIGNATURE_V1, key)
}

/// Reads `witnesses` of an `audit_checkpoint` object: a list of
/// `{"url": "https://…", "vkey": "<name>+<id>+<key>"}`.
pub(crate) fn read_settings(c: &Obj<'_>) -> Vec<WitnessSettings> {
    let Some(list) = c.raw("witnesses") else {
        return Vec::new();
    };
    let Some(items) = list.as_array() else {
        c.error(
            "witnesses",
            "expected a list of {\"url\", \"vkey\"} objects",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", c.path_of("witnesses"));
        let Some(w) = Obj::new(item, &path, c.errors()) else {
            continue;
        };
        let url = w.str("url");
        let vkey = w.str("vkey");
        if let Some(u) = &url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            w.error("url", format!("{u:?} is not an http:// or https:// URL"));
        }
        let key = vkey.and_then(|v| WitnessKey::parse(&v).map_err(|e| w.error("vkey", e)).ok());
        w.finish();
        if let (Some(url), Some(key)) = (url, key) {
            out.push(WitnessSettings {
                url: url.trim_end_matches('/').to_owned(),
                key,
            });
        }
    }
    out
}

/// Counters of witness submissions, for the services' metrics.
#[derive(Debug, Default, Clone)]
pub struct WitnessStats {
    /// Checkpoints a witness cosigned.
    pub cosigned: Counter,
    /// Submissions that failed (witness down, refused, or a cosignature
    /// that did not verify).
    pub failed: Counter,
}

impl WitnessStats {
    /// Registers both counters in a service's `/metrics`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "infrabroker_audit_witness_cosigned",
            "Audit checkpoints a witness cosigned",
            self.cosigned.clone(),
        );
        registry.register(
            "infrabroker_audit_witness_failures",
            "Audit checkpoint submissions a witness did not cosign (down, refused, or a bad cosignature)",
            self.failed.clone(),
        );
    }
}

pub(crate) enum Job {
    /// Leaf hashes of records added to the current file.
    Leaves(Vec<Hash>),
    /// A new, empty file (rotation).
    Reset,
    /// A checkpoint note just written, of the first `size` leaves.
    Checkpoint { note: String, size: u64 },
}

/// The submitting thread's handle.
pub(crate) struct Witnesses {
    tx: mpsc::Sender<Job>,
    pub(crate) stats: WitnessStats,
}

impl Witnesses {
    /// Starts the thread for `witnesses`; cosigned notes go to
    /// `<checkpoint>.cosigned`.
    pub(crate) fn start(
        witnesses: Vec<WitnessSettings>,
        checkpoint: &Path,
    ) -> std::io::Result<Witnesses> {
        let (tx, rx) = mpsc::channel();
        let stats = WitnessStats::default();
        let worker = Worker {
            witnesses: witnesses
                .into_iter()
                .map(|settings| Peer {
                    client: client(&settings.url),
                    settings,
                    size: None,
                })
                .collect(),
            out: cosigned_path(checkpoint),
            leaves: Vec::new(),
            stats: stats.clone(),
        };
        std::thread::Builder::new()
            .name("audit-witness".into())
            .spawn(move || worker.run(rx))?;
        Ok(Witnesses { tx, stats })
    }

    pub(crate) fn send(&self, job: Job) {
        // The thread only stops when this handle is dropped.
        let _ = self.tx.send(job);
    }
}

/// Where the cosigned copy of the checkpoint at `checkpoint` is written.
pub fn cosigned_path(checkpoint: &Path) -> PathBuf {
    let mut s = checkpoint.as_os_str().to_owned();
    s.push(".cosigned");
    PathBuf::from(s)
}

struct Peer {
    settings: WitnessSettings,
    /// Its HTTP client (pooled connections), built once.
    client: Result<crate::client::MtlsClient, String>,
    /// The size this witness last cosigned, once known.
    size: Option<u64>,
}

struct Worker {
    witnesses: Vec<Peer>,
    out: PathBuf,
    leaves: Vec<Hash>,
    stats: WitnessStats,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "audit witnesses: cannot start a runtime; no checkpoint will be cosigned");
                return;
            }
        };
        while let Ok(first) = rx.recv() {
            // Apply everything queued; submit only the newest checkpoint.
            let mut latest = None;
            for job in std::iter::once(first).chain(rx.try_iter()) {
                match job {
                    Job::Leaves(l) => self.leaves.extend(l),
                    Job::Reset => {
                        self.leaves.clear();
                        latest = None;
                    }
                    Job::Checkpoint { note, size } => latest = Some((note, size)),
                }
            }
            if let Some((note, size)) = latest {
                rt.block_on(self.submit(&note, size));
            }
        }
    }

    /// Sends the checkpoint to every witness; writes the note with the
    /// cosignatures that verify.
    async fn submit(&mut self, note: &str, size: u64) {
        let Some(body) = note.split_once("\n\n").map(|(b, _)| format!("{b}\n")) else {
            return;
        };
        let mut lines = Vec::new();
        for i in 0..self.witnesses.len() {
            let url = self.witnesses[i].settings.url.clone();
            match self.cosign(i, note, &body, size).await {
                Ok(line) => {
                    self.stats.cosigned.inc();
                    lines.push(line);
                }
                Err(why) => {
                    self.stats.failed.inc();
                    tracing::warn!(witness = %url, size, reason = %why, "audit checkpoint not cosigned");
                }
            }
        }
        if lines.is_empty() {
            return;
        }
        let mut text = note.to_owned();
        for l in lines {
            text.push_str(&l);
            text.push('\n');
        }
        if let Err(e) = super::checkpointer::write_atomic(&self.out, &text) {
            tracing::warn!(path = %self.out.display(), error = %e, "cannot write the cosigned checkpoint");
        }
    }

    /// One witness: `add-checkpoint` from the size it last cosigned (asked
    /// with `old 0` when unknown; a `409` names it and is retried once).
    async fn cosign(
        &mut self,
        i: usize,
        note: &str,
        body: &str,
        size: u64,
    ) -> Result<String, String> {
        let peer = &self.witnesses[i];
        let client = peer.client.clone()?;
        let mut old = peer.size.unwrap_or(0);
        for _ in 0..2 {
            if old > size {
                return Err(format!(
                    "the witness has cosigned {old} records of this origin and this log has {size}: \
                     the log was cut short or replaced (or the origin is shared with another log)"
                ));
            }
            let leaves = usize::try_from(size)
                .ok()
                .and_then(|n| self.leaves.get(..n))
                .ok_or("fewer leaves than the checkpoint covers")?;
            let proof = match usize::try_from(old) {
                Ok(0) => Vec::new(),
                Ok(o) => merkle::consistency_proof(leaves, o).ok_or("no consistency proof")?,
                Err(_) => return Err("size out of range".into()),
            };
            let mut req = format!("old {old}\n");
            for h in &proof {
                req.push_str(&STANDARD.encode(h));
                req.push('\n');
            }
            req.push('\n');
            req.push_str(note);
            let resp = client
                .call_raw_with_headers(
                    hyper::Method::POST,
                    "/add-checkpoint",
                    Some(req.into_bytes()),
                    &[("content-type", "text/plain; charset=utf-8")],
                )
                .await
                .map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&resp.body);
            match resp.status.as_u16() {
                200 => {
                    let key = &self.witnesses[i].settings.key;
                    let line = text
                        .lines()
                        .find(|l| key.verify(l, body).is_some())
                        .ok_or("no cosignature in the answer verifies with the witness's vkey")?
                        .to_owned();
                    self.witnesses[i].size = Some(size);
                    return Ok(line);
                }
                409 => match text.trim().parse::<u64>() {
                    Ok(theirs) if theirs != old => {
                        self.witnesses[i].size = Some(theirs);
                        old = theirs;
                    }
                    _ => {
                        return Err(format!(
                            "409: the witness saw a different tree of this size ({})",
                            text.trim()
                        ));
                    }
                },
                code => return Err(format!("{code}: {}", text.trim())),
            }
        }
        Err("the witness's size kept changing".into())
    }
}

fn client(url: &str) -> Result<crate::client::MtlsClient, String> {
    let c = if url.starts_with("https://") {
        crate::client::MtlsClient::server_auth(url, TIMEOUT)
    } else {
        crate::client::MtlsClient::plain(url, TIMEOUT)
    };
    c.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    fn witness() -> (SigningKey, String) {
        let sk = SigningKey::from_bytes(&[7; 32]);
        let pk = sk.verifying_key();
        let mut raw = vec![COSIGNATURE_V1];
        raw.extend_from_slice(pk.as_bytes());
        let vkey = format!(
            "w.test/1+{}+{}",
            hex::encode(key_id("w.test/1", &pk)),
            STANDARD.encode(raw)
        );
        (sk, vkey)
    }

    #[test]
    fn a_cosignature_verifies_only_with_its_key_and_body() {
        let (sk, vkey) = witness();
        let key = WitnessKey::parse(&vkey).unwrap();
        let body = "log.test\n3\nAAAA\n";
        let ts: u64 = 1_700_000_000;
        let sig = sk.sign(format!("cosignature/v1\ntime {ts}\n{body}").as_bytes());
        let mut blob = key.id.to_vec();
        blob.extend_from_slice(&ts.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        let line = format!("\u{2014} w.test/1 {}", STANDARD.encode(&blob));
        assert_eq!(key.verify(&line, body), Some(ts));
        assert_eq!(key.verify(&line, "log.test\n4\nAAAA\n"), None);
        let other = format!("\u{2014} w.test/2 {}", STANDARD.encode(&blob));
        assert_eq!(key.verify(&other, body), None);
    }

    #[test]
    fn vkeys_are_checked() {
        let (_, vkey) = witness();
        assert!(WitnessKey::parse(&vkey).is_ok());
        let (name, rest) = vkey.split_once('+').unwrap();
        let (_, key) = rest.split_once('+').unwrap();
        let wrong_id = format!("{name}+00000000+{key}");
        assert!(
            WitnessKey::parse(&wrong_id)
                .unwrap_err()
                .contains("does not match")
        );
        assert!(WitnessKey::parse("no-plus-signs").is_err());
        // A log's (note) key is type 0x01, not a witness key.
        let mut raw = STANDARD.decode(key).unwrap();
        raw[0] = 0x01;
        let note_key = format!("{name}+abcd0123+{}", STANDARD.encode(raw));
        assert!(WitnessKey::parse(&note_key).unwrap_err().contains("0x01"));
    }
}
