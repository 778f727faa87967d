//! The login-shell matrix (issue 10 item 2): whatever the account's login
//! shell is, the command the signer judged is the command `/bin/sh`
//! receives, byte for byte — for one-shot certificates (the signer's
//! force-command), exec sessions (the broker's exec request), both with and
//! without sudo, and on a host with a command policy.
//!
//! One sshd, one account per shell (`ibsh-<shell>`), so shells run
//! concurrently and no other test's account changes shell. Each probe
//! prints its argv NUL-separated and then `/proc/$$/cmdline` of the `/bin/sh`
//! running it, which must be `/bin/sh -c <the exact command>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use infrabroker_broker::api::{Caller, SessionMode, SessionOpenRequest, Tools};
use infrabroker_broker::engine::Engine;
use infrabroker_testbed::{
    Sshd, SshdOptions, ensure_user, require, set_login_shell, sshd_or_skip, sudoers,
};
use serde_json::{Value, json};

use crate::harness::{Bed, req};

/// The login shells Debian ships (installed by deploy/deps.sh). busybox
/// only acts as a shell when called `sh` or `ash`, so it gets a link.
const SHELLS: &[(&str, &str)] = &[
    ("sh", "/bin/sh"),
    ("dash", "/usr/bin/dash"),
    ("bash", "/usr/bin/bash"),
    ("zsh", "/usr/bin/zsh"),
    ("fish", "/usr/bin/fish"),
    ("tcsh", "/usr/bin/tcsh"),
    ("csh", "/usr/bin/bsd-csh"),
    ("mksh", "/usr/bin/mksh"),
    ("busybox", "/usr/bin/busybox"),
];

/// Words that some login shell would read differently if the command went
/// through its quoting: quotes and backslashes (fish), `!` and `^` (csh
/// history), `$`, backquotes, globs, braces, `%`, `~`, `=` (zsh), `#`,
/// separators, option-like words, blanks and multibyte UTF-8.
const WORDS: &[&str] = &[
    "it's",
    "a\"b",
    "back\\slash",
    "\\\\",
    "\\'",
    "'\\''",
    "x\\",
    "!x",
    "!!",
    "!$",
    "!-1",
    "^a^b",
    "$HOME",
    "${HOME}",
    "`id`",
    "$(id)",
    "*",
    "?",
    "[a]",
    "{a,b}",
    "{}",
    "%1",
    "%self",
    "~",
    "~root",
    "=ls",
    "a;b",
    "a|b",
    "a&&b",
    "#x",
    "-n",
    "-e",
    "--",
    "",
    " ",
    "tab\there",
    "café",
    "€",
    "日本語",
    "😀",
    "e\u{301}",
    "“quoted”",
];

/// Every printable ASCII character and some multibyte text, unquoted, in a
/// comment: `/bin/sh` ignores it, but it must arrive unchanged.
fn raw_tail() -> String {
    let ascii: String = (b' '..=b'~').map(char::from).collect();
    format!("{ascii}\t'\\'' \\\\ \\' !! !$ ^x^y %1 =ls ~ café € 日本語 😀")
}

