//! `broker-ctl audit consistency`: two checkpoints of one log, the newer
//! extending the older (RFC 9162 consistency proof built from the log).

use std::path::Path;
use std::process::ExitCode;

use infrabroker_common::audit::checkpoint::Checkpoint;
use infrabroker_common::audit::{merkle, parse_public_key};

use super::audit::hex;
use super::{Failure, Outcome};

fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::other(format!("cannot read {}: {e}", path.display())))
}

pub fn consistency(old: &Path, new: &Path, pubkey: &Path, log: &Path, json: bool) -> Outcome {
    let key = parse_public_key(&read(pubkey)?)
        .map_err(|e| Failure::other(format!("{}: {e}", pubkey.display())))?;
    let open = |p: &Path| {
        Checkpoint::open_own(&read(p)?, &key)
            .map_err(|e| Failure::bad(format!("{}: {e}", p.display())))
    };
    let (a, b) = (open(old)?, open(new)?);
    let leaves =
        merkle::log_leaves(log).map_err(|e| Failure::other(format!("{}: {e}", log.display())))?;
    let verdict = check(&a, &b, &leaves);
    let proof: Vec<String> = usize::try_from(a.size)
        .ok()
        .zip(usize::try_from(b.size).ok())
        .and_then(|(m, n)| merkle::consistency_proof(leaves.get(..n)?, m))
        .unwrap_or_default()
        .iter()
        .map(hex)
        .collect();
    if json {
        println!(
            "{}",
            serde_json::json!({"ok": verdict.is_ok(), "error": verdict.as_ref().err(),
                "old_size": a.size, "new_size": b.size, "proof": proof})
        );
    }
    match verdict {
        Ok(()) => {
            if !json {
                println!("consistent: {} records extend to {}", a.size, b.size);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => Err(Failure::bad(why)),
    }
}

/// Same origin, the log extends the newer one, and the proof from the log
/// links the two roots.
fn check(a: &Checkpoint, b: &Checkpoint, leaves: &[merkle::Hash]) -> Result<(), String> {
    if a.origin != b.origin {
        return Err(format!("different logs: {:?} and {:?}", a.origin, b.origin));
    }
    if a.size > b.size {
        return Err(format!(
            "the old checkpoint ({}) is larger than the new ({})",
            a.size, b.size
        ));
    }
    b.check_log(leaves)
        .map_err(|e| format!("new checkpoint: {e}"))?;
    let (m, n) = (a.size as usize, b.size as usize);
    if m == 0 {
        return Ok(());
    }
    let proof = merkle::consistency_proof(&leaves[..n], m).unwrap_or_default();
    if merkle::verify_consistency(a.size, b.size, &a.root, &b.root, &proof) {
        Ok(())
    } else {
        Err("inconsistent: the old checkpoint is not a prefix of the new one (fork)".to_owned())
    }
}
