//! The dev PKI end to end: what `broker-ctl pki init` writes, that the
//! certificates chain and carry the right names and usages, and that
//! rustls accepts them as the services use them.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use x509_parser::extensions::GeneralName;

use super::*;

fn init_in(tmp: &tempfile::TempDir) -> (PkiOptions, PkiPaths) {
    let opts = PkiOptions::new(tmp.path().join("pki"));
    let paths = init(&opts).unwrap();
    (opts, paths)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn read(paths: &PkiPaths, name: &str) -> String {
    fs::read_to_string(paths.file(name).unwrap()).unwrap()
}

/// The facts about a certificate the tests look at.
#[derive(Debug)]
struct CertFacts {
    cn: String,
    issuer_cn: String,
    sans: Vec<String>,
    server_auth: bool,
    client_auth: bool,
    not_after: i64,
}

fn facts(pem: &str) -> CertFacts {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let cn_of = |name: &x509_parser::x509::X509Name<'_>| {
        name.iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut sans = Vec::new();
    if let Some(ext) = cert.subject_alternative_name().unwrap() {
        for name in &ext.value.general_names {
            sans.push(match name {
                GeneralName::DNSName(dns) => (*dns).to_owned(),
                GeneralName::IPAddress(bytes) if bytes.len() == 4 => {
                    IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap()).to_string()
                }
                GeneralName::IPAddress(bytes) => {
                    IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap()).to_string()
                }
                other => format!("{other:?}"),
            });
        }
    }
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    CertFacts {
        cn: cn_of(cert.subject()),
        issuer_cn: cn_of(cert.issuer()),
        sans,
        server_auth: eku.server_auth,
        client_auth: eku.client_auth,
        not_after: cert.validity().not_after.timestamp(),
    }
}

#[test]
fn init_writes_every_file_with_its_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let (opts, paths) = init_in(&tmp);
    assert_eq!(mode(&opts.out), 0o700);

    let written: BTreeSet<String> = fs::read_dir(&opts.out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let expected: BTreeSet<String> = [
        "ca.crt",
        "ca.key",
        "signer.crt",
        "signer.key",
        "control-plane.crt",
        "control-plane.key",
        "broker-1.crt",
        "broker-1.key",
        "operator.crt",
        "operator.key",
        "ssh_user_ca",
        "ssh_user_ca.pub",
        "signer-audit.seed",
        "signer-audit.pub",
        "broker-audit.seed",
        "broker-audit.pub",
        "control-plane-audit.seed",
        "control-plane-audit.pub",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    // Equality also proves no temporary file was left behind.
    assert_eq!(written, expected);
    assert_eq!(paths.files.len(), expected.len());

    for file in &paths.files {
        let name = file.path.file_name().unwrap().to_str().unwrap();
        let secret = name.ends_with(".key") || name.ends_with(".seed") || name == "ssh_user_ca";
        assert_eq!(file.mode == 0o600, secret, "{name}");
        if secret {
            assert_eq!(mode(&file.path), 0o600, "{name}");
        } else {
            assert_eq!(mode(&file.path) & 0o022, 0, "{name}");
        }
    }
    for stem in AUDIT_STEMS {
        assert_eq!(
            fs::read(paths.file(&format!("{stem}-audit.seed")).unwrap())
                .unwrap()
                .len(),
            32
        );
    }
}

#[test]
fn refuses_an_output_directory_others_can_write_or_that_is_not_ours() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = init(&PkiOptions::new(open.clone())).unwrap_err();
    assert!(e.to_string().contains("writable by group or others"), "{e}");
    assert!(
        std::fs::read_dir(&open).unwrap().next().is_none(),
        "nothing written"
    );
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::os::unix::fs::chown(&foreign, Some(65534), None).unwrap_or(());
    use std::os::unix::fs::MetadataExt;
    if foreign.metadata().unwrap().uid() == 65534 {
        let e = init(&PkiOptions::new(foreign)).unwrap_err();
        assert!(e.to_string().contains("belongs to uid 65534"), "{e}");
    }
}

#[test]
fn refuses_to_overwrite_without_force_and_replaces_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut opts, paths) = init_in(&tmp);
    let before: Vec<Vec<u8>> = paths
        .files
        .iter()
        .map(|f| fs::read(&f.path).unwrap())
        .collect();

    match init(&opts) {
        Err(PkiError::Exists(existing)) => assert_eq!(existing.len(), paths.files.len()),
        other => panic!("expected Exists, got {other:?}"),
    }
    let after: Vec<Vec<u8>> = paths
        .files
        .iter()
        .map(|f| fs::read(&f.path).unwrap())
        .collect();
    assert_eq!(before, after);

    opts.force = true;
    let again = init(&opts).unwrap();
    assert_eq!(again.files, paths.files);
    for (file, old) in again.files.iter().zip(&before) {
        assert_ne!(
            &fs::read(&file.path).unwrap(),
            old,
            "{}",
            file.path.display()
        );
    }
    assert_eq!(mode(paths.file("ca.key").unwrap()), 0o600);
}

