//! Dev-only test bed: real OpenSSH `sshd` instances, test users, service
//! processes and network namespaces, for the integration tests of the other
//! crates and for the demo.
//!
//! Everything here is synchronous std code so it can be called from plain
//! `#[test]`s and from `#[tokio::test]`s alike. Errors are `anyhow` with
//! context: this crate never ships, and a test only needs to print why its
//! setup failed.
//!
//! Tests that need root, `sshd` or network namespaces start with
//! [`sshd_or_skip`] / [`netns_or_skip`]: locally a missing prerequisite skips
//! the test with a `SKIP` line, in CI (`CI=true`) it fails the test.
//!
//! # Layout
//! - [`prereq`]: skip-or-fail checks for root, `sshd` and `ip netns`.
//! - [`users`]: idempotent test accounts and temporary sudoers drop-ins.
//! - [`sshd`]: a private `sshd` trusting a test user CA, with its own host key
//!   and log, optionally inside a network namespace.
//! - [`client`]: the OpenSSH `ssh` client pinned to such an `sshd`, plus key
//!   and certificate file writers.
//! - [`process`]: workspace binary lookup, free ports, polling, and child
//!   processes that are stopped when dropped.
//! - [`monitor`]: GETs on a monitor listener and an independent OpenMetrics
//!   parse of `/metrics`.
//! - [`netns`]: network namespaces, veth links and a ready-made
//!   client → bastion(s) → target topology behind a safety `unreachable`
//!   route.
//! - [`postgres`]: a private PostgreSQL cluster per test (initdb, pg_ctl),
//!   stoppable like a crash and startable again.
//! - [`stack`]: the infrabroker services as real processes (dev PKI, signer).
//! - [`disk`]: a tiny tmpfs to run a service out of space on purpose.
//! - [`rsyslog`]: a private `rsyslogd` receiving syslog on loopback UDP,
//!   TCP and TLS.

pub mod client;
pub mod custody;
pub mod disk;
pub mod monitor;
pub mod netns;
pub mod postgres;
pub mod prereq;
pub mod process;
pub mod rsyslog;
pub mod shim;
pub mod sshd;
pub mod stack;
pub mod users;
pub mod witness;

mod sys;

pub use client::{SshClient, SshTarget, ssh, write_cert, write_private_key};
pub use disk::SmallDisk;
pub use netns::{BastionChain, Hop, Netns, TestNet};
pub use prereq::{have_sshd, is_root, netns_or_skip, require, sshd_or_skip};
pub use process::{
    ChildGuard, bin_path, broker_ctl, free_port, spawn_logged, spawn_service, wait_until,
};
pub use sshd::{Sshd, SshdOptions};
pub use users::{SudoersGuard, ensure_user, set_login_shell, sudoers, uid_of};
