use std::time::Duration;

use super::pool::Pool;
use super::*;

#[test]
fn an_ec_point_is_read_as_der_or_raw() {
    let key = [7u8; 32];
    let mut der = vec![0x04, 0x20];
    der.extend_from_slice(&key);
    assert_eq!(pkcs11::ec_point_for_tests(&der), Some(key));
    assert_eq!(pkcs11::ec_point_for_tests(&key), Some(key));
    assert_eq!(pkcs11::ec_point_for_tests(&der[..33]), None);
    assert_eq!(pkcs11::ec_point_for_tests(&[0x04, 0x41, 1, 2]), None);
}

#[test]
fn the_pool_bounds_what_is_in_use_and_keeps_what_comes_back() {
    let pool: Pool<u32> = Pool::new(2);
    let mut a = pool.lease().unwrap();
    let b = pool.lease().unwrap();
    assert!(a.idle.is_none());
    a.keep(1);
    drop(a);
    let c = pool.lease().unwrap();
    assert_eq!(c.idle, Some(1), "the kept item is handed out again");
    std::thread::scope(|scope| {
        let started = std::time::Instant::now();
        scope.spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(b);
        });
        // Both places are taken: this lease waits until b comes back.
        let d = pool.lease();
        assert!(d.is_ok());
        assert!(started.elapsed() >= Duration::from_millis(90));
    });
    drop(c);
    assert_eq!(
        pool.drain(),
        vec![1],
        "an untaken idle item goes back on drop"
    );
}

#[test]
fn a_key_file_must_be_private_ed25519_and_unencrypted() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca");
    let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[3; 32]));
    std::fs::write(
        &path,
        key.to_openssh(ssh_key::LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let spec = CaSpec::File { path: path.clone() };
    let err = Ca::open(&spec).unwrap_err().to_string();
    assert!(err.contains("0644") || err.contains("644"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ca = Ca::open(&spec).unwrap();
    assert_eq!(ca.kind(), "pem");
    assert!(!ca.blocks());
    assert_eq!(ca.public_key().key_data(), key.public_key().key_data());
    // The raw path (the self-test's) agrees with ed25519-dalek.
    ca.self_test().unwrap();
    std::fs::write(&path, "not a key").unwrap();
    let err = Ca::open(&spec).unwrap_err().to_string();
    assert!(err.contains("not an OpenSSH private key"), "{err}");
}

#[test]
fn public_key_lines_must_be_ed25519() {
    assert!(
        parse_ed25519_public(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
        )
        .is_ok()
    );
    assert!(parse_ed25519_public("ssh-rsa AAAA").is_err());
    assert!(parse_ed25519_public("").is_err());
}

#[test]
fn only_token_trouble_resets_the_module() {
    use cryptoki::context::Function;
    use cryptoki::error::{Error, RvError};
    let failed = |rv| Error::Pkcs11(rv, Function::Sign);
    // What SoftHSM2 says when its token directory is gone, and its kin.
    for rv in [
        RvError::ObjectHandleInvalid,
        RvError::SessionHandleInvalid,
        RvError::DeviceRemoved,
        RvError::TokenNotPresent,
        RvError::CryptokiNotInitialized,
    ] {
        assert!(pkcs11::token_trouble_for_tests(&failed(rv)), "{rv:?}");
    }
    // One request refused: the other sessions and keys are left alone.
    for rv in [
        RvError::DataLenRange,
        RvError::ArgumentsBad,
        RvError::MechanismInvalid,
        RvError::OperationActive,
        RvError::HostMemory,
    ] {
        assert!(!pkcs11::token_trouble_for_tests(&failed(rv)), "{rv:?}");
    }
}

/// An agent end that answers `answer` after reading one request, one byte
/// every `drip`.
fn dripping_agent(
    answer: Vec<u8>,
    drip: Duration,
) -> (std::os::unix::net::UnixStream, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let agent = std::thread::spawn(move || {
        let mut request = [0u8; 5];
        theirs.read_exact(&mut request).unwrap();
        let mut frame = u32::try_from(answer.len()).unwrap().to_be_bytes().to_vec();
        frame.extend_from_slice(&answer);
        for byte in frame {
            if theirs.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(drip);
        }
    });
    (ours, agent)
}

#[test]
fn an_agent_exchange_has_one_deadline_not_one_per_read() {
    let answer = vec![12, 0, 0, 0, 0, 1, 2, 3, 4, 5];
    // Each byte comes well within the limit, the whole answer does not
    // (60 ms); or a read itself times out (400 ms), which is the same
    // deadline, not an I/O error.
    for drip in [60, 400] {
        let (mut stream, agent) = dripping_agent(answer.clone(), Duration::from_millis(drip));
        let got = agent::exchange(&mut stream, &[11], Duration::from_millis(300));
        assert!(
            matches!(&got, Err(CaError::Unavailable(why)) if why.contains("in time")),
            "drip {drip} ms: {got:?}"
        );
        drop(stream);
        agent.join().unwrap();
    }

    // A prompt agent is answered in full.
    let (mut stream, agent) = dripping_agent(answer.clone(), Duration::ZERO);
    let got = agent::exchange(&mut stream, &[11], Duration::from_millis(300));
    assert_eq!(got.ok(), Some(answer));
    agent.join().unwrap();
}
