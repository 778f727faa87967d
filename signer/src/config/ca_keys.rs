//! `ca_key` and `ca_keys`: where each CA key lives (a file, a PKCS#11
//! token, an ssh-agent) and the `next` key of a rotation.

use std::collections::BTreeMap;
use std::path::Path;

use infrabroker_ca::{CaSpec, DEFAULT_POOL_SIZE, MAX_POOL_SIZE, PinSource};
use infrabroker_common::config::{Obj, resolve};

use crate::names;

/// A `ca_keys` entry: where the CA key lives, and the key that replaces it
/// at the next rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaKeySource {
    /// The key that signs.
    pub spec: CaSpec,
    /// `next`: published to hosts (`broker-ctl pki ssh-ca-pubs`) ahead of a
    /// rotation, never used to sign.
    pub next: Option<CaSpec>,
    /// JSON path of the entry, for load errors.
    pub at: String,
}

pub(super) fn read_ca_keys(
    root: &Obj<'_>,
    base: &Path,
) -> (Option<CaKeySource>, BTreeMap<String, CaKeySource>) {
    let legacy = root.opt_str("ca_key").map(|p| CaKeySource {
        spec: CaSpec::File {
            path: resolve(base, &p),
        },
        next: None,
        at: root.path_of("ca_key"),
    });
    let mut default = None;
    let mut groups = BTreeMap::new();
    for (group, path, value) in root.map_entries("ca_keys") {
        let Some(entry) = Obj::new(value, &path, root.errors()) else {
            continue;
        };
        let spec = read_ca_spec(&entry, base);
        let next = entry.opt_obj("next").and_then(|n| {
            let spec = read_ca_spec(&n, base);
            n.finish();
            spec
        });
        entry.finish();
        let Some(spec) = spec else { continue };
        let src = CaKeySource {
            spec,
            next,
            at: path.clone(),
        };
        if group == "_default" {
            default = Some(src);
        } else if names::is_name(&group) {
            groups.insert(group, src);
        } else {
            root.errors()
                .push(path, format!("{group:?} is not a valid group name"));
        }
    }
    // As upstream: `_default` overrides `ca_key`.
    let default = default.or(legacy);
    if default.is_none() {
        root.error(
            "ca_key",
            "no default CA key: set ca_key or ca_keys._default",
        );
    }
    (default, groups)
}

/// One key's custody: `{"type": "pem", "path"}` (the default type),
/// `{"type": "pkcs11", "module", "token_label", "key_label", "pin_file" |
/// "pin_env", "pool_size"}` or `{"type": "agent", "socket", "public_key",
/// "pool_size"}`.
fn read_ca_spec(entry: &Obj<'_>, base: &Path) -> Option<CaSpec> {
    let kind = entry.opt_str("type");
    match kind.as_deref() {
        None | Some("pem") => Some(CaSpec::File {
            path: resolve(base, &required(entry, "path")?),
        }),
        Some("pkcs11") => read_pkcs11(entry, base),
        Some("agent") => read_agent(entry, base),
        Some("akv") => {
            entry.error(
                "type",
                "\"akv\" (Azure Key Vault) CA keys are not implemented; use \"pem\", \"pkcs11\" or \"agent\"",
            );
            None
        }
        Some(other) => {
            entry.error(
                "type",
                format!("{other:?} is not a CA key type (\"pem\", \"pkcs11\" or \"agent\")"),
            );
            None
        }
    }
}

fn pool_size(entry: &Obj<'_>) -> usize {
    let n = entry.opt_u64("pool_size").map_or(DEFAULT_POOL_SIZE, |n| {
        usize::try_from(n).unwrap_or(usize::MAX)
    });
    if !(1..=MAX_POOL_SIZE).contains(&n) {
        entry.error("pool_size", format!("must be 1 to {MAX_POOL_SIZE}"));
        return DEFAULT_POOL_SIZE;
    }
    n
}

/// A non-empty string member, reported when missing.
fn required(entry: &Obj<'_>, key: &str) -> Option<String> {
    let v = entry.opt_str(key).filter(|v| !v.is_empty());
    if v.is_none() {
        entry.error(key, "is required");
    }
    v
}

fn read_pkcs11(entry: &Obj<'_>, base: &Path) -> Option<CaSpec> {
    let module = required(entry, "module").map(|m| resolve(base, &m));
    let token_label = required(entry, "token_label");
    let key_label = required(entry, "key_label");
    let pin = match (entry.opt_str("pin_file"), entry.opt_str("pin_env")) {
        (Some(f), None) => Some(PinSource::File(resolve(base, &f))),
        (None, Some(v)) if !v.is_empty() => Some(PinSource::Env(v)),
        (None, _) => {
            entry.error("pin_file", "a pkcs11 key needs pin_file or pin_env");
            None
        }
        (Some(_), Some(_)) => {
            entry.error("pin_env", "set pin_file or pin_env, not both");
            None
        }
    };
    let pool_size = pool_size(entry);
    Some(CaSpec::Pkcs11 {
        module: module?,
        token_label: token_label?,
        key_label: key_label?,
        pin: pin?,
        pool_size,
    })
}

fn read_agent(entry: &Obj<'_>, base: &Path) -> Option<CaSpec> {
    let socket = required(entry, "socket").map(|p| resolve(base, &p));
    let public_key = required(entry, "public_key");
    if let Some(line) = &public_key
        && let Err(e) = infrabroker_ca::parse_ed25519_public(line)
    {
        entry.error("public_key", e.to_string());
    }
    let pool_size = pool_size(entry);
    Some(CaSpec::Agent {
        socket: socket?,
        public_key: public_key?,
        pool_size,
    })
}

/// The first of a host's groups *in the order it declares them* that has a
/// CA (its `groups` set is alphabetical, which would pick another).
pub(super) fn first_ca_group(
    host: &Obj<'_>,
    ca_groups: &BTreeMap<String, CaKeySource>,
) -> Option<String> {
    host.raw("groups")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .find(|g| ca_groups.contains_key(*g))
        .map(str::to_owned)
}
