//! Integration tests for the command firewall (one binary, as house style).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test on error"
)]

mod config;
mod dash;
mod fixtures;
mod generate;
mod props;
mod table;
