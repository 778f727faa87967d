//! `broker-ctl audit verify OLD … NEW`: a log rotated into several files.
//! Each file is one chain, verified on its own; each file after the first
//! must begin with the `audit_continued` record the writer seals when it
//! rotates, naming the file before it: its last `seq` and `hash` and the
//! Merkle root of all its records. So a file removed from, inserted into
//! or reordered in the list, or one rewritten after it was rotated out, is
//! named. `--checkpoint` applies to the newest (last) file.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::ExitCode;

use infrabroker_common::audit::{VerifyOptions, VerifyReport, merkle, verify_file};
use serde_json::{Value, json};

use super::audit::{check_checkpoint, hex, read_pubkey};
use super::{Failure, Outcome};

/// Verifies `files` (oldest first) and the links between them.
pub fn verify(
    files: &[std::path::PathBuf],
    pubkey: &Path,
    all_signatures: bool,
    checkpoint: Option<&Path>,
    json: bool,
) -> Outcome {
    let (text, key) = read_pubkey(pubkey)?;
    let refuse = |msg: String| {
        if json {
            println!("{}", json!({"ok": false, "error": msg}));
        }
        Err(Failure::bad(msg))
    };
    let mut reports: Vec<(String, VerifyReport)> = Vec::new();
    for file in files {
        let label = file.display().to_string();
        let report = match verify_file(file, &key, VerifyOptions { all_signatures }) {
            Ok(r) => r,
            Err(e) => return refuse(format!("{label}: broken: {e}")),
        };
        if let Some((prev_label, prev)) = reports.last()
            && let Err(why) = check_link(Path::new(prev_label), prev, file)
        {
            return refuse(format!("{label} does not continue {prev_label}: {why}"));
        }
        reports.push((label, report));
    }
    if let (Some(cp), Some(last)) = (checkpoint, files.last())
        && let Err(why) = check_checkpoint(last, cp, &text)
    {
        return refuse(format!("{}: {why}", last.display()));
    }
    if json {
        let list: Vec<Value> = reports
            .iter()
            .map(|(f, r)| {
                json!({"file": f, "records": r.records, "head_seq": r.head_seq,
                    "head_hash": r.head_hash})
            })
            .collect();
        println!("{}", json!({"ok": true, "files": list}));
    } else {
        for (f, r) in &reports {
            println!(
                "{f}: intact, {} records, head seq {} hash {}",
                r.records, r.head_seq, r.head_hash
            );
        }
        println!("{} files, each continuing the one before", reports.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// `next`'s first record must be the `audit_continued` naming `prev`.
fn check_link(prev_path: &Path, prev: &VerifyReport, next: &Path) -> Result<(), String> {
    let file = std::fs::File::open(next).map_err(|e| e.to_string())?;
    let mut first = String::new();
    BufReader::new(file)
        .read_line(&mut first)
        .map_err(|e| e.to_string())?;
    let record: Value = serde_json::from_str(&first).map_err(|e| e.to_string())?;
    if record["event"] != "audit_continued" {
        return Err("its first record is not an audit_continued record".into());
    }
    let leaves = merkle::log_leaves(prev_path).map_err(|e| e.to_string())?;
    let root = hex(&merkle::root(&leaves));
    let want = [
        ("previous_seq", json!(prev.head_seq)),
        ("previous_hash", json!(prev.head_hash)),
    ];
    for (field, value) in want {
        if record[field] != value {
            return Err(format!(
                "its {field} is {}, the file before ends at {value}",
                record[field]
            ));
        }
    }
    let cp = &record["previous_checkpoint"];
    if cp["size"] != json!(leaves.len()) || cp["root"] != json!(root) {
        return Err(format!(
            "its previous_checkpoint ({cp}) is not the Merkle tree of the file before ({} records, root {root})",
            leaves.len()
        ));
    }
    Ok(())
}
