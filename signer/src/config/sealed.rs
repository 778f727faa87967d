//! Sealed exec in `signer.json`: a host's `sealed_exec` and `shim_path`,
//! and the `envelope_key` that signs what its shim runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use infrabroker_common::config::Obj;

use super::Host;

/// Where `deploy/install-shim.sh` puts the shim.
pub const DEFAULT_SHIM: &str = "/usr/local/bin/infrabroker-shim";

/// The force-command of a sealed host's session certificates (`shim_path`,
/// which may carry arguments such as `--config FILE`), or `None` when the
/// host is not sealed.
pub(super) fn read(o: &Obj<'_>) -> Option<String> {
    let shim = o.opt_str("shim_path").filter(|s| !s.is_empty());
    if !o.opt_bool("sealed_exec").unwrap_or(false) {
        if shim.is_some() {
            o.error("shim_path", "only for a host with \"sealed_exec\": true");
        }
        return None;
    }
    let shim = shim.unwrap_or_else(|| DEFAULT_SHIM.to_owned());
    let plain = shim
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-= ".contains(&b));
    if !shim.starts_with('/') || !plain {
        o.error(
            "shim_path",
            "must be an absolute path (with plain arguments): letters, digits, / . _ - = and spaces",
        );
    }
    Some(shim)
}

/// `envelope_key`: required (and only meaningful) when a host is sealed.
pub(super) fn envelope_key(
    root: &Obj<'_>,
    base: &Path,
    hosts: &BTreeMap<String, Host>,
) -> Option<PathBuf> {
    let key = root
        .opt_str("envelope_key")
        .filter(|s| !s.is_empty())
        .map(|s| infrabroker_common::config::resolve(base, &s));
    if key.is_none()
        && let Some(h) = hosts.values().find(|h| h.sealed_exec.is_some())
    {
        root.errors().push(
            format!("hosts.{}.sealed_exec", h.name),
            "a sealed host needs \"envelope_key\" (a 32-byte seed file, 0600) to sign what its shim runs",
        );
    }
    key
}
