//! `broker-ctl pki init`: the dev/test PKI.

use std::path::PathBuf;
use std::process::ExitCode;

use infrabroker_common::pki::{PkiError, PkiOptions, init as make};

use super::{Failure, Outcome};

pub fn init(out: PathBuf, force: bool) -> Outcome {
    let mut opts = PkiOptions::new(out);
    opts.force = force;
    match make(&opts) {
        Ok(paths) => {
            println!("wrote the dev PKI to {}:", paths.out.display());
            for f in &paths.files {
                println!("  {:04o}  {:<28} {}", f.mode, file_name(&f.path), f.purpose);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ PkiError::Exists(_)) => Err(Failure::bad(format!("{e} (use --force to replace)"))),
        Err(e) => Err(Failure::other(e.to_string())),
    }
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
