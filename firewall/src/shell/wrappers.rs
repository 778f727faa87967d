//! Programs that hide another command, in one table operators can read.
//!
//! A simple command is refused when the basename of its first decoded word
//! (`/usr/bin/env` → `env`) is listed in [`WRAPPERS`] — for shells and
//! interpreters also with a version suffix (`python3.11`, `bash5`,
//! `lua5.4`). Shells and interpreters are refused in **any** form, not only
//! with `-c`: `ls | sh` or `cat x | python3` runs code read from a pipe,
//! and `sh script` runs a file the regexes never saw. To let an agent run
//! a script, allow its path (`^/opt/tools/report\.py$`); the kernel's `#!`
//! line then picks the interpreter.
//!
//! A first word under `/proc/` is refused too (`/proc/self/exe` is the
//! shell itself). Ordinary programs given an option that runs a command
//! (`find -exec`, `git rebase --exec`) are refused later, with
//! `exec_option`, by the table in [`crate::exec_options`].
//!
//! # Known gaps (judge these with your regexes)
//! - Programs in neither this table nor [`crate::exec_options`] that can
//!   run commands through their own arguments or config: `make`,
//!   `docker`/`kubectl exec`, `crontab`, `ssh`-like programs under other
//!   names, and any symlink to a shell under a name not listed.
//! - With `shell_parse: false` nothing here applies; the raw string is
//!   matched once.
//!
//! Allowlists are the real defence: a denylist cannot enumerate every
//! program that runs programs.

use super::{Construct, ParseRejection};

/// Why a wrapper is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapperKind {
    /// A shell: runs code from `-c`, a file or its stdin.
    Shell,
    /// A language interpreter: runs inline code, a file or its stdin.
    Interpreter,
    /// Runs its arguments (or input) as another command.
    Runner,
    /// A shell builtin that evaluates text as code or changes how later
    /// commands in the same line resolve (`export PATH=…`, `alias`, `hash -p`).
    Builtin,
    /// An editor or REPL with a built-in `!command` escape.
    Escape,
}

/// One row of the wrapper table.
#[derive(Debug, Clone, Copy)]
pub struct Wrapper {
    /// Basename of the program.
    pub name: &'static str,
    /// Category.
    pub kind: WrapperKind,
    /// Also match `name` followed by a version (`python3.11`, `bash-5.2`).
    pub versioned: bool,
}

const fn w(name: &'static str, kind: WrapperKind, versioned: bool) -> Wrapper {
    Wrapper {
        name,
        kind,
        versioned,
    }
}

use WrapperKind::{Builtin, Escape, Interpreter, Runner, Shell};

