//! `audit_syslog` settings, the RFC 5424 message and framing over loopback
//! sockets, and drops counted (and recorded in the chain) while the
//! receiver is away. A real rsyslogd receives them in the signer's tests.

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use super::super::AuditLog;
use super::super::tests::{fields, key};
use super::*;
use crate::config::{Errors, parse_jwcc};

fn read(text: &str) -> Result<Option<SyslogSettings>, String> {
    let v = parse_jwcc(text).unwrap();
    let errs = Errors::new();
    let o = Obj::new(&v, "", &errs).unwrap();
    let got = SyslogSettings::read(&o, Path::new("/etc/ib"));
    errs.finish(got).map_err(|e| e.to_string())
}

#[test]
fn settings_are_read_and_checked() {
    let s = read(r#"{"audit_syslog": {"address": "127.0.0.1:514"}}"#)
        .unwrap()
        .unwrap();
    assert_eq!((s.protocol, s.queue), (Protocol::Udp, 10_000));
    let s = read(
        r#"{"audit_syslog": {"address": "logs.example:6514", "protocol": "tls", "ca": "ca.pem"}}"#,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        s.protocol,
        Protocol::Tls {
            ca: "/etc/ib/ca.pem".into(),
            server_name: "logs.example".into()
        }
    );
    let e = read(
        r#"{"audit_syslog": {"address": "nohost", "protocol": "smtp", "format": "json", "queue": 0, "x": 1}}"#,
    )
    .unwrap_err();
    for want in [
        "audit_syslog.address: \"nohost\" is not host:port",
        "audit_syslog.protocol: \"smtp\"",
        "audit_syslog.format: only \"rfc5424\"",
        "audit_syslog.queue: must be between",
        "audit_syslog.x: unknown field",
    ] {
        assert!(e.contains(want), "{want:?} not in {e}");
    }
    let e = read(r#"{"audit_syslog": {"address": "h:1", "protocol": "tls"}}"#).unwrap_err();
    assert!(e.contains("audit_syslog.ca: is required"), "{e}");
}

fn forwarding(protocol: Protocol, address: String) -> (tempfile::TempDir, AuditLog) {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path().join("a.log"), key()).unwrap();
    let settings = SyslogSettings {
        address,
        protocol,
        queue: 100,
    };
    log.forward_to_syslog(settings, "infrabroker-test").unwrap();
    (dir, log)
}

fn check_message(msg: &str, seq: u64) {
    let (head, line) = msg
        .split_once(" audit - ")
        .expect("RFC 5424 header, MSGID audit");
    let parts: Vec<&str> = head.split(' ').collect();
    assert_eq!(parts[0], "<110>1", "{msg}");
    assert_eq!(parts.len(), 5, "{head}");
    assert_eq!(parts[3], "infrabroker-test");
    assert_eq!(parts[4], std::process::id().to_string());
    let record: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(record["seq"], seq);
}

#[test]
fn udp_carries_one_record_per_datagram() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (_dir, log) = forwarding(Protocol::Udp, rx.local_addr().unwrap().to_string());
    for i in 1..=3 {
        log.append_blocking(fields(i)).unwrap();
    }
    let mut buf = vec![0u8; 70_000];
    for seq in 1..=3 {
        let n = rx.recv(&mut buf).unwrap();
        check_message(std::str::from_utf8(&buf[..n]).unwrap(), seq);
    }
}

#[test]
fn tcp_frames_by_octet_count_and_drops_are_counted_and_recorded_while_it_is_down() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (dir, log) = forwarding(Protocol::Tcp, addr.to_string());
    log.append_blocking(fields(1)).unwrap();
    let (stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut len = Vec::new();
    reader.read_until(b' ', &mut len).unwrap();
    let n: usize = std::str::from_utf8(&len).unwrap().trim().parse().unwrap();
    let mut msg = vec![0u8; n];
    reader.read_exact(&mut msg).unwrap();
    check_message(std::str::from_utf8(&msg).unwrap(), 1);

    // The receiver goes away: appends still succeed; what cannot be sent
    // is counted, and the chain is told.
    drop(reader);
    drop(listener);
    assert_eq!(log.syslog_dropped().get(), 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut i = 2;
    while log.syslog_dropped().get() == 0 && std::time::Instant::now() < deadline {
        log.append_blocking(fields(i)).unwrap();
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(log.syslog_dropped().get() > 0, "drops counted");
    log.append_blocking(fields(i)).unwrap();
    drop(log);
    let text = std::fs::read_to_string(dir.path().join("a.log")).unwrap();
    assert!(
        text.contains("\"event\":\"audit_syslog_dropped\""),
        "recorded in the chain"
    );
}
