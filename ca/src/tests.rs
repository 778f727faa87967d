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
