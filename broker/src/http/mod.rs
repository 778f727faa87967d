//! The network frontends: MCP over Streamable HTTP behind an OAuth 2.1
//! resource server (`broker mcp-http`), and the mTLS one-shot REST API
//! (`broker serve`). Both call the same [`crate::api::Tools`] as the stdio
//! frontend.
//!
//! # Layout
//! - [`settings`]: the `oauth` and `http` sections of `broker.json`.
//! - [`jws`]: compact JWS verification on ring with a fixed algorithm
//!   allowlist (RS256, ES256, EdDSA).
//! - [`jwks`]: OIDC discovery and the cached, rate-limited JWKS.
//! - [`oauth`]: bearer-token claim rules → the end user and groups.
//! - `mcp_http.rs`: protected-resource metadata, the bearer middleware,
//!   session binding and rmcp's Streamable HTTP service.
//! - `rest.rs`: `POST /v1/ssh_run` over mTLS.
//! - `limits.rs`: body size and read deadline, concurrent requests.
//! - `listen.rs`: the plain/TLS accept loop of `mcp-http` with connection,
//!   header, idle and shutdown limits.

pub mod jwks;
pub mod jws;
mod limits;
mod listen;
mod mcp_http;
pub mod oauth;
mod rest;
pub mod settings;

use std::net::SocketAddr;

pub use mcp_http::{run_mcp_http, serve_mcp_http};
pub use rest::{run_serve, serve_rest};

/// Why a network frontend could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Configuration missing or inconsistent for this frontend.
    #[error("{0}")]
    Setup(String),
    /// TLS material.
    #[error(transparent)]
    Tls(#[from] infrabroker_common::tls::TlsError),
    /// The engine (signer client, audit log).
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// The listening socket.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl HttpError {
    /// The process exit code: 65 for an audit log whose tail does not
    /// verify, 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            HttpError::Engine(e) => e.exit_code(),
            _ => 1,
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, HttpError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Listen { addr, source })
}
