//! Integration tests for the command firewall (one binary, as house style).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test on error"
)]

mod config;
mod dash;
mod exec_bypass;
mod fixtures;
mod generate;
mod props;
mod structured;
mod table;
