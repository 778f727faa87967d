//! Checkpoints of the audit log's Merkle tree in the C2SP `tlog-checkpoint`
//! format, signed as a C2SP `signed-note` with the service's audit key.
//!
//! Body: the origin line, the tree size in decimal, the base64 root hash,
//! each ending in `\n`. Note: body, an empty line, then one signature line
//! `— <name> <base64(key id ‖ Ed25519 signature over the body)>` where the
//! key id is the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)
//! (0x01 = Ed25519).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::AuditKey;
use super::merkle::{self, Hash};

/// One checkpoint: a commitment to the first `size` records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (unique per log, e.g. `infrabroker.example/signer`).
    pub origin: String,
    /// Number of records committed to.
    pub size: u64,
    /// Merkle Tree Hash of those records.
    pub root: Hash,
}

/// Why a checkpoint note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The text is not a signed note with a checkpoint body.
    #[error("checkpoint is malformed: {0}")]
    Malformed(String),
    /// No signature line by the expected key verifies.
    #[error("checkpoint signature does not verify with key {0:?}")]
    BadSignature(String),
}

/// The signed-note key id of an Ed25519 note key named `name`.
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    typed_key_id(name, 0x01, key)
}

/// A signed-note key id: the first 4 bytes of SHA-256(name ‖ `\n` ‖
/// `kind` ‖ key), `kind` 0x01 for note signatures, 0x04 for
/// `cosignature/v1` witness keys.
pub fn typed_key_id(name: &str, kind: u8, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, kind]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

impl Checkpoint {
    /// The checkpoint body (what is signed).
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// The signed note: body, blank line, the signature line by `name`.
    pub fn sign(&self, name: &str, key: &SigningKey) -> String {
        let body = self.body();
        let sig = key.sign(body.as_bytes());
        let mut blob = key_id(name, &key.verifying_key()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n\u{2014} {name} {}\n", STANDARD.encode(blob))
    }

    /// [`sign`](Self::sign) with a service's audit key.
    pub fn sign_audit(&self, name: &str, key: &AuditKey) -> String {
        self.sign(name, key.signing_key())
    }

    /// Parses a signed note whose signer name is its origin line (how
    /// services sign their checkpoints) and checks its signature.
    pub fn open_own(text: &str, key: &VerifyingKey) -> Result<Checkpoint, CheckpointError> {
        let origin = text.lines().next().unwrap_or_default();
        Self::open(text, origin, key)
    }

    /// Checks that the log whose record leaf hashes are `leaves` extends
    /// this checkpoint: at least `size` records (else truncated) whose
    /// first `size` reproduce `root` (else rewritten or forked).
    pub fn check_log(&self, leaves: &[Hash]) -> Result<(), String> {
        let Some(prefix) = usize::try_from(self.size)
            .ok()
            .and_then(|n| leaves.get(..n))
        else {
            return Err(format!(
                "truncated: the log has {} records, the checkpoint commits to {}",
                leaves.len(),
                self.size
            ));
        };
        if merkle::root(prefix) != self.root {
            return Err(format!(
                "rewritten or forked: the first {} records do not reproduce the checkpoint's root",
                self.size
            ));
        }
        Ok(())
    }

    /// Parses a signed note and checks that one of its signature lines is
    /// by `name` with `key` and verifies. Other signatures (witness
    /// cosignatures) are ignored here.
    pub fn open(text: &str, name: &str, key: &VerifyingKey) -> Result<Checkpoint, CheckpointError> {
        let bad = |s: &str| CheckpointError::Malformed(s.to_owned());
        let (body, sigs) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no blank line between body and signatures"))?;
        let body = format!("{body}\n");
        let checkpoint = parse_body(&body)?;
        let want = key_id(name, key);
        let prefix = format!("\u{2014} {name} ");
        let verified = sigs
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .any(|b64| {
                let Ok(blob) = STANDARD.decode(b64) else {
                    return false;
                };
                let Some((id, sig)) = blob.split_first_chunk::<4>() else {
                    return false;
                };
                *id == want
                    && Signature::from_slice(sig)
                        .is_ok_and(|s| key.verify_strict(body.as_bytes(), &s).is_ok())
            });
        if !verified {
            return Err(CheckpointError::BadSignature(name.to_owned()));
        }
        Ok(checkpoint)
    }
}

fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
    let bad = |s: String| CheckpointError::Malformed(s);
    let mut lines = body.lines();
    let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(bad("body needs origin, size and root lines".to_owned()));
    };
    if origin.is_empty() {
        return Err(bad("empty origin".to_owned()));
    }
    let size: u64 = size
        .parse()
        .map_err(|_| bad(format!("tree size {size:?} is not a decimal number")))?;
    let root = STANDARD
        .decode(root)
        .ok()
        .and_then(|r| Hash::try_from(r).ok())
        .ok_or_else(|| bad("root hash is not 32 bytes of base64".to_owned()))?;
    Ok(Checkpoint {
        origin: origin.to_owned(),
        size,
        root,
    })
}

#[cfg(test)]
mod tests;
