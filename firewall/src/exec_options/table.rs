//! The data: how each program reads its words, and the options and
//! subcommands with which it runs another command. See the module docs of
//! [`super`] for how to add a row.

use super::Scope::{Any, Global, Sub};
use super::Style::{Getopt, OldStyleFirst, Words};
use super::Trigger::{
    AwkProgram, Long, Positional, Program as Every, SedScript, Short, ShortValue, Starts,
    Subcommand, Unless, Word,
};
use super::{Program, Row, Scope, Style, Trigger};

const fn p(
    name: &'static str,
    style: Style,
    value_short: &'static str,
    optional_short: &'static str,
    value_long: &'static [&'static str],
    exact_long: &'static [&'static str],
) -> Program {
    Program {
        name,
        style,
        value_short,
        global_value_short: "",
        optional_short,
        value_long,
        exact_long,
    }
}

/// How each program in [`ROWS`] reads its words.
pub const PROGRAMS: &[Program] = &[
    Program {
        name: "git",
        style: Getopt,
        value_short: "",
        global_value_short: "Cc",
        optional_short: "O",
        value_long: &[
            "--git-dir",
            "--work-tree",
            "--namespace",
            "--super-prefix",
            "--config-env",
            "--attr-source",
        ],
        exact_long: &[],
    },
    p(
        "tar",
        OldStyleFirst,
        "fbCgHKLNTVX",
        "",
        &[],
        &["--checkpoint"],
    ),
    p("rg", Getopt, "ABCEdefgjMmrTt", "", &[], &[]),
    p("find", Words, "", "", &[], &[]),
    p("ip", Words, "", "", &[], &[]),
    p("rsync", Getopt, "BfT", "", &[], &[]),
    p("ssh", Getopt, "BbcDEeiJLlmOpQRSWw", "", &[], &[]),
    p("scp", Getopt, "ciJlPX", "", &[], &[]),
    p("awk", Getopt, "FvWe", "", &[], &[]),
    p("sed", Getopt, "el", "i", &[], &[]),
    p("xargs", Getopt, "", "", &[], &[]),
    p("apt-get", Getopt, "ta", "", &[], &[]),
    p("less", Getopt, "bhjoOpPtTxyz#", "", &[], &[]),
    p("more", Getopt, "", "", &[], &[]),
    p("man", Getopt, "CMmSsLpREer", "HTX", &[], &[]),
    p("vim", Getopt, "TtUiwWq", "", &[], &[]),
    p("systemctl", Getopt, "tpPHMnos", "", &[], &[]),
    p("journalctl", Getopt, "uopSUDMtFgc", "", &[], &[]),
];

const fn r(program: &'static str, scope: Scope, trigger: Trigger, why: &'static str) -> Row {
    Row {
        program,
        scope,
        trigger,
        terminal_only: false,
        why,
    }
}

/// Only with a terminal attached (a PTY request).
const fn tty(program: &'static str, scope: Scope, trigger: Trigger, why: &'static str) -> Row {
    Row {
        program,
        scope,
        trigger,
        terminal_only: true,
        why,
    }
}

/// OpenSSH options (`-o Key=value` or `-o 'Key value'`) that run a local
/// command or read more options from a file.
const SSH_EXEC: &str =
    r"^\s*(proxycommand|localcommand|permitlocalcommand|knownhostscommand|match|include)\b";

/// git config keys whose value is (or selects) a command, or that pull in
/// other config.
const GIT_EXEC_KEYS: &str = r"^(core\.|alias\.|sequence\.|gpg\.|credential|diff\.|merge\.|filter\.|pager\.|browser\.|web\.|man\.|difftool\.|mergetool\.|uploadpack\.|receivepack\.|include|remote\.|url\.|instaweb\.|sendemail\.|ssh\.|protocol\.)";

const PAGER: &str = "pages through less, whose `!` runs a shell command";

