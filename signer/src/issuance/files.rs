//! File transfers (`file_put`, `file_get`): the request's checks, and the
//! POSIX `sh` script its one-shot certificate's force-command runs, with
//! every parameter (path, size, SHA-256, mode, overwrite, size cap) baked
//! in, so the host does exactly the transfer the signer judged and audited.
//!
//! Put: a temporary file beside the target (`mktemp` in the same
//! directory), the body read from stdin (one byte more than announced, to
//! see excess), its size and SHA-256 checked, `chmod` (an overwritten file
//! keeps its mode unless one is given), `sync`, `mv`, then the directory
//! synced. Get: at most the cap (plus one byte) of a regular file. Both
//! refuse a target that is a symlink or not a regular file, a directory
//! reached through a symlink, and one another account could change (see
//! [`script`]), so nothing is followed out of the allowed tree. Some paths
//! are refused on every host ([`ALWAYS_DENIED`]); a deny glob also covers
//! everything below a directory it matches. Exit statuses 80–83 name the
//! host-side refusals for the broker.

use infrabroker_common::wire::{
    FileTransfer, Purpose, ReasonCode, Role, SignRequest, file_exit as exit,
};

use std::sync::LazyLock;

use infrabroker_common::display::escape;
use regex::Regex;

use super::Denial;
use crate::config::Host;
use crate::config::files::glob_regex;

/// Whether `purpose` moves a file.
pub fn is_file(purpose: Purpose) -> bool {
    matches!(purpose, Purpose::FilePut | Purpose::FileGet)
}

fn invalid(message: impl Into<String>) -> Denial {
    Denial::new(ReasonCode::InvalidRequest, message)
}

/// Absolute and canonical: no empty, `.` or `..` segment, no trailing
/// slash, and only printable characters (no NUL, newline or control).
fn check_path(path: &str) -> Result<(), Denial> {
    let bad = |why: &str| Denial::new(ReasonCode::PathInvalid, format!("path {path:?}: {why}"));
    if path.len() > 4096 {
        return Err(bad("longer than 4096 bytes"));
    }
    if path.chars().any(char::is_control) {
        return Err(bad("holds a control character (NUL, newline…)"));
    }
    if matches!(escape(path), std::borrow::Cow::Owned(_)) {
        return Err(bad("holds an invisible or bidirectional character"));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad("must be absolute"));
    };
    if rest
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(bad(
            "must be canonical (no //, . or .. segments, no trailing /)",
        ));
    }
    Ok(())
}

/// Paths no transfer may touch, whatever the host allows: login and
/// authentication files, privilege and scheduling configuration, the
/// shim's own files.
static ALWAYS_DENIED: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        "**/.ssh",
        "**/.bashrc",
        "**/.bash_profile",
        "**/.bash_login",
        "**/.bash_logout",
        "**/.profile",
        "**/.zshenv",
        "**/.zshrc",
        "**/.zprofile",
        "**/.zlogin",
        "**/.cshrc",
        "**/.tcshrc",
        "**/.login",
        "**/.pam_environment",
        "**/.config/fish",
        "/etc/sudoers",
        "/etc/sudoers.d",
        "/etc/ssh",
        "/etc/passwd",
        "/etc/shadow",
        "/etc/group",
        "/etc/gshadow",
        "/etc/profile",
        "/etc/profile.d",
        "/etc/environment",
        "/etc/ld.so.preload",
        "/etc/pam.d",
        "/etc/security",
        "/etc/cron*",
        "/var/spool/cron",
        "/etc/systemd",
        "/lib/systemd",
        "/usr/lib/systemd",
        "/etc/infrabroker-shim",
        "/var/lib/infrabroker-shim",
        "/usr/local/bin/infrabroker-shim",
    ]
    .iter()
    .filter_map(|g| glob_regex(g).ok())
    .collect()
});

/// Whether deny glob `g` matches `path` or one of its directories.
fn denies(g: &Regex, path: &str) -> bool {
    g.is_match(path)
        || path
            .match_indices('/')
            .skip(1)
            .any(|(i, _)| g.is_match(&path[..i]))
}

/// `0644`-style permission bits, at most `0777`.
fn parse_mode(mode: &str) -> Result<u32, Denial> {
    let ok = (3..=4).contains(&mode.len()) && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(mode, 8) {
        Ok(m) if ok && m <= 0o777 => Ok(m),
        _ => Err(invalid(format!(
            "mode {mode:?} must be octal permission bits 000-777 (no setuid, setgid or sticky)"
        ))),
    }
}

