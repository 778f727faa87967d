//! Integration tests of the broker: the engine and the real `broker`
//! binary against real `sshd`s (some inside network namespaces) and the
//! real `signer` process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed setup aborts the test with its message"
)]

mod chain;
mod conformance;
mod direct;
mod failover;
mod files;
mod firewall;
mod harness;
mod http_harness;
mod http_limits;
mod http_mcp;
mod http_rest;
mod login_shells;
mod mcp_stdio;
mod monitor;
mod refusals;
mod revocation;
mod sealed;
mod sessions;
mod stopping;
