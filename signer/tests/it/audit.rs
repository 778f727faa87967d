//! The signer's audit chain: concurrency, tamper evidence via the verifier,
//! serials across restarts, and fail-closed issuance.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use infrabroker_common::audit::checkpoint::Checkpoint;
use infrabroker_common::audit::{VerifyOptions, parse_public_key, verify_file};
use infrabroker_testbed::stack::SignerProc;
use serde_json::json;

use crate::harness::{Stack, keypair, oneshot};

fn verify(s: &Stack) -> u64 {
    let key = parse_public_key(&std::fs::read_to_string(s.pki.path("signer-audit.pub")).unwrap())
        .unwrap();
    verify_file(
        s.audit_log(),
        &key,
        VerifyOptions {
            all_signatures: true,
        },
    )
    .unwrap()
    .records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_signs_give_distinct_serials_and_a_verifiable_log() {
    let s = Arc::new(Stack::start(|_, _| {}));
    let clients: Vec<_> = (0..8).map(|_| s.client("broker-1")).collect();
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let c = clients[i % clients.len()].clone();
        let body = serde_json::to_vec(&oneshot("web", &format!("echo {i}"), &keypair())).unwrap();
        tasks.push(tokio::spawn(async move {
            let raw = c
                .call_raw(hyper::Method::POST, "/v1/sign", Some(body))
                .await
                .unwrap();
            assert_eq!(raw.status.as_u16(), 200);
            let v: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
            v["serial"].as_u64().unwrap()
        }));
    }
    let mut serials = BTreeSet::new();
    for t in tasks {
        serials.insert(t.await.unwrap());
    }
    assert_eq!(serials.len(), 1000);
    let issued: BTreeSet<u64> = s
        .audit_records()
        .iter()
        .filter(|r| r["outcome"] == "issued")
        .map(|r| r["serial"].as_u64().unwrap())
        .collect();
    assert_eq!(issued, serials, "every certificate has its record");
    assert!(verify(&s) >= 1001);
}

#[tokio::test]
async fn serials_stay_unique_across_restarts() {
    let mut s = Stack::start(|_, _| {});
    let key = keypair();
    let (_, v) = s.sign("broker-1", &oneshot("web", "id", &key)).await;
    let first = v["serial"].as_u64().unwrap();
    s.signer.child.stop();
    s.signer = SignerProc::start_file(s.dir.path(), &s.signer.config_path.clone()).unwrap();
    let (_, v) = s.sign("broker-1", &oneshot("web", "id", &key)).await;
    assert!(v["serial"].as_u64().unwrap() > first);
    verify(&s);
}

/// A restored log whose largest serial leaves no room above it stops the
/// signer with a clear error: the counter must never wrap to 0 and repeat
/// serials.
#[tokio::test]
async fn a_restored_serial_at_the_top_of_the_range_stops_the_signer() {
    for top in [u64::MAX, u64::MAX - 1] {
        let mut s = Stack::start(|_, _| {});
        s.signer.child.stop();
        let key =
            infrabroker_common::audit::AuditKey::from_seed_file(s.pki.path("signer-audit.seed"))
                .unwrap();
        let log = infrabroker_common::audit::AuditLog::open(s.audit_log(), key).unwrap();
        let mut rec = serde_json::Map::new();
        rec.insert("outcome".into(), "issued".into());
        rec.insert("serial".into(), top.into());
        log.append(rec).await.unwrap();
        drop(log);
        let err = SignerProc::start_file(s.dir.path(), &s.signer.config_path.clone())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("largest serial is {top}")) && err.contains("never wrap"),
            "{err}"
        );
    }
}

