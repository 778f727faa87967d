use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use infrabroker_testbed::{bin_path, free_port, spawn_service, wait_until};

/// Another test may take the port between the two binds (the function's
/// doc says so); five tries in a row losing that race would be a bug.
#[test]
fn free_port_is_bindable() {
    let bound = (0..5).any(|_| {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
    });
    assert!(
        bound,
        "five free ports in a row were taken before they could be bound"
    );
}

#[test]
fn wait_until_polls_until_true_or_timeout() {
    let start = Instant::now();
    let mut n = 0;
    assert!(wait_until(Duration::from_secs(5), || {
        n += 1;
        n == 3
    }));
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(!wait_until(Duration::from_millis(100), || false));
    assert!(start.elapsed() >= Duration::from_millis(100));
}

#[test]
fn missing_binary_says_how_to_build_it() {
    let err = bin_path("no-such-binary-here").unwrap_err().to_string();
    assert!(err.contains("cargo build --workspace --bins"), "{err}");
}

#[test]
fn service_output_is_logged_and_process_stopped_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("svc.log");
    let svc = spawn_service(
        "/bin/sh",
        ["-c", "echo to-stdout; echo to-stderr >&2; exec sleep 60"],
        &log,
    )
    .unwrap();
    assert!(
        svc.wait_for_log("to-stdout", Duration::from_secs(5)),
        "{}",
        svc.log()
    );
    assert!(
        svc.wait_for_log("to-stderr", Duration::from_secs(5)),
        "{}",
        svc.log()
    );
    assert_eq!(svc.log_path(), Some(log.as_path()));
    let pid = svc.pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let start = Instant::now();
    drop(svc);
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    // SIGTERM ends `sleep` at once; the SIGKILL fallback was not needed.
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn signals_reach_the_service_and_stop_reports_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = spawn_service(
        "/bin/sh",
        [
            "-c",
            "trap 'echo got-hup' HUP; echo ready; while :; do sleep 0.05; done",
        ],
        dir.path().join("log"),
    )
    .unwrap();
    assert!(svc.wait_for_log("ready", Duration::from_secs(5)));
    assert!(svc.signal(libc::SIGHUP));
    assert!(
        svc.wait_for_log("got-hup", Duration::from_secs(5)),
        "{}",
        svc.log()
    );
    assert!(svc.signal(libc::SIGUSR1));
    // The default action of SIGUSR1 ends the shell.
    assert!(wait_until(Duration::from_secs(5), || svc
        .try_status()
        .is_some()));
    assert!(!svc.signal(libc::SIGHUP));
    let status = svc.stop().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGUSR1)
    );
}
