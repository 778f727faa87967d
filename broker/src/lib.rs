//! The infrabroker broker: runs an agent's command on a host over SSH with a
//! fresh Ed25519 key and a signer-issued certificate per hop, so nothing
//! reusable is ever in the agent's reach.
//!
//! # Layout
//! - [`api`] — the transport-free tool surface (types, errors, [`api::Tools`]).
//! - [`config`] — `broker.json`.
//! - [`signer`] — the signer client and the cached host view.
//! - [`confirm`] — asking the person at the MCP client to confirm a
//!   `user_confirm` request.
//! - [`ssh`] — russh connections with pinned host keys, hop through hop.
//! - [`exec`] — one command on one channel, capped and timed.
//! - [`engine`] — a tool call end to end, audited.
//! - [`cli`] — the `broker` command line and its modes.
//! - `chain` — keys, certificates and connections for a chain of hops,
//!   with per-stage timings.
//! - [`session`] — sessions in exec, shell and pty modes, recordings.
//! - [`mcp`] — the MCP frontend (rmcp) over stdio.
//! - [`http`] — network frontends: MCP over Streamable HTTP with OAuth, and
//!   the mTLS REST API.

mod abandon;
pub mod api;
mod chain;
pub mod cli;
pub mod config;
pub mod confirm;
pub mod engine;
pub mod exec;
pub mod http;
pub mod mcp;
pub mod metrics;
mod oneshots;
pub mod session;
pub mod signer;
pub mod ssh;
