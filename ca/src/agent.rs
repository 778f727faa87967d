//! An Ed25519 CA key held by an ssh-agent, signing through the agent
//! protocol (draft-miller-ssh-agent: `SSH_AGENTC_REQUEST_IDENTITIES` 11 →
//! 12, `SSH_AGENTC_SIGN_REQUEST` 13 → `SSH_AGENT_SIGN_RESPONSE` 14,
//! `SSH_AGENT_FAILURE` 5).
//!
//! Written by hand: the client side is two request types over a
//! length-prefixed stream, while the agent crates (`ssh-agent-lib`) bring
//! an async server framework and another `ssh-key` version with them.
//! Connections are pooled; one that errs is dropped, so an agent that
//! restarts at the same socket is picked up by the next request.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ssh_key::PublicKey;

use crate::pool::Pool;
use crate::{CaError, parse_ed25519_public};

const REQUEST_IDENTITIES: u8 = 11;
const IDENTITIES_ANSWER: u8 = 12;
const SIGN_REQUEST: u8 = 13;
const SIGN_RESPONSE: u8 = 14;
const FAILURE: u8 = 5;
/// Largest agent answer we read (an identity list of a few hundred keys).
const MAX_ANSWER: usize = 256 * 1024;
/// Longest one agent exchange (request written, answer read) may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A key behind an agent socket.
pub(crate) struct AgentKey {
    socket: PathBuf,
    public: PublicKey,
    blob: Vec<u8>,
    pool: Pool<UnixStream>,
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(s);
}

/// Reads SSH wire values from an answer.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*head))
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        if n > self.0.len() {
            return None;
        }
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(s)
    }
}

impl AgentKey {
    /// Connects to the agent and checks it holds `public_key`.
    pub(crate) fn open(
        socket: &Path,
        public_key: &str,
        pool_size: usize,
    ) -> Result<AgentKey, CaError> {
        let public = parse_ed25519_public(public_key)?;
        let blob = public
            .to_bytes()
            .map_err(|e| CaError::Invalid(format!("encoding the public key: {e}")))?;
        let key = AgentKey {
            socket: socket.to_owned(),
            public,
            blob,
            pool: Pool::new(pool_size),
        };
        let invalid = |e: CaError| CaError::Invalid(e.to_string());
        let mut stream = key.connect().map_err(invalid)?;
        let answer = exchange(&mut stream, &[REQUEST_IDENTITIES], IO_TIMEOUT).map_err(invalid)?;
        if !key.listed_in(&answer) {
            return Err(CaError::Invalid(format!(
                "the agent at {} does not hold the CA key {}",
                socket.display(),
                key.public.fingerprint(ssh_key::HashAlg::Sha256)
            )));
        }
        key.pool.lease()?.keep(stream);
        Ok(key)
    }

    pub(crate) fn public(&self) -> PublicKey {
        self.public.clone()
    }

    fn connect(&self) -> Result<UnixStream, CaError> {
        let stream = UnixStream::connect(&self.socket).map_err(|e| {
            CaError::Unavailable(format!(
                "cannot reach the ssh-agent at {}: {e}",
                self.socket.display()
            ))
        })?;
        Ok(stream)
    }

    /// Whether an identities answer lists our key.
    fn listed_in(&self, answer: &[u8]) -> bool {
        let Some((&IDENTITIES_ANSWER, rest)) = answer.split_first() else {
            return false;
        };
        let mut r = Reader(rest);
        let Some(n) = r.u32() else { return false };
        for _ in 0..n {
            let (Some(blob), Some(_comment)) = (r.string(), r.string()) else {
                return false;
            };
            if blob == self.blob {
                return true;
            }
        }
        false
    }

    /// Signs `msg` through the agent.
    pub(crate) fn sign(&self, msg: &[u8]) -> Result<[u8; 64], CaError> {
        let mut lease = self.pool.lease()?;
        let (mut stream, pooled) = match lease.idle.take() {
            Some(s) => (s, true),
            None => (self.connect()?, false),
        };
        let mut req = vec![SIGN_REQUEST];
        put_string(&mut req, &self.blob);
        put_string(&mut req, msg);
        req.extend_from_slice(&0u32.to_be_bytes());
        let answer = match exchange(&mut stream, &req, IO_TIMEOUT) {
            Ok(answer) => answer,
            // A kept connection to an agent that restarted since is dead;
            // signing is idempotent, so one try on a fresh connection.
            Err(_) if pooled => {
                stream = self.connect()?;
                exchange(&mut stream, &req, IO_TIMEOUT)?
            }
            Err(e) => return Err(e),
        };
        let raw = self.signature(&answer)?;
        lease.keep(stream);
        Ok(raw)
    }

    /// The raw Ed25519 signature in a sign answer.
    fn signature(&self, answer: &[u8]) -> Result<[u8; 64], CaError> {
        match answer.split_first() {
            Some((&SIGN_RESPONSE, rest)) => {
                let mut outer = Reader(rest);
                let mut sig = Reader(outer.string().unwrap_or_default());
                match (sig.string(), sig.string()) {
                    (Some(b"ssh-ed25519"), Some(raw)) => raw.try_into().map_err(|_| {
                        CaError::Unavailable(format!(
                            "the agent returned a {}-byte signature",
                            raw.len()
                        ))
                    }),
                    _ => Err(CaError::Unavailable(
                        "the agent's signature is not ssh-ed25519".into(),
                    )),
                }
            }
            Some((&FAILURE, _)) => Err(CaError::Unavailable(format!(
                "the ssh-agent at {} refused to sign (is the CA key {} still added?)",
                self.socket.display(),
                self.public.fingerprint(ssh_key::HashAlg::Sha256)
            ))),
            _ => Err(CaError::Unavailable(
                "the ssh-agent sent an unexpected answer".into(),
            )),
        }
    }
}

/// One request and its answer (length-prefixed frames), all of it within
/// `limit`: an agent that drips its answer a byte at a time cannot hold a
/// signing thread longer than that.
pub(crate) fn exchange(
    stream: &mut UnixStream,
    msg: &[u8],
    limit: Duration,
) -> Result<Vec<u8>, CaError> {
    let deadline = Instant::now() + limit;
    let mut frame = Vec::with_capacity(4 + msg.len());
    put_string(&mut frame, msg);
    let left = left_until(deadline)?;
    stream.set_write_timeout(Some(left)).map_err(io)?;
    stream.write_all(&frame).map_err(io)?;
    let mut len = [0u8; 4];
    read_by(stream, &mut len, deadline)?;
    let n = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
    if n == 0 || n > MAX_ANSWER {
        return Err(CaError::Unavailable(format!(
            "ssh-agent answer of {n} bytes"
        )));
    }
    let mut answer = vec![0u8; n];
    read_by(stream, &mut answer, deadline)?;
    Ok(answer)
}

fn io(e: std::io::Error) -> CaError {
    CaError::Unavailable(format!("ssh-agent: {e}"))
}

fn left_until(deadline: Instant) -> Result<Duration, CaError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(CaError::Unavailable(
            "ssh-agent: no complete answer in time".into(),
        ));
    }
    Ok(left)
}

/// Fills `buf` before `deadline`.
fn read_by(stream: &mut UnixStream, buf: &mut [u8], deadline: Instant) -> Result<(), CaError> {
    let mut filled = 0;
    while filled < buf.len() {
        stream
            .set_read_timeout(Some(left_until(deadline)?))
            .map_err(io)?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(CaError::Unavailable(
                    "ssh-agent closed the connection".into(),
                ));
            }
            Ok(n) => filled += n,
            // A read that timed out: the deadline check above decides.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(())
}
