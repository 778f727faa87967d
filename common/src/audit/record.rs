//! One record of the chain: canonical encoding, sealing (signature and
//! hash) and the checks the verifier and the writer's restore share.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::BrokenKind;

/// `prev_hash` of the first record: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Member names the chain sets itself; caller records must not use them.
pub const RESERVED_FIELDS: [&str; 5] = ["seq", "ts", "prev_hash", "sig", "hash"];

/// Length of a hex SHA-256.
pub(crate) const HEX_LEN: usize = 64;

/// What sits between the signed body and the hash digits at the end of
/// every line.
const HASH_PREFIX: &[u8] = b",\"hash\":\"";

/// Bytes the `hash` member adds to a line: `,"hash":"` + 64 hex + `"}`.
const SUFFIX_LEN: usize = HASH_PREFIX.len() + HEX_LEN + 2;

/// Why a single line fails a check.
#[derive(Debug)]
pub(crate) struct Fault {
    pub(crate) kind: BrokenKind,
    pub(crate) detail: String,
}

impl Fault {
    fn new(kind: BrokenKind, detail: impl Into<String>) -> Self {
        Fault {
            kind,
            detail: detail.into(),
        }
    }
}

/// The chain members of a line, borrowed from it. Deserializing into this
/// validates the whole line as JSON without building a `Value`; serde
/// rejects duplicate chain members, so none can be smuggled in twice.
#[derive(Debug, Deserialize)]
pub(crate) struct ChainHead<'a> {
    pub(crate) seq: u64,
    #[serde(borrow)]
    pub(crate) prev_hash: &'a str,
    #[serde(borrow)]
    #[expect(dead_code, reason = "required to be present, covered by the hash")]
    ts: &'a str,
    #[serde(borrow)]
    #[expect(dead_code, reason = "required to be present, checked on demand")]
    sig: &'a str,
    #[serde(borrow)]
    pub(crate) hash: &'a str,
}

/// Appends the canonical encoding of `map` to `out`: compact JSON with the
/// members of every object sorted by name (byte order). Sorting here rather
/// than relying on `Map` being a `BTreeMap` keeps the encoding stable even
/// if some crate turns on serde_json's `preserve_order`.
pub(crate) fn write_canonical(
    map: &Map<String, Value>,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (name, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, name)?;
        out.push(b':');
        write_value(value, out)?;
    }
    out.push(b'}');
    Ok(())
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> serde_json::Result<()> {
    match value {
        Value::Object(map) => write_canonical(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
            Ok(())
        }
        scalar => serde_json::to_writer(&mut *out, scalar),
    }
}

/// Completes `fields` into a record and appends its line (with `\n`) to
/// `out`, returning the record's hash. `scratch` is reused for the signed
/// body. On error `out` is left as it was.
pub(crate) fn seal(
    fields: &mut Map<String, Value>,
    seq: u64,
    ts: &str,
    prev_hash: &str,
    key: &SigningKey,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> serde_json::Result<String> {
    fields.insert("seq".to_owned(), Value::from(seq));
    fields.insert("ts".to_owned(), Value::from(ts));
    fields.insert("prev_hash".to_owned(), Value::from(prev_hash));
    scratch.clear();
    write_canonical(fields, scratch)?;
    let sig = key.sign(scratch);
    fields.insert(
        "sig".to_owned(),
        Value::from(STANDARD.encode(sig.to_bytes())),
    );
    let start = out.len();
    if let Err(e) = write_canonical(fields, out) {
        out.truncate(start);
        return Err(e);
    }
    let body1 = out.get(start..).unwrap_or_default();
    let hash = hex::encode(Sha256::digest(body1));
    // body1 ends with the object's `}`; the hash goes in front of it so it
    // is always the last member and can be stripped without re-encoding.
    out.pop();
    out.extend_from_slice(HASH_PREFIX);
    out.extend_from_slice(hash.as_bytes());
    out.extend_from_slice(b"\"}\n");
    Ok(hash)
}

/// Checks one line (without its `\n`): a JSON object with the chain
/// members, ending in a `hash` member that matches the bytes before it.
/// Sequence and linkage are the caller's business.
pub(crate) fn check_line(line: &[u8]) -> Result<ChainHead<'_>, Fault> {
    let head: ChainHead<'_> = serde_json::from_slice(line)
        .map_err(|e| Fault::new(BrokenKind::Malformed, format!("not a chain record: {e}")))?;
    let Some(prefix) = body_prefix(line) else {
        return Err(Fault::new(
            BrokenKind::Malformed,
            "\"hash\" is not the last member in canonical form",
        ));
    };
    let computed = body_hash(prefix);
    if head.hash.as_bytes() != computed.as_slice() {
        return Err(Fault::new(
            BrokenKind::HashMismatch,
            format!(
                "stored {}, computed {}",
                head.hash,
                String::from_utf8_lossy(&computed)
            ),
        ));
    }
    Ok(head)
}