/// Programs refused as the first word of any simple command.
pub const WRAPPERS: &[Wrapper] = &[
    // Shells.
    w("sh", Shell, true),
    w("bash", Shell, true),
    w("rbash", Shell, true),
    w("dash", Shell, true),
    w("zsh", Shell, true),
    w("ksh", Shell, true),
    w("ksh93", Shell, false),
    w("mksh", Shell, true),
    w("pdksh", Shell, true),
    w("oksh", Shell, true),
    w("yash", Shell, true),
    w("posh", Shell, true),
    w("ash", Shell, true),
    w("fish", Shell, true),
    w("csh", Shell, true),
    w("tcsh", Shell, true),
    w("elvish", Shell, true),
    w("nu", Shell, true),
    w("xonsh", Shell, true),
    w("pwsh", Shell, true),
    w("busybox", Shell, false),
    w("toybox", Shell, false),
    // Interpreters.
    w("python", Interpreter, true),
    w("pypy", Interpreter, true),
    w("perl", Interpreter, true),
    w("ruby", Interpreter, true),
    w("irb", Interpreter, true),
    w("node", Interpreter, true),
    w("nodejs", Interpreter, true),
    w("deno", Interpreter, false),
    w("bun", Interpreter, false),
    w("php", Interpreter, true),
    w("lua", Interpreter, true),
    w("luajit", Interpreter, true),
    w("tclsh", Interpreter, true),
    w("wish", Interpreter, true),
    w("expect", Interpreter, false),
    w("awk", Interpreter, false),
    w("gawk", Interpreter, false),
    w("mawk", Interpreter, false),
    w("nawk", Interpreter, false),
    w("Rscript", Interpreter, false),
    w("R", Interpreter, false),
    w("julia", Interpreter, true),
    w("guile", Interpreter, true),
    w("racket", Interpreter, false),
    w("sqlite3", Interpreter, false),
    w("gdb", Interpreter, false),
    // Command runners.
    w("env", Runner, false),
    w("xargs", Runner, false),
    w("parallel", Runner, false),
    w("sudo", Runner, false),
    w("su", Runner, false),
    w("doas", Runner, false),
    w("pkexec", Runner, false),
    w("runuser", Runner, false),
    w("sg", Runner, false),
    w("newgrp", Runner, false),
    w("setpriv", Runner, false),
    w("capsh", Runner, false),
    w("chroot", Runner, false),
    w("unshare", Runner, false),
    w("nsenter", Runner, false),
    w("nohup", Runner, false),
    w("timeout", Runner, false),
    w("nice", Runner, false),
    w("ionice", Runner, false),
    w("setsid", Runner, false),
    w("stdbuf", Runner, false),
    w("taskset", Runner, false),
    w("chrt", Runner, false),
    w("cgexec", Runner, false),
    w("flock", Runner, false),
    w("script", Runner, false),
    w("watch", Runner, false),
    w("time", Runner, false),
    w("strace", Runner, false),
    w("ltrace", Runner, false),
    w("valgrind", Runner, false),
    w("systemd-run", Runner, false),
    w("run-parts", Runner, false),
    w("start-stop-daemon", Runner, false),
    w("daemonize", Runner, false),
    w("chpst", Runner, false),
    w("firejail", Runner, false),
    w("bwrap", Runner, false),
    w("proot", Runner, false),
    w("fakeroot", Runner, false),
    w("unbuffer", Runner, false),
    w("rlwrap", Runner, false),
    w("torsocks", Runner, false),
    w("proxychains", Runner, true),
    w("at", Runner, false),
    w("batch", Runner, false),
    w("ssh", Runner, false),
    w("sshpass", Runner, false),
    // Shell builtins.
    w("command", Builtin, false),
    w("builtin", Builtin, false),
    w("exec", Builtin, false),
    w("eval", Builtin, false),
    w("source", Builtin, false),
    w(".", Builtin, false),
    w("trap", Builtin, false),
    w("alias", Builtin, false),
    w("unalias", Builtin, false),
    w("hash", Builtin, false),
    w("enable", Builtin, false),
    w("export", Builtin, false),
    w("readonly", Builtin, false),
    w("declare", Builtin, false),
    w("typeset", Builtin, false),
    w("local", Builtin, false),
    w("set", Builtin, false),
    w("unset", Builtin, false),
    w("shopt", Builtin, false),
    w("let", Builtin, false),
    w("fc", Builtin, false),
    // Editors and REPLs with `!cmd`.
    w("vi", Escape, false),
    w("vim", Escape, false),
    w("view", Escape, false),
    w("nvim", Escape, false),
    w("ex", Escape, false),
    w("ed", Escape, false),
    w("emacs", Escape, false),
];

/// The program name the kernel would look up: text after the last `/`.
fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// `python3.11` → `python`, `bash-5.2` → `bash`: strips a trailing version.
fn strip_version(name: &str) -> &str {
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    if trimmed.len() == name.len() {
        return name;
    }
    trimmed.strip_suffix('-').unwrap_or(trimmed)
}

/// The table row matching `name`, if any.
pub fn lookup(name: &str) -> Option<&'static Wrapper> {
    let bare = strip_version(name);
    WRAPPERS
        .iter()
        .find(|w| w.name == name || (w.versioned && w.name == bare))
}

/// Refuses `argv` if its program hides another command.
pub(crate) fn check(argv: &[String]) -> Result<(), ParseRejection> {
    let Some(first) = argv.first() else {
        return Ok(());
    };
    if first.starts_with("/proc/") {
        return Err(ParseRejection::new(Construct::Wrapper, "/proc"));
    }
    let name = basename(first);
    if let Some(wrapper) = lookup(name) {
        return Err(ParseRejection::new(Construct::Wrapper, wrapper.name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn versions_and_paths() {
        for name in [
            "python3.11",
            "python3",
            "/usr/bin/python2.7",
            "bash-5.2",
            "lua5.4",
            "perl5.36.0",
        ] {
            assert!(check(&argv(name)).is_err(), "{name}");
        }
        for name in [
            "ls",
            "pythonic",
            "shasum",
            "sha256sum",
            "bashful",
            "envsubst",
        ] {
            assert!(check(&argv(name)).is_ok(), "{name}");
        }
    }
}
