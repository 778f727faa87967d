//! The certificate a plan describes: built into a [`Draft`] and signed by
//! the host's CA, wherever its key lives.

use std::sync::Arc;

use infrabroker_ca::{Ca, CaError};
use infrabroker_common::wire::ReasonCode;
use ssh_key::PublicKey;
use ssh_key::certificate::{Builder, CertType};

use super::{BACKDATE_SECONDS, Denial, Plan, Runtime};

/// A signed certificate and its facts.
#[derive(Debug, Clone)]
pub struct Issued {
    /// OpenSSH certificate line.
    pub certificate: String,
    /// Serial.
    pub serial: u64,
    /// Unix seconds.
    pub valid_after: u64,
    /// Unix seconds.
    pub valid_before: u64,
    /// The signing CA's public key, `<algorithm> <base64>`.
    pub ca: String,
}

/// A certificate built and waiting for its CA's signature.
#[derive(Debug)]
pub struct Draft {
    builder: Builder,
    serial: u64,
    valid_after: u64,
    valid_before: u64,
    /// The CA that signs it.
    pub ca: Arc<Ca>,
}

/// Builds the certificate `plan` describes for `pubkey`, to be signed by
/// the host's CA ([`Draft::sign`]).
pub fn draft(
    rt: &Runtime,
    plan: &Plan,
    pubkey: &PublicKey,
    serial: u64,
    now: u64,
) -> Result<Draft, Denial> {
    let fail = |e: ssh_key::Error| {
        Denial::new(
            ReasonCode::SigningFailed,
            format!("certificate could not be built: {e}"),
        )
    };
    let host = rt
        .config
        .hosts
        .get(&plan.host)
        .ok_or_else(|| Denial::new(ReasonCode::HostUnknown, "host vanished during reload"))?;
    if plan.principal.is_empty() {
        return Err(Denial::new(
            ReasonCode::SigningFailed,
            "refusing a certificate without a principal",
        ));
    }
    let valid_after = now.saturating_sub(BACKDATE_SECONDS);
    let valid_before = now + plan.ttl;
    let nonce: [u8; 32] = rand::random();
    let mut b = Builder::new(
        nonce.to_vec(),
        pubkey.key_data().clone(),
        valid_after,
        valid_before,
    )
    .map_err(fail)?;
    b.serial(serial).map_err(fail)?;
    b.cert_type(CertType::User).map_err(fail)?;
    b.key_id(plan.key_id.clone()).map_err(fail)?;
    b.valid_principal(plan.principal.clone()).map_err(fail)?;
    if let Some(fc) = &plan.force_command {
        b.critical_option("force-command", fc.clone())
            .map_err(fail)?;
    }
    if let Some(sa) = &plan.source_address {
        b.critical_option("source-address", sa.clone())
            .map_err(fail)?;
    }
    if plan.permit_port_forwarding {
        b.extension("permit-port-forwarding", "").map_err(fail)?;
    }
    if plan.permit_pty {
        b.extension("permit-pty", "").map_err(fail)?;
    }
    Ok(Draft {
        builder: b,
        serial,
        valid_after,
        valid_before,
        ca: rt.ca_for(host).clone(),
    })
}

impl Draft {
    /// Signs the certificate. A token or agent that cannot sign is
    /// `ca_unavailable`: there is no fallback key.
    pub fn sign(self) -> Result<Issued, Denial> {
        let cert = self
            .ca
            .sign_certificate(self.builder)
            .map_err(|e| match e {
                CaError::Unavailable(why) => {
                    // The reason names token labels, module and socket
                    // paths: the operator's log has it, the caller (and the
                    // agent behind it) gets which CA, not where it lives.
                    tracing::warn!(ca = %self.ca.fingerprint(), custody = self.ca.kind(), reason = %why, "the CA cannot sign");
                    Denial::new(
                        ReasonCode::CaUnavailable,
                        format!(
                            "the CA ({} key {}) cannot sign right now; the signer's log says why; nothing was issued",
                            self.ca.kind(),
                            self.ca.fingerprint()
                        ),
                    )
                }
                CaError::Invalid(why) => Denial::new(ReasonCode::SigningFailed, why),
            })?;
        let certificate = cert.to_openssh().map_err(|e| {
            Denial::new(
                ReasonCode::SigningFailed,
                format!("certificate could not be encoded: {e}"),
            )
        })?;
        Ok(Issued {
            certificate,
            serial: self.serial,
            valid_after: self.valid_after,
            valid_before: self.valid_before,
            ca: self.ca.public_line(),
        })
    }
}
