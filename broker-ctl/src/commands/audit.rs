//! `broker-ctl audit verify|checkpoint|prove` (`tail` is `audit_tail`).

use std::path::Path;
use std::process::ExitCode;

use infrabroker_common::audit::checkpoint::Checkpoint;
use infrabroker_common::audit::merkle;
use infrabroker_common::audit::{
    AuditKey, VerifyError, VerifyOptions, parse_public_key, verify_file,
};

use super::{Failure, Outcome};

pub fn verify(
    file: &Path,
    pubkey: &Path,
    all_signatures: bool,
    checkpoint: Option<&Path>,
    json: bool,
) -> Outcome {
    let label = file.display().to_string();
    verify_labelled(file, &label, pubkey, all_signatures, checkpoint, json)
}

/// [`verify`], naming the log `label` in what it prints.
pub fn verify_labelled(
    file: &Path,
    label: &str,
    pubkey: &Path,
    all_signatures: bool,
    checkpoint: Option<&Path>,
    json: bool,
) -> Outcome {
    let (text, key) = read_pubkey(pubkey)?;
    let result = verify_file(file, &key, VerifyOptions { all_signatures });
    if let (Ok(_), Some(cp)) = (&result, checkpoint)
        && let Err(why) = check_checkpoint(file, cp, &text)
    {
        if json {
            println!("{}", serde_json::json!({"ok": false, "error": why}));
        }
        return Err(Failure::bad(format!("{}: {why}", label)));
    }
    match result {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": true, "records": report.records,
                        "head_seq": report.head_seq, "head_hash": report.head_hash})
                );
            } else {
                println!(
                    "{}: intact, {} records, head seq {} hash {}",
                    label, report.records, report.head_seq, report.head_hash
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ VerifyError::Broken { .. }) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": e.to_string()})
                );
            }
            Err(Failure::bad(format!("{}: broken: {e}", label)))
        }
        Err(e) => Err(Failure::other(format!("{}: {e}", label))),
    }
}

/// The audit public key file's text and the key it holds.
pub(super) fn read_pubkey(path: &Path) -> Result<(String, ed25519_dalek::VerifyingKey), Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::other(format!("cannot read {}: {e}", path.display())))?;
    let key =
        parse_public_key(&text).map_err(|e| Failure::other(format!("{}: {e}", path.display())))?;
    Ok((text, key))
}

/// Checks the checkpoint note's signature, then that the log extends it.
pub(super) fn check_checkpoint(file: &Path, cp: &Path, pubkey: &str) -> Result<(), String> {
    let key = parse_public_key(pubkey).map_err(|e| e.to_string())?;
    let text =
        std::fs::read_to_string(cp).map_err(|e| format!("cannot read {}: {e}", cp.display()))?;
    let checkpoint =
        Checkpoint::open_own(&text, &key).map_err(|e| format!("{}: {e}", cp.display()))?;
    let leaves = merkle::log_leaves(file).map_err(|e| e.to_string())?;
    checkpoint.check_log(&leaves)
}

/// A checkpoint note over every complete record of `file`. The log is not
/// verified here: run `audit verify` first.
pub fn checkpoint(file: &Path, seed: &Path, origin: &str) -> Outcome {
    if origin.is_empty() || origin.contains(['\n', ' ']) {
        return Err(Failure::bad(
            "--origin must be one non-empty word (no spaces or newlines)".to_owned(),
        ));
    }
    let key = AuditKey::from_seed_file(seed).map_err(|e| Failure::other(e.to_string()))?;
    let leaves =
        merkle::log_leaves(file).map_err(|e| Failure::other(format!("{}: {e}", file.display())))?;
    let cp = Checkpoint {
        origin: origin.to_owned(),
        size: leaves.len() as u64,
        root: merkle::root(&leaves),
    };
    print!("{}", cp.sign_audit(origin, &key));
    Ok(ExitCode::SUCCESS)
}

/// The inclusion proof of record `seq` in the tree of all records.
pub fn prove(file: &Path, seq: u64, json: bool) -> Outcome {
    let leaves =
        merkle::log_leaves(file).map_err(|e| Failure::other(format!("{}: {e}", file.display())))?;
    let index = usize::try_from(seq.saturating_sub(1)).unwrap_or(usize::MAX);
    let proof = (seq > 0)
        .then(|| merkle::inclusion_proof(&leaves, index))
        .flatten()
        .ok_or_else(|| {
            Failure::bad(format!(
                "{}: no record seq {seq} ({} records)",
                file.display(),
                leaves.len()
            ))
        })?;
    let root = hex(&merkle::root(&leaves));
    let leaf = leaves.get(index).map(hex).unwrap_or_default();
    let path: Vec<String> = proof.iter().map(hex).collect();
    if json {
        println!(
            "{}",
            serde_json::json!({"seq": seq, "leaf_index": index, "tree_size": leaves.len(),
                "leaf_hash": leaf, "root": root, "proof": path})
        );
    } else {
        println!("seq {seq} of {} records, root {root}", leaves.len());
        println!("leaf {leaf}");
        for p in path {
            println!("  {p}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn hex(hash: &merkle::Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}
