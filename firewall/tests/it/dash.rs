//! Differential test: the argv the firewall judges is the argv that
//! `/bin/sh` (dash on Debian) and bash actually run.
//!
//! The commands use made-up program names found only in a temporary `PATH`
//! directory, where each is a recorder script that writes its argv to its
//! own file. Nothing else is executed.

use std::path::{Path, PathBuf};
use std::process::Command;

use infrabroker_firewall::parse_simple_commands;
use proptest::prelude::*;

use crate::generate::simple;

const NAMES: &[&str] = &["zqa", "zqb", "zq-c"];

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let script = "#!/bin/sh\nf=$(mktemp \"$ZQ_OUT/r.XXXXXX\") && printf '%s\\0' \"${0##*/}\" \"$@\" > \"$f\"\n";
        for name in NAMES {
            let path = bin.join(name);
            std::fs::write(&path, script).unwrap();
            let mut perms = std::fs::metadata(&path).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
            std::fs::set_permissions(&path, perms).unwrap();
        }
        Self { dir }
    }

    /// Runs `command` under `shell -c` and returns the recorded argv, sorted
    /// (pipeline stages run concurrently, so order is not meaningful).
    fn run(&self, shell: &[&str], command: &str) -> Vec<Vec<String>> {
        let out = self
            .dir
            .path()
            .join(format!("out-{}", shell[0].replace('/', "_")));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir(&out).unwrap();
        // The recorder needs mktemp from the real PATH; the program names are
        // resolved first in our directory.
        let path = format!("{}:/usr/bin:/bin", self.dir.path().join("bin").display());
        let status = Command::new(shell[0])
            .args(&shell[1..])
            .arg("-c")
            .arg(command)
            .env_clear()
            .env("PATH", path)
            .env("ZQ_OUT", &out)
            .status()
            .unwrap();
        assert!(status.success(), "{shell:?} -c {command:?}: {status}");
        let mut records = read_records(&out);
        records.sort();
        records
    }
}

fn read_records(dir: &Path) -> Vec<Vec<String>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).unwrap();
            let text = String::from_utf8(bytes).unwrap();
            let mut words: Vec<String> = text.split('\0').map(str::to_owned).collect();
            words.pop(); // after the last NUL
            words
        })
        .collect()
}

fn shells() -> Vec<Vec<&'static str>> {
    assert!(Path::new("/bin/sh").exists(), "/bin/sh is required");
    let mut shells = vec![vec!["/bin/sh"]];
    for bash in ["/bin/bash", "/usr/bin/bash"] {
        if Path::new(bash).exists() {
            // bash as /bin/sh runs in POSIX mode, as on RHEL-family hosts.
            shells.push(vec![bash, "--posix"]);
            break;
        }
    }
    shells
}

fn list() -> impl Strategy<Value = (Vec<Vec<String>>, String)> {
    let sep = prop::sample::select(&[";", " ; ", "&&", " && ", "|", " | ", ";\t"][..]);
    (
        prop::collection::vec(simple(NAMES), 1..4),
        prop::collection::vec(sep, 3),
    )
        .prop_map(|(cmds, seps)| {
            let mut text = String::new();
            let mut argvs = Vec::new();
            for (i, (argv, encoded)) in cmds.into_iter().enumerate() {
                if i > 0 {
                    text.push_str(seps[i - 1]);
                }
                text.push_str(&encoded);
                argvs.push(argv);
            }
            (argvs, text)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn judged_argv_is_what_sh_runs((argvs, text) in list()) {
        let parsed = parse_simple_commands(&text);
        prop_assert_eq!(parsed.as_ref(), Ok(&argvs), "{}", text);
        let sandbox = Sandbox::new();
        let mut want = argvs.clone();
        want.sort();
        for shell in shells() {
            prop_assert_eq!(&sandbox.run(&shell, &text), &want, "{:?} -c {}", shell, text);
        }
    }
}

#[test]
fn table_style_examples_run_as_judged() {
    let sandbox = Sandbox::new();
    for (text, want) in [
        ("z''qa \"-l\"a 'x y'", vec![vec!["zqa", "-la", "x y"]]),
        (
            "zqa 'a;b' \"c|d\" '$(id)'",
            vec![vec!["zqa", "a;b", "c|d", "$(id)"]],
        ),
        (
            "zqa 2>&1 x; zqb ''",
            vec![vec!["zqa", "x"], vec!["zqb", ""]],
        ),
        ("zqa a2>&1 b", vec![vec!["zqa", "a2", "b"]]),
    ] {
        let want: Vec<Vec<String>> = want
            .iter()
            .map(|a| a.iter().map(|s| (*s).to_owned()).collect())
            .collect();
        assert_eq!(parse_simple_commands(text).unwrap(), want, "{text}");
        for shell in shells() {
            assert_eq!(sandbox.run(&shell, text), want, "{shell:?} -c {text}");
        }
    }
}
