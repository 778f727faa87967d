use std::io::Read as _;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use infrabroker_testbed::{
    SshClient, SshTarget, Sshd, SshdOptions, ensure_user, ssh, sshd_or_skip, write_cert,
    write_private_key,
};

use crate::support::{Ca, PRINCIPAL, USER, ed25519};

fn start(ca: &Ca) -> Sshd {
    ensure_user(USER).unwrap();
    Sshd::start(SshdOptions::new(ca.pubkey()).with_principals(USER, [PRINCIPAL])).unwrap()
}

#[test]
fn starts_answers_with_a_banner_and_stops_on_drop() {
    if !sshd_or_skip() {
        return;
    }
    let sshd = start(&Ca::new());
    let pid = sshd.pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(sshd.addr().ip().is_loopback());

    let mut stream = TcpStream::connect(sshd.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut banner = [0u8; 8];
    stream.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"SSH-2.0-");

    let host_key = sshd.host_key_openssh();
    assert!(host_key.starts_with("ssh-ed25519 AAAA"), "{host_key}");
    assert_eq!(host_key.split(' ').count(), 2);
    assert!(
        sshd.log().contains("Server listening on 127.0.0.1"),
        "{}",
        sshd.log()
    );
    let log_path = sshd.log_path();
    assert!(log_path.exists());

    drop(sshd);
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert!(!log_path.exists(), "temp dir removed");
}

#[test]
fn rejected_config_surfaces_sshd_t_output() {
    if !sshd_or_skip() {
        return;
    }
    let mut opts = SshdOptions::new(Ca::new().pubkey());
    opts.extra_config.push("BogusOption yes".to_owned());
    let err = format!("{:#}", Sshd::start(opts).unwrap_err());
    assert!(err.contains("sshd -t rejected"), "{err}");
    assert!(err.contains("BogusOption"), "{err}");
}

#[test]
fn taken_explicit_port_is_an_error_with_the_log() {
    if !sshd_or_skip() {
        return;
    }
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut opts = SshdOptions::new(Ca::new().pubkey());
    opts.port = Some(busy.local_addr().unwrap().port());
    let err = format!("{:#}", Sshd::start(opts).unwrap_err());
    assert!(err.contains("Address already in use"), "{err}");
}

#[test]
fn extra_config_overrides_defaults() {
    if !sshd_or_skip() {
        return;
    }
    let ca = Ca::new();
    ensure_user(USER).unwrap();
    let mut opts = SshdOptions::new(ca.pubkey()).with_principals(USER, [PRINCIPAL]);
    opts.extra_config = vec![
        "MaxSessions 3".to_owned(),
        "Match User nobody".to_owned(),
        "  AllowTcpForwarding no".to_owned(),
    ];
    let sshd = Sshd::start(opts).unwrap();
    let config = std::fs::read_to_string(sshd.config_path()).unwrap();
    let first = config.lines().position(|l| l == "MaxSessions 3").unwrap();
    assert!(first < config.lines().position(|l| l == "MaxSessions 64").unwrap());
    assert!(
        config.trim_end().ends_with("AllowTcpForwarding no"),
        "{config}"
    );
}

#[test]
fn ssh_with_a_certificate_runs_the_command() {
    if !sshd_or_skip() {
        return;
    }
    let ca = Ca::new();
    let sshd = start(&ca);
    let key = ed25519();
    let dir = tempfile::tempdir().unwrap();
    let (key_path, cert_path) = (dir.path().join("k"), dir.path().join("k-cert.pub"));
    write_private_key(&key_path, &key).unwrap();
    write_cert(&cert_path, &ca.user_cert(&key, &[PRINCIPAL], &[])).unwrap();

    let out = ssh(&sshd, USER, &key_path, &cert_path, "id -un", &[]).unwrap();
    assert!(out.status.success(), "{out:?}\n{}", sshd.log());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ibtest\n");
    assert!(
        sshd.wait_for_log(
            r#"Accepted certificate ID "testbed-test-principal""#,
            Duration::from_secs(5)
        ),
        "{}",
        sshd.log()
    );
}

#[test]
fn wrong_principal_is_refused_and_logged_until_authorized() {
    if !sshd_or_skip() {
        return;
    }
    let ca = Ca::new();
    let sshd = start(&ca);
    let key = ed25519();
    let dir = tempfile::tempdir().unwrap();
    let client = SshClient::create(
        dir.path(),
        &key,
        &ca.user_cert(&key, &["other-principal"], &[]),
    )
    .unwrap();

    let out = client.run(&sshd.target(), USER, "id -un", &[]).unwrap();
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(out.stdout.is_empty());
    assert!(
        sshd.wait_for_log(
            "does not contain an authorized principal",
            Duration::from_secs(5)
        ),
        "{}",
        sshd.log()
    );

    sshd.set_principals(USER, &[PRINCIPAL, "other-principal"])
        .unwrap();
    let out = client.run(&sshd.target(), USER, "id -un", &[]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ibtest\n",
        "{out:?}\n{}",
        sshd.log()
    );
}

#[test]
fn unexpected_host_key_is_refused() {
    if !sshd_or_skip() {
        return;
    }
    let ca = Ca::new();
    let sshd = start(&ca);
    let key = ed25519();
    let dir = tempfile::tempdir().unwrap();
    let client =
        SshClient::create(dir.path(), &key, &ca.user_cert(&key, &[PRINCIPAL], &[])).unwrap();
    let impostor = ed25519().public_key().to_openssh().unwrap();
    let target = SshTarget::from((sshd.addr(), impostor));
    let out = client.run(&target, USER, "id -un", &[]).unwrap();
    assert_eq!(out.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Host key verification failed"), "{stderr}");
}

#[test]
fn private_key_file_is_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    std::fs::write(&path, "old").unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    write_private_key(&path, &ed25519()).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
    );
    assert!(write_cert(&dir.path().join("c"), "ssh-ed25519 AAAA").is_err());
}
