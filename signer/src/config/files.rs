//! File transfer in `signer.json`, per host: `allow_file_transfer` (the Go
//! infrabroker's name), `file_transfer_paths` (`allow` and `deny` globs on
//! the canonical absolute path) and `max_file_bytes`.
//!
//! Globs are turned into anchored regexes here (`**` any run of
//! characters, `/` included, and `**/` zero or more directories; `*` and
//! `?` within one path segment; every other character literal): a dozen lines of translation against the
//! `regex` crate the signer already uses, where a glob crate would bring
//! its own matcher for the same three wildcards.

use infrabroker_common::config::{Obj, index};
use regex::Regex;

/// Default `max_file_bytes`: 512 KiB.
pub const DEFAULT_MAX_BYTES: u64 = 512 * 1024;
/// Largest `max_file_bytes`: 8 MiB.
pub const MOST_BYTES: u64 = 8 * 1024 * 1024;

/// A host's file transfer rules.
#[derive(Debug, Clone, Default)]
pub struct FileRules {
    /// `allow_file_transfer` (default off).
    pub allowed: bool,
    /// `file_transfer_paths.allow`: a path must match one.
    pub allow: Vec<Regex>,
    /// `file_transfer_paths.deny`: a path matching one is refused.
    pub deny: Vec<Regex>,
    /// `max_file_bytes`.
    pub max_bytes: u64,
}

/// The anchored regex of glob `g`.
pub fn glob_regex(g: &str) -> Result<Regex, regex::Error> {
    let mut re = String::from("^");
    let mut chars = g.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `**/` is zero or more whole directories.
                if chars.peek() == Some(&'/') {
                    chars.next();
                    re.push_str("(?:.*/)?");
                } else {
                    re.push_str(".*");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re)
}

fn globs(o: &Obj<'_>, key: &str) -> Vec<Regex> {
    let path = o.path_of(key);
    o.str_list(key)
        .iter()
        .enumerate()
        .filter_map(|(i, g)| {
            if !g.starts_with('/') {
                o.errors().push(
                    index(&path, i),
                    format!("{g:?}: a glob must be an absolute path"),
                );
                return None;
            }
            glob_regex(g)
                .map_err(|e| o.errors().push(index(&path, i), format!("{g:?}: {e}")))
                .ok()
        })
        .collect()
}

/// Reads a host's rules.
pub(super) fn read(o: &Obj<'_>) -> FileRules {
    let allowed = o.opt_bool("allow_file_transfer").unwrap_or(false);
    let (allow, deny) = match o.opt_obj("file_transfer_paths") {
        Some(p) => {
            let rules = (globs(&p, "allow"), globs(&p, "deny"));
            p.finish();
            rules
        }
        None => (Vec::new(), Vec::new()),
    };
    let max_bytes = o.opt_u64("max_file_bytes").unwrap_or(DEFAULT_MAX_BYTES);
    if max_bytes == 0 || max_bytes > MOST_BYTES {
        o.error(
            "max_file_bytes",
            format!("must be between 1 and {MOST_BYTES}"),
        );
    }
    if allowed && o.opt_bool("sealed_exec").unwrap_or(false) {
        o.error(
            "allow_file_transfer",
            "a sealed host cannot allow file transfer: a written file (a login script, a program) would run outside its shim",
        );
    }
    if allowed && allow.is_empty() {
        o.error(
            "file_transfer_paths",
            "allow_file_transfer needs at least one \"allow\" glob (nothing is allowed by default)",
        );
    }
    FileRules {
        allowed,
        allow,
        deny,
        max_bytes: max_bytes.min(MOST_BYTES),
    }
}

#[cfg(test)]
mod tests {
    use super::glob_regex;

    #[test]
    fn globs_match_segments_and_double_stars_cross_them() {
        let m = |g: &str, p: &str| glob_regex(g).unwrap().is_match(p);
        assert!(m("/srv/app/*", "/srv/app/a.conf"));
        assert!(!m("/srv/app/*", "/srv/app/sub/a.conf"));
        assert!(m("/srv/app/**", "/srv/app/sub/a.conf"));
        assert!(m("/srv/**/*.conf", "/srv/x/y/a.conf"));
        assert!(
            m("/srv/**/*.conf", "/srv/a.conf"),
            "**/ may be no directory"
        );
        assert!(!m("/srv/**/*.conf", "/srvX/a.conf"));
        assert!(!m("/srv/app/?", "/srv/app/ab"));
        assert!(!m("/srv/app.*", "/srvXapp.x"), "a dot is literal");
        assert!(!m("/srv/app/*", "/srv/app/a\n/x"), "anchored");
    }
}
