//! Shared building blocks of infrabroker: the pieces every service needs and
//! that must behave identically everywhere.
//!
//! # Layout
//! - [`config`]: strict JWCC (JSON with comments) reading that reports every
//!   error with its JSON path, used by all service configs.
//! - [`force_command`]: how a judged command is handed to the account's
//!   login shell (base64 behind a fixed, shell-neutral decoder), for the
//!   signer's force-commands and the broker's session exec alike.
//! - [`wire`]: request and response types of the signer API.
//! - [`audit`]: the append-only, hash-chained, Ed25519-signed audit log with
//!   group commit, its verifier, signed checkpoints and witness cosigning.
//! - [`krl`]: OpenSSH key revocation lists, written (by the signer) and
//!   parsed (before `broker-ctl krl fetch` replaces a host's file).
//! - [`names`]: character rules for CNs, groups and end users.
//! - [`display`]: visible escaping of untrusted text for humans.
//! - [`redact`]: the `redact` rules that keep secrets out of logs,
//!   notifications and recordings.
//! - [`tls`]: rustls server/client setup (TLS 1.3, mandatory client
//!   certificates) and the mTLS HTTP accept loop.
//! - [`client`]: the mTLS JSON client services use toward each other, and
//!   [`client::web_client`] for endpoints outside the deployment's PKI
//!   (JWKS, webhooks, witnesses).
//! - [`monitor`]: `/metrics` (OpenMetrics), `/healthz` and `/readyz` of
//!   every service's monitor listener.
//! - [`conn`]: per-key connection slots and request-based idle deadlines
//!   shared by every listener.
//! - [`replicas`]: one client per replica URL with sticky failover, and the
//!   `url`-or-list config member that names them.
//! - [`service`]: logging, runtime and exit codes of the service binaries.
//! - [`pki`] (feature `pki`): the dev/test PKI behind `broker-ctl pki init`.

pub mod audit;
pub mod client;
pub mod config;
pub mod conn;
pub mod display;
pub mod force_command;
pub mod krl;
pub mod monitor;
pub mod names;
#[cfg(feature = "pki")]
pub mod pki;
pub mod redact;
pub mod replicas;
pub mod service;
pub mod tls;
pub mod wire;