/// The checks of a request of any purpose: a file only with a file
/// purpose, and a file request as the host's rules allow it.
pub(super) fn check(host: &Host, req: &SignRequest) -> Result<(), Denial> {
    let Some(file) = req.file.as_ref().filter(|_| is_file(req.purpose)) else {
        if req.file.is_some() || is_file(req.purpose) {
            return Err(invalid(
                "\"file\" goes with purpose file_put or file_get, and they need it",
            ));
        }
        return Ok(());
    };
    if req.role != Role::Target || !req.command.is_empty() || req.pty || req.session_mode.is_some()
    {
        return Err(invalid(
            "a file transfer is a target certificate without command, PTY or session mode",
        ));
    }
    if !host.files.allowed {
        return Err(Denial::new(
            ReasonCode::FileTransferNotAllowed,
            format!("host {} does not allow file transfer", host.name),
        ));
    }
    check_path(&file.path)?;
    let rules = &host.files;
    if let Some(g) = ALWAYS_DENIED.iter().find(|g| denies(g, &file.path)) {
        return Err(Denial::new(
            ReasonCode::PathForbidden,
            format!(
                "path {} is refused on every host ({}): it can change how the host authenticates \
                 or what runs at a login",
                file.path,
                g.as_str()
            ),
        ));
    }
    let denied = rules.deny.iter().any(|g| denies(g, &file.path));
    if denied || !rules.allow.iter().any(|g| g.is_match(&file.path)) {
        return Err(Denial::new(
            ReasonCode::PathForbidden,
            format!(
                "path {} is outside host {}'s file_transfer_paths",
                file.path, host.name
            ),
        ));
    }
    check_fields(host, req.purpose, file)
}

/// A put's size, SHA-256 and mode, or a get's cap, within the host's rules.
fn check_fields(host: &Host, purpose: Purpose, file: &FileTransfer) -> Result<(), Denial> {
    let rules = &host.files;
    let too_large = |n: u64| {
        Denial::new(
            ReasonCode::FileTooLarge,
            format!(
                "{n} bytes is more than host {}'s max_file_bytes {}",
                host.name, rules.max_bytes
            ),
        )
    };
    if purpose == Purpose::FilePut {
        if file.size > rules.max_bytes {
            return Err(too_large(file.size));
        }
        let sha = file.sha256.as_deref().unwrap_or_default();
        if sha.len() != 64
            || !sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid(
                "a put needs the body's sha256 (64 lowercase hex digits)",
            ));
        }
        if let Some(mode) = &file.mode {
            parse_mode(mode)?;
        }
        if file.max_bytes.is_some() {
            return Err(invalid("max_bytes is for file_get"));
        }
    } else {
        if file.sha256.is_some() || file.mode.is_some() || file.size != 0 || file.overwrite {
            return Err(invalid("sha256, mode, size and overwrite are for file_put"));
        }
        let cap = file.max_bytes.unwrap_or(rules.max_bytes);
        if cap > rules.max_bytes {
            return Err(too_large(cap));
        }
    }
    Ok(())
}

