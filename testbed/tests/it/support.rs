//! A throwaway SSH user CA for the tests.

use std::time::{SystemTime, UNIX_EPOCH};

use ssh_key::certificate::{Builder, CertType};
use ssh_key::{Algorithm, PrivateKey};

/// The unix user every test logs in as.
pub const USER: &str = "ibtest";
/// The principal `USER` accepts.
pub const PRINCIPAL: &str = "test-principal";

/// A random Ed25519 key.
pub fn ed25519() -> PrivateKey {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap()
}

/// An Ed25519 SSH user CA.
pub struct Ca {
    key: PrivateKey,
}

impl Ca {
    pub fn new() -> Self {
        Self { key: ed25519() }
    }

    /// The CA's OpenSSH public key line.
    pub fn pubkey(&self) -> String {
        self.key.public_key().to_openssh().unwrap()
    }

    /// A user certificate for `subject`, valid for 60 s, as an OpenSSH line.
    pub fn user_cert(
        &self,
        subject: &PrivateKey,
        principals: &[&str],
        extensions: &[&str],
    ) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut builder = Builder::new_with_random_nonce(
            &mut rand::rng(),
            subject.public_key().key_data().clone(),
            now - 5,
            now + 60,
        )
        .unwrap();
        builder
            .serial(rand::random())
            .unwrap()
            .key_id(format!("testbed-{}", principals.join(",")))
            .unwrap()
            .cert_type(CertType::User)
            .unwrap();
        for p in principals {
            builder.valid_principal(*p).unwrap();
        }
        for e in extensions {
            builder.extension(*e, "").unwrap();
        }
        builder.sign(&self.key).unwrap().to_openssh().unwrap()
    }
}
