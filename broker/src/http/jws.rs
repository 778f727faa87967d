//! Compact JWS verification on `ring`, limited to the algorithms the broker
//! accepts: RS256, ES256 and EdDSA (Ed25519). `none`, HMAC and everything
//! else are refused before any key is looked at, and a key is only ever used
//! with the one algorithm its type allows, so a public key can never be
//! turned into an HMAC secret.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
    UnparsedPublicKey,
};
use serde::Deserialize;
use serde_json::Value;

/// Largest token accepted; real access tokens are a few KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The signature algorithms on the allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, modulus of 2048 bits or more.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519 (`EdDSA`, or its fully specified name `Ed25519`).
    EdDsa,
}

impl Alg {
    /// The allowlist: anything else is refused.
    pub fn from_name(name: &str) -> Option<Alg> {
        match name {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            "EdDSA" | "Ed25519" => Some(Alg::EdDsa),
            _ => None,
        }
    }
}

/// Why a token is not a valid JWS for us.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// Not three base64url parts with a JSON header and payload.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` is not on the allowlist (e.g. `none`, `HS256`).
    #[error("algorithm {0:?} is not accepted")]
    AlgNotAllowed(String),
    /// The header names no `kid`.
    #[error("the token names no key (kid)")]
    NoKid,
    /// The header carries `crit` extensions we do not implement.
    #[error("the token uses critical header extensions")]
    Critical,
    /// The key's type does not fit the algorithm.
    #[error("key {0:?} cannot verify this algorithm")]
    KeyMismatch(String),
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
}

/// Public key material, by type.
#[derive(Clone, PartialEq, Eq)]
enum Material {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256 { point: Vec<u8> },
    Ed25519 { x: Vec<u8> },
}

/// One verification key from a JWKS.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// `kid`.
    pub kid: String,
    /// The JWK's own `alg`, when it pins one.
    alg: Option<Alg>,
    material: Material,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.material {
            Material::Rsa { .. } => "RSA",
            Material::P256 { .. } => "EC P-256",
            Material::Ed25519 { .. } => "OKP Ed25519",
        };
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("kind", &kind)
            .finish()
    }
}

#[derive(Deserialize)]
struct Jwk {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

fn b64(field: Option<&String>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(field?).ok()
}

/// Big-endian integers in JWKs may carry leading zero bytes; ring wants none.
fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let lead = v.iter().take_while(|b| **b == 0).count();
    v.drain(..lead);
    v
}

impl Key {
    fn from_jwk(jwk: &Jwk) -> Option<Key> {
        let kid = jwk.kid.clone()?;
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        // A JWK pinned to an algorithm we do not accept is not usable at all.
        let alg = match &jwk.alg {
            Some(a) => Some(Alg::from_name(a)?),
            None => None,
        };
        let material = match (jwk.kty.as_deref()?, jwk.crv.as_deref()) {
            ("RSA", _) => Material::Rsa {
                n: strip_zeros(b64(jwk.n.as_ref())?),
                e: strip_zeros(b64(jwk.e.as_ref())?),
            },
            ("EC", Some("P-256")) => {
                let (x, y) = (b64(jwk.x.as_ref())?, b64(jwk.y.as_ref())?);
                if x.len() != 32 || y.len() != 32 {
                    return None;
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Material::P256 { point }
            }
            ("OKP", Some("Ed25519")) => {
                let x = b64(jwk.x.as_ref())?;
                if x.len() != 32 {
                    return None;
                }
                Material::Ed25519 { x }
            }
            _ => return None,
        };
        Some(Key { kid, alg, material })
    }

    /// Checks `signature` over `input` with `alg`, refusing an algorithm the
    /// key's type (or its own `alg`) does not allow.
    fn verify(&self, alg: Alg, input: &[u8], signature: &[u8]) -> Result<(), JwsError> {
        if self.alg.is_some_and(|pinned| pinned != alg) {
            return Err(JwsError::KeyMismatch(self.kid.clone()));
        }
        let ok = match (&self.material, alg) {
            (Material::Rsa { n, e }, Alg::Rs256) => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, input, signature)
                .is_ok(),
            (Material::P256 { point }, Alg::Es256) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(input, signature)
                    .is_ok()
            }
            (Material::Ed25519 { x }, Alg::EdDsa) => UnparsedPublicKey::new(&ED25519, x)
                .verify(input, signature)
                .is_ok(),
            _ => return Err(JwsError::KeyMismatch(self.kid.clone())),
        };
        if ok {
            Ok(())
        } else {
            Err(JwsError::BadSignature)
        }
    }
}

/// Parses a JWKS document; keys that are not usable signature keys of an
/// accepted type (encryption keys, other curves, no `kid`) are skipped.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<Key>, String> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    Ok(set
        .keys
        .iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v.clone()).ok())
        .filter_map(|jwk| Key::from_jwk(&jwk))
        .collect())
}

/// A token whose header passed the allowlist but whose signature is not yet
/// checked.
#[derive(Debug)]
pub struct Unverified<'a> {
    /// The accepted algorithm.
    pub alg: Alg,
    /// The key the token names.
    pub kid: String,
    /// The `typ` header (RFC 9068 access tokens say `at+jwt`), if any.
    pub typ: Option<String>,
    signing_input: &'a str,
    signature: Vec<u8>,
    payload: Vec<u8>,
}

