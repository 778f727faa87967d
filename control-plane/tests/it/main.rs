//! Integration tests of the control plane: the real `control-plane`,
//! `signer` and `broker-ctl` binaries, broker engines and real `sshd`s.
//! Build the binaries first: `cargo build --workspace --bins`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed setup aborts the test with its message"
)]

mod approvals;
mod audit;
mod confirm;
mod display;
mod forwarder;
mod guardrails;
mod harness;
mod held;
mod identities;
mod limits;
mod mcp_wait;
mod monitor;
mod notify;
mod replicas;
mod reviewer;
mod web;
