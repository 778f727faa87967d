//! Strict reading of JWCC configuration files (JSON with comments and
//! trailing commas), shared by every service.
//!
//! Reading happens in two steps. [`parse_jwcc`] turns text into a
//! [`serde_json::Value`], refusing the JSON5 extensions (single quotes, bare
//! keys, hex numbers…) and duplicate keys. Then a service walks that value with
//! [`Obj`], which records every problem with its JSON path in an [`Errors`]
//! sink instead of stopping at the first one, and reports members it was
//! never asked for as unknown. Keys that start with `_` in a struct position
//! are treated as comments, as in the Go infrabroker; map keys such as
//! `"_default"` are data and are kept.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// One problem found in a configuration, located by its JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Path such as `hosts.web01.allowed_sudo_users[1]`; empty for the root.
    pub path: String,
    /// What is wrong, in one sentence.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigIssue>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} configuration error{}",
            if n == 1 { "" } else { "s" }
        )?;
        for issue in &self.0 {
            write!(f, "\n  {issue}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// A single error that is not tied to a member (an unreadable file, say).
    pub fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigIssue {
            path: path.into(),
            message: message.into(),
        }])
    }
}

/// Collects issues while a configuration is walked.
#[derive(Debug, Default)]
pub struct Errors {
    issues: RefCell<Vec<ConfigIssue>>,
}

impl Errors {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem at `path`.
    pub fn push(&self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.borrow_mut().push(ConfigIssue {
            path: path.into(),
            message: message.into(),
        });
    }

    /// True when nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.issues.borrow().is_empty()
    }

    /// `Ok(value)` if nothing was recorded, otherwise every recorded issue.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        let issues = self.issues.into_inner();
        if issues.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(issues))
        }
    }
}

/// Parses JWCC text: standard JSON plus `//` and `/* */` comments and
/// trailing commas. Duplicate keys are an error.
pub fn parse_jwcc(text: &str) -> Result<Value, ConfigErrors> {
    let options = jsonc_parser::ParseOptions {
        allow_comments: true,
        allow_trailing_commas: true,
        allow_loose_object_property_names: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    };
    jsonc_parser::parse_to_serde_value::<Strict>(text, &options)
        .map(|s| s.0)
        .map_err(|e| ConfigErrors::single("", format!("not valid JSON with comments: {e}")))
}

/// A JSON value whose objects had no duplicate keys.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.insert(key.clone(), v).is_some() {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
        }
        Ok(Value::Object(out))
    }
}

/// Reads a configuration file and validates it with `read`, which walks the
/// parsed value and records problems in the sink. Relative paths inside the
/// file are meant to be resolved (with [`resolve`]) against the file's
/// directory, which `read` receives.
pub fn load_file<T>(
    path: &Path,
    read: impl FnOnce(&Value, &Path, &Errors) -> Option<T>,
) -> Result<T, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::single("", format!("cannot read {}: {e}", path.display())))?;
    load_text(&text, path.parent().unwrap_or(Path::new(".")), read)
}

/// [`load_file`] for text already in memory.
pub fn load_text<T>(
    text: &str,
    base: &Path,
    read: impl FnOnce(&Value, &Path, &Errors) -> Option<T>,
) -> Result<T, ConfigErrors> {
    let value = parse_jwcc(text)?;
    let errs = Errors::new();
    match read(&value, base, &errs) {
        Some(v) => errs.finish(v),
        None => Err(errs
            .finish(())
            .err()
            .unwrap_or_else(|| ConfigErrors::single("", "invalid configuration"))),
    }
}

/// Resolves a path from a configuration file against the file's directory.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

/// Joins a member name onto a JSON path, quoting names that are not plain.
pub fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", Value::String(key.to_owned())),
    }
}

/// Appends an array index to a JSON path.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// A JSON object being read member by member. Members never asked for are
/// reported as unknown by [`Obj::finish`].
#[derive(Debug)]
pub struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
    seen: RefCell<BTreeSet<&'a str>>,
    errs: &'a Errors,
}

