//! `/etc/infrabroker-shim/shim.conf` and the pinned key file.
//!
//! The config is `key = value` lines (`#` starts a comment); the shim runs
//! before anything else on a login, so the format is one a sysadmin can
//! write with `echo` and that needs no parser crate. Unknown keys are
//! errors, as in every infrabroker config.
//!
//! The key file holds one OpenSSH public key per line (`ssh-ed25519 AAAA…
//! comment`): the signer's envelope key, and during a rotation the next one
//! too. OpenSSH's Ed25519 public key blob is two SSH strings (the algorithm
//! name and the 32 key bytes), read here by hand rather than through
//! `ssh-key` to keep the binary small.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;

use crate::error::Refusal;

/// Where the force-command finds its config unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/infrabroker-shim/shim.conf";

/// The shim's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This host's name in `signer.json`.
    pub host: String,
    /// Principals this host accepts in envelopes; empty = any.
    pub principals: Vec<String>,
    /// The pinned envelope keys.
    pub keys_file: PathBuf,
    /// Where used nonces are kept (one file per account).
    pub state_dir: PathBuf,
    /// Envelopes whose expiry is further ahead than this are refused, which
    /// also bounds how long a nonce must be remembered.
    pub max_lifetime_seconds: u64,
    /// The shell that runs the command (`-c`).
    pub shell: PathBuf,
    /// sudo, for elevated envelopes.
    pub sudo: PathBuf,
    /// coreutils/busybox `timeout`, for envelopes with a deadline.
    pub timeout: PathBuf,
}

impl Config {
    /// Parses the text of a config file.
    pub fn parse(text: &str) -> Result<Config, Refusal> {
        let mut host = None;
        let mut config = Config {
            host: String::new(),
            principals: Vec::new(),
            keys_file: PathBuf::from("/etc/infrabroker-shim/keys.pub"),
            state_dir: PathBuf::from("/var/lib/infrabroker-shim"),
            max_lifetime_seconds: 300,
            shell: PathBuf::from("/bin/sh"),
            sudo: PathBuf::from("/usr/bin/sudo"),
            timeout: PathBuf::from("/usr/bin/timeout"),
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let bad = |what: &str| Refusal::Config(format!("line {}: {what}", n + 1));
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| bad("expected key = value"))?;
            let value = value.trim();
            if value.is_empty() {
                return Err(bad("empty value"));
            }
            match key.trim() {
                "host" => host = Some(value.to_owned()),
                "principals" => {
                    config.principals = value.split(',').map(|p| p.trim().to_owned()).collect();
                }
                "keys" => {
                    config.keys_file =
                        absolute(value).ok_or_else(|| bad("keys must be an absolute path"))?
                }
                "state_dir" => {
                    config.state_dir =
                        absolute(value).ok_or_else(|| bad("state_dir must be an absolute path"))?;
                }
                "max_lifetime_seconds" => {
                    config.max_lifetime_seconds = value
                        .parse()
                        .ok()
                        .filter(|s| (1..=3600).contains(s))
                        .ok_or_else(|| bad("max_lifetime_seconds must be 1..=3600"))?;
                }
                "shell" => {
                    config.shell =
                        absolute(value).ok_or_else(|| bad("shell must be an absolute path"))?
                }
                "sudo" => {
                    config.sudo =
                        absolute(value).ok_or_else(|| bad("sudo must be an absolute path"))?
                }
                "timeout" => {
                    config.timeout =
                        absolute(value).ok_or_else(|| bad("timeout must be an absolute path"))?
                }
                other => return Err(bad(&format!("unknown key {other:?}"))),
            }
        }
        config.host = host.ok_or_else(|| Refusal::Config("no `host = NAME` line".into()))?;
        Ok(config)
    }

    /// Reads and parses `path` (root's, not writable by group or others:
    /// it names the key file).
    pub fn load(path: &Path) -> Result<Config, Refusal> {
        trusted(path)?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| Refusal::Config(format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&text)
    }
}

fn absolute(value: &str) -> Option<PathBuf> {
    let path = PathBuf::from(value);
    path.is_absolute().then_some(path)
}

