//! `broker-ctl`: the operator's command line for infrabroker.
//!
//! Exit codes: 0 success; 1 the thing checked is bad (a broken audit chain,
//! a refused command in `policy explain`); 2 usage errors (from clap);
//! 64 invalid configuration; 69 a service could not be reached or refused
//! the call; 70 any other failure.

mod commands;

use std::process::ExitCode;

use clap::Parser;

use crate::commands::{Cli, Failure};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(Failure { code, message }) => {
            eprintln!("broker-ctl: {message}");
            ExitCode::from(code)
        }
    }
}