/// POSIX single quoting, for building the probes.
fn q(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The same without a backslash outside quotes (which the firewall
/// refuses): `'` as `'"'"'`.
fn q_firewall(word: &str) -> String {
    format!("'{}'", word.replace('\'', r#"'"'"'"#))
}

/// `[pre; ]printf '%s\0' WORDS…; cat /proc/$$/cmdline; exit 0[ #tail]`
/// and what it must print. `cat` is not the last command, so dash cannot
/// exec it in place of the shell whose cmdline it reads.
fn probe(pre: &str, tail: &str) -> (String, String) {
    let words: Vec<String> = WORDS.iter().map(|w| q(w)).collect();
    let mut cmd = format!(
        "{pre}printf '%s\\0' {}; cat /proc/$$/cmdline; exit 0",
        words.join(" ")
    );
    if !tail.is_empty() {
        cmd.push_str(" #");
        cmd.push_str(tail);
    }
    let mut expected: String = WORDS.iter().map(|w| format!("{w}\0")).collect();
    expected.push_str(&format!("/bin/sh\0-c\0{cmd}\0"));
    (cmd, expected)
}

struct Probe {
    what: &'static str,
    command: String,
    stdout: String,
    exit_code: u32,
}

fn probes() -> Vec<Probe> {
    let (command, stdout) = probe("", "");
    let plain = Probe {
        what: "argv and cmdline",
        command,
        stdout,
        exit_code: 0,
    };
    let (command, stdout) = probe("", &raw_tail());
    let raw = Probe {
        what: "raw bytes in a comment",
        command,
        stdout,
        exit_code: 0,
    };
    let status = Probe {
        what: "exit status",
        command: "printf '!ok\\\\'; exit 7".into(),
        stdout: "!ok\\".into(),
        exit_code: 7,
    };
    vec![plain, raw, status]
}

/// The sudo probe: as root, with the same argv and cmdline.
fn sudo_probe() -> Probe {
    let (command, stdout) = probe("id -u; ", "");
    Probe {
        what: "sudo",
        command,
        stdout: format!("0\n{stdout}"),
        exit_code: 0,
    }
}

/// On a host with an allowlist: the printf alone (the firewall refuses
/// `$$`), judged on its decoded argv, non-ASCII inside quotes allowed.
fn policy_probe() -> Probe {
    let words: Vec<String> = WORDS.iter().map(|w| q_firewall(w)).collect();
    Probe {
        what: "command policy",
        command: format!("printf '%s\\0' {}", words.join(" ")),
        stdout: WORDS.iter().map(|w| format!("{w}\0")).collect(),
        exit_code: 0,
    }
}

fn check(
    label: &str,
    via: &str,
    p: &Probe,
    got: Result<infrabroker_broker::api::ExecResult, impl std::fmt::Display>,
) -> Option<String> {
    match got {
        Err(e) => Some(format!("{label} {via} {}: {e}", p.what)),
        Ok(r) if r.stdout != p.stdout || r.exit_code != Some(p.exit_code) => Some(format!(
            "{label} {via} {}: exit {:?}\n  got      {:?}\n  expected {:?}\n  stderr   {:?}",
            p.what, r.exit_code, r.stdout, p.stdout, r.stderr
        )),
        Ok(_) => None,
    }
}

fn account(label: &str) -> String {
    format!("ibsh-{label}")
}

/// The shells present here (all of them, or the test fails, when CI=true),
/// with the path to set as login shell.
fn present(link_dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let mut out = Vec::new();
    for (label, path) in SHELLS {
        if !require(&format!("login shell {path}"), Path::new(path).exists()) {
            continue;
        }
        let login = if *label == "busybox" {
            let link = link_dir.join("ash");
            std::os::unix::fs::symlink(path, &link).unwrap();
            link
        } else {
            PathBuf::from(path)
        };
        out.push((*label, login));
    }
    out
}

fn hosts(sshd: &Sshd, shells: &[(&str, PathBuf)]) -> Value {
    let mut hosts = json!({});
    for (label, _) in shells {
        let host = json!({
            "addr": sshd.addr().to_string(),
            "user": account(label),
            "host_key": sshd.host_key_openssh(),
            "principal": "shell-principal",
            "groups": ["web"],
            "allow_sudo": true,
        });
        let mut with_policy = host.clone();
        with_policy["command_policy"] = json!({"mode": "allowlist", "allow": ["^printf "]});
        hosts[format!("sh-{label}")] = host;
        hosts[format!("pol-{label}")] = with_policy;
    }
    hosts
}

fn open(host: &str, sudo: bool) -> SessionOpenRequest {
    SessionOpenRequest {
        host: host.into(),
        mode: SessionMode::Exec,
        sudo,
        sudo_user: None,
        cols: None,
        rows: None,
    }
}

/// Every probe on every path for one shell; the list of mismatches.
async fn run_shell(engine: Arc<Engine>, label: &'static str) -> Vec<String> {
    let (host, pol) = (format!("sh-{label}"), format!("pol-{label}"));
    let mut failures = Vec::new();
    // One caller per shell: the broker limits concurrent calls per caller.
    let c = Caller::local(format!("shells-{label}"));
    for p in probes() {
        let got = engine.execute(&c, req(&host, &p.command)).await;
        failures.extend(check(label, "one-shot", &p, got));
    }
    let sudo = sudo_probe();
    let mut elevated = req(&host, &sudo.command);
    elevated.sudo = true;
    failures.extend(check(
        label,
        "one-shot",
        &sudo,
        engine.execute(&c, elevated).await,
    ));
    let policy = policy_probe();
    let got = engine.execute(&c, req(&pol, &policy.command)).await;
    failures.extend(check(label, "one-shot", &policy, got));

    for (sudo_session, list) in [(false, probes()), (true, vec![sudo_probe()])] {
        let info = match engine.session_open(&c, open(&host, sudo_session)).await {
            Ok(i) => i,
            Err(e) => {
                failures.push(format!("{label} session open (sudo {sudo_session}): {e}"));
                continue;
            }
        };
        for p in &list {
            let got = engine
                .session_exec(&c, &info.session_id, p.command.clone(), None)
                .await;
            failures.extend(check(label, "session exec", p, got));
        }
        let _ = engine.session_close(&c, &info.session_id).await;
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn judged_commands_reach_bin_sh_byte_exact_under_every_login_shell() {
    if !sshd_or_skip() {
        return;
    }
    let (dir, pki) = Bed::pki();
    let link_dir = tempfile::Builder::new()
        .prefix("ib-shells-")
        .tempdir()
        .unwrap();
    // The accounts must be able to reach the busybox link.
    std::fs::set_permissions(
        link_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let shells = present(link_dir.path());
    let mut opts = SshdOptions::new(pki.ssh_ca_pub().unwrap());
    let mut guards = Vec::new();
    for (label, login) in &shells {
        let user = account(label);
        ensure_user(&user).unwrap();
        set_login_shell(&user, login).unwrap();
        guards.push(sudoers(&user, &format!("{user} ALL=(root) NOPASSWD: ALL")).unwrap());
        opts = opts.with_principals(user, ["shell-principal"]);
    }
    let sshd = Sshd::start(opts).unwrap();
    let bed = Bed::start(dir, pki, hosts(&sshd, &shells));
    let engine = bed.engine(json!({"max_output_bytes": 65536})).await;

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (label, _) in &shells {
        tasks.spawn(run_shell(engine.clone(), label));
    }
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        failures.extend(done.unwrap());
    }
    eprintln!(
        "login-shell matrix: {} shells, 9 commands over 7 connections each, in {:?}",
        shells.len(),
        started.elapsed()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(!shells.is_empty());
}