#[test]
fn one_existing_file_blocks_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = PkiOptions::new(tmp.path());
    let lone = tmp.path().join("broker-audit.pub");
    fs::write(&lone, "mine").unwrap();

    match init(&opts) {
        Err(PkiError::Exists(existing)) => assert_eq!(existing, vec![lone.clone()]),
        other => panic!("expected Exists, got {other:?}"),
    }
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    assert_eq!(fs::read_to_string(&lone).unwrap(), "mine");
}

#[test]
fn rejects_bad_options() {
    let tmp = tempfile::tempdir().unwrap();
    let bad_clients: [&[&str]; 6] = [
        &["../x"],
        &["ca"],
        &["signer"],
        &[""],
        &["a", "a"],
        &["broker-audit"],
    ];
    for clients in bad_clients {
        let mut opts = PkiOptions::new(tmp.path());
        opts.clients = clients.iter().map(|c| (*c).to_owned()).collect();
        assert!(
            matches!(init(&opts), Err(PkiError::Invalid(_))),
            "{clients:?}"
        );
    }
    let mut opts = PkiOptions::new(tmp.path());
    opts.valid_days = 0;
    assert!(matches!(init(&opts), Err(PkiError::Invalid(_))));
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn certificates_carry_names_and_usages() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, paths) = init_in(&tmp);
    let sans = ["localhost", "127.0.0.1", "::1"];

    let signer = facts(&read(&paths, "signer.crt"));
    assert_eq!(signer.cn, "signer");
    assert_eq!(signer.issuer_cn, DEV_CA_CN);
    assert_eq!(signer.sans, sans);
    assert!(signer.server_auth && !signer.client_auth);

    let control_plane = facts(&read(&paths, "control-plane.crt"));
    assert_eq!(control_plane.cn, "control-plane");
    assert_eq!(control_plane.sans, sans);
    assert!(control_plane.server_auth && control_plane.client_auth);

    for stem in DEFAULT_CLIENTS {
        let client = facts(&read(&paths, &format!("{stem}.crt")));
        assert_eq!(client.cn, stem);
        assert!(client.client_auth && !client.server_auth);
    }

    let days = (facts(&read(&paths, "broker-1.crt")).not_after
        - OffsetDateTime::now_utc().unix_timestamp())
        / 86_400;
    assert!((364..=365).contains(&days), "{days}");
}

#[test]
fn ssh_user_ca_rereads_and_matches_its_public_half() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, paths) = init_in(&tmp);
    let key = ssh_key::PrivateKey::from_openssh(read(&paths, "ssh_user_ca")).unwrap();
    assert_eq!(key.algorithm(), ssh_key::Algorithm::Ed25519);
    assert!(!key.is_encrypted());
    assert_eq!(key.comment().as_str_lossy(), SSH_USER_CA_COMMENT);
    let public = read(&paths, "ssh_user_ca.pub");
    assert_eq!(key.public_key().to_openssh().unwrap(), public.trim_end());
    assert!(
        public.starts_with("ssh-ed25519 AAAA") && public.ends_with(" infrabroker-ssh-user-ca\n")
    );
}

#[test]
fn audit_public_keys_match_their_seeds() {
    use ed25519_dalek::{Signer as _, Verifier as _};

    let tmp = tempfile::tempdir().unwrap();
    let (_, paths) = init_in(&tmp);
    let mut seen = BTreeSet::new();
    for stem in AUDIT_STEMS {
        let seed = fs::read(paths.file(&format!("{stem}-audit.seed")).unwrap()).unwrap();
        let seed: [u8; 32] = seed.try_into().unwrap();
        assert!(seen.insert(seed), "seeds must differ");
        let line = read(&paths, &format!("{stem}-audit.pub"));
        assert!(line.ends_with(&format!(" {stem}-audit\n")), "{line}");
        let public = ssh_key::PublicKey::from_openssh(&line).unwrap();
        let bytes = public.key_data().ed25519().unwrap().0;

        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        assert_eq!(bytes, signing.verifying_key().to_bytes());
        let verifying = ed25519_dalek::VerifyingKey::from_bytes(&bytes).unwrap();
        let signature = signing.sign(b"record");
        verifying.verify(b"record", &signature).unwrap();
    }
}

