//! `redact`: secrets that must never reach a log, a notification or a
//! recording (SPEC §7). Configured per service as a map from a rule name to
//! a regular expression:
//!
//! ```jsonc
//! "redact": {"aws_key": "AKIA[0-9A-Z]{16}", "password_flag": "--password[= ]\\S+"}
//! ```
//!
//! Every match is replaced by `[REDACTED:<name>]`. Audit records are
//! redacted in every string they hold before they are sealed; a record
//! whose `command` changed also gets `command_sha256`, the SHA-256 of the
//! command as it was, so it can still be matched against a certificate or
//! a host's log. Certificates keep the real command: sshd must run it.

use std::borrow::Cow;
use std::sync::Arc;

use regex::Regex;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::Obj;

/// The compiled `redact` rules of one service.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Vec<(String, Regex)>,
}

/// Longest pattern accepted (a guard against pasted garbage).
const MAX_PATTERN: usize = 1000;

impl Redactor {
    /// Rules from `(name, pattern)` pairs; the first bad one is the error.
    pub fn new<'a>(
        rules: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Redactor, String> {
        let rules = rules
            .into_iter()
            .map(|(name, pattern)| compile(name, pattern).map(|re| (name.to_owned(), re)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Redactor { rules })
    }

    /// Reads `redact` from a service's config object `o`, every bad rule
    /// reported with its path; `None` when absent or empty.
    pub fn read(o: &Obj<'_>) -> Option<Arc<Redactor>> {
        let mut rules = Vec::new();
        for (name, path, value) in o.map_entries("redact") {
            let Value::String(pattern) = value else {
                o.errors()
                    .push(path, "expected a regular expression (a string)");
                continue;
            };
            match compile(&name, pattern) {
                Ok(re) => rules.push((name, re)),
                Err(msg) => o.errors().push(path, msg),
            }
        }
        (!rules.is_empty()).then(|| Arc::new(Redactor { rules }))
    }

    /// `text` with every match replaced by `[REDACTED:<name>]`.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for (name, re) in &self.rules {
            if re.is_match(&out) {
                let replaced = re
                    .replace_all(&out, format!("[REDACTED:{name}]").as_str())
                    .into_owned();
                out = Cow::Owned(replaced);
            }
        }
        out
    }

    /// Redacts every string in `fields` (member names stay); adds
    /// `command_sha256` when `command` changed.
    pub fn record(&self, fields: &mut Map<String, Value>) {
        let before = match fields.get("command") {
            Some(Value::String(c)) => Some(c.clone()),
            _ => None,
        };
        for value in fields.values_mut() {
            self.value(value);
        }
        if let (Some(before), Some(Value::String(after))) = (before, fields.get("command"))
            && *after != before
        {
            let hash = hex::encode(Sha256::digest(before.as_bytes()));
            fields.insert("command_sha256".into(), Value::from(hash));
            // The signer's force-command carries the command base64-encoded,
            // where no pattern can see it.
            if let Some(fc) = fields.get_mut("force_command") {
                *fc = Value::from("[REDACTED:command]");
            }
        }
    }

    fn value(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Cow::Owned(r) = self.text(s) {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.value(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.value(v)),
            _ => {}
        }
    }
}

fn compile(name: &str, pattern: &str) -> Result<Regex, String> {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err(format!(
            "{name:?} is not a rule name (1–64 of [A-Za-z0-9_-]; it is shown in [REDACTED:<name>])"
        ));
    }
    if pattern.is_empty() || pattern.len() > MAX_PATTERN {
        return Err(format!(
            "the pattern must have 1 to {MAX_PATTERN} characters"
        ));
    }
    let re = Regex::new(pattern).map_err(|e| format!("not a regular expression: {e}"))?;
    if re.is_match("") {
        return Err("the pattern matches the empty string: it would redact nothing useful and mark every position".into());
    }
    Ok(re)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::{Errors, parse_jwcc};

    fn r() -> Redactor {
        Redactor::new([
            ("aws_key", "AKIA[0-9A-Z]{16}"),
            ("pw", "--password[= ]\\S+"),
        ])
        .unwrap()
    }

    #[test]
    fn every_match_in_every_string_is_replaced() {
        let mut rec = json!({
            "command": "deploy --password=hunter2 AKIAABCDEFGHIJKLMNOP",
            "nested": {"list": ["x AKIAABCDEFGHIJKLMNOP y", 3]},
            "force_command": "exec /bin/sh -c 'd' infrabroker ZGVwbG95",
            "n": 4,
        });
        let Value::Object(map) = &mut rec else {
            unreachable!()
        };
        r().record(map);
        assert_eq!(map["command"], "deploy [REDACTED:pw] [REDACTED:aws_key]");
        assert_eq!(map["nested"]["list"][0], "x [REDACTED:aws_key] y");
        assert_eq!(map["n"], 4);
        assert_eq!(map["force_command"], "[REDACTED:command]");
        let want = hex::encode(Sha256::digest(
            b"deploy --password=hunter2 AKIAABCDEFGHIJKLMNOP",
        ));
        assert_eq!(map["command_sha256"], Value::from(want));
    }

    #[test]
    fn a_clean_record_is_unchanged_and_gets_no_hash() {
        let mut map = Map::new();
        map.insert("command".into(), "uptime".into());
        r().record(&mut map);
        assert_eq!(map.len(), 1);
        assert!(matches!(r().text("uptime"), Cow::Borrowed(_)));
    }

    #[test]
    fn bad_rules_are_reported_with_their_paths() {
        let v = parse_jwcc(
            r#"{"redact": {"ok": "secret-[0-9]+", "bad name": "x", "empty": "a*", "broken": "(", "num": 3}}"#,
        )
        .unwrap();
        let errs = Errors::new();
        let o = Obj::new(&v, "", &errs).unwrap();
        let got = Redactor::read(&o);
        let e = errs.finish(()).unwrap_err().to_string();
        for want in [
            "redact[\"bad name\"]",
            "redact.empty: the pattern matches the empty string",
            "redact.broken: not a regular expression",
            "redact.num: expected a regular expression",
        ] {
            assert!(e.contains(want), "{want:?} not in {e}");
        }
        assert_eq!(got.unwrap().text("a secret-42"), "a [REDACTED:ok]");
    }
}