/// The exec-capable options and subcommands, refused with `exec_option`.
#[rustfmt::skip]
pub const ROWS: &[Row] = &[
    // git: global options before the subcommand.
    r("git", Global, Short('c'), "sets config such as core.pager, core.sshCommand or alias.x=!cmd"),
    r("git", Global, Long("--config-env"), "sets config from the environment, as -c"),
    r("git", Global, Long("--exec-path"), "runs git-<subcommand> programs from any directory"),
    r("git", Any, Long("--upload-pack"), "runs the given program as the remote side"),
    r("git", Any, Long("--receive-pack"), "runs the given program as the remote side"),
    r("git", Sub(&["clone"]), Short('u'), "clone -u is --upload-pack"),
    r("git", Sub(&["ls-remote"]), Short('u'), "ls-remote -u is --upload-pack"),
    r("git", Sub(&["clone"]), Short('c'), "clone -c sets config in the new repository"),
    r("git", Sub(&["clone"]), Long("--config"), "sets config in the new repository"),
    r("git", Sub(&["clone"]), Long("--template"), "copies hooks from any directory"),
    r("git", Sub(&["init"]), Long("--template"), "copies hooks from any directory"),
    r("git", Sub(&["archive"]), Long("--exec"), "runs the given program as the remote side"),
    r("git", Sub(&["push"]), Long("--exec"), "push --exec is --receive-pack"),
    r("git", Sub(&["rebase"]), Long("--exec"), "runs a shell command after each commit"),
    r("git", Sub(&["rebase"]), Short('x'), "rebase -x is --exec"),
    r("git", Sub(&["grep"]), Long("--open-files-in-pager"), "runs the given pager"),
    r("git", Sub(&["grep"]), Short('O'), "grep -O is --open-files-in-pager"),
    r("git", Sub(&["difftool"]), Long("--extcmd"), "runs the given diff command"),
    r("git", Sub(&["difftool"]), Short('x'), "difftool -x is --extcmd"),
    r("git", Sub(&["mergetool"]), Subcommand, "runs a merge tool (configured, or named by --tool)"),
    r("git", Sub(&["bisect", "run"]), Subcommand, "runs a command for every bisection step"),
    r("git", Sub(&["submodule", "foreach"]), Subcommand, "runs a shell command in every submodule"),
    r("git", Sub(&["filter-branch"]), Subcommand, "runs shell snippets given as filters"),
    r("git", Sub(&["instaweb"]), Subcommand, "starts a web server and a browser, chosen by --httpd/--browser"),
    r("git", Sub(&["config"]), Positional(GIT_EXEC_KEYS), "writes a config key that runs commands later"),
    r("git", Sub(&["send-email"]), Long("--to-cmd"), "runs the given command for recipients"),
    r("git", Sub(&["send-email"]), Long("--cc-cmd"), "runs the given command for recipients"),
    r("git", Sub(&["send-email"]), Long("--header-cmd"), "runs the given command for headers"),
    r("git", Sub(&["send-email"]), Long("--sendmail-cmd"), "runs the given mailer"),
    r("git", Sub(&["send-email"]), Long("--smtp-server"), "a path here is run as the mailer"),
    tty("git", Any, Unless(&["--no-pager"]), PAGER),
    // GNU tar (argp: unambiguous abbreviations are accepted).
    r("tar", Any, Long("--to-command"), "pipes every extracted file into a shell command"),
    r("tar", Any, Long("--use-compress-program"), "runs the given program as the compressor"),
    r("tar", Any, Short('I'), "-I is --use-compress-program"),
    r("tar", Any, Long("--checkpoint-action"), "exec=CMD runs a command at every checkpoint"),
    r("tar", Any, Long("--rsh-command"), "runs the given program for remote archives"),
    r("tar", Any, Long("--rmt-command"), "runs the given program as the remote tape server"),
    r("tar", Any, Long("--info-script"), "runs a script at the end of every volume"),
    r("tar", Any, Long("--new-volume-script"), "--new-volume-script is --info-script"),
    r("tar", Any, Short('F'), "-F is --info-script"),
    // ripgrep.
    r("rg", Any, Long("--pre"), "runs the given preprocessor on every file"),
    r("rg", Any, Long("--hostname-bin"), "runs the given program to learn the host name"),
    // find (primaries are whole words).
    r("find", Any, Word("-exec", 0), "runs a command for every file"),
    r("find", Any, Word("-execdir", 0), "runs a command for every file"),
    r("find", Any, Word("-ok", 0), "runs a command for every file after a prompt"),
    r("find", Any, Word("-okdir", 0), "runs a command for every file after a prompt"),
    // iproute2 (accepts any prefix of a keyword).
    r("ip", Any, Positional("^(e|ex|exe|exec)$"), "ip netns exec / ip vrf exec run a command"),
    r("ip", Any, Word("-batch", 2), "reads commands, netns exec included, from a file"),
    r("ip", Any, Word("--batch", 3), "reads commands, netns exec included, from a file"),
    r("ip", Any, Word("-force", 0), "keeps running a batch after errors"),
    // rsync.
    r("rsync", Any, Short('e'), "-e is --rsh"),
    r("rsync", Any, Long("--rsh"), "runs the given program as the remote shell"),
    r("rsync", Any, Long("--rsync-path"), "runs the given command on the remote side"),
    r("rsync", Any, Short('M'), "-M is --remote-option"),
    r("rsync", Any, Long("--remote-option"), "passes --rsync-path and friends to the remote side"),
    // OpenSSH.
    r("ssh", Any, ShortValue('o', SSH_EXEC), "ProxyCommand, LocalCommand, KnownHostsCommand, Match exec run a local command"),
    r("ssh", Any, Short('F'), "reads a config file that can hold ProxyCommand"),
    r("scp", Any, Short('S'), "runs the given program instead of ssh"),
    r("scp", Any, Short('D'), "runs the given program as a local SFTP server"),
    r("scp", Any, ShortValue('o', SSH_EXEC), "ProxyCommand, LocalCommand, KnownHostsCommand, Match exec run a local command"),
    r("scp", Any, Short('F'), "reads a config file that can hold ProxyCommand"),
    // awk (also a wrapper: refused outright by the shell gate).
    r("awk", Any, AwkProgram(r"system|\||getline|@load|@include"), "system(), pipes and getline run commands"),
    r("awk", Any, Short('f'), "runs a program from a file the firewall never saw"),
    r("awk", Any, Long("--file"), "runs a program from a file the firewall never saw"),
    r("awk", Any, Short('E'), "runs a program from a file the firewall never saw"),
    r("awk", Any, Long("--exec"), "runs a program from a file the firewall never saw"),
    r("awk", Any, Short('i'), "includes awk source from a file the firewall never saw"),
    r("awk", Any, Long("--include"), "includes awk source from a file the firewall never saw"),
    r("awk", Any, Short('l'), "loads a shared library"),
    r("awk", Any, Long("--load"), "loads a shared library"),
    // GNU sed.
    r("sed", Any, SedScript, "the e command and the e flag of s run the pattern space as a command"),
    r("sed", Any, Short('f'), "runs a script from a file the firewall never saw"),
    r("sed", Any, Long("--file"), "runs a script from a file the firewall never saw"),
    // xargs (also a wrapper).
    r("xargs", Any, Every, "runs its arguments (or echo) as a command for its input"),
    // apt-get.
    r("apt-get", Any, Short('o'), "sets any APT option, DPkg::Pre-Invoke (a command) included"),
    r("apt-get", Any, Long("--option"), "sets any APT option, DPkg::Pre-Invoke (a command) included"),
    r("apt-get", Any, Short('c'), "reads APT options from any file"),
    r("apt-get", Any, Long("--config-file"), "reads APT options from any file"),
    r("apt-get", Any, Short('b'), "source -b builds the package: runs its debian/rules"),
    r("apt-get", Any, Long("--compile"), "builds the package: runs its debian/rules"),
    r("apt-get", Any, Long("--build"), "builds the package: runs its debian/rules"),
    r("apt-get", Sub(&["install"]), Positional(r"^[./~]|\.deb$"), "installs a local package: runs its maintainer scripts as root"),
    r("apt-get", Sub(&["reinstall"]), Positional(r"^[./~]|\.deb$"), "installs a local package: runs its maintainer scripts as root"),
    // Pagers.
    r("less", Any, Short('k'), "reads key bindings and LESSOPEN from a lesskey file"),
    r("less", Any, Long("--lesskey-file"), "reads key bindings and LESSOPEN from a lesskey file"),
    r("less", Any, Long("--lesskey-src"), "reads key bindings and LESSOPEN from a lesskey source"),
    r("less", Any, Long("--lesskey-content"), "reads key bindings and LESSOPEN from the argument"),
    tty("less", Any, Every, "! (also as +!cmd) runs a shell command, v an editor"),
    tty("more", Any, Every, "! runs a shell command, v an editor"),
    r("man", Any, Short('P'), "runs the given pager"),
    r("man", Any, Long("--pager"), "runs the given pager"),
    r("man", Any, Short('H'), "runs the given browser"),
    r("man", Any, Long("--html"), "runs the given browser"),
    r("man", Any, Short('C'), "reads man-db config from any file"),
    r("man", Any, Long("--config-file"), "reads man-db config from any file"),
    tty("man", Any, Every, PAGER),
    // vim (also a wrapper).
    r("vim", Any, Short('c'), "runs an Ex command, :! included"),
    r("vim", Any, Long("--cmd"), "runs an Ex command, :! included"),
    r("vim", Any, Starts("+"), "runs an Ex command, :! included"),
    r("vim", Any, Short('S'), "sources a script"),
    r("vim", Any, Short('s'), "replays normal-mode keys from a file"),
    r("vim", Any, Short('u'), "reads a vimrc from any file"),
    r("vim", Any, Every, ":! runs shell commands"),
    // systemd.
    r("systemctl", Sub(&["edit"]), Subcommand, "writes a unit drop-in (ExecStart=) through an editor"),
    r("systemctl", Sub(&["link"]), Subcommand, "links a unit file from any path; its ExecStart runs"),
    r("systemctl", Sub(&["enable"]), Positional("/"), "enables a unit file from any path; its ExecStart runs"),
    r("systemctl", Sub(&["set-environment"]), Subcommand, "sets LD_PRELOAD and friends for every service"),
    tty("systemctl", Any, Unless(&["--no-pager"]), PAGER),
    tty("journalctl", Any, Unless(&["--no-pager"]), PAGER),
];
