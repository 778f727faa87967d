//! Used nonces, so an envelope runs at most once.
//!
//! One file per account under the state directory (`<uid>.nonces`, lines
//! `<nonce> <expires>`), guarded by an exclusive `flock` on `<uid>.lock`
//! and replaced atomically (write a temporary file, fsync, rename) so a
//! crash never loses a nonce that was accepted. Entries are pruned once
//! their envelope has expired: after that the envelope is refused anyway.
//! Anything unexpected — an unreadable or unparsable file, a failed write —
//! refuses the command: without a trustworthy store a replay could pass.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::error::Refusal;

/// The most entries a store holds; more means something is flooding the
/// account with envelopes, and the shim refuses rather than grow without
/// bound.
pub const MAX_ENTRIES: usize = 100_000;

/// The nonce store of one account.
#[derive(Debug)]
pub struct NonceStore {
    data: PathBuf,
    lock: PathBuf,
}

impl NonceStore {
    /// The store of account `uid` in `dir`.
    pub fn new(dir: &Path, uid: u32) -> NonceStore {
        NonceStore {
            data: dir.join(format!("{uid}.nonces")),
            lock: dir.join(format!("{uid}.lock")),
        }
    }

    /// Records `nonce` (valid until `expires`) as used, or refuses if it
    /// was used before. `now` prunes expired entries.
    pub fn claim(&self, nonce: &str, expires: u64, now: u64) -> Result<(), Refusal> {
        if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Refusal::Malformed("nonce is not 128 bits of hex"));
        }
        let store_error =
            |what: &str, e: std::io::Error| Refusal::NonceStore(format!("{what}: {e}"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&self.lock)
            .map_err(|e| store_error(&format!("cannot open {}", self.lock.display()), e))?;
        lock.lock().map_err(|e| store_error("cannot lock", e))?;

        let mut entries = self.read()?;
        entries.retain(|_, exp| *exp >= now);
        if entries.contains_key(nonce) {
            return Err(Refusal::Replayed);
        }
        if entries.len() >= MAX_ENTRIES {
            return Err(Refusal::NonceStore(format!(
                "more than {MAX_ENTRIES} live nonces"
            )));
        }
        entries.insert(nonce.to_owned(), expires);
        self.write(&entries)?;
        // The lock is released when `lock` is dropped, after the rename.
        drop(lock);
        Ok(())
    }

    fn read(&self) -> Result<BTreeMap<String, u64>, Refusal> {
        let text = match std::fs::read_to_string(&self.data) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => {
                return Err(Refusal::NonceStore(format!(
                    "cannot read {}: {e}",
                    self.data.display()
                )));
            }
        };
        let mut entries = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let parsed = line
                .split_once(' ')
                .and_then(|(nonce, exp)| Some((nonce.to_owned(), exp.parse::<u64>().ok()?)));
            let Some((nonce, exp)) = parsed else {
                return Err(Refusal::NonceStore(format!(
                    "{} line {} is corrupt",
                    self.data.display(),
                    n + 1
                )));
            };
            entries.insert(nonce, exp);
        }
        Ok(entries)
    }

    fn write(&self, entries: &BTreeMap<String, u64>) -> Result<(), Refusal> {
        let tmp = self.data.with_extension("nonces.tmp");
        let fail = |e: std::io::Error| {
            Refusal::NonceStore(format!("cannot write {}: {e}", self.data.display()))
        };
        let mut file = File::options()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(fail)?;
        let mut text = String::with_capacity(entries.len() * 45);
        for (nonce, exp) in entries {
            text.push_str(nonce);
            text.push(' ');
            text.push_str(&exp.to_string());
            text.push('\n');
        }
        file.write_all(text.as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &self.data).map_err(fail)?;
        // Make the rename itself durable.
        if let Some(dir) = self.data.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(fail)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn a_nonce_is_accepted_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = NonceStore::new(dir.path(), 1000);
        store.claim(A, 200, 100).unwrap();
        assert_eq!(store.claim(A, 200, 150), Err(Refusal::Replayed));
        store.claim(B, 200, 150).unwrap();
        // Another account's store is separate.
        NonceStore::new(dir.path(), 1001)
            .claim(A, 200, 150)
            .unwrap();
        let mode = std::fs::metadata(dir.path().join("1000.nonces"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn expired_entries_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = NonceStore::new(dir.path(), 1000);
        store.claim(A, 200, 100).unwrap();
        store.claim(B, 500, 300).unwrap();
        let text = std::fs::read_to_string(dir.path().join("1000.nonces")).unwrap();
        assert_eq!(text, format!("{B} 500\n"));
    }

    #[test]
    fn a_broken_store_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let store = NonceStore::new(dir.path(), 1000);
        std::fs::write(dir.path().join("1000.nonces"), "garbage\n").unwrap();
        assert!(matches!(
            store.claim(A, 200, 100),
            Err(Refusal::NonceStore(_))
        ));
        let missing = NonceStore::new(&dir.path().join("no-such-dir"), 1000);
        assert!(matches!(
            missing.claim(A, 200, 100),
            Err(Refusal::NonceStore(_))
        ));
    }

    #[test]
    fn a_malformed_nonce_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = NonceStore::new(dir.path(), 1000);
        for bad in [
            "",
            "xyz",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            "0123456789abcdef 123456789abcdef",
        ] {
            assert!(
                matches!(store.claim(bad, 200, 100), Err(Refusal::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn concurrent_claims_of_one_nonce_have_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let path = path.clone();
                    s.spawn(move || NonceStore::new(&path, 7).claim(A, 200, 100).is_ok())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(wins, 1);
    }
}
