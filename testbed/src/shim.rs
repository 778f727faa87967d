//! A sealed host's shim as `deploy/install-shim.sh` would leave it, in a
//! temporary directory every account can traverse (sshd runs the shim as
//! the login account): the binary, `shim.conf`, the pinned `keys.pub`, a
//! nonce directory owned by the account, and a world-writable `markers/`
//! directory where test commands leave traces.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::bin_path;
use crate::users::uid_of;

fn chmod(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// An installed shim.
#[derive(Debug)]
pub struct ShimHost {
    dir: tempfile::TempDir,
}

impl ShimHost {
    /// Installs the built `infrabroker-shim` for host `host`, accepting
    /// `principal`, with its nonces kept for `account`.
    pub fn install(host: &str, principal: &str, account: &str) -> anyhow::Result<ShimHost> {
        let dir = tempfile::Builder::new().prefix("ib-shim-").tempdir()?;
        chmod(dir.path(), 0o755)?;
        let bin = dir.path().join("infrabroker-shim");
        std::fs::copy(bin_path("infrabroker-shim")?, &bin).context("copying the shim")?;
        chmod(&bin, 0o755)?;
        let state = dir.path().join("state");
        std::fs::create_dir(&state)?;
        std::os::unix::fs::chown(&state, Some(uid_of(account)?), None)?;
        chmod(&state, 0o700)?;
        let markers = dir.path().join("markers");
        std::fs::create_dir(&markers)?;
        chmod(&markers, 0o777)?;
        let conf = dir.path().join("shim.conf");
        let text = format!(
            "host = {host}\nprincipals = {principal}\nkeys = {}\nstate_dir = {}\n",
            dir.path().join("keys.pub").display(),
            state.display()
        );
        std::fs::write(&conf, text)?;
        chmod(&conf, 0o644)?;
        Ok(ShimHost { dir })
    }

    /// The host's `shim_path` in `signer.json` (with `--config`).
    pub fn force_command(&self) -> String {
        format!(
            "{} --config {}",
            self.dir.path().join("infrabroker-shim").display(),
            self.dir.path().join("shim.conf").display()
        )
    }

    /// Pins `lines` (`broker-ctl pki envelope-pub` output) in `keys.pub`.
    pub fn pin(&self, lines: &str) -> anyhow::Result<()> {
        let keys = self.dir.path().join("keys.pub");
        std::fs::write(&keys, lines)?;
        chmod(&keys, 0o644)
    }

    /// Where the shim keeps used nonces (one file per account).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A path in the world-writable markers directory.
    pub fn marker(&self, name: &str) -> PathBuf {
        self.dir.path().join("markers").join(name)
    }
}
