//! Issue 10 item 3: an allowlist that admits a program must not admit the
//! options and subcommands with which that program runs another command.
//! Every row is a bypass that a regex over the command text let through
//! (`HEAD~1` is quoted: unquoted, the tilde rule refuses it already).

use infrabroker_firewall::{Enforcement, Mode, PolicyConfig, PolicySet, compile};

/// A loose allowlist: any git, tar, rg, sed, find, rsync, scp, apt-get,
/// less, man, systemctl or journalctl invocation.
fn loose() -> PolicySet {
    let cfg = PolicyConfig {
        mode: Mode::Allowlist,
        allow: vec![
            "^(git|tar|rg|sed|find|rsync|scp|apt-get|less|more|man|systemctl|journalctl|ip)( |$)"
                .into(),
        ],
        enforcement: Enforcement::Enforce,
        ..PolicyConfig::default()
    };
    PolicySet::compose(vec![("host".into(), compile(&cfg, "host").unwrap())])
}

#[rustfmt::skip]
const BYPASSES: &[(&str, &str)] = &[
    ("git rebase --exec id 'HEAD~1'", "git rebase --exec"),
    ("git rebase -x id 'HEAD~1'", "git rebase -x"),
    ("git rebase --exe=id 'HEAD~1'", "git abbreviates long options"),
    ("git -C /repo rebase -ix id 'HEAD~1'", "bundled short flags after global -C"),
    ("git grep -Oid x", "git grep -O (open files in pager) with attached value"),
    ("git grep --open-files-in-pager=id x", "git grep --open-files-in-pager"),
    ("git difftool -x id HEAD", "git difftool -x"),
    ("git difftool --extcmd=id HEAD", "git difftool --extcmd"),
    ("git bisect run id", "git bisect run"),
    ("git submodule foreach id", "git submodule foreach"),
    ("git submodule --quiet foreach id", "git submodule foreach after an option"),
    ("tar --use=id -cf /dev/null x", "tar --use-compress-program abbreviated"),
    ("tar --checkpoint=1 --checkpoint-=exec=id -cf /dev/null x", "tar --checkpoint-action abbreviated"),
    ("tar --rs=id -cf h:x x", "tar --rsh-command abbreviated"),
    ("tar --new-=id -cMf x y", "tar --new-volume-script abbreviated"),
    ("tar --to-c=id -xf a", "tar --to-command abbreviated"),
    ("rg --pre=id x", "rg --pre"),
    ("rg --pre id x", "rg --pre with separate value"),
];

#[test]
fn exec_capable_options_are_refused_under_a_loose_allowlist() {
    let set = loose();
    let mut failures = Vec::new();
    for (command, class) in BYPASSES {
        let d = set.decide(command);
        if d.allowed || d.reason_code.as_str() != "exec_option" {
            failures.push(format!(
                "[{class}] {command:?}: got {} {:?} ({})",
                d.reason_code.as_str(),
                d.matched_rule,
                d.message
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[rustfmt::skip]
const ORDINARY: &[&str] = &[
    "git log -n 5 --oneline",
    "git -C /repo status",
    "git clean -x -n",
    "git log -c",
    "git grep -e O x",
    "tar --checkpoint=10 -cf /dev/null x",
    "tar -xzf a.tgz -C /tmp",
    "tar --create --file=/dev/null x",
    "rg -n foo /var/log",
    "sed -n 1,5p /etc/hosts",
    "sed -e s/a/b/g f",
    "find / -name x -type f",
    "rsync -avz a b",
    "systemctl status nginx",
    "journalctl -u nginx -n 50",
];

#[test]
fn ordinary_uses_of_the_same_programs_still_pass() {
    let set = loose();
    for command in ORDINARY {
        let d = set.decide(command);
        assert!(
            d.allowed,
            "{command:?}: {:?} {:?} ({})",
            d.reason_code, d.matched_rule, d.message
        );
    }
}

/// The abbreviation rows are not theoretical: real GNU tar runs the command
/// given to `--checkpoint-=exec=` and `--use=`, and the firewall refuses
/// exactly those argv.
#[test]
fn gnu_tar_really_runs_abbreviated_exec_options() {
    use std::process::Command;
    if Command::new("tar").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI needs GNU tar");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), "x").unwrap();
    let set = loose();
    for (args, marker) in [
        (
            vec![
                "--checkpoint=1",
                "--checkpoint-=exec=touch m1",
                "-cf",
                "/dev/null",
                "f",
            ],
            "m1",
        ),
        (vec!["--use=touch m2; cat", "-cf", "a.tar", "f"], "m2"),
    ] {
        let _ = Command::new("tar")
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            dir.path().join(marker).exists(),
            "tar {args:?} did not run the command"
        );
        let argv: Vec<String> = std::iter::once("tar")
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        let d = set.decide(&infrabroker_firewall::render(&argv));
        assert_eq!(d.reason_code.as_str(), "exec_option", "{argv:?}: {d:?}");
    }
}
