//! SSH with russh: one authenticated connection per hop, the server's key
//! pinned to the signer's `host_key`, the next hop dialled through the
//! previous one's `direct-tcpip` channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use russh::client::{self, AuthResult, Handle};
use russh::keys::{Certificate, PrivateKey, PublicKey, PublicKeyOrCertificate};

use crate::api::ToolError;

/// Accepts exactly the pinned host key.
#[derive(Debug)]
pub struct Pinned {
    expected: PublicKey,
    /// Set when the server offered another key, to tell a mismatch apart
    /// from other connection failures.
    mismatch: Arc<AtomicBool>,
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
            self.mismatch.store(true, Ordering::Relaxed);
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

/// A connection whose key exchange is done and whose host key matched the
/// pin, not yet authenticated: the broker starts it while the signer is
/// still judging, so the host sees no credential for a refused command.
pub struct Handshake {
    handle: Conn,
    name: String,
    user: String,
    mismatch: Arc<AtomicBool>,
    done_at: Instant,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("host", &self.name)
            .finish()
    }
}

fn failure(name: &str, mismatch: &AtomicBool, reason: String) -> ToolError {
    if mismatch.load(Ordering::Relaxed) {
        ToolError::HostKeyMismatch {
            host: name.to_owned(),
        }
    } else {
        ToolError::Connect {
            host: name.to_owned(),
            reason,
        }
    }
}

/// Dials `hop` (directly when `via` is `None`, else through `via`'s
/// `direct-tcpip`) up to the end of the key exchange, within `timeout`.
pub async fn handshake(
    hop: &HopTarget,
    via: Option<&Conn>,
    timeout: Duration,
) -> Result<Handshake, ToolError> {
    let mismatch = Arc::new(AtomicBool::new(false));
    let handler = Pinned {
        expected: hop.host_key.clone(),
        mismatch: mismatch.clone(),
    };
    let cfg = config_for(&hop.host_key);
    let fail = |reason: String| failure(&hop.name, &mismatch, reason);
    let work = async {
        match via {
            None => client::connect(cfg, hop.addr.as_str(), handler)
                .await
                .map_err(|e| fail(e.to_string())),
            Some(prev) => {
                let (host, port) = split_addr(&hop.addr)
                    .ok_or_else(|| fail(format!("bad address {:?}", hop.addr)))?;
                let ch = prev
                    .channel_open_direct_tcpip(host, port, "127.0.0.1", 0)
                    .await
                    .map_err(|e| fail(format!("the bastion refused to forward: {e}")))?;
                client::connect_stream(cfg, ch.into_stream(), handler)
                    .await
                    .map_err(|e| fail(e.to_string()))
            }
        }
    };
    let handle = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| fail(format!("no SSH session within {} s", timeout.as_secs())))??;
    Ok(Handshake {
        handle,
        name: hop.name.clone(),
        user: hop.user.clone(),
        mismatch,
        done_at: Instant::now(),
    })
}

impl Handshake {
    /// Time since the key exchange ended (sshd drops a connection that
    /// does not authenticate within its `LoginGraceTime`).
    pub fn age(&self) -> Duration {
        self.done_at.elapsed()
    }

    /// Authenticates with `key` + `cert` within `timeout`.
    pub async fn authenticate(
        self,
        key: Arc<PrivateKey>,
        cert: Certificate,
        timeout: Duration,
    ) -> Result<Conn, ToolError> {
        let Handshake {
            mut handle,
            name,
            user,
            mismatch,
            ..
        } = self;
        let auth = handle.authenticate_openssh_cert(user, key, cert);
        let result = tokio::time::timeout(timeout, auth).await.map_err(|_| {
            failure(
                &name,
                &mismatch,
                format!("no SSH session within {} s", timeout.as_secs()),
            )
        })?;
        match result
            .map_err(|e| failure(&name, &mismatch, format!("authentication failed: {e}")))?
        {
            AuthResult::Success => Ok(handle),
            AuthResult::Failure { .. } => Err(ToolError::AuthRefused { host: name }),
        }
    }
}

/// [`handshake`] then [`Handshake::authenticate`], each within `timeout`.
pub async fn connect(
    hop: &HopTarget,
    via: Option<&Conn>,
    key: Arc<PrivateKey>,
    cert: Certificate,
    timeout: Duration,
) -> Result<Conn, ToolError> {
    handshake(hop, via, timeout)
        .await?
        .authenticate(key, cert, timeout)
        .await
}

/// Dials `hop` directly and checks only that it presents the pinned host
/// key (no authentication): `broker-ctl doctor`'s host check, through the
/// same pinning code the broker uses for real calls.
pub async fn check_host_key(hop: &HopTarget, timeout: Duration) -> Result<(), ToolError> {
    let done = handshake(hop, None, timeout).await?;
    let _ = done
        .handle
        .disconnect(russh::Disconnect::ByApplication, "", "")
        .await;
    Ok(())
}

/// Splits `host:port` / `[v6]:port`.
pub fn split_addr(addr: &str) -> Option<(String, u32)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), u32::from(port)))
}
