//! Sealing and checking records outside the file writer, for a chain kept
//! elsewhere: the one global chain that signer replicas share in
//! PostgreSQL (`infrabroker-store`). The records are byte for byte those
//! of a log file, so an export of that chain verifies with
//! [`verify_file`](super::verify_file) like any log.

use ed25519_dalek::VerifyingKey;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::record::{self, GENESIS_HASH, RESERVED_FIELDS};
use super::{AuditError, AuditKey};

/// One sealed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Its `seq`.
    pub seq: u64,
    /// Its `hash`.
    pub hash: String,
    /// The whole line, without the trailing newline.
    pub line: String,
}

/// Seals `records` in order as the records after `(prev_seq, prev_hash)`
/// (`(0, GENESIS_HASH)` for an empty chain), all with one commit time.
/// Fails as a whole: a record with a reserved member, or one that cannot
/// be encoded, seals nothing.
pub fn seal_after(
    records: Vec<Map<String, Value>>,
    prev_seq: u64,
    prev_hash: &str,
    key: &AuditKey,
) -> Result<Vec<Sealed>, AuditError> {
    let ts = OffsetDateTime::now_utc()
        .format(super::writer::TS_FORMAT)
        .map_err(|e| AuditError::Write(format!("formatting the time: {e}")))?;
    let (mut seq, mut hash) = (prev_seq, prev_hash.to_owned());
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    let mut sealed = Vec::with_capacity(records.len());
    for mut fields in records {
        if let Some(name) = RESERVED_FIELDS.iter().find(|n| fields.contains_key(**n)) {
            return Err(AuditError::ReservedField((*name).to_owned()));
        }
        out.clear();
        seq += 1;
        hash = record::seal(
            &mut fields,
            seq,
            &ts,
            &hash,
            key.signing_key(),
            &mut scratch,
            &mut out,
        )
        .map_err(|e| AuditError::Write(format!("encoding the record: {e}")))?;
        out.pop(); // the newline
        let line = String::from_utf8(std::mem::take(&mut out))
            .map_err(|e| AuditError::Write(format!("record is not UTF-8: {e}")))?;
        sealed.push(Sealed {
            seq,
            hash: hash.clone(),
            line,
        });
    }
    Ok(sealed)
}

/// Checks one stored line completely — shape, hash and signature — and
/// returns its `(seq, hash, prev_hash)`. This is the check a chain's head
/// must pass before anything is sealed over it.
pub fn check_record(line: &str, key: &VerifyingKey) -> Result<(u64, String, String), String> {
    let head = record::check_line(line.as_bytes()).map_err(|f| f.detail)?;
    record::check_signature(line.as_bytes(), key).map_err(|f| f.detail)?;
    Ok((head.seq, head.hash.to_owned(), head.prev_hash.to_owned()))
}

/// `prev_hash` of a chain's first record.
pub fn genesis() -> &'static str {
    GENESIS_HASH
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use zeroize::Zeroizing;

    use super::*;

    #[test]
    fn sealed_records_chain_verify_and_refuse_reserved_members() {
        let key = AuditKey::from_seed(Zeroizing::new([7u8; 32]));
        let rec = |n: u64| match json!({"outcome": "issued", "serial": n}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let first = seal_after(vec![rec(1), rec(2)], 0, genesis(), &key).unwrap();
        let more = seal_after(vec![rec(3)], 2, &first[1].hash, &key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.jsonl");
        let text: String = first
            .iter()
            .chain(&more)
            .map(|s| format!("{}\n", s.line))
            .collect();
        std::fs::write(&path, text).unwrap();
        let report = super::super::verify_file(
            &path,
            &key.verifying_key(),
            super::super::VerifyOptions::default(),
        )
        .unwrap();
        assert_eq!(report.records, 3);
        let (seq, hash, prev) = check_record(&more[0].line, &key.verifying_key()).unwrap();
        assert_eq!(
            (seq, hash.as_str(), prev.as_str()),
            (3, more[0].hash.as_str(), first[1].hash.as_str())
        );
        let forged = more[0].line.replace("\"serial\":3", "\"serial\":4");
        assert!(check_record(&forged, &key.verifying_key()).is_err());
        let other = AuditKey::from_seed(Zeroizing::new([8u8; 32]));
        assert!(check_record(&more[0].line, &other.verifying_key()).is_err());
        let mut bad = rec(9);
        bad.insert("seq".into(), 1.into());
        assert!(matches!(
            seal_after(vec![bad], 0, genesis(), &key),
            Err(AuditError::ReservedField(_))
        ));
    }
}