impl<'a> Unverified<'a> {
    /// Splits and decodes a compact JWS and applies the header rules.
    pub fn parse(token: &'a str) -> Result<Unverified<'a>, JwsError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwsError::Malformed("too long"));
        }
        let (signing_input, sig) = token
            .rsplit_once('.')
            .ok_or(JwsError::Malformed("not a JWS"))?;
        let (header, payload) = signing_input
            .split_once('.')
            .ok_or(JwsError::Malformed("not a JWS"))?;
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| JwsError::Malformed("bad base64url"))
        };
        let header: Value = serde_json::from_slice(&decode(header)?)
            .map_err(|_| JwsError::Malformed("bad header"))?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(JwsError::Malformed("no alg"))?;
        // The name is the token sender's text: keep what is echoed short.
        let alg = Alg::from_name(alg)
            .ok_or_else(|| JwsError::AlgNotAllowed(alg.chars().take(16).collect()))?;
        if header.get("crit").is_some() {
            return Err(JwsError::Critical);
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or(JwsError::NoKid)?
            .to_owned();
        let typ = header
            .get("typ")
            .map(|t| t.as_str().unwrap_or("").to_owned());
        Ok(Unverified {
            alg,
            kid,
            typ,
            signing_input,
            signature: decode(sig)?,
            payload: decode(payload)?,
        })
    }

    /// Verifies the signature with `key` and returns the payload.
    pub fn verify(self, key: &Key) -> Result<Vec<u8>, JwsError> {
        key.verify(self.alg, self.signing_input.as_bytes(), &self.signature)?;
        Ok(self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    fn enc(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn signed(header: &str, payload: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let input = format!("{}.{}", enc(header.as_bytes()), enc(payload.as_bytes()));
        let sig = sign(input.as_bytes());
        format!("{input}.{}", enc(&sig))
    }

    fn ed_key() -> (Ed25519KeyPair, Key) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"ed","x":"{}"}}]}}"#,
            enc(pair.public_key().as_ref())
        );
        let key = parse_jwks(jwk.as_bytes()).unwrap().remove(0);
        (pair, key)
    }

    #[test]
    fn ed25519_and_es256_tokens_verify_and_tampering_fails() {
        let (pair, key) = ed_key();
        let token = signed(r#"{"alg":"EdDSA","kid":"ed"}"#, r#"{"sub":"a"}"#, |m| {
            pair.sign(m).as_ref().to_vec()
        });
        let payload = Unverified::parse(&token).unwrap().verify(&key).unwrap();
        assert_eq!(payload, br#"{"sub":"a"}"#);
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged = format!("{head}.{}.{sig}", enc(br#"{"sub":"b"}"#));
        assert_eq!(
            Unverified::parse(&forged).unwrap().verify(&key),
            Err(JwsError::BadSignature)
        );

        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let public = ec.public_key().as_ref();
        let jwks = format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"ec","alg":"ES256","use":"sig","x":"{}","y":"{}"}}]}}"#,
            enc(&public[1..33]),
            enc(&public[33..])
        );
        let ec_key = parse_jwks(jwks.as_bytes()).unwrap().remove(0);
        let token = signed(r#"{"alg":"ES256","kid":"ec"}"#, "{}", |m| {
            ec.sign(&rng, m).unwrap().as_ref().to_vec()
        });
        assert!(Unverified::parse(&token).unwrap().verify(&ec_key).is_ok());
        // The Ed25519 key cannot verify an ES256 token, whatever the kid says.
        assert_eq!(
            Unverified::parse(&token).unwrap().verify(&key),
            Err(JwsError::KeyMismatch("ed".into()))
        );
    }

    #[test]
    fn headers_outside_the_allowlist_are_refused_before_any_key() {
        let body = enc(b"{}");
        for (header, want) in [
            (
                r#"{"alg":"none","kid":"k"}"#,
                JwsError::AlgNotAllowed("none".into()),
            ),
            (
                r#"{"alg":"HS256","kid":"k"}"#,
                JwsError::AlgNotAllowed("HS256".into()),
            ),
            (
                r#"{"alg":"RS512","kid":"k"}"#,
                JwsError::AlgNotAllowed("RS512".into()),
            ),
            (
                r#"{"alg":"PS256","kid":"k"}"#,
                JwsError::AlgNotAllowed("PS256".into()),
            ),
            (r#"{"alg":"ES256"}"#, JwsError::NoKid),
            (
                r#"{"alg":"ES256","kid":"k","crit":["b64"]}"#,
                JwsError::Critical,
            ),
        ] {
            let token = format!("{}.{body}.", enc(header.as_bytes()));
            assert_eq!(Unverified::parse(&token).unwrap_err(), want, "{header}");
        }
        for bad in ["", "a.b", "!!.e30.", "e30.e30.e30.e30"] {
            assert!(
                matches!(Unverified::parse(bad), Err(JwsError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn unusable_jwks_entries_are_skipped() {
        let jwks = br#"{"keys":[
            {"kty":"oct","kid":"h","k":"c2VjcmV0"},
            {"kty":"OKP","crv":"Ed448","kid":"x","x":"AA"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","kid":"hs","alg":"HS256","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","kid":"ok","n":"AAEC","e":"AQAB"}
        ]}"#;
        let keys = parse_jwks(jwks).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid, "ok");
        assert!(parse_jwks(b"[]").is_err());
    }
}