/// Refuses a file that anyone but root could change: owned by another
/// account (the login account could rewrite it), or writable by group or
/// others.
fn trusted(path: &Path) -> Result<(), Refusal> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Refusal::Config(format!("cannot read {}: {e}", path.display())))?;
    if meta.uid() != 0 {
        return Err(Refusal::Config(format!(
            "{} is not owned by root",
            path.display()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Refusal::Config(format!(
            "{} is writable by group or others",
            path.display()
        )));
    }
    Ok(())
}

/// Reads the pinned keys. The file must be root's and not writable by group
/// or others (whoever could write it could pin their own key). An empty
/// list is an error: the shim would refuse everything, and the operator
/// should know why.
pub fn load_keys(path: &Path) -> Result<Vec<VerifyingKey>, Refusal> {
    trusted(path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| Refusal::Config(format!("cannot read {}: {e}", path.display())))?;
    let keys = parse_keys(&text)?;
    if keys.is_empty() {
        return Err(Refusal::Config(format!("{} holds no key", path.display())));
    }
    Ok(keys)
}

/// Parses OpenSSH `ssh-ed25519` public key lines; blank and `#` lines are
/// skipped, anything else is an error naming the line.
pub fn parse_keys(text: &str) -> Result<Vec<VerifyingKey>, Refusal> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            Refusal::Config(format!(
                "key line {} is not an ssh-ed25519 public key",
                n + 1
            ))
        };
        let mut fields = line.split_whitespace();
        if fields.next() != Some("ssh-ed25519") {
            return Err(bad());
        }
        let blob = fields
            .next()
            .and_then(|b| STANDARD.decode(b).ok())
            .ok_or_else(bad)?;
        keys.push(ed25519_from_blob(&blob).ok_or_else(bad)?);
    }
    Ok(keys)
}

fn ed25519_from_blob(blob: &[u8]) -> Option<VerifyingKey> {
    let (name, rest) = ssh_string(blob)?;
    let (key, rest) = ssh_string(rest)?;
    if name != b"ssh-ed25519" || !rest.is_empty() {
        return None;
    }
    VerifyingKey::from_bytes(key.try_into().ok()?).ok()
}

/// One SSH wire string (u32 big-endian length, then bytes) and the rest.
fn ssh_string(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let body = bytes.get(4..4 + len)?;
    Some((body, &bytes[4 + len..]))
}

/// The OpenSSH line for `key` (what `broker-ctl` and the signer print for
/// operators to pin).
pub fn openssh_line(key: &VerifyingKey, comment: &str) -> String {
    let mut blob = Vec::with_capacity(51);
    for part in [b"ssh-ed25519".as_slice(), key.as_bytes().as_slice()] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!("ssh-ed25519 {} {comment}", STANDARD.encode(blob))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses() {
        let c = Config::parse(
            "# sealed exec on web01\nhost = web01\nprincipals = web01-deploy, web01-ops\n\
             keys = /etc/k.pub\nstate_dir = /var/lib/s # nonces\nmax_lifetime_seconds = 60\n\
             shell = /bin/dash\nsudo = /usr/local/bin/sudo\n",
        )
        .unwrap();
        assert_eq!(c.host, "web01");
        assert_eq!(c.principals, ["web01-deploy", "web01-ops"]);
        assert_eq!(c.keys_file, Path::new("/etc/k.pub"));
        assert_eq!(c.state_dir, Path::new("/var/lib/s"));
        assert_eq!(c.max_lifetime_seconds, 60);
        assert_eq!(c.shell, Path::new("/bin/dash"));
    }

    #[test]
    fn bad_configs_say_which_line() {
        for (text, needle) in [
            ("", "no `host = NAME` line"),
            ("host = a\nhots = b", "line 2: unknown key \"hots\""),
            ("host", "line 1: expected key = value"),
            ("host =", "line 1: empty value"),
            (
                "host = a\nkeys = rel/k",
                "line 2: keys must be an absolute path",
            ),
            ("host = a\nmax_lifetime_seconds = 0", "1..=3600"),
            ("host = a\nmax_lifetime_seconds = x", "1..=3600"),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn keys_round_trip_through_openssh_lines() {
        let k1 = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let k2 = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
        let text = format!(
            "# current\n{}\n\n{}\n",
            openssh_line(&k1, "signer-envelope"),
            openssh_line(&k2, "next")
        );
        assert_eq!(parse_keys(&text).unwrap(), vec![k1, k2]);
    }

    #[test]
    fn other_key_types_and_garbage_are_errors() {
        for text in [
            "ssh-rsa AAAAB3NzaC1yc2E= x",
            "ssh-ed25519 !!!",
            "ssh-ed25519",
            // An RSA blob under an ed25519 label.
            "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQAB",
        ] {
            assert!(parse_keys(text).is_err(), "{text}");
        }
    }

    #[test]
    fn a_writable_or_empty_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.pub");
        let k = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        std::fs::write(&path, openssh_line(&k, "x")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refusal = |p: &Path| load_keys(p).unwrap_err().to_string();
        if std::fs::metadata(&path).unwrap().uid() != 0 {
            // Not run as root: the file is the login account's own.
            assert!(refusal(&path).contains("not owned by root"));
            return;
        }
        assert_eq!(load_keys(&path).unwrap(), vec![k]);
        // Another account's file: it could pin its own key.
        std::os::unix::fs::chown(&path, Some(1000), None).unwrap();
        assert!(refusal(&path).contains("not owned by root"));
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        assert!(
            load_keys(&path)
                .unwrap_err()
                .to_string()
                .contains("writable")
        );
        std::fs::write(&path, "# nothing\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            load_keys(&path)
                .unwrap_err()
                .to_string()
                .contains("holds no key")
        );
    }
}
