//! SSH with russh: one authenticated connection per hop, the server's key
//! pinned to the signer's `host_key`, the next hop dialled through the
//! previous one's `direct-tcpip` channel.

use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, AuthResult, Handle};
use russh::keys::{Certificate, PrivateKey, PublicKey, PublicKeyOrCertificate};

use crate::api::ToolError;

/// Accepts exactly the pinned host key.
#[derive(Debug)]
pub struct Pinned {
    expected: PublicKey,
    /// Set when the server offered another key, to tell a mismatch apart
    /// from other connection failures.
    mismatch: Arc<std::sync::atomic::AtomicBool>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let ok = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.key_data() == self.expected.key_data()
            }
            PublicKeyOrCertificate::Certificate(_) => false,
        };
        if !ok {
            self.mismatch
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(ok)
    }
}

/// One hop to dial.
#[derive(Debug, Clone)]
pub struct HopTarget {
    /// Logical name (for errors).
    pub name: String,
    /// `host:port`.
    pub addr: String,
    /// Remote account.
    pub user: String,
    /// Pinned host key.
    pub host_key: PublicKey,
}

fn config_for(key: &PublicKey) -> Arc<client::Config> {
    let mut cfg = client::Config {
        nodelay: true,
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        ..Default::default()
    };
    // Ask for the pinned key's type first, so a host with several host keys
    // presents the one the signer vouches for.
    let mut algs = vec![key.algorithm()];
    algs.extend(
        cfg.preferred
            .key
            .iter()
            .filter(|a| **a != key.algorithm())
            .cloned(),
    );
    cfg.preferred.key = algs.into();
    Arc::new(cfg)
}

/// An authenticated SSH connection.
pub type Conn = Handle<Pinned>;

/// Dials `hop` (directly when `via` is `None`, else through `via`'s
/// `direct-tcpip`) and authenticates with `key` + `cert`.
pub async fn connect(
    hop: &HopTarget,
    via: Option<&Conn>,
    key: Arc<PrivateKey>,
    cert: Certificate,
    timeout: Duration,
) -> Result<Conn, ToolError> {
    let mismatch = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handler = Pinned {
        expected: hop.host_key.clone(),
        mismatch: mismatch.clone(),
    };
    let cfg = config_for(&hop.host_key);
    let connect_err = |reason: String| {
        if mismatch.load(std::sync::atomic::Ordering::Relaxed) {
            ToolError::HostKeyMismatch {
                host: hop.name.clone(),
            }
        } else {
            ToolError::Connect {
                host: hop.name.clone(),
                reason,
            }
        }
    };
    let work = async {
        let mut handle = match via {
            None => client::connect(cfg, hop.addr.as_str(), handler)
                .await
                .map_err(|e| connect_err(e.to_string()))?,
            Some(prev) => {
                let (host, port) = split_addr(&hop.addr)
                    .ok_or_else(|| connect_err(format!("bad address {:?}", hop.addr)))?;
                let ch = prev
                    .channel_open_direct_tcpip(host, port, "127.0.0.1", 0)
                    .await
                    .map_err(|e| connect_err(format!("the bastion refused to forward: {e}")))?;
                client::connect_stream(cfg, ch.into_stream(), handler)
                    .await
                    .map_err(|e| connect_err(e.to_string()))?
            }
        };
        match handle
            .authenticate_openssh_cert(hop.user.clone(), key, cert)
            .await
            .map_err(|e| connect_err(format!("authentication failed: {e}")))?
        {
            AuthResult::Success => Ok(handle),
            AuthResult::Failure { .. } => Err(ToolError::AuthRefused {
                host: hop.name.clone(),
            }),
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(connect_err(format!(
            "no SSH session within {} s",
            timeout.as_secs()
        ))),
    }
}

/// Dials `hop` directly and checks only that it presents the pinned host
/// key (no authentication): `broker-ctl doctor`'s host check, through the
/// same pinning code the broker uses for real calls.
pub async fn check_host_key(hop: &HopTarget, timeout: Duration) -> Result<(), ToolError> {
    let mismatch = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handler = Pinned {
        expected: hop.host_key.clone(),
        mismatch: mismatch.clone(),
    };
    let dial = client::connect(config_for(&hop.host_key), hop.addr.as_str(), handler);
    let result = tokio::time::timeout(timeout, dial).await;
    if mismatch.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ToolError::HostKeyMismatch {
            host: hop.name.clone(),
        });
    }
    let reason = match result {
        Ok(Ok(handle)) => {
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "", "")
                .await;
            return Ok(());
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no SSH handshake within {} s", timeout.as_secs()),
    };
    Err(ToolError::Connect {
        host: hop.name.clone(),
        reason,
    })
}

/// Splits `host:port` / `[v6]:port`.
pub fn split_addr(addr: &str) -> Option<(String, u32)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), u32::from(port)))
}
