//! CA custody: the SSH user CA key behind one signing interface, wherever
//! it lives (SPEC §12 "CA custody").
//!
//! A [`Ca`] is opened from a [`CaSpec`] and signs certificate bodies. Three
//! kinds of custody:
//!
//! * **file** — an unencrypted OpenSSH private key file (0600), read into
//!   memory that is wiped on drop. The default, and what the demo uses.
//! * **pkcs11** — an Ed25519 key on a PKCS#11 token (SoftHSM2, a network
//!   HSM, a smart card), signing with `CKM_EDDSA`. The private key never
//!   enters this process; a bounded pool of logged-in sessions serves
//!   concurrent requests.
//! * **agent** — an Ed25519 key held by an ssh-agent (a YubiKey or a TPM
//!   behind one works the same), signing through the agent protocol.
//!
//! A token or agent that fails answers [`CaError::Unavailable`] — the
//! signer turns it into `503 ca_unavailable` for the hosts that use that
//! CA, never into a signature by another key — and the next request tries
//! again, so signing resumes by itself when the token or agent is back.
//!
//! Opening a remote key proves it: the public key is read (from the token,
//! or taken from the config and found among the agent's identities) and a
//! test message signed by it must verify, so a token whose public object
//! does not match its private key is refused at start, not discovered by
//! every sshd.
//!
//! # Layout
//! * [`CaSpec`], [`PinSource`] — where a key lives (built by the signer's
//!   config reader).
//! * [`Ca`] — an opened key: its public key and `sign_certificate`.
//! * `file`, `pkcs11`, `agent` — the three custodies; `pool` — the bounded
//!   pool of sessions or connections the remote ones share.
//! * [`provision_softhsm`] — the dev setup behind `broker-ctl pki init --hsm`.

use std::cell::RefCell;
use std::fmt;
use std::path::PathBuf;

use ssh_key::certificate::Builder;
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, Certificate, HashAlg, PublicKey, Signature};

mod agent;
mod file;
mod pkcs11;
mod pool;

pub use pkcs11::{SoftHsmToken, provision_softhsm};

/// Default number of token sessions or agent connections per key.
pub const DEFAULT_POOL_SIZE: usize = 4;
/// Largest accepted `pool_size`.
pub const MAX_POOL_SIZE: usize = 64;

/// Where a CA private key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSpec {
    /// An unencrypted OpenSSH private key file.
    File {
        /// The key file (0600).
        path: PathBuf,
    },
    /// An Ed25519 key on a PKCS#11 token.
    Pkcs11 {
        /// The PKCS#11 module (shared library).
        module: PathBuf,
        /// The token, selected by label (slot ids are not stable).
        token_label: String,
        /// `CKA_LABEL` of the private and public key objects.
        key_label: String,
        /// Where the user PIN comes from.
        pin: PinSource,
        /// Logged-in sessions kept for concurrent signing.
        pool_size: usize,
    },
    /// An Ed25519 key held by an ssh-agent.
    Agent {
        /// The agent's socket.
        socket: PathBuf,
        /// The key's public line (`ssh-ed25519 AAAA…`), to pick it among
        /// the agent's identities.
        public_key: String,
        /// Connections kept for concurrent signing.
        pool_size: usize,
    },
}

impl CaSpec {
    /// The custody's name as the config spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            CaSpec::File { .. } => "pem",
            CaSpec::Pkcs11 { .. } => "pkcs11",
            CaSpec::Agent { .. } => "agent",
        }
    }
}

/// Where a token's user PIN comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// A file readable by the signer only (0600); one trailing newline is
    /// ignored.
    File(PathBuf),
    /// An environment variable of the signer's process.
    Env(String),
}

/// Why a CA could not be opened or could not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    /// The key's configuration or material is wrong (a start or reload
    /// error).
    #[error("{0}")]
    Invalid(String),
    /// The token or agent cannot sign right now (`503 ca_unavailable`).
    #[error("{0}")]
    Unavailable(String),
}

/// An opened CA key. Shared by every request that signs with it.
pub struct Ca {
    public: PublicKey,
    custody: Custody,
}

enum Custody {
    File(file::FileKey),
    Pkcs11(pkcs11::TokenKey),
    Agent(agent::AgentKey),
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("kind", &self.kind())
            .field("public", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Opens the key `spec` names and proves it can sign.
    pub fn open(spec: &CaSpec) -> Result<Ca, CaError> {
        let (public, custody) = match spec {
            CaSpec::File { path } => {
                let key = file::FileKey::load(path)?;
                (key.public(), Custody::File(key))
            }
            CaSpec::Pkcs11 {
                module,
                token_label,
                key_label,
                pin,
                pool_size,
            } => {
                let key = pkcs11::TokenKey::open(module, token_label, key_label, pin, *pool_size)?;
                (key.public(), Custody::Pkcs11(key))
            }
            CaSpec::Agent {
                socket,
                public_key,
                pool_size,
            } => {
                let key = agent::AgentKey::open(socket, public_key, *pool_size)?;
                (key.public(), Custody::Agent(key))
            }
        };
        let ca = Ca { public, custody };
        if !matches!(ca.custody, Custody::File(_)) {
            ca.self_test()
                .map_err(|e| CaError::Invalid(e.to_string()))?;
        }
        Ok(ca)
    }

    /// The custody's name as the config spells it (`pem`, `pkcs11`,
    /// `agent`).
    pub fn kind(&self) -> &'static str {
        match self.custody {
            Custody::File(_) => "pem",
            Custody::Pkcs11(_) => "pkcs11",
            Custody::Agent(_) => "agent",
        }
    }