/// The line without its trailing `,"hash":"…"}`, if it has that shape.
fn body_prefix(line: &[u8]) -> Option<&[u8]> {
    let split = line.len().checked_sub(SUFFIX_LEN)?;
    let (prefix, suffix) = line.split_at(split);
    let digits = suffix.strip_prefix(HASH_PREFIX)?.strip_suffix(b"\"}")?;
    digits
        .iter()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        .then_some(prefix)
}

/// Hex SHA-256 of body1, which is `prefix` closed with `}`.
fn body_hash(prefix: &[u8]) -> [u8; HEX_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(prefix);
    hasher.update(b"}");
    let mut hex_out = [0u8; HEX_LEN];
    // The buffer is exactly twice the digest length, so this cannot fail.
    let _ = hex::encode_to_slice(hasher.finalize(), &mut hex_out);
    hex_out
}

/// Checks the signature of a line that already passed [`check_line`]: the
/// bytes must be the canonical encoding of the parsed record (so the bytes
/// the chain hashes are exactly what was signed) and `sig` must verify over
/// the canonical record without `sig` and `hash`.
pub(crate) fn check_signature(line: &[u8], key: &VerifyingKey) -> Result<(), Fault> {
    let bad = |detail: String| Fault::new(BrokenKind::BadSignature, detail);
    let mut map: Map<String, Value> = serde_json::from_slice(line)
        .map_err(|e| Fault::new(BrokenKind::Malformed, format!("not a JSON object: {e}")))?;
    let prefix = body_prefix(line)
        .ok_or_else(|| Fault::new(BrokenKind::Malformed, "\"hash\" is not the last member"))?;
    map.remove("hash");
    let mut body = Vec::with_capacity(line.len());
    write_canonical(&map, &mut body).map_err(|e| bad(format!("cannot re-encode: {e}")))?;
    if body.split_last() != Some((&b'}', prefix)) {
        return Err(bad(
            "record bytes are not the canonical encoding of its content".to_owned(),
        ));
    }
    let sig_b64 = match map.remove("sig") {
        Some(Value::String(s)) => s,
        _ => return Err(bad("\"sig\" is not a string".to_owned())),
    };
    let sig_bytes = STANDARD
        .decode(sig_b64.as_bytes())
        .map_err(|e| bad(format!("\"sig\" is not base64: {e}")))?;
    let sig = Signature::from_slice(&sig_bytes)
        .map_err(|_| bad(format!("\"sig\" is {} bytes, expected 64", sig_bytes.len())))?;
    body.clear();
    write_canonical(&map, &mut body).map_err(|e| bad(format!("cannot re-encode: {e}")))?;
    key.verify_strict(&body, &sig)
        .map_err(|_| bad("signature does not verify with the audit public key".to_owned()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use zeroize::Zeroizing;

    use super::*;
    use crate::audit::AuditKey;

    fn fields(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn sealed(fields_in: Value) -> (Vec<u8>, String, AuditKey) {
        let key = AuditKey::from_seed(Zeroizing::new([1u8; 32]));
        let mut f = fields(fields_in);
        let mut out = Vec::new();
        let hash = seal(
            &mut f,
            7,
            "2026-11-23T06:00:00.123Z",
            GENESIS_HASH,
            key.signing_key(),
            &mut Vec::new(),
            &mut out,
        )
        .unwrap();
        (out, hash, key)
    }

    #[test]
    fn canonical_sorts_nested_members() {
        let v = fields(json!({"b": 1, "a": {"z": [true, {"y": null, "x": "é\n"}], "c": -2}}));
        let mut out = Vec::new();
        write_canonical(&v, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":{"c":-2,"z":[true,{"x":"é\n","y":null}]},"b":1}"#
        );
    }

    #[test]
    fn sealed_line_has_documented_layout() {
        let (line, hash, key) = sealed(json!({"outcome": "issued", "serial": 42}));
        let text = std::str::from_utf8(&line).unwrap();
        assert!(
            text.ends_with(&format!(",\"hash\":\"{hash}\"}}\n")),
            "{text}"
        );
        assert!(
            text.starts_with("{\"outcome\":\"issued\",\"prev_hash\":\"000"),
            "{text}"
        );
        let body = text
            .trim_end()
            .strip_suffix(&format!(",\"hash\":\"{hash}\"}}"))
            .unwrap();
        assert_eq!(hex::encode(Sha256::digest(format!("{body}}}"))), hash);
        let trimmed = line.strip_suffix(b"\n").unwrap();
        let head = check_line(trimmed).unwrap();
        assert_eq!(
            (head.seq, head.prev_hash, head.hash),
            (7, GENESIS_HASH, hash.as_str())
        );
        check_signature(trimmed, &key.verifying_key()).unwrap();
        let other = AuditKey::from_seed(Zeroizing::new([2u8; 32]));
        let fault = check_signature(trimmed, &other.verifying_key()).unwrap_err();
        assert_eq!(fault.kind, BrokenKind::BadSignature);
    }

    #[test]
    fn non_canonical_bytes_fail_the_signature_check() {
        let (line, _, key) = sealed(json!({"outcome": "issued"}));
        let text = std::str::from_utf8(line.strip_suffix(b"\n").unwrap()).unwrap();
        // Same content with a duplicate member: parses, hashes, but the
        // bytes are not what was signed.
        let prefix = text.rsplit_once(",\"hash\"").unwrap().0;
        let forged = format!("{{\"outcome\":\"denied\",{}}}", &prefix[1..]);
        let forged_body = forged.strip_suffix('}').unwrap();
        let line2 = format!(
            "{forged_body},\"hash\":\"{}\"}}",
            String::from_utf8(body_hash(forged_body.as_bytes()).to_vec()).unwrap()
        );
        check_line(line2.as_bytes()).unwrap();
        let fault = check_signature(line2.as_bytes(), &key.verifying_key()).unwrap_err();
        assert_eq!(fault.kind, BrokenKind::BadSignature, "{}", fault.detail);
    }

    #[test]
    fn broken_lines_are_classified() {
        let (line, _, _) = sealed(json!({"outcome": "issued"}));
        let line = line.strip_suffix(b"\n").unwrap();
        let kind = |l: &[u8]| check_line(l).unwrap_err().kind;
        assert_eq!(kind(b"not json"), BrokenKind::Malformed);
        assert_eq!(kind(b"{\"seq\":1}"), BrokenKind::Malformed);
        assert_eq!(kind(&line[..line.len() - 1]), BrokenKind::Malformed);
        let mut modified = line.to_vec();
        modified[2] = b'0';
        assert_eq!(kind(&modified), BrokenKind::HashMismatch);
        let text = std::str::from_utf8(line)
            .unwrap()
            .replace("issued", "denied");
        assert_eq!(kind(text.as_bytes()), BrokenKind::HashMismatch);
    }
}
