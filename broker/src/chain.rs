//! From a planned chain of hops to authenticated SSH connections: one fresh
//! key and certificate per hop, then the hops dialled in order, each
//! through the previous one's `direct-tcpip`.
//!
//! Order matters for what is issued and for speed:
//! - The target's certificate is asked for first and alone: it may be
//!   refused or wait for an approval, and no bastion certificate is issued
//!   for a command that is refused (or could expire during a long wait).
//!   Bastion certificates are then signed concurrently.
//! - Meanwhile the first hop is dialled up to the end of the key exchange
//!   ([`PreDial`]): no credential is presented until the certificates are
//!   in hand, so a refused command costs the host an unauthenticated
//!   connection and nothing else. A handshake older than
//!   [`PREDIAL_MAX_AGE`] (an approval wait) is dropped and redone, well
//!   within sshd's `LoginGraceTime`.
//!
//! Every stage's milliseconds go into [`HopTiming`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use infrabroker_common::wire::{SignRequest, SignResponse};
use russh::keys::{Certificate, PrivateKey};
use tokio::task::JoinHandle;

use crate::api::{ExecRequest, HopTiming, ToolError, ms_since};
use crate::engine::{Caller, Credential, Engine, PlannedHop, fresh_key};
use crate::ssh::{self, Conn, Handshake, HopTarget};

/// A pre-dialled handshake older than this is not used.
pub const PREDIAL_MAX_AGE: Duration = Duration::from_secs(20);

/// The certificates of a chain and what the signer answered, per hop.
pub(crate) struct Certified {
    /// Keys and certificates, hop order.
    pub creds: Vec<Credential>,
    /// The signer's answers, hop order.
    pub answers: Vec<SignResponse>,
    /// Milliseconds of each hop's signing, hop order.
    pub sign_ms: Vec<u64>,
}

/// The first hop dialled in the background while certificates are signed;
/// aborted when dropped unused.
pub(crate) struct PreDial(JoinHandle<(Result<Handshake, ToolError>, u64)>);

impl PreDial {
    /// Starts the key exchange with `hop` (dialled directly).
    pub(crate) fn start(hop: &PlannedHop, timeout: Duration) -> PreDial {
        let target = hop_target(hop);
        PreDial(tokio::spawn(async move {
            let t = Instant::now();
            let r = ssh::handshake(&target, None, timeout).await;
            (r, ms_since(t))
        }))
    }

    async fn take(mut self) -> Option<(Result<Handshake, ToolError>, u64)> {
        (&mut self.0).await.ok()
    }
}

impl Drop for PreDial {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn hop_target(hop: &PlannedHop) -> HopTarget {
    HopTarget {
        name: hop.name.clone(),
        addr: hop.info.addr.clone(),
        user: hop.info.user.clone(),
        host_key: hop.host_key.clone(),
    }
}

type Signed = ((Credential, SignResponse), u64);

impl Engine {
    /// Keys and certificates for every hop: the target's with
    /// `target_req` (its `pubkey` filled in here) first, then the bastions'
    /// concurrently (see the module docs).
    pub(crate) async fn certify_with(
        &self,
        caller: &Caller,
        hops: &[PlannedHop],
        target_req: SignRequest,
    ) -> Result<Certified, ToolError> {
        let last = hops.len().saturating_sub(1);
        let no_command = ExecRequest {
            host: String::new(),
            command: String::new(),
            sudo: false,
            sudo_user: None,
            timeout: None,
        };
        let mut jobs = Vec::new();
        for (i, hop) in hops.iter().enumerate() {
            let key = fresh_key();
            let pubkey = key
                .public_key()
                .to_openssh()
                .map_err(|e| ToolError::Invalid(format!("key encoding: {e}")))?;
            let sreq = if i == last {
                SignRequest {
                    pubkey,
                    ..target_req.clone()
                }
            } else {
                self.sign_request(caller, hop, false, &no_command, pubkey)
            };
            jobs.push((key, sreq));
        }
        let api = self.hosts_cache().api().clone();
        let issue = move |(key, sreq): (PrivateKey, SignRequest)| {
            let api = api.clone();
            async move {
                let t = Instant::now();
                let resp = api.sign(&sreq).await?;
                let cert_line = resp.certificate.clone().ok_or_else(|| {
                    ToolError::SignerUnreachable("the signer answered without a certificate".into())
                })?;
                let cert = Certificate::from_openssh(&cert_line).map_err(|_| {
                    ToolError::SignerUnreachable("the signer sent an unreadable certificate".into())
                })?;
                let serial = resp.serial.unwrap_or_default();
                Ok::<Signed, ToolError>((((Arc::new(key), cert, serial), resp), ms_since(t)))
            }
        };
        let target_job = jobs
            .pop()
            .ok_or_else(|| ToolError::Invalid("empty chain".into()))?;
        let target = issue(target_job).await?;
        let mut out = Certified {
            creds: Vec::new(),
            answers: Vec::new(),
            sign_ms: Vec::new(),
        };
        let bastions = futures::future::join_all(jobs.into_iter().map(&issue)).await;
        for r in bastions.into_iter().chain([Ok(target)]) {
            let ((c, a), ms) = r?;
            out.creds.push(c);
            out.answers.push(a);
            out.sign_ms.push(ms);
        }
        Ok(out)
    }

    /// Dials the chain hop by hop, the first hop from `pre` when it is
    /// fresh. Returns every connection (the intermediate ones stay open
    /// while the target is used) and each hop's timing.
    pub(crate) async fn dial_chain(
        &self,
        hops: &[PlannedHop],
        certified: Certified,
        mut pre: Option<PreDial>,
    ) -> Result<(Vec<Conn>, Vec<HopTiming>), ToolError> {
        let timeout = self.config().connect_timeout;
        let mut conns: Vec<Conn> = Vec::new();
        let mut timings = Vec::new();
        let hops_creds = hops.iter().zip(certified.creds).zip(certified.sign_ms);
        for ((hop, (key, cert, _)), sign_ms) in hops_creds {
            let target = hop_target(hop);
            let early = match pre.take() {
                Some(p) => p.take().await,
                None => None,
            };
            let (shake, connect_ms) = match early {
                Some((Ok(h), ms)) if h.age() < PREDIAL_MAX_AGE => (h, ms),
                Some((Err(e), _)) => return Err(e),
                _ => {
                    let t = Instant::now();
                    (
                        ssh::handshake(&target, conns.last(), timeout).await?,
                        ms_since(t),
                    )
                }
            };
            let t = Instant::now();
            let conn = shake.authenticate(key, cert, timeout).await?;
            timings.push(HopTiming {
                host: hop.name.clone(),
                sign_ms,
                connect_ms,
                auth_ms: ms_since(t),
            });
            conns.push(conn);
        }
        Ok((conns, timings))
    }
}