/// Fills a small tmpfs under the audit log: signing must stop (nothing
/// issued without its record) and resume once space is back.
#[tokio::test]
async fn signing_is_refused_while_the_audit_log_cannot_be_written() {
    if !infrabroker_testbed::require("root (mount tmpfs)", infrabroker_testbed::is_root()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = infrabroker_testbed::SmallDisk::mount(dir.path()).unwrap();
    let mnt = disk.path().to_path_buf();
    let log = mnt.join("audit.log");
    // The state store (serials, certificate index) lives off the full
    // disk: this test is about the audit log alone.
    let state = tempfile::tempdir().unwrap();
    let s = Stack::start(|cfg, _| {
        cfg["audit_log"] = json!(log);
        cfg["store"] = json!({"sqlite": state.path().join("state.db")});
    });
    let key = keypair();
    let (st, _) = s.sign("broker-1", &oneshot("web", "id", &key)).await;
    assert_eq!(st, 200);

    let filler = disk.fill();
    // The log's last page may still have room: keep signing until it is
    // full. Every answer that carries a certificate must have its record.
    let mut returned = 1;
    let mut refused = None;
    for _ in 0..200 {
        let (st, v) = s.sign("broker-1", &oneshot("web", "id", &key)).await;
        if st == 200 {
            returned += 1;
            continue;
        }
        refused = Some((st, v));
        break;
    }
    let (st, v) = refused.expect("a full disk must stop issuance");
    assert_eq!(st, 503, "{v}");
    assert_eq!(v["reason_code"], "audit_unavailable");
    assert!(v.get("certificate").is_none());

    std::fs::remove_file(&filler).unwrap();
    let mut ok = false;
    for _ in 0..50 {
        let (st, _) = s.sign("broker-1", &oneshot("web", "id", &key)).await;
        if st == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "signing resumes once the log is writable");
    returned += 1;
    let key = parse_public_key(&std::fs::read_to_string(s.pki.path("signer-audit.pub")).unwrap())
        .unwrap();
    let report = verify_file(
        &log,
        &key,
        VerifyOptions {
            all_signatures: true,
        },
    )
    .unwrap();
    let records = std::fs::read_to_string(&log).unwrap();
    let issued = records
        .lines()
        .filter(|l| l.contains("\"outcome\":\"issued\""))
        .count();
    assert_eq!(
        issued, returned,
        "exactly the certificates that were returned are in the log"
    );
    assert!(report.records >= 3);
}

/// Fills a small tmpfs under the state store while the audit log has room:
/// a certificate whose row in the index of live certificates (what a
/// freeze revokes) cannot be written is withheld with `store_unavailable`
/// (its refusal's record names the serial never handed out), and issuing
/// resumes once space is back.
#[tokio::test]
async fn a_certificate_the_index_cannot_record_is_withheld() {
    if !infrabroker_testbed::require("root (mount tmpfs)", infrabroker_testbed::is_root()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = infrabroker_testbed::SmallDisk::mount(dir.path()).unwrap();
    let db = disk.path().join("state.db");
    let s = Stack::start(|cfg, _| cfg["store"] = json!({"sqlite": db}));
    let key = keypair();
    assert_eq!(s.sign("broker-1", &oneshot("web", "id", &key)).await.0, 200);
    let filler = disk.fill();
    let mut returned = 1;
    let mut refused = None;
    for _ in 0..500 {
        let (st, v) = s.sign("broker-1", &oneshot("web", "id", &key)).await;
        if st == 200 {
            returned += 1;
            continue;
        }
        refused = Some((st, v));
        break;
    }
    let (st, v) = refused.expect("a full state store must stop issuance");
    assert_eq!(
        (st, v["reason_code"].as_str()),
        (503, Some("store_unavailable")),
        "{v}"
    );
    assert!(v.get("certificate").is_none());
    assert!(v["message"].as_str().unwrap().contains("revocation"), "{v}");
    let withheld = s
        .wait_audit(|r| r["reason_code"] == "store_unavailable")
        .expect("audited");
    assert!(
        withheld["outcome"] == "denied" && withheld["serial"].is_u64(),
        "{withheld}"
    );
    std::fs::remove_file(&filler).unwrap();
    let mut resumed = false;
    for _ in 0..50 {
        if s.sign("broker-1", &oneshot("web", "id", &key)).await.0 == 200 {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(resumed, "signing resumes once the store is writable");
    let issued = s
        .audit_records()
        .iter()
        .filter(|r| r["outcome"] == "issued")
        .count();
    assert_eq!(
        issued,
        returned + 1,
        "exactly the returned certificates were issued"
    );
}

/// Re-hashes an edited record line the way an attacker without the audit
/// key can (`hash` is SHA-256 of the line up to `,"hash":…` plus `}`), with
/// the system's `sha256sum` as an independent implementation.
fn rehash_line(line: &str) -> String {
    let body = format!("{}}}", &line[..line.len() - 75]);
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    format!("{},\"hash\":\"{}\"}}", &body[..body.len() - 1], &hex[..64])
}

/// Issue 11 §1: someone who can write the log but holds no key edits the
/// last record while the signer is stopped. The signer must refuse to seal
/// a genuine signature over it: exit 65 naming the file, the seq and what
/// to do, and the log left untouched.
#[tokio::test]
async fn a_log_edited_while_stopped_stops_the_signer_with_exit_65() {
    let mut s = Stack::start(|_, _| {});
    let (st, _) = s.sign("broker-1", &oneshot("web", "id", &keypair())).await;
    assert_eq!(st, 200);
    s.signer.child.stop();
    let text = std::fs::read_to_string(s.audit_log()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let last = lines.len() - 1;
    let edited = lines[last].replace("\"outcome\":\"issued\"", "\"outcome\":\"denied\"");
    assert_ne!(edited, lines[last], "the last record is the issuance");
    lines[last] = rehash_line(&edited);
    let forged: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(s.audit_log(), &forged).unwrap();
    // Hashes and links check out; only the signature gives it away.
    let (code, stderr) = refused_start(&s);
    assert_eq!(code, Some(65), "{stderr}");
    let seq = lines.len();
    for needle in [
        s.audit_log().display().to_string(),
        format!("(seq {seq})"),
        "bad signature".to_owned(),
        "--all-signatures".to_owned(),
        "move the log aside".to_owned(),
    ] {
        assert!(stderr.contains(&needle), "{needle:?} missing in {stderr}");
    }
    assert_eq!(std::fs::read_to_string(s.audit_log()).unwrap(), forged);
}

/// Starts the signer on `s`'s config expecting it to refuse: its exit code
/// and stderr. Bounded: a signer that (wrongly) starts is killed by the
/// guard's drop.
fn refused_start(s: &Stack) -> (Option<i32>, String) {
    let mut child = infrabroker_testbed::spawn_service(
        infrabroker_testbed::bin_path("signer").unwrap(),
        [
            std::ffi::OsStr::new("--config"),
            s.signer.config_path.as_os_str(),
        ],
        s.dir.path().join("refused.log"),
    )
    .unwrap();
    infrabroker_testbed::wait_until(Duration::from_secs(20), || child.try_status().is_some());
    let stderr = child.log();
    (child.try_status().and_then(|s| s.code()), stderr)
}

/// `audit_checkpoint` in `dir/checkpoints/signer.cp`, every 2 records.
fn with_checkpoints(cfg: &mut serde_json::Value) {
    let log = std::path::PathBuf::from(cfg["audit_log"].as_str().unwrap());
    let cp_dir = log.parent().unwrap().join("checkpoints");
    std::fs::create_dir_all(&cp_dir).unwrap();
    cfg["audit_checkpoint"] = serde_json::json!({
        "path": cp_dir.join("signer.cp"), "origin": "infrabroker.test/signer",
        "every_records": 2,
    });
}

/// Issue 11 §5: SIGUSR1 rotates the signer's log while it serves; the
/// archived file and the new one verify as one rotated log with
/// `broker-ctl audit verify OLD NEW`, and the checkpoint moved to the new
/// file (the restart accepts it).
#[tokio::test]
async fn sigusr1_rotates_the_log_into_a_pair_broker_ctl_verifies() {
    const SIGUSR1: i32 = 10;
    let mut s = Stack::start(|cfg, _| with_checkpoints(cfg));
    let key = keypair();
    assert_eq!(s.sign("broker-1", &oneshot("web", "id", &key)).await.0, 200);
    let archived = || {
        std::fs::read_dir(s.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains("audit.log.2"))
    };
    assert!(s.signer.child.signal(SIGUSR1));
    infrabroker_testbed::wait_until(Duration::from_secs(10), || archived().is_some());
    let old = archived().expect("the signer rotated its log");
    assert_eq!(s.sign("broker-1", &oneshot("web", "id", &key)).await.0, 200);
    s.signer.child.stop();
    let pubkey = s.pki.path("signer-audit.pub");
    let (ok, text) = infrabroker_testbed::broker_ctl(&[
        "audit".as_ref(),
        "verify".as_ref(),
        old.as_os_str(),
        s.audit_log().as_os_str(),
        "--pubkey".as_ref(),
        pubkey.as_os_str(),
    ])
    .unwrap();
    assert!(ok, "{text}");
    assert!(
        text.contains("2 files, each continuing the one before"),
        "{text}"
    );
    let old_text = std::fs::read_to_string(&old).unwrap();
    assert!(
        old_text.contains("\"event\":\"audit_rotated\""),
        "{old_text}"
    );
    s.signer = SignerProc::start_file(s.dir.path(), &s.signer.config_path.clone()).unwrap();
    assert_eq!(s.sign("broker-1", &oneshot("web", "id", &key)).await.0, 200);
}

/// Issue 11 §2: with `audit_checkpoint` the signer writes signed
/// checkpoints, and a log cut short while it was stopped (its new last
/// record is genuine, so the tail check alone accepts it) stops the
/// restart with exit 65 naming the checkpoint; restoring the records lets
/// it start again.
#[tokio::test]
async fn a_log_cut_short_while_stopped_is_caught_by_the_checkpoint() {
    let mut s = Stack::start(|cfg, _| with_checkpoints(cfg));
    let key = keypair();
    for _ in 0..3 {
        assert_eq!(s.sign("broker-1", &oneshot("web", "id", &key)).await.0, 200);
    }
    s.signer.child.stop();
    let cp_path = s.dir.path().join("checkpoints/signer.cp");
    let audit_key =
        infrabroker_common::audit::AuditKey::from_seed_file(s.pki.path("signer-audit.seed"))
            .unwrap();
    let text = std::fs::read_to_string(&cp_path).unwrap();
    let cp = Checkpoint::open_own(&text, &audit_key.verifying_key()).unwrap();
    let full = std::fs::read_to_string(s.audit_log()).unwrap();
    assert_eq!(
        cp.size,
        full.lines().count() as u64,
        "the stop checkpoints every record"
    );

    let cut: String = full
        .lines()
        .take(full.lines().count() - 1)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(s.audit_log(), &cut).unwrap();
    let (code, stderr) = refused_start(&s);
    assert_eq!(code, Some(65), "{stderr}");
    for needle in [cp_path.display().to_string(), "truncated".to_owned()] {
        assert!(stderr.contains(&needle), "{needle:?} missing in {stderr}");
    }
    assert_eq!(
        std::fs::read_to_string(s.audit_log()).unwrap(),
        cut,
        "left as it was"
    );

    std::fs::write(s.audit_log(), &full).unwrap();
    s.signer = SignerProc::start_file(s.dir.path(), &s.signer.config_path.clone()).unwrap();
    assert_eq!(s.sign("broker-1", &oneshot("web", "id", &key)).await.0, 200);
}

/// Issue 11 §4: with `audit_syslog` the signer forwards every sealed
/// record to a real rsyslogd, over UDP, TCP and TLS, as RFC 5424 messages
/// whose text is the chain's line exactly.
#[tokio::test]
async fn records_reach_a_real_rsyslogd_over_udp_tcp_and_tls() {
    use infrabroker_testbed::rsyslog::{Rsyslog, TlsFiles, have_rsyslogd};
    if !infrabroker_testbed::require(
        "rsyslogd and its TLS driver (packages rsyslog, rsyslog-gnutls)",
        have_rsyslogd(),
    ) {
        return;
    }
    for proto in ["udp", "tcp", "tls"] {
        let mut receiver = None;
        let mut s = Stack::start(|cfg, pki| {
            let (ca, cert, key) = (
                pki.path("ca.crt"),
                pki.path("signer.crt"),
                pki.path("signer.key"),
            );
            let tls = TlsFiles {
                ca: &ca,
                cert: &cert,
                key: &key,
            };
            let r = Rsyslog::start(&pki.dir, Some(tls)).unwrap();
            let port = match proto {
                "udp" => r.udp,
                "tcp" => r.tcp,
                _ => r.tls.unwrap(),
            };
            cfg["audit_syslog"] =
                json!({"address": format!("127.0.0.1:{port}"), "protocol": proto});
            if proto == "tls" {
                cfg["audit_syslog"]["ca"] = json!(ca);
            }
            receiver = Some(r);
        });
        let r = receiver.unwrap();
        assert_eq!(
            s.sign("broker-1", &oneshot("web", "id", &keypair()))
                .await
                .0,
            200
        );
        let issued = |m: &String| m.contains("\"outcome\":\"issued\"");
        let got = infrabroker_testbed::wait_until(Duration::from_secs(10), || {
            r.messages().iter().any(issued)
        });
        assert!(got, "{proto}: nothing issued arrived: {:?}", r.messages());
        let chain = std::fs::read_to_string(s.audit_log()).unwrap();
        let chain: BTreeSet<&str> = chain.lines().collect();
        for m in r.messages() {
            let (head, line) = m.split_once(" audit - ").unwrap();
            assert!(head.starts_with("<110>1 "), "{proto}: {m}");
            assert!(head.contains(" infrabroker-signer "), "{proto}: {m}");
            assert!(
                chain.contains(line),
                "{proto}: not a line of the chain: {line}"
            );
        }
        s.signer.child.stop();
    }
}
