//! A CA key in an unencrypted OpenSSH private key file, held in memory
//! (ssh-key wipes it on drop). The file must not be readable by group or
//! others.

use std::path::Path;

use ssh_key::{Algorithm, PrivateKey, PublicKey};

use crate::CaError;

/// A loaded key file.
pub(crate) struct FileKey {
    key: PrivateKey,
}

impl FileKey {
    /// Reads `path`: an unencrypted OpenSSH Ed25519 private key, 0600.
    pub(crate) fn load(path: &Path) -> Result<FileKey, CaError> {
        let invalid = CaError::Invalid;
        infrabroker_common::tls::check_private_mode(path).map_err(|e| invalid(e.to_string()))?;
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?,
        );
        let key = PrivateKey::from_openssh(text.as_bytes()).map_err(|_| {
            invalid(format!(
                "{}: not an OpenSSH private key (make one with ssh-keygen -t ed25519 or broker-ctl pki init)",
                path.display()
            ))
        })?;
        if key.is_encrypted() {
            return Err(invalid(format!(
                "{}: encrypted CA keys are not supported (put the key in a token or an agent instead)",
                path.display()
            )));
        }
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(invalid(format!(
                "{}: CA keys must be Ed25519",
                path.display()
            )));
        }
        Ok(FileKey { key })
    }

    pub(crate) fn public(&self) -> PublicKey {
        self.key.public_key().clone()
    }

    pub(crate) fn private(&self) -> &PrivateKey {
        &self.key
    }

    /// A raw Ed25519 signature (the self-test's path; certificates go
    /// through ssh-key with [`FileKey::private`]).
    pub(crate) fn sign_raw(&self, msg: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        let Some(pair) = self.key.key_data().ed25519() else {
            return [0; 64];
        };
        // SigningKey wipes itself on drop; the seed copy is wiped too.
        let seed = zeroize::Zeroizing::new(pair.private.to_bytes());
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        signing.sign(msg).to_bytes()
    }
}
