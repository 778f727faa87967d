//! [`SmallDisk`]: a tiny tmpfs to run a service out of space on purpose
//! (root only), unmounted on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A 256 KiB tmpfs at `<dir>/mnt`, unmounted (lazily) on drop.
#[derive(Debug)]
pub struct SmallDisk(PathBuf);

impl SmallDisk {
    /// Mounts it. Needs root.
    pub fn mount(dir: &Path) -> anyhow::Result<SmallDisk> {
        use anyhow::Context as _;
        let mnt = dir.join("mnt");
        std::fs::create_dir(&mnt).with_context(|| format!("creating {}", mnt.display()))?;
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(&mnt)
            .status()
            .context("running mount")?;
        anyhow::ensure!(st.success(), "cannot mount a tmpfs at {}", mnt.display());
        Ok(SmallDisk(mnt))
    }

    /// Its mount point.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Fills what is left with one file; removing it frees the space.
    pub fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let _ = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", filler.display()))
            .args(["bs=4k"])
            .output();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
