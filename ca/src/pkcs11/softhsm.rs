//! Making a SoftHSM2 token with an Ed25519 CA key, for dev setups and
//! tests (`broker-ctl pki init --hsm`).

use std::path::Path;

use cryptoki::context::Pkcs11;
use cryptoki::error::Error as P11Error;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use ssh_key::PublicKey;
use ssh_key::public::{Ed25519PublicKey, KeyData};

use super::{PARAMS_NAME, ec_point, find_slot, init_args, p11};
use crate::CaError;

/// A SoftHSM2 token made by [`provision_softhsm`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftHsmToken {
    /// The CA's public key line.
    pub public_key: String,
}

/// Initialises a free slot of `module` as token `token_label` with user PIN
/// `pin` and generates an Ed25519 key pair `key_label` on it (private key
/// sensitive and not extractable). For dev setups (`broker-ctl pki init
/// --hsm`): run it in a process whose environment points the module at its
/// store (`SOFTHSM2_CONF`), since the module reads it on initialisation.
pub fn provision_softhsm(
    module: &Path,
    token_label: &str,
    key_label: &str,
    pin: &str,
    so_pin: &str,
) -> Result<SoftHsmToken, CaError> {
    let fail = |what: &str, e: P11Error| CaError::Invalid(p11(what, &e));
    let ctx = Pkcs11::new(module).map_err(|e| {
        CaError::Invalid(format!(
            "cannot load the PKCS#11 module {}: {e}",
            module.display()
        ))
    })?;
    ctx.initialize(init_args())
        .map_err(|e| fail("initialising the module", e))?;
    let so_pin = AuthPin::new(so_pin.into());
    let user_pin = AuthPin::new(pin.into());
    let mut free = None;
    for slot in ctx.get_all_slots().map_err(|e| fail("listing slots", e))? {
        if let Ok(info) = ctx.get_token_info(slot) {
            if info.label().trim_end() == token_label && info.token_initialized() {
                return Err(CaError::Invalid(format!(
                    "a token labelled {token_label:?} exists already"
                )));
            }
            if !info.token_initialized() && free.is_none() {
                free = Some(slot);
            }
        }
    }
    let free = free.ok_or_else(|| CaError::Invalid("the module has no free slot".into()))?;
    ctx.init_token(free, &so_pin, token_label)
        .map_err(|e| fail("initialising the token", e))?;
    // SoftHSM2 moves an initialised token to a new slot id.
    let slot = find_slot(&ctx, module, token_label)?;
    let session = ctx
        .open_rw_session(slot)
        .map_err(|e| fail("opening a session", e))?;
    session
        .login(UserType::So, Some(&so_pin))
        .map_err(|e| fail("logging in as SO", e))?;
    session
        .init_pin(&user_pin)
        .map_err(|e| fail("setting the user PIN", e))?;
    session.logout().map_err(|e| fail("logging out", e))?;
    session
        .login(UserType::User, Some(&user_pin))
        .map_err(|e| fail("logging in", e))?;
    generate(&session, token_label, key_label)
}

/// Generates the Ed25519 pair `key_label` in a user session; its public
/// key line.
fn generate(
    session: &Session,
    token_label: &str,
    key_label: &str,
) -> Result<SoftHsmToken, CaError> {
    let fail = |what: &str, e: P11Error| CaError::Invalid(p11(what, &e));
    let label = key_label.as_bytes().to_vec();
    let id = vec![0x01];
    let public_template = [
        Attribute::Token(true),
        Attribute::Verify(true),
        Attribute::EcParams(PARAMS_NAME.to_vec()),
        Attribute::Label(label.clone()),
        Attribute::Id(id.clone()),
    ];
    let private_template = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Label(label),
        Attribute::Id(id),
    ];
    let (public, _) = session
        .generate_key_pair(
            &Mechanism::EccEdwardsKeyPairGen,
            &public_template,
            &private_template,
        )
        .map_err(|e| fail("generating the key pair", e))?;
    let attrs = session
        .get_attributes(public, &[AttributeType::EcPoint])
        .map_err(|e| fail("reading the public key", e))?;
    let raw = attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => ec_point(&p),
            _ => None,
        })
        .ok_or_else(|| CaError::Invalid("the new key has no readable EC_POINT".into()))?;
    let comment = format!("infrabroker-ca pkcs11:{token_label}/{key_label}");
    let line = PublicKey::new(KeyData::Ed25519(Ed25519PublicKey(raw)), comment)
        .to_openssh()
        .map_err(|e| CaError::Invalid(format!("encoding the public key: {e}")))?;
    Ok(SoftHsmToken { public_key: line })
}
