//! `broker-ctl audit vkey` (the log's signed-note verifier key, what a
//! witness is told to trust) and `audit cosignatures` (which witnesses
//! cosigned a checkpoint, checked with their own keys).

use std::path::Path;
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use infrabroker_common::audit::checkpoint::{Checkpoint, key_id};
use infrabroker_common::audit::witness::WitnessKey;

use super::audit::read_pubkey;
use super::{Failure, Outcome};

/// `audit vkey --pubkey P --origin O`: `<origin>+<key id>+<base64(0x01 ‖ key)>`.
pub fn vkey(pubkey: &Path, origin: &str) -> Outcome {
    let (_, key) = read_pubkey(pubkey)?;
    let mut raw = vec![0x01];
    raw.extend_from_slice(key.as_bytes());
    println!(
        "{origin}+{}+{}",
        ::hex::encode(key_id(origin, &key)),
        STANDARD.encode(raw)
    );
    Ok(ExitCode::SUCCESS)
}

/// `audit cosignatures CP --pubkey P --witness VKEY…`: the log's own
/// signature must verify, and each named witness must have cosigned.
pub fn cosignatures(cp: &Path, pubkey: &Path, witnesses: &[String], json: bool) -> Outcome {
    let (_, key) = read_pubkey(pubkey)?;
    let text = std::fs::read_to_string(cp)
        .map_err(|e| Failure::other(format!("cannot read {}: {e}", cp.display())))?;
    let checkpoint = Checkpoint::open_own(&text, &key)
        .map_err(|e| Failure::bad(format!("{}: {e}", cp.display())))?;
    let body = checkpoint.body();
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for vkey in witnesses {
        let w =
            WitnessKey::parse(vkey).map_err(|e| Failure::bad(format!("--witness {vkey}: {e}")))?;
        match text.lines().find_map(|l| w.verify(l, &body)) {
            Some(ts) => found.push((w.name, ts)),
            None => missing.push(w.name),
        }
    }
    if json {
        let found: Vec<_> = found
            .iter()
            .map(|(n, ts)| serde_json::json!({"witness": n, "timestamp": ts}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"ok": missing.is_empty(), "size": checkpoint.size,
                "cosigned_by": found, "missing": missing})
        );
    } else {
        for (name, ts) in &found {
            println!(
                "{}: size {} cosigned by {name} at {ts}",
                cp.display(),
                checkpoint.size
            );
        }
    }
    if !missing.is_empty() {
        return Err(Failure::bad(format!(
            "{}: no valid cosignature by {}",
            cp.display(),
            missing.join(", ")
        )));
    }
    Ok(ExitCode::SUCCESS)
}
