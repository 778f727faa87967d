//! Sealed exec: the envelope a sealed host's shim needs to run a session
//! command, minted only for a session preflight the policy allowed (the
//! same decision as any dry run), with [`infrabroker_shim::envelope`]'s
//! format so the shim and the signer cannot disagree about it.

use std::time::{SystemTime, UNIX_EPOCH};

use infrabroker_common::wire::{Purpose, Role, SignRequest};
use infrabroker_shim::Claims;

use super::{Plan, Runtime};

/// How long an envelope may wait before its shim runs it. The broker
/// sends it at once; the shim refuses lifetimes past its
/// `max_lifetime_seconds` (300 by default).
pub const LIFETIME_SECONDS: u64 = 120;

/// The envelope for `req`, judged into `plan`, and its nonce (for the
/// audit record); `None` unless the host is sealed, this is an allowed
/// session preflight with a command, and the envelope key is loaded.
pub fn mint(rt: &Runtime, req: &SignRequest, plan: &Plan) -> Option<(String, String)> {
    let host = rt.config.hosts.get(&plan.host)?;
    host.sealed_exec.as_ref()?;
    let preflight = req.dry_run && req.role == Role::Target && req.purpose == Purpose::Session;
    if !preflight || !plan.decision.allowed || req.command.is_empty() {
        return None;
    }
    let key = rt.envelope_key()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    let sudo_user = plan
        .elevation
        .as_deref()
        .and_then(|e| e.strip_prefix("sudo:"));
    let claims = Claims {
        nonce: Claims::new_nonce(),
        host: host.name.clone(),
        principal: host.principal.clone(),
        command: req.command.clone(),
        sudo: sudo_user.is_some(),
        sudo_user: sudo_user.filter(|u| *u != "root").map(str::to_owned),
        expires: now + LIFETIME_SECONDS,
        timeout: req.timeout_seconds,
    };
    Some((claims.seal(key), claims.nonce))
}
