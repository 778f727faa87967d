//! Integration tests of the signer: the real binary over mTLS, real OpenSSH
//! `sshd` and `ssh` for what a certificate lets a client do.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed setup aborts the test with its message"
)]

mod audit;
mod bad_input;
mod characters;
mod config_cli;
mod custody;
mod freeze;
mod harness;
mod krl;
mod listener;
mod rate_limit;
mod reload;
mod replicas;
mod ssh_rules;
mod witness;
