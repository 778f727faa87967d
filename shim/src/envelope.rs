//! The sealed-exec envelope: what the signer signs and the shim checks.
//!
//! On the wire (the SSH exec request of a session command) an envelope is
//! one ASCII line, `IBX1.<payload>.<signature>`, both parts unpadded
//! base64url. The payload is a JSON object ([`Claims`]); the signature is
//! Ed25519 over [`DOMAIN`] followed by the payload's exact bytes, so no
//! canonical JSON is needed: the shim verifies the bytes it received and
//! only then parses them. The domain prefix keeps an envelope signature from
//! ever being valid for anything else the same key might sign.
//!
//! The line is made only of `A–Z a–z 0–9 - _ .`, which no login shell gives
//! a meaning to, and sshd hands it to the shim in `SSH_ORIGINAL_COMMAND`
//! without any shell parsing it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::Refusal;

/// Prefix of every envelope line (format version 1).
pub const PREFIX: &str = "IBX1.";

/// Bytes signed before the payload.
pub const DOMAIN: &[u8] = b"infrabroker sealed exec v1\n";

/// The longest envelope line the shim reads (a command is at most 64 KiB on
/// the signer side; base64 and the other fields add about a third).
pub const MAX_LINE: usize = 96 * 1024;

/// What an envelope asserts. Every field is checked by the shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// 128 random bits, hex: the envelope is good for one run.
    pub nonce: String,
    /// The host's name in `signer.json`; must equal the shim's own `host`.
    pub host: String,
    /// The certificate principal the session logged in with.
    pub principal: String,
    /// The judged command, run as `/bin/sh -c <command>`.
    pub command: String,
    /// Run through `sudo -n [-u sudo_user] --`.
    #[serde(default)]
    pub sudo: bool,
    /// Target account of sudo (`None`: root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo_user: Option<String>,
    /// Unix seconds after which the envelope is refused.
    pub expires: u64,
    /// Seconds the command may run: the shim runs it under `timeout -k 2`
    /// (sshd does not pass signals to a forced command, so the broker
    /// cannot stop it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

impl Claims {
    /// A fresh random nonce for [`Claims::nonce`].
    pub fn new_nonce() -> String {
        let bytes: [u8; 16] = rand::random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Signs the claims into an envelope line.
    pub fn seal(&self, key: &SigningKey) -> String {
        // Serialising a struct of strings, bools and integers cannot fail.
        let payload = serde_json::to_vec(self).unwrap_or_default();
        let signature = key.sign(&signed_bytes(&payload));
        format!(
            "{PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

fn signed_bytes(payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(DOMAIN.len() + payload.len());
    bytes.extend_from_slice(DOMAIN);
    bytes.extend_from_slice(payload);
    bytes
}

/// Checks `line`'s signature against each of `keys` (several keys let the
/// signer's envelope key rotate without downtime) and returns its claims.
///
/// Nothing in the payload is looked at before the signature holds.
pub fn open(line: &str, keys: &[VerifyingKey]) -> Result<Claims, Refusal> {
    if line.len() > MAX_LINE {
        return Err(Refusal::Malformed("envelope too long"));
    }
    let rest = line.strip_prefix(PREFIX).ok_or(Refusal::NotAnEnvelope)?;
    let (payload, signature) = rest
        .split_once('.')
        .ok_or(Refusal::Malformed("no signature part"))?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| Refusal::Malformed("payload is not base64url"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Refusal::Malformed("signature is not base64url"))?;
    let signature = Signature::from_slice(&signature)
        .map_err(|_| Refusal::Malformed("signature has the wrong length"))?;
    let signed = signed_bytes(&payload);
    if !keys.iter().any(|k| k.verify(&signed, &signature).is_ok()) {
        return Err(Refusal::BadSignature);
    }
    serde_json::from_slice(&payload).map_err(|_| Refusal::Malformed("payload is not valid claims"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            nonce: Claims::new_nonce(),
            host: "web01".into(),
            principal: "web01-deploy".into(),
            command: "printf '%s\\n' \"$HOME\" 'it''s'".into(),
            sudo: true,
            sudo_user: Some("postgres".into()),
            expires: 1_900_000_000,
            timeout: None,
        }
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&rand::random())
    }

    #[test]
    fn a_sealed_envelope_opens_to_the_same_claims() {
        let key = key();
        let line = claims().seal(&key);
        assert!(line.starts_with(PREFIX));
        assert!(
            line.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{line}"
        );
        let opened = open(&line, &[key.verifying_key()]).unwrap();
        assert_eq!(opened, claims_with_nonce(&opened.nonce));
    }

    fn claims_with_nonce(nonce: &str) -> Claims {
        Claims {
            nonce: nonce.into(),
            ..claims()
        }
    }

    #[test]
    fn any_listed_key_may_have_signed_it() {
        let (old, new) = (key(), key());
        let line = claims().seal(&new);
        assert!(open(&line, &[old.verifying_key(), new.verifying_key()]).is_ok());
        assert_eq!(
            open(&line, &[old.verifying_key()]),
            Err(Refusal::BadSignature)
        );
        assert_eq!(open(&line, &[]), Err(Refusal::BadSignature));
    }

    #[test]
    fn a_changed_payload_fails_the_signature() {
        let key = key();
        let line = claims().seal(&key);
        let (_, rest) = line.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let mut forged = claims();
        forged.command = "id".into();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let forged_line = format!("{PREFIX}{payload}.{sig}");
        assert_eq!(
            open(&forged_line, &[key.verifying_key()]),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn a_signature_without_the_domain_prefix_is_refused() {
        let key = key();
        let payload = serde_json::to_vec(&claims()).unwrap();
        let bare = key.sign(&payload);
        let line = format!(
            "{PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(bare.to_bytes())
        );
        assert_eq!(
            open(&line, &[key.verifying_key()]),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn malformed_lines_are_refused_with_a_reason() {
        let keys = [key().verifying_key()];
        assert_eq!(open("id", &keys), Err(Refusal::NotAnEnvelope));
        assert_eq!(open("", &keys), Err(Refusal::NotAnEnvelope));
        assert!(matches!(
            open("IBX1.abc", &keys),
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(
            open("IBX1.a*b.c", &keys),
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(
            open("IBX1.YWJj.YWJj", &keys),
            Err(Refusal::Malformed(_))
        ));
        let long = format!("{PREFIX}{}", "A".repeat(MAX_LINE));
        assert!(matches!(open(&long, &keys), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn unknown_claims_are_refused_even_when_signed() {
        let key = key();
        let payload =
            br#"{"nonce":"00","host":"h","principal":"p","command":"id","expires":1,"extra":1}"#;
        let sig = key.sign(&signed_bytes(payload));
        let line = format!(
            "{PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(sig.to_bytes())
        );
        assert!(matches!(
            open(&line, &[key.verifying_key()]),
            Err(Refusal::Malformed(_))
        ));
    }
}
