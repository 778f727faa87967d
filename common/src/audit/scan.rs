//! Reading values back out of a log without verifying it, e.g. the highest
//! certificate serial so serials stay unique across restarts.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind};
use std::path::Path;

use serde::Deserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::AuditError;

/// The largest value of the top-level member `field` over all records, if
/// any record has it as a non-negative integer (records where it is absent
/// or of another type are skipped). A missing file gives `Ok(None)`, as
/// does a log without such values; a partial last line left by a crash is
/// ignored. A complete line that is not a JSON object is an error, because
/// its value would be unknown.
///
/// The log is streamed and only `field` is decoded, so this is cheap enough
/// to run at every start-up.
pub fn max_u64_field(path: impl AsRef<Path>, field: &str) -> Result<Option<u64>, AuditError> {
    let path = path.as_ref();
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuditError::io(path, e)),
    };
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(1024);
    let mut max = None;
    let mut line_no = 0u64;
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .map_err(|e| AuditError::io(path, e))?
            == 0
        {
            return Ok(max);
        }
        line_no += 1;
        let Some(body) = line.strip_suffix(b"\n") else {
            // Torn by a crash; the writer quarantines it when it reopens.
            return Ok(max);
        };
        let mut de = serde_json::Deserializer::from_slice(body);
        let value = FieldSeed(field)
            .deserialize(&mut de)
            .and_then(|v| de.end().map(|()| v))
            .map_err(|e| AuditError::Unverified {
                path: path.to_path_buf(),
                seq: None,
                detail: format!("line {line_no} is not a JSON record: {e}"),
            })?;
        max = max.max(value);
    }
}

/// Decodes a JSON object, keeping only the largest u64 value of one member.
struct FieldSeed<'f>(&'f str);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<u64>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(is_field) = map.next_key_seed(KeyIs(self.0))? {
            if is_field {
                let value: Value = map.next_value()?;
                found = found.max(value.as_u64());
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Decodes a member name into "is it the one we look for", without
/// allocating it.
struct KeyIs<'f>(&'f str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<bool, E> {
        Ok(name == self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn finds_the_largest_integer_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        assert_eq!(max_u64_field(&path, "serial").unwrap(), None);
        fs::write(
            &path,
            concat!(
                "{\"serial\":7,\"nested\":{\"serial\":99}}\n",
                "{\"outcome\":\"reloaded\"}\n",
                "{\"serial\":\"12\"}\n",
                "{\"ser\\u0069al\":18446744073709551615}\n",
                "{\"serial\":-3,\"x\":[1,{\"serial\":100}]}\n",
                "{\"serial\":9999",
            ),
        )
        .unwrap();
        assert_eq!(max_u64_field(&path, "serial").unwrap(), Some(u64::MAX));
        assert_eq!(max_u64_field(&path, "absent").unwrap(), None);
        fs::write(&path, "{\"serial\":7}\n{\"serial\":12}\n").unwrap();
        assert_eq!(max_u64_field(&path, "serial").unwrap(), Some(12));
    }

    #[test]
    fn complete_garbage_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        fs::write(&path, "{\"serial\":7}\n[1,2]\n").unwrap();
        let err = max_u64_field(&path, "serial").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        fs::write(&path, "{\"serial\":7} x\n").unwrap();
        assert!(max_u64_field(&path, "serial").is_err());
    }
}
