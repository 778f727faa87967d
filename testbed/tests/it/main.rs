//! Integration tests of the test bed against the real OpenSSH, sudo and
//! iproute2 of this machine.

// clippy's allow-unwrap-in-tests covers `#[test]` fns, not their helpers.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test on error")]

mod deploy;
mod netns;
mod prereq;
mod process;
mod sshd;
mod support;
mod users;
