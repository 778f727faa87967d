//! The integrity rule "never seal over an unverified record": a log edited
//! while the service was stopped, or behind its back between a failed write
//! and the reopen, is refused instead of continued.

use std::fs;
use std::path::Path;

use serde_json::Value;
use zeroize::Zeroizing;

use super::tests::{
    assert_broken, fail_then_lead_to, fields, forge_last, key, lines, log_with, parse, rehash,
    write_lines,
};
use super::*;

fn refused_seq(path: &Path, key: AuditKey) -> Option<u64> {
    let before = fs::read(path).unwrap();
    let err = AuditLog::open(path, key).unwrap_err();
    let text = err.to_string();
    assert!(err.is_unverified_tail(), "{err}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("--all-signatures"), "{text}");
    assert_eq!(
        fs::read(path).unwrap(),
        before,
        "a refused log is left as it was"
    );
    match err {
        AuditError::Unverified { seq, .. } => seq,
        _ => unreachable!(),
    }
}

#[test]
fn last_record_edited_while_stopped_is_refused_on_restart() {
    let (_dir, path) = log_with(10);
    forge_last(&path, "outcome", "denied");
    assert_eq!(refused_seq(&path, key()), Some(10));
    let err = AuditLog::open(&path, key()).unwrap_err().to_string();
    assert!(err.contains("(seq 10)"), "{err}");
}

#[test]
fn forged_record_appended_while_stopped_is_refused_on_restart() {
    let (_dir, path) = log_with(4);
    let mut all = lines(&path);
    let mut map = parse(&all[3]);
    let head = map["hash"].clone();
    map.insert("seq".into(), Value::from(5));
    map.insert("prev_hash".into(), head);
    map.insert("user".into(), Value::from("root"));
    all.push(rehash(map).0);
    write_lines(&path, &all);
    // Hash, seq and prev_hash all check out; only the signature does not.
    assert_broken(&path, 5, BrokenKind::BadSignature);
    assert_eq!(refused_seq(&path, key()), Some(5));
}

#[test]
fn log_signed_by_another_key_is_refused() {
    let (_dir, path) = log_with(2);
    let other = AuditKey::from_seed(Zeroizing::new([9u8; 32]));
    assert_eq!(refused_seq(&path, other), Some(2));
}

#[test]
fn recovery_after_a_failed_write_refuses_a_forged_tail() {
    let (_dir, real) = log_with(3);
    forge_last(&real, "host", "10.9.9.9:22");
    let before = fs::read(&real).unwrap();
    let (_link_dir, log) = fail_then_lead_to(&real);
    let err = log.append_blocking(fields(4)).unwrap_err().to_string();
    assert!(err.contains("unverified record (seq 3)"), "{err}");
    assert_eq!(fs::read(&real).unwrap(), before);
}