/// `'text'` for sh (the path holds no control characters).
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The script of a checked request. It enters the target's directory once
/// (`cd -P`, which must land on the very path) and works on `./name` from
/// then on, after refusing a directory that another account could change
/// under it (owned by neither root nor the account, or writable by group or
/// others): nobody else can then swap a file or directory for a symlink
/// between the checks and the writes, which with sudo would redirect a root
/// write, chmod or read.
pub(super) fn script(host: &Host, purpose: Purpose, file: &FileTransfer) -> String {
    let (dir, base) = match file.path.rfind('/') {
        Some(0) => ("/", &file.path[1..]),
        Some(i) => (&file.path[..i], &file.path[i + 1..]),
        None => ("/", file.path.as_str()),
    };
    let head = format!(
        "set -eu\numask 077\np={}\nd={}\nb={}\n\
         fail() {{ echo \"infrabroker: $2\" >&2; exit \"$1\"; }}\n\
         cd -P -- \"$d\" 2>/dev/null || fail {nr} \"$d is not a directory\"\n\
         [ \"$(pwd)\" = \"$d\" ] || fail {nr} \"$d is reached through a symlink\"\n\
         set -- $(stat -c '%u %a' .)\n\
         [ \"$1\" = 0 ] || [ \"$1\" = \"$(id -u)\" ] || fail {nr} \"$d belongs to another account (uid $1)\"\n\
         case \"$2\" in *[2367]?|*[2367]) fail {nr} \"$d is writable by group or others (mode $2)\" ;; esac\n\
         if [ -L \"./$b\" ]; then fail {nr} \"$p is a symlink\"; fi\n",
        quoted(&file.path),
        quoted(dir),
        quoted(base),
        nr = exit::NOT_REGULAR,
    );
    if purpose == Purpose::FileGet {
        let cap = file.max_bytes.unwrap_or(host.files.max_bytes);
        return format!(
            "{head}[ -f \"./$b\" ] || fail {nr} \"$p is not a regular file\"\n\
             n=$(wc -c < \"./$b\")\n\
             [ \"$n\" -le {cap} ] || fail {big} \"$p is $n bytes, more than max_bytes {cap}\"\n\
             exec head -c {more} -- \"./$b\"\n",
            nr = exit::NOT_REGULAR,
            big = exit::TOO_LARGE,
            more = cap + 1,
        );
    }
    let (size, sha) = (file.size, file.sha256.as_deref().unwrap_or_default());
    // No mode given: an overwritten file keeps its own, a new one gets 0644.
    let mode = file.mode.as_deref().unwrap_or_default();
    let overwrite = u8::from(file.overwrite);
    format!(
        "{head}m={mode}\n\
         if [ -e \"./$b\" ]; then\n  [ -f \"./$b\" ] || fail {nr} \"$p is not a regular file\"\n  \
         [ {overwrite} = 1 ] || fail {ex} \"$p exists (set overwrite to replace it)\"\n  \
         [ -n \"$m\" ] || m=$(stat -c %a \"./$b\")\nfi\n\
         [ -n \"$m\" ] || m=644\n\
         t=$(mktemp -- ./.infrabroker-put.XXXXXXXX)\n\
         trap 'rm -f -- \"$t\"' EXIT\ntrap 'exit 143' TERM INT HUP\n\
         head -c {more} > \"$t\"\n\
         n=$(wc -c < \"$t\")\n\
         [ \"$n\" -eq {size} ] || fail {mm} \"received $n bytes, expected {size}\"\n\
         h=$(sha256sum < \"$t\")\nh=${{h%% *}}\n\
         [ \"$h\" = {sha} ] || fail {mm} \"the body's SHA-256 is $h, expected {sha}\"\n\
         chmod \"$m\" -- \"$t\"\nsync -- \"$t\"\nmv -f -- \"$t\" \"./$b\"\ntrap - EXIT\nsync -- .\n\
         echo \"ok $n $h\"\n",
        nr = exit::NOT_REGULAR,
        ex = exit::EXISTS,
        mm = exit::MISMATCH,
        more = size + 1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_absolute_and_canonical() {
        for bad in [
            "etc/passwd",
            "/tmp/../etc/passwd",
            "/tmp/./x",
            "/tmp//x",
            "/tmp/x/",
            "/tmp/a\nb",
            "/tmp/a\0b",
            "/",
        ] {
            assert_eq!(
                check_path(bad).unwrap_err().code,
                ReasonCode::PathInvalid,
                "{bad:?}"
            );
        }
        for good in ["/tmp/x", "/srv/app/it's here.conf", "/a"] {
            assert!(check_path(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn login_and_authentication_files_are_refused_everywhere_and_deny_covers_subtrees() {
        let refused = |p: &str| ALWAYS_DENIED.iter().any(|g| denies(g, p));
        for p in [
            "/home/deploy/.ssh/authorized_keys",
            "/root/.ssh",
            "/home/deploy/.bashrc",
            "/etc/sudoers.d/90-x",
            "/etc/cron.d/job",
            "/etc/crontab",
            "/etc/systemd/system/x.service",
            "/etc/infrabroker-shim/keys.pub",
        ] {
            assert!(refused(p), "{p}");
        }
        for p in [
            "/srv/app/config.yml",
            "/home/deploy/notes.txt",
            "/tmp/.sshx",
        ] {
            assert!(!refused(p), "{p}");
        }
        let git = glob_regex("/srv/app/.git").unwrap();
        assert!(
            denies(&git, "/srv/app/.git/config"),
            "below a denied directory"
        );
        assert!(!denies(&git, "/srv/app/.gitignore"));
        assert_eq!(
            check_path("/srv/a\u{202e}txt.exe").unwrap_err().code,
            ReasonCode::PathInvalid
        );
    }

    #[test]
    fn modes_are_plain_permission_bits() {
        assert_eq!(parse_mode("0644").unwrap(), 0o644);
        assert_eq!(parse_mode("750").unwrap(), 0o750);
        for bad in ["4755", "0o644", "64", "1777", "0888", ""] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_path_with_a_quote_stays_one_word() {
        assert_eq!(quoted("/srv/it's"), r"'/srv/it'\''s'");
    }
}