    /// Whether signing waits on another process or device (the caller
    /// should sign off its async runtime).
    pub fn blocks(&self) -> bool {
        !matches!(self.custody, Custody::File(_))
    }

    /// The CA's public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The public key line as hosts put it in `TrustedUserCAKeys`.
    pub fn public_openssh(&self) -> String {
        self.public.to_openssh().unwrap_or_default()
    }

    /// The public key as `<algorithm> <base64>`, without the comment.
    pub fn public_line(&self) -> String {
        let line = self.public_openssh();
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The public key's SSH wire blob (how a KRL names a CA).
    pub fn public_blob(&self) -> Vec<u8> {
        self.public.to_bytes().unwrap_or_default()
    }

    /// `SHA256:…` fingerprint of the public key.
    pub fn fingerprint(&self) -> String {
        self.public.fingerprint(HashAlg::Sha256).to_string()
    }

    /// Signs a certificate. A token or agent failure is
    /// [`CaError::Unavailable`]; a certificate the builder refuses is
    /// [`CaError::Invalid`].
    pub fn sign_certificate(&self, builder: Builder) -> Result<Certificate, CaError> {
        let built = |e: ssh_key::Error| CaError::Invalid(format!("certificate not built: {e}"));
        match &self.custody {
            Custody::File(key) => builder.sign(key.private()).map_err(built),
            Custody::Pkcs11(_) | Custody::Agent(_) => {
                let remote = Remote {
                    ca: self,
                    failure: RefCell::new(None),
                };
                let signed = builder.sign(&remote);
                match (signed, remote.failure.into_inner()) {
                    (Ok(cert), _) => Ok(cert),
                    (Err(_), Some(failure)) => Err(failure),
                    (Err(e), None) => Err(built(e)),
                }
            }
        }
    }

    /// A raw Ed25519 signature of `msg` by a remote key.
    /// A token's or agent's signature is verified with the CA public key
    /// before it is used: a key replaced under the same label, or a wrong
    /// agent, gives `Unavailable`, never a certificate that only fails at
    /// sshd.
    fn sign_raw(&self, msg: &[u8]) -> Result<[u8; 64], CaError> {
        let sig = match &self.custody {
            Custody::File(key) => return Ok(key.sign_raw(msg)),
            Custody::Pkcs11(key) => key.sign(msg)?,
            Custody::Agent(key) => key.sign(msg)?,
        };
        if self.verifies(msg, &sig) {
            Ok(sig)
        } else {
            Err(CaError::Unavailable(format!(
                "the {} key's signature does not verify with the CA key {}",
                self.kind(),
                self.fingerprint()
            )))
        }
    }

    fn verifies(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        let KeyData::Ed25519(pk) = self.public.key_data() else {
            return false;
        };
        ed25519_dalek::VerifyingKey::from_bytes(&pk.0).is_ok_and(|vk| {
            vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
                .is_ok()
        })
    }

    /// Signs a fixed message and verifies it with the public key.
    fn self_test(&self) -> Result<(), CaError> {
        let msg = b"infrabroker CA self-test";
        let sig = self.sign_raw(msg)?;
        if self.verifies(msg, &sig) {
            return Ok(());
        }
        Err(CaError::Invalid(format!(
            "the {} key's signature does not verify with its public key {}",
            self.kind(),
            self.fingerprint()
        )))
    }
}

/// ssh-key's view of a remote key: it signs through [`Ca::sign_raw`] and
/// keeps the custody's error, which `signature::Error` cannot carry.
struct Remote<'a> {
    ca: &'a Ca,
    failure: RefCell<Option<CaError>>,
}

impl signature::Signer<Signature> for Remote<'_> {
    fn try_sign(&self, msg: &[u8]) -> Result<Signature, signature::Error> {
        let raw = self.ca.sign_raw(msg).map_err(|e| {
            *self.failure.borrow_mut() = Some(e);
            signature::Error::new()
        })?;
        Signature::new(Algorithm::Ed25519, raw.to_vec()).map_err(|_| signature::Error::new())
    }
}

impl From<&Remote<'_>> for KeyData {
    fn from(r: &Remote<'_>) -> KeyData {
        r.ca.public.key_data().clone()
    }
}

/// Parses one `ssh-ed25519 AAAA…` public key line.
pub fn parse_ed25519_public(line: &str) -> Result<PublicKey, CaError> {
    let key = PublicKey::from_openssh(line.trim())
        .map_err(|_| CaError::Invalid(format!("{line:?} is not an OpenSSH public key line")))?;
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(CaError::Invalid("CA keys must be ssh-ed25519".to_owned()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests;
