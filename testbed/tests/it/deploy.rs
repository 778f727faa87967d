//! The deployment scripts and units in `deploy/`, run for real: the
//! dependency installer, the installer into a `--root` tree (and back out),
//! and every systemd unit scored and verified by `systemd-analyze`.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use infrabroker_testbed::{bin_path, is_root, require};

/// The highest `systemd-analyze security` exposure a unit may have.
const MAX_EXPOSURE: f64 = 1.5;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn units() -> Vec<PathBuf> {
    let mut units: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "service" || e == "timer")
        })
        .collect();
    units.sort();
    assert!(
        units.len() >= 4,
        "deploy/ should hold a unit per service: {units:?}"
    );
    units
}

/// The directory holding this build's `signer`, `broker`, … binaries.
fn bin_dir() -> PathBuf {
    bin_path("signer").unwrap().parent().unwrap().to_path_buf()
}

/// `(mode, uid, gid)` of every path below `root`, by path relative to it.
fn tree(root: &Path) -> BTreeMap<String, (u32, u32, u32)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, u32, u32)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            // systemd-sysusers' lock file comes and goes with each run.
            if rel != "etc/.pwd.lock" {
                out.insert(rel, (meta.mode() & 0o7777, meta.uid(), meta.gid()));
            }
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Numeric id of `name` in the tree's own `etc/passwd` or `etc/group`.
fn id_in(root: &Path, file: &str, name: &str) -> Option<u32> {
    std::fs::read_to_string(root.join("etc").join(file))
        .unwrap()
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f[0] == name)
        .map(|f| f[2].parse().unwrap())
}

fn install(root: &Path, extra: &[&str]) -> Output {
    run(Command::new(repo().join("deploy/install.sh"))
        .arg("--root")
        .arg(root)
        .args(extra))
}

#[test]
fn deps_installs_nothing_the_second_time() {
    if !require("root (deploy/deps.sh installs packages)", is_root()) {
        return;
    }
    // The first run installs whatever this machine lacks (in CI `.ci/run`
    // has already run it, so nothing); the second must find nothing to do.
    run(&mut Command::new(repo().join("deploy/deps.sh")));
    let again = run(&mut Command::new(repo().join("deploy/deps.sh")));
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(
        !said.contains("installing"),
        "second run installed again: {said}"
    );
    let check = run(Command::new(repo().join("deploy/deps.sh")).arg("--check"));
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        "nothing missing"
    );
    // What the demo needs is a subset, so its check is clean too.
    run(Command::new(repo().join("deploy/deps.sh")).args(["--demo", "--check"]));
}

