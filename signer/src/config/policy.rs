//! Command policies in `signer.json`: the named library
//! (`command_policies`), policies per group (`group_command_policies`) and
//! a host's own `command_policy`, read and compiled with their paths.

use std::collections::BTreeMap;

use infrabroker_common::config::{Errors, Obj, index};
use infrabroker_firewall::{CompiledPolicy, Enforcement, Mode, PolicyConfig};
use serde_json::Value;

use crate::names;

pub(super) fn read_policy(o: &Obj<'_>) -> PolicyConfig {
    let mode = match o.opt_str("mode").as_deref() {
        None | Some("") | Some("off") => Mode::Off,
        Some("allowlist") => Mode::Allowlist,
        Some("denylist") => Mode::Denylist,
        Some(other) => {
            o.error(
                "mode",
                format!("{other:?} is not \"allowlist\", \"denylist\" or \"off\""),
            );
            Mode::Off
        }
    };
    let enforcement = match o.opt_str("enforcement").as_deref() {
        None | Some("") | Some("enforce") => Enforcement::Enforce,
        Some("audit") => Enforcement::Audit,
        Some(other) => {
            o.error(
                "enforcement",
                format!("{other:?} is not \"enforce\" or \"audit\""),
            );
            Enforcement::Enforce
        }
    };
    PolicyConfig {
        mode,
        allow: o.str_list("allow"),
        allow_argv: argv_rules(o),
        deny: o.str_list("deny"),
        require_approval: o.str_list("require_approval"),
        shell_parse: o.opt_bool("shell_parse"),
        enforcement,
    }
}

/// `allow_argv`: structured rules, read by the firewall's own serde types
/// (unknown fields refused); their meaning is checked by `compile`.
fn argv_rules(o: &Obj<'_>) -> Vec<infrabroker_firewall::argv::ArgvRuleConfig> {
    let Some(v) = o.raw("allow_argv") else {
        return Vec::new();
    };
    serde_json::from_value(v.clone()).unwrap_or_else(|e| {
        o.error("allow_argv", format!("not a list of structured rules: {e}"));
        Vec::new()
    })
}

pub(super) fn compile_at(cfg: &PolicyConfig, path: &str, errs: &Errors) -> Option<CompiledPolicy> {
    match infrabroker_firewall::compile(cfg, path) {
        Ok(p) => Some(p),
        Err(problems) => {
            for p in problems {
                // The firewall's messages start with their JSON path.
                errs.push("", p.to_string());
            }
            None
        }
    }
}

pub(super) fn read_policy_library(root: &Obj<'_>) -> BTreeMap<String, CompiledPolicy> {
    let mut out = BTreeMap::new();
    for (name, path, value) in root.map_entries("command_policies") {
        if !names::is_name(&name) {
            root.errors()
                .push(path.clone(), format!("{name:?} is not a valid policy name"));
            continue;
        }
        let Some(o) = Obj::new(value, &path, root.errors()) else {
            continue;
        };
        let cfg = read_policy(&o);
        o.finish();
        if let Some(p) = compile_at(&cfg, &path, root.errors()) {
            out.insert(name, p);
        }
    }
    out
}

pub(super) fn read_group_policies(
    root: &Obj<'_>,
    library: &BTreeMap<String, CompiledPolicy>,
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (group, path, value) in root.map_entries("group_command_policies") {
        let Value::Array(items) = value else {
            root.errors().push(path, "expected a list of policy names");
            continue;
        };
        let mut names_out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(n) if library.contains_key(n) => names_out.push(n.to_owned()),
                Some(n) => root.errors().push(
                    index(&path, i),
                    format!("no policy named {n:?} in command_policies"),
                ),
                None => root
                    .errors()
                    .push(index(&path, i), "expected a policy name"),
            }
        }
        out.insert(group, names_out);
    }
    out
}
