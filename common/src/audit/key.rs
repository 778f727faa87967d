//! The audit signing key and its OpenSSH public form.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use super::AuditError;

/// Length of the Ed25519 seed at the start of a seed file.
const SEED_LEN: usize = 32;

/// The OpenSSH algorithm name, also the first field of the key blob.
const SSH_ED25519: &str = "ssh-ed25519";

/// An Ed25519 key that signs audit records.
///
/// The secret is wiped from memory on drop and never printed: `Debug` shows
/// `<secret>`.
pub struct AuditKey {
    signing: SigningKey,
}

impl AuditKey {
    /// Loads the key from a raw seed file: its first 32 bytes are the
    /// Ed25519 seed (not PEM, not OpenSSH format). Longer files are accepted
    /// for compatibility; shorter ones are refused.
    ///
    /// The file must not be accessible by group or others (`mode & 0o077`
    /// must be 0), the same rule OpenSSH applies to private keys.
    pub fn from_seed_file(path: impl AsRef<Path>) -> Result<AuditKey, AuditError> {
        Ok(AuditKey::from_seed(seed_file(path.as_ref())?))
    }

    /// Builds the key from a 32-byte Ed25519 seed.
    pub fn from_seed(seed: Zeroizing<[u8; SEED_LEN]>) -> AuditKey {
        AuditKey {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The public half, needed to verify logs signed with this key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key as an OpenSSH line, `ssh-ed25519 AAAA… comment`, the
    /// form [`parse_public_key`] reads back. An empty comment is left out.
    pub fn public_key_openssh(&self, comment: &str) -> String {
        let key = self.verifying_key();
        // Wire blob per RFC 8709: string "ssh-ed25519", string key.
        let mut blob = Vec::with_capacity(4 + SSH_ED25519.len() + 4 + 32);
        for part in [SSH_ED25519.as_bytes(), key.as_bytes().as_slice()] {
            // Both lengths are tiny constants, so the cast cannot truncate.
            blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
            blob.extend_from_slice(part);
        }
        let mut line = format!("{SSH_ED25519} {}", STANDARD.encode(&blob));
        if !comment.is_empty() {
            line.push(' ');
            line.push_str(comment);
        }
        line
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Reads an audit public key from an OpenSSH public key line (the contents
/// of a `.pub` file). Blank lines and `#` comments around it are skipped;
/// the first key line is used and must be `ssh-ed25519`.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, AuditError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| AuditError::PublicKey("no key line found".to_owned()))?;
    let key = ssh_key::PublicKey::from_openssh(line)
        .map_err(|e| AuditError::PublicKey(format!("not an OpenSSH public key: {e}")))?;
    let ed = key.key_data().ed25519().ok_or_else(|| {
        AuditError::PublicKey(format!(
            "expected an ssh-ed25519 key, found {}",
            key.algorithm()
        ))
    })?;
    VerifyingKey::try_from(ed)
        .map_err(|e| AuditError::PublicKey(format!("invalid Ed25519 point: {e}")))
}

/// Reads an Ed25519 seed file: its first 32 bytes (not PEM, not OpenSSH
/// format; longer files are accepted), from a file no group or other may
/// access. The audit key and the signer's envelope key are such files.
pub fn seed_file(path: &Path) -> Result<Zeroizing<[u8; SEED_LEN]>, AuditError> {
    let key_error = |reason: String| AuditError::KeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = File::open(path).map_err(|e| key_error(e.to_string()))?;
    // Checked on the open descriptor so the file cannot be swapped between
    // the permission check and the read.
    let meta = file.metadata().map_err(|e| key_error(e.to_string()))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(key_error(format!(
            "mode {mode:04o} allows group/other access; chmod 600 it"
        )));
    }
    let capacity = usize::try_from(meta.len())
        .unwrap_or(SEED_LEN)
        .max(SEED_LEN);
    // Sized up front so the secret is never copied by a reallocation.
    let mut contents = Zeroizing::new(Vec::with_capacity(capacity + 1));
    file.read_to_end(&mut contents)
        .map_err(|e| key_error(e.to_string()))?;
    let Some(head) = contents.get(..SEED_LEN) else {
        return Err(key_error(format!(
            "too short: {} bytes, need at least {SEED_LEN}",
            contents.len()
        )));
    };
    let mut seed = Zeroizing::new([0u8; SEED_LEN]);
    seed.copy_from_slice(head);
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn write_seed(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn seed_file_uses_first_32_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut long = [9u8; 40].to_vec();
        long[35] = 1;
        let a = AuditKey::from_seed_file(write_seed(dir.path(), "a", &long, 0o600)).unwrap();
        let b = AuditKey::from_seed_file(write_seed(dir.path(), "b", &[9u8; 32], 0o400)).unwrap();
        assert_eq!(a.verifying_key(), b.verifying_key());
        assert_eq!(
            a.verifying_key(),
            AuditKey::from_seed(Zeroizing::new([9u8; 32])).verifying_key()
        );
    }

    #[test]
    fn seed_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_seed(dir.path(), "k", &[1u8; 32], 0o644);
        let err = AuditKey::from_seed_file(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("0644"), "{err}");
        let path = write_seed(dir.path(), "g", &[1u8; 32], 0o640);
        assert!(AuditKey::from_seed_file(&path).is_err());
    }

    #[test]
    fn short_or_missing_seed_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_seed(dir.path(), "k", &[1u8; 31], 0o600);
        let err = AuditKey::from_seed_file(&path).unwrap_err().to_string();
        assert!(err.contains("too short: 31 bytes"), "{err}");
        assert!(AuditKey::from_seed_file(dir.path().join("absent")).is_err());
    }

    #[test]
    fn debug_hides_the_secret() {
        let key = AuditKey::from_seed(Zeroizing::new([3u8; 32]));
        assert_eq!(format!("{key:?}"), "<secret>");
    }

    #[test]
    fn openssh_line_round_trips_and_matches_ssh_key() {
        let key = AuditKey::from_seed(Zeroizing::new([5u8; 32]));
        let line = key.public_key_openssh("signer audit");
        let reference = ssh_key::PublicKey::new(
            ssh_key::public::Ed25519PublicKey::from(key.verifying_key()).into(),
            "signer audit",
        )
        .to_openssh()
        .unwrap();
        assert_eq!(line, reference);
        let text = format!("# audit key\n\n{line}\n");
        assert_eq!(parse_public_key(&text).unwrap(), key.verifying_key());
        let bare = key.public_key_openssh("");
        assert_eq!(bare.split(' ').count(), 2);
        assert_eq!(parse_public_key(&bare).unwrap(), key.verifying_key());
    }

    #[test]
    fn non_ed25519_or_garbage_public_key_is_refused() {
        assert!(parse_public_key("").is_err());
        assert!(parse_public_key("ssh-ed25519 not-base64").is_err());
        let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg= x";
        let err = parse_public_key(ecdsa).unwrap_err().to_string();
        assert!(
            err.contains("expected an ssh-ed25519 key") || err.contains("not an OpenSSH"),
            "{err}"
        );
    }
}