#[test]
fn install_into_a_root_tree_then_uninstall() {
    if !require(
        "root and systemd-sysusers (deploy/install.sh creates users)",
        is_root() && have("systemd-sysusers"),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let bins = bin_dir();
    let bins = bins.to_str().unwrap();
    install(&root, &["--bin-dir", bins]);

    for bin in ["signer", "broker", "broker-ctl", "control-plane"] {
        let meta = std::fs::metadata(root.join("usr/local/bin").join(bin)).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o755, "{bin}");
        assert_eq!(meta.uid(), 0, "{bin} must be root-owned");
    }
    for unit in units() {
        let name = unit.file_name().unwrap();
        let installed = root.join("etc/systemd/system").join(name);
        assert_eq!(
            std::fs::read(&installed).unwrap(),
            std::fs::read(&unit).unwrap(),
            "{}",
            installed.display()
        );
        assert_eq!(
            std::fs::metadata(&installed).unwrap().mode() & 0o7777,
            0o644
        );
    }
    let users = std::fs::read_to_string(root.join("usr/lib/sysusers.d/infrabroker.conf")).unwrap();
    let group = id_in(&root, "group", "infrabroker").expect("group infrabroker");
    let etc = std::fs::metadata(root.join("etc/infrabroker")).unwrap();
    assert_eq!(
        (etc.mode() & 0o7777, etc.uid(), etc.gid()),
        (0o750, 0, group)
    );
    for service in ["signer", "control-plane", "broker"] {
        let user = format!("infrabroker-{service}");
        assert!(users.contains(&format!("u {user} ")), "{users}");
        assert!(users.contains(&format!("m {user} infrabroker")), "{users}");
        let uid = id_in(&root, "passwd", &user).expect("user in the tree's passwd");
        assert!(uid > 0 && uid < 1000, "{user} is a system user: uid {uid}");
        let shell = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert!(
            shell.contains(&format!("{user}:x:{uid}:")) && shell.contains("/usr/sbin/nologin"),
            "{shell}"
        );
        for dir in [format!("var/lib/{user}"), format!("var/log/{user}")] {
            let meta = std::fs::metadata(root.join(&dir)).unwrap();
            assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o700, uid), "{dir}");
        }
    }

    // Idempotent: a second run leaves the same files with the same modes
    // and owners, and adds no user twice.
    let before = tree(&root);
    install(&root, &["--bin-dir", bins]);
    assert_eq!(tree(&root), before);
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let entries = passwd
        .lines()
        .filter(|l| l.starts_with("infrabroker-signer:"));
    assert_eq!(entries.count(), 1, "{passwd}");

    // A config and an audit log the operator made must survive uninstall.
    std::fs::write(root.join("etc/infrabroker/signer.json"), "{}").unwrap();
    std::fs::write(
        root.join("var/log/infrabroker-signer/signer-audit.log"),
        "x\n",
    )
    .unwrap();
    install(&root, &["--uninstall"]);
    for gone in [
        "usr/local/bin/signer",
        "etc/systemd/system/infrabroker-signer.service",
        "usr/lib/sysusers.d/infrabroker.conf",
    ] {
        assert!(!root.join(gone).exists(), "{gone} left after --uninstall");
    }
    assert!(id_in(&root, "passwd", "infrabroker-signer").is_none());
    assert!(id_in(&root, "group", "infrabroker").is_none());
    assert!(root.join("etc/infrabroker/signer.json").exists());
    assert!(
        root.join("var/log/infrabroker-signer/signer-audit.log")
            .exists()
    );
    install(&root, &["--uninstall", "--purge"]);
    assert!(!root.join("etc/infrabroker").exists());
    assert!(!root.join("var/log/infrabroker-signer").exists());
}

#[test]
fn install_refuses_bad_arguments_and_missing_binaries() {
    if !require("root (deploy/install.sh)", is_root()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = repo().join("deploy/install.sh");
    let out = Command::new(&script).arg("--frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument --frobnicate"));
    let out = Command::new(&script)
        .arg("--root")
        .arg(dir.path().join("r"))
        .arg("--bin-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(66), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("signer is missing"));
    // Nothing was installed before the check failed.
    assert!(!dir.path().join("r/usr/local/bin/signer").exists());
}

/// `systemd-analyze security --offline=yes` scores `unit` at most
/// [`MAX_EXPOSURE`].
fn exposure_within_limit(unit: &Path, name: &str) {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")?
                .1
                .split_once(": ")?
                .1
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        // No score at all fails below, with the output.
        .unwrap_or(f64::INFINITY);
    assert!(
        score <= MAX_EXPOSURE,
        "{name} scores {score} (most {MAX_EXPOSURE}):\n{text}"
    );
}

#[test]
fn every_unit_is_sandboxed_and_verifies() {
    if !require("systemd-analyze", have("systemd-analyze")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bins = bin_dir();
    for unit in units() {
        let name = unit.file_name().unwrap().to_str().unwrap().to_owned();
        // A timer only starts its service; exposure is a service's score.
        if name.ends_with(".service") {
            exposure_within_limit(&unit, &name);
        }
        // `verify` wants the programs a unit names to exist; point them at
        // this build's binaries, keep everything else byte for byte.
        let text = std::fs::read_to_string(&unit)
            .unwrap()
            .replace("/usr/local/bin/", &format!("{}/", bins.display()));
        let copy = dir.path().join(&name);
        std::fs::write(&copy, text).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::metadata(&unit).unwrap().permissions().mode() & 0o022,
            0,
            "{name} must not be group/other-writable"
        );
    }
}