impl<'a> Obj<'a> {
    /// Reads `value` as an object at `path`; records an error otherwise.
    pub fn new(value: &'a Value, path: &str, errs: &'a Errors) -> Option<Obj<'a>> {
        match value {
            Value::Object(map) => Some(Obj {
                path: path.to_owned(),
                map,
                seen: RefCell::new(BTreeSet::new()),
                errs,
            }),
            other => {
                errs.push(path, format!("expected an object, found {}", kind(other)));
                None
            }
        }
    }

    /// The path of this object.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path of one of its members.
    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Records a problem with member `key`.
    pub fn error(&self, key: &str, message: impl Into<String>) {
        self.errs.push(self.path_of(key), message);
    }

    /// The error sink this object reports to.
    pub fn errors(&self) -> &'a Errors {
        self.errs
    }

    /// The raw member, marking it as known.
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        let (k, v) = self.map.get_key_value(key)?;
        self.seen.borrow_mut().insert(k.as_str());
        if v.is_null() { None } else { Some(v) }
    }

    /// A required string member.
    pub fn str(&self, key: &str) -> Option<String> {
        let v = self.opt_str(key);
        if v.is_none() && !self.map.contains_key(key) {
            self.error(key, "is required");
        }
        v
    }

    /// An optional string member.
    pub fn opt_str(&self, key: &str) -> Option<String> {
        match self.raw(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.error(key, format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    /// An optional boolean member.
    pub fn opt_bool(&self, key: &str) -> Option<bool> {
        match self.raw(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                self.error(
                    key,
                    format!("expected true or false, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// An optional non-negative integer member.
    pub fn opt_u64(&self, key: &str) -> Option<u64> {
        match self.raw(key)? {
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            other => {
                self.error(
                    key,
                    format!("expected a non-negative integer, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// An optional list of strings; absent reads as empty.
    pub fn str_list(&self, key: &str) -> Vec<String> {
        let Some(v) = self.raw(key) else {
            return Vec::new();
        };
        let Value::Array(items) = v else {
            self.error(
                key,
                format!("expected a list of strings, found {}", kind(v)),
            );
            return Vec::new();
        };
        let path = self.path_of(key);
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Value::String(s) => Some(s.clone()),
                other => {
                    self.errs.push(
                        index(&path, i),
                        format!("expected a string, found {}", kind(other)),
                    );
                    None
                }
            })
            .collect()
    }

    /// A required, non-empty path, resolved against `base`.
    pub fn file_path(&self, key: &str, base: &Path) -> Option<PathBuf> {
        let s = self.str(key)?;
        if s.is_empty() {
            self.error(key, "must not be empty");
            return None;
        }
        Some(resolve(base, &s))
    }

    /// An `ip:port` socket address; required or optional.
    pub fn socket_addr(&self, key: &str, required: bool) -> Option<SocketAddr> {
        let s = if required {
            self.str(key)
        } else {
            self.opt_str(key)
        }?;
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(key, format!("{s:?} is not an address like 127.0.0.1:9443"));
                None
            }
        }
    }

    /// An optional nested object.
    pub fn opt_obj(&self, key: &str) -> Option<Obj<'a>> {
        let v = self.raw(key)?;
        Obj::new(v, &self.path_of(key), self.errs)
    }

    /// An optional map keyed by names (hosts, callers…), in key order.
    /// Each entry comes with its path.
    pub fn map_entries(&self, key: &str) -> Vec<(String, String, &'a Value)> {
        let Some(v) = self.raw(key) else {
            return Vec::new();
        };
        let Value::Object(map) = v else {
            self.error(key, format!("expected an object, found {}", kind(v)));
            return Vec::new();
        };
        let path = self.path_of(key);
        map.iter()
            .map(|(k, v)| (k.clone(), join(&path, k), v))
            .collect()
    }

    /// Reports every member that was never read. Keys starting with `_` are
    /// comments.
    pub fn finish(self) {
        let seen = self.seen.borrow();
        for key in self.map.keys() {
            if !key.starts_with('_') && !seen.contains(key.as_str()) {
                self.errs.push(self.path_of(key), "unknown field");
            }
        }
    }
}

/// A short name of a JSON value's type for error messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_comments_and_trailing_commas() {
        let v = parse_jwcc("{ // note\n \"a\": [1, 2,], /* x */ \"b\": true, }").unwrap();
        assert_eq!(v, serde_json::json!({"a": [1, 2], "b": true}));
    }

    #[test]
    fn refuses_json5_extensions_and_duplicates() {
        for text in [
            "{'a': 1}",
            "{a: 1}",
            "{\"a\": 0x10}",
            "{\"a\": 1 \"b\": 2}",
            "{\"a\": 1, \"a\": 2}",
        ] {
            assert!(parse_jwcc(text).is_err(), "{text} should be refused");
        }
    }

    #[test]
    fn collects_every_error_with_its_path() {
        let v = parse_jwcc(
            r#"{"name": 3, "extra": 1, "_comment": "ok",
                "hosts": {"web.1": {"port": -1, "tags": ["a", 2]}}}"#,
        )
        .unwrap();
        let errs = Errors::new();
        let root = Obj::new(&v, "", &errs).unwrap();
        let _ = root.str("name");
        let _ = root.str("missing");
        for (_, path, value) in root.map_entries("hosts") {
            let host = Obj::new(value, &path, &errs).unwrap();
            let _ = host.opt_u64("port");
            let _ = host.str_list("tags");
            host.finish();
        }
        root.finish();
        let issues = errs.finish(()).unwrap_err().0;
        let got: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            vec![
                "name: expected a string, found a number",
                "missing: is required",
                "hosts[\"web.1\"].port: expected a non-negative integer, found a number",
                "hosts[\"web.1\"].tags[1]: expected a string, found a number",
                "extra: unknown field",
            ]
        );
    }
}
