//! `broker-ctl audit verify|tail`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::ExitCode;

use infrabroker_common::audit::{VerifyError, VerifyOptions, parse_public_key, verify_file};
use infrabroker_common::display::escape_json_line;

use super::{Failure, Outcome};

pub fn verify(file: &Path, pubkey: &Path, all_signatures: bool, json: bool) -> Outcome {
    let text = std::fs::read_to_string(pubkey)
        .map_err(|e| Failure::other(format!("cannot read {}: {e}", pubkey.display())))?;
    let key = parse_public_key(&text)
        .map_err(|e| Failure::other(format!("{}: {e}", pubkey.display())))?;
    match verify_file(file, &key, VerifyOptions { all_signatures }) {
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
                    file.display(),
                    report.records,
                    report.head_seq,
                    report.head_hash
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
            Err(Failure::bad(format!("{}: broken: {e}", file.display())))
        }
        Err(e) => Err(Failure::other(format!("{}: {e}", file.display()))),
    }
}

/// The last `n` records, one JSON line each. Characters that would act on
/// the terminal or hide text (controls, bidi, zero-width, …) are written as
/// JSON `\uXXXX` escapes: the line still parses to the same record.
pub fn tail(file: &Path, n: usize) -> Outcome {
    let f = std::fs::File::open(file)
        .map_err(|e| Failure::other(format!("cannot open {}: {e}", file.display())))?;
    let mut last = std::collections::VecDeque::with_capacity(n + 1);
    for line in BufReader::new(f).lines() {
        let line = line.map_err(|e| Failure::other(format!("{}: {e}", file.display())))?;
        last.push_back(line);
        if last.len() > n {
            last.pop_front();
        }
    }
    for l in last {
        println!("{}", escape_json_line(&l));
    }
    Ok(ExitCode::SUCCESS)
}