/// Runs a TLS 1.3 handshake in memory between a server trusting
/// `ca_pem` for client certificates and a client presenting `client`.
fn handshake(ca_pem: &str, server: &Leaf, client: &Leaf) -> Result<(), rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = [&rustls::version::TLS13];
    let cert = |pem: &str| vec![CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()];
    let key = |pem: &str| PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert(ca_pem).remove(0)).unwrap();
    let roots = Arc::new(roots);

    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert(&server.cert_pem), key(&server.key_pem))
        .unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(cert(&client.cert_pem), key(&client.key_pem))
        .unwrap();
    let mut server = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();

    for _ in 0..10 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let mut rd = wire.as_slice();
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
        }
        server.process_new_packets()?;

        wire.clear();
        while server.wants_write() {
            server.write_tls(&mut wire).unwrap();
        }
        let mut rd = wire.as_slice();
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
        }
        client.process_new_packets()?;
        if !server.is_handshaking() && !client.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

fn leaf_from_disk(paths: &PkiPaths, stem: &str) -> Leaf {
    Leaf {
        cert_pem: read(paths, &format!("{stem}.crt")),
        key_pem: Zeroizing::new(read(paths, &format!("{stem}.key"))),
    }
}

#[test]
fn mtls_accepts_dev_clients_and_rejects_strangers() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, paths) = init_in(&tmp);
    let ca_pem = read(&paths, "ca.crt");
    let signer = leaf_from_disk(&paths, "signer");

    handshake(&ca_pem, &signer, &leaf_from_disk(&paths, "broker-1")).unwrap();
    handshake(&ca_pem, &signer, &leaf_from_disk(&paths, "control-plane")).unwrap();

    let stranger = TlsCa::generate("another CA")
        .unwrap()
        .issue_client("broker-1")
        .unwrap();
    assert!(matches!(
        handshake(&ca_pem, &signer, &stranger),
        Err(rustls::Error::InvalidCertificate(_))
    ));
    // A server-only certificate must not pass as a client.
    assert!(handshake(&ca_pem, &signer, &signer).is_err());
}

#[test]
fn loaded_ca_issues_trusted_and_expired_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, paths) = init_in(&tmp);
    let ca_pem = read(&paths, "ca.crt");
    let signer = leaf_from_disk(&paths, "signer");
    let ca = load_ca(paths.file("ca.crt").unwrap(), paths.file("ca.key").unwrap()).unwrap();
    assert_eq!(ca.cert_pem(), ca_pem);

    let fresh = ca.issue_client("broker-2").unwrap();
    handshake(&ca_pem, &signer, &fresh).unwrap();

    let now = OffsetDateTime::now_utc();
    let expired = ca
        .issue_client_with_validity("broker-1", now - Duration::days(2), now - Duration::days(1))
        .unwrap();
    assert!(facts(&expired.cert_pem).not_after < now.unix_timestamp());
    assert!(matches!(
        handshake(&ca_pem, &signer, &expired),
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. }
        ))
    ));

    let stale_server = ca
        .issue_server_with_validity(
            "signer",
            &DEV_SERVER_SANS,
            now - Duration::days(2),
            now - Duration::days(1),
        )
        .unwrap();
    assert!(matches!(
        handshake(&ca_pem, &stale_server, &fresh),
        Err(rustls::Error::InvalidCertificate(_))
    ));

    let (cert_path, key_path) = expired.write(tmp.path(), "expired").unwrap();
    assert_eq!(fs::read_to_string(cert_path).unwrap(), expired.cert_pem);
    assert_eq!(mode(&key_path), 0o600);
}

#[test]
fn load_ca_refuses_a_key_of_another_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, paths) = init_in(&tmp);
    let other = TlsCa::generate("other").unwrap();
    let (_, other_key) = other.write(tmp.path(), "other").unwrap();
    let err = load_ca(paths.file("ca.crt").unwrap(), &other_key).unwrap_err();
    assert!(matches!(err, PkiError::BadCa { .. }), "{err}");
    // A leaf is not a CA even with its own key.
    let err = load_ca(
        paths.file("signer.crt").unwrap(),
        paths.file("signer.key").unwrap(),
    )
    .unwrap_err();
    assert!(matches!(err, PkiError::BadCa { .. }), "{err}");
}

#[test]
fn debug_output_hides_keys() {
    let ca = TlsCa::generate("dbg").unwrap();
    let leaf = ca.issue_client("c").unwrap();
    assert!(!format!("{leaf:?}").contains("PRIVATE KEY"));
    assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
}
