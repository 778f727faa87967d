//! The shim as the force-command of a real sshd: what a compromised broker
//! could send over a session certificate, and what a good envelope runs.
//!
//! The certificate here is made by the test (no signer): these tests are
//! about the host side. The signer minting envelopes and the broker sending
//! them are tested with the whole stack in the broker's tests.

#![allow(clippy::unwrap_used, reason = "test helpers fail the test on error")]

use std::path::PathBuf;
use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use infrabroker_shim::{Claims, config};
use infrabroker_testbed::shim::ShimHost;
use infrabroker_testbed::{SshClient, Sshd, SshdOptions, ensure_user, sshd_or_skip, sudoers};
use ssh_key::certificate::{Builder, CertType};
use ssh_key::{Algorithm, PrivateKey};

const USER: &str = "ibshim";
const PRINCIPAL: &str = "shim-principal";
const HOST: &str = "web01";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn uid(user: &str) -> u32 {
    infrabroker_testbed::uid_of(user).unwrap()
}

/// A sealed host: sshd trusting a test CA, the shim installed as
/// `install-shim.sh` would ([`ShimHost`]) with the test's envelope key
/// pinned, and an SSH client holding a session certificate whose
/// force-command is the shim.
struct Sealed {
    shim: ShimHost,
    _client_dir: tempfile::TempDir,
    sshd: Sshd,
    client: SshClient,
    envelope_key: SigningKey,
}

impl Sealed {
    fn start() -> Sealed {
        ensure_user(USER).unwrap();
        let shim = ShimHost::install(HOST, PRINCIPAL, USER).unwrap();
        let envelope_key = SigningKey::from_bytes(&rand::random());
        shim.pin(&config::openssh_line(&envelope_key.verifying_key(), "test"))
            .unwrap();
        let ca = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let sshd = Sshd::start(
            SshdOptions::new(ca.public_key().to_openssh().unwrap())
                .with_principals(USER, [PRINCIPAL]),
        )
        .unwrap();
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let cert = session_cert(&ca, &key, &shim.force_command());
        let client_dir = tempfile::tempdir().unwrap();
        let client = SshClient::create(client_dir.path(), &key, &cert).unwrap();
        Sealed {
            shim,
            _client_dir: client_dir,
            sshd,
            client,
            envelope_key,
        }
    }

    fn claims(&self, command: &str) -> Claims {
        Claims {
            nonce: Claims::new_nonce(),
            host: HOST.into(),
            principal: PRINCIPAL.into(),
            command: command.into(),
            sudo: false,
            sudo_user: None,
            expires: now() + 60,
            timeout: None,
        }
    }

    /// Sends `request` as the exec request of a new connection.
    fn exec(&self, request: &str) -> Output {
        self.client
            .run(&self.sshd.target(), USER, request, &[])
            .unwrap()
    }

    fn marker(&self, name: &str) -> PathBuf {
        self.shim.marker(name)
    }
}

/// A session-style certificate (no permit-pty needed) with `force`.
fn session_cert(ca: &PrivateKey, key: &PrivateKey, force: &str) -> String {
    let now = now();
    let mut builder = Builder::new_with_random_nonce(
        &mut rand::rng(),
        key.public_key().key_data().clone(),
        now - 5,
        now + 120,
    )
    .unwrap();
    builder.serial(42).unwrap();
    builder.key_id("shim-test").unwrap();
    builder.cert_type(CertType::User).unwrap();
    builder.valid_principal(PRINCIPAL).unwrap();
    builder.critical_option("force-command", force).unwrap();
    builder.sign(ca).unwrap().to_openssh().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The command was refused with `code`, exit 126, and did not run.
fn assert_refused(out: &Output, code: &str) {
    assert_eq!(
        out.status.code(),
        Some(126),
        "stdout {:?} stderr {:?}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains(&format!("refused ({code})")),
        "expected {code}: {}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

#[test]
fn a_good_envelope_runs_its_command_byte_exact() {
    if !sshd_or_skip() {
        return;
    }
    let host = Sealed::start();
    let command = r#"printf '%s\n' "$HOME" 'it'\''s' "${SSH_ORIGINAL_COMMAND-unset}" 'café €'"#;
    let out = host.exec(&host.claims(command).seal(&host.envelope_key));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("/home/{USER}\nit's\nunset\ncafé €\n")
    );
}

#[test]
fn what_a_compromised_broker_sends_never_runs() {
    if !sshd_or_skip() {
        return;
    }
    let host = Sealed::start();
    let touch = |name: &str| format!("touch {}", host.marker(name).display());

    // A bare command: no envelope at all.
    assert_refused(&host.exec(&touch("bare")), "not_envelope");

    // A valid envelope whose command was swapped after signing.
    let good = host.claims("true").seal(&host.envelope_key);
    let mut forged = host.claims(&touch("modified"));
    forged.nonce = Claims::new_nonce();
    let signature = good.rsplit('.').next().unwrap();
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
    assert_refused(
        &host.exec(&format!("IBX1.{payload}.{signature}")),
        "bad_signature",
    );

    // Signed by a key the host does not pin.
    let stranger = SigningKey::from_bytes(&rand::random());
    assert_refused(
        &host.exec(&host.claims(&touch("stranger")).seal(&stranger)),
        "bad_signature",
    );

    // Replayed: the first run succeeds, the second is refused.
    let once = host.claims(&touch("once")).seal(&host.envelope_key);
    assert_eq!(host.exec(&once).status.code(), Some(0));
    std::fs::remove_file(host.marker("once")).unwrap();
    assert_refused(&host.exec(&once), "replayed");

    // Expired, and for another host.
    let mut expired = host.claims(&touch("expired"));
    expired.expires = now() - 1;
    assert_refused(&host.exec(&expired.seal(&host.envelope_key)), "expired");
    let mut elsewhere = host.claims(&touch("elsewhere"));
    elsewhere.host = "db01".into();
    assert_refused(
        &host.exec(&elsewhere.seal(&host.envelope_key)),
        "wrong_host",
    );

    // An interactive login gets nothing either.
    assert_refused(&host.exec(""), "no_command");

    for name in [
        "bare",
        "modified",
        "stranger",
        "once",
        "expired",
        "elsewhere",
    ] {
        assert!(!host.marker(name).exists(), "{name} ran");
    }
    assert!(
        host.sshd.log().contains("shim-test"),
        "sshd accepted the certificate"
    );
}

#[test]
fn a_broken_nonce_store_refuses_everything() {
    if !sshd_or_skip() {
        return;
    }
    let host = Sealed::start();
    let nonces = host.shim.state_dir().join(format!("{}.nonces", uid(USER)));
    std::fs::write(&nonces, "not a nonce line\n").unwrap();
    let marker = host.marker("ran");
    let claims = host.claims(&format!("touch {}", marker.display()));
    assert_refused(&host.exec(&claims.seal(&host.envelope_key)), "nonce_store");
    assert!(!marker.exists());
}

#[test]
fn a_sudo_envelope_runs_as_the_sudo_user() {
    if !sshd_or_skip() {
        return;
    }
    let host = Sealed::start();
    let _rule = sudoers(USER, &format!("{USER} ALL=(root) NOPASSWD: ALL")).unwrap();
    let mut claims = host.claims("id -u");
    claims.sudo = true;
    let out = host.exec(&claims.seal(&host.envelope_key));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "0\n");
}
