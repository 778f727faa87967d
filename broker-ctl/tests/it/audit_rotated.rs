//! `broker-ctl audit verify OLD … NEW` over a rotated log: every file and
//! every link; a missing, reordered or swapped-in file is named.

use std::path::PathBuf;

use infrabroker_common::audit::AuditLog;
use serde_json::{Map, json};

use super::{ctl, text};

/// Three files: two rotated out, the current one; oldest first.
async fn rotated(dir: &std::path::Path) -> (Vec<PathBuf>, PathBuf) {
    let (key, pubkey) = super::audit_key(dir, 4);
    let path = dir.join("audit.log");
    let log = AuditLog::open(&path, key).unwrap();
    let mut files = Vec::new();
    for round in 0..3 {
        for i in 0..4 {
            let mut m = Map::new();
            m.insert("round".into(), json!(round));
            m.insert("i".into(), json!(i));
            log.append(m).await.unwrap();
        }
        if round < 2 {
            files.push(log.rotate().await.unwrap().archived);
        }
    }
    drop(log);
    files.push(path);
    (files, pubkey)
}

fn verify(files: &[&PathBuf], pubkey: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["audit", "verify"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    args.extend(["--pubkey", pubkey.to_str().unwrap()]);
    args.extend(extra);
    ctl(&args)
}

#[tokio::test]
async fn a_rotated_log_verifies_file_by_file_and_link_by_link() {
    let dir = tempfile::tempdir().unwrap();
    let (f, pubkey) = rotated(dir.path()).await;
    let o = verify(&[&f[0], &f[1], &f[2]], &pubkey, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("3 files, each continuing the one before"),
        "{}",
        text(&o)
    );
    let o = verify(&[&f[0], &f[1], &f[2]], &pubkey, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["files"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["files"][0]["records"], 5,
        "four records and audit_rotated"
    );

    for (list, culprit, why) in [
        (vec![&f[0], &f[2]], &f[2], "its previous_seq"),
        (
            vec![&f[1], &f[0], &f[2]],
            &f[0],
            "not an audit_continued record",
        ),
        (vec![&f[0], &f[2], &f[1]], &f[2], "its previous_seq"),
    ] {
        let o = verify(&list, &pubkey, &[]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let t = text(&o);
        assert!(
            t.contains(&format!("{} does not continue", culprit.display())),
            "{t}"
        );
        assert!(t.contains(why), "{why:?} not in {t}");
    }
}

/// A rotated-out file swapped for another valid chain of the same key
/// (what only a key holder can make) breaks its link to the file before
/// it (and the root the next file names): it is named.
#[tokio::test]
async fn a_rotated_out_file_replaced_by_another_chain_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (f, pubkey) = rotated(dir.path()).await;
    let other = tempfile::tempdir().unwrap();
    let (g, _) = rotated(other.path()).await;
    std::fs::copy(&g[1], &f[1]).unwrap();
    let o = verify(&[&f[0], &f[1], &f[2]], &pubkey, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{} does not continue", f[1].display())),
        "{}",
        text(&o)
    );
}
