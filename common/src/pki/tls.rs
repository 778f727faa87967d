//! The TLS side of the dev PKI: [`TlsCa`] issues server and client
//! [`Leaf`] certificates; [`load_ca`] reads a CA back from disk.

use super::*;

/// A TLS certificate authority able to issue server and client leaves.
#[derive(Debug)]
pub struct TlsCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    valid_days: u32,
}

/// A certificate and its private key, both PEM (the key in PKCS#8).
#[derive(Clone)]
pub struct Leaf {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: Zeroizing<String>,
}

impl TlsCa {
    /// A fresh self-signed ECDSA P-256 CA named `cn`, valid (like the
    /// leaves it issues) for [`DEFAULT_VALID_DAYS`].
    pub fn generate(cn: &str) -> Result<Self, PkiError> {
        Self::generate_valid_for(cn, DEFAULT_VALID_DAYS)
    }

    /// Like [`TlsCa::generate`], valid (with its leaves) for `valid_days`.
    pub fn generate_valid_for(cn: &str, valid_days: u32) -> Result<Self, PkiError> {
        let key = new_key()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        (params.not_before, params.not_after) = validity_from_now(valid_days);
        let cert_pem = params.self_signed(&key).map_err(generate_err)?.pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_pem,
            valid_days,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.issuer.key().serialize_pem())
    }

    /// A server certificate (EKU serverAuth) with common name `cn` and the
    /// given SANs (IP addresses are recognised, the rest are DNS names).
    pub fn issue_server(&self, cn: &str, sans: &[&str]) -> Result<Leaf, PkiError> {
        let validity = validity_from_now(self.valid_days);
        self.issue(cn, sans, &[ExtendedKeyUsagePurpose::ServerAuth], validity)
    }

    /// Like [`TlsCa::issue_server`] with an explicit validity window, e.g.
    /// one that has already expired.
    pub fn issue_server_with_validity(
        &self,
        cn: &str,
        sans: &[&str],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Leaf, PkiError> {
        let ekus = [ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(cn, sans, &ekus, (not_before, not_after))
    }

    /// A certificate usable both as server and as client (EKU serverAuth and
    /// clientAuth), as the control plane needs to call the signer.
    pub fn issue_server_client(&self, cn: &str, sans: &[&str]) -> Result<Leaf, PkiError> {
        let validity = validity_from_now(self.valid_days);
        let ekus = [
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue(cn, sans, &ekus, validity)
    }

    /// A client certificate (EKU clientAuth, no SAN) with common name `cn`.
    pub fn issue_client(&self, cn: &str) -> Result<Leaf, PkiError> {
        let validity = validity_from_now(self.valid_days);
        self.issue(cn, &[], &[ExtendedKeyUsagePurpose::ClientAuth], validity)
    }

    /// Like [`TlsCa::issue_client`] with an explicit validity window, e.g.
    /// one that has already expired.
    pub fn issue_client_with_validity(
        &self,
        cn: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Leaf, PkiError> {
        let ekus = [ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(cn, &[], &ekus, (not_before, not_after))
    }

    /// Writes `<stem>.crt` (0644) and `<stem>.key` (0600) into `dir`,
    /// replacing existing files; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), PkiError> {
        write_pair(dir, stem, &self.cert_pem, &self.key_pem())
    }

    fn issue(
        &self,
        cn: &str,
        sans: &[&str],
        ekus: &[ExtendedKeyUsagePurpose],
        (not_before, not_after): (OffsetDateTime, OffsetDateTime),
    ) -> Result<Leaf, PkiError> {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).map_err(generate_err)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = ekus.to_vec();
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let key = new_key()?;
        let cert = params.signed_by(&key, &self.issuer).map_err(generate_err)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }
}

impl Leaf {
    /// Writes `<stem>.crt` (0644) and `<stem>.key` (0600) into `dir`,
    /// replacing existing files; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), PkiError> {
        write_pair(dir, stem, &self.cert_pem, &self.key_pem)
    }
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<secret>")
            .finish()
    }
}

/// Re-opens a CA from its PEM certificate and PKCS#8 PEM key, e.g. the dev
/// CA written by [`init`], to issue more leaves from it.
pub fn load_ca(cert_path: &Path, key_path: &Path) -> Result<TlsCa, PkiError> {
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|source| PkiError::Io {
            path: path.to_owned(),
            source,
        })
    };
    let bad = |path: &Path, reason: String| PkiError::BadCa {
        path: path.to_owned(),
        reason,
    };
    let cert_pem = read(cert_path)?;
    let key_pem = Zeroizing::new(read(key_path)?);

    let key = KeyPair::from_pem(&key_pem).map_err(|e| bad(key_path, e.to_string()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| bad(cert_path, format!("not a PEM certificate: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| bad(cert_path, e.to_string()))?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(bad(
            key_path,
            format!("key does not match {}", cert_path.display()),
        ));
    }
    if !cert.is_ca() {
        return Err(bad(cert_path, "not a CA certificate".to_owned()));
    }
    let issuer =
        Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| bad(cert_path, e.to_string()))?;
    Ok(TlsCa {
        issuer,
        cert_pem,
        valid_days: DEFAULT_VALID_DAYS,
    })
}

fn write_pair(
    dir: &Path,
    stem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(PathBuf, PathBuf), PkiError> {
    let cert_path = dir.join(format!("{stem}.crt"));
    let key_path = dir.join(format!("{stem}.key"));
    write_atomic(&key_path, key_pem.as_bytes(), MODE_PRIVATE)?;
    write_atomic(&cert_path, cert_pem.as_bytes(), MODE_PUBLIC)?;
    Ok((cert_path, key_path))
}

fn new_key() -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(generate_err)
}

fn validity_from_now(valid_days: u32) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - BACKDATE, now + Duration::days(i64::from(valid_days)))
}
