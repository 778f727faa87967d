//! Integration tests for the command firewall (one binary, as house style).

mod config;
mod dash;
mod fixtures;
mod generate;
mod props;
mod table;
