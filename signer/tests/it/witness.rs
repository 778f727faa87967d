//! Issue 11 §2, witnesses: the signer's checkpoints go to a real C2SP
//! `tlog-witness` (aics-witness from PyPI, an independent implementation)
//! with consistency proofs; its cosignatures verify with the witness's key
//! (`broker-ctl audit cosignatures`); a witness that is down holds up no
//! certificate; and a log replaced under the same origin (a split view)
//! is never cosigned.

use std::path::{Path, PathBuf};
use std::time::Duration;

use infrabroker_testbed::stack::SignerProc;
use infrabroker_testbed::witness::{Witness, witness_or_skip};
use serde_json::json;

use crate::harness::{Stack, checkpoint_size, keypair, oneshot};

const ORIGIN: &str = "infrabroker.test/signer";

fn ctl(args: &[&std::ffi::OsStr]) -> (bool, String) {
    infrabroker_testbed::broker_ctl(args).unwrap()
}

/// Waits until the signer's log says `needle`.
fn wait_for_log(s: &Stack, needle: &str) {
    assert!(
        infrabroker_testbed::wait_until(Duration::from_secs(20), || s
            .signer
            .child
            .log()
            .contains(needle)),
        "{needle:?} not in {}",
        s.signer.child.log()
    );
}

/// The log's verifier key, as `broker-ctl audit vkey` prints it.
fn log_vkey(pubkey: &Path) -> String {
    let (ok, text) = ctl(&[
        "audit".as_ref(),
        "vkey".as_ref(),
        "--pubkey".as_ref(),
        pubkey.as_os_str(),
        "--origin".as_ref(),
        ORIGIN.as_ref(),
    ]);
    assert!(ok, "{text}");
    text.trim().to_owned()
}

/// `broker-ctl audit cosignatures FILE --pubkey P --witness VKEY`.
fn cosignatures(file: &Path, pubkey: &Path, vkey: &str) -> (bool, String) {
    ctl(&[
        "audit".as_ref(),
        "cosignatures".as_ref(),
        file.as_os_str(),
        "--pubkey".as_ref(),
        pubkey.as_os_str(),
        "--witness".as_ref(),
        vkey.as_ref(),
    ])
}

fn checkpoint_config(cfg: &mut serde_json::Value, w: &Witness) -> PathBuf {
    let log = PathBuf::from(cfg["audit_log"].as_str().unwrap());
    let dir = log.parent().unwrap().join("checkpoints");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("signer.cp");
    cfg["audit_checkpoint"] = json!({
        "path": path, "origin": ORIGIN, "every_records": 2,
        "witnesses": [{"url": w.url, "vkey": w.vkey}],
    });
    path
}

#[tokio::test]
async fn a_witness_cosigns_checkpoints_and_never_a_replaced_log() {
    if !witness_or_skip() {
        return;
    }
    let wdir = tempfile::tempdir().unwrap();
    let (mut witness, mut cp) = (None, PathBuf::new());
    let port = infrabroker_testbed::free_port();
    let mut s = Stack::start(|cfg, pki| {
        cfg["monitor_listen"] = json!(format!("127.0.0.1:{port}"));
        let w = Witness::start(
            wdir.path(),
            ORIGIN,
            &log_vkey(&pki.path("signer-audit.pub")),
        )
        .unwrap();
        cp = checkpoint_config(cfg, &w);
        witness = Some(w);
    });
    let mut witness = witness.unwrap();
    let cosigned = PathBuf::from(format!("{}.cosigned", cp.display()));
    let pubkey = s.pki.path("signer-audit.pub");
    let key = keypair();
    let records = |s: &Stack| {
        std::fs::read_to_string(s.audit_log())
            .unwrap()
            .lines()
            .count() as u64
    };

    // Two rounds: the second is sent with a consistency proof from the
    // size the witness cosigned first, which it checks.
    for round in 1..=2 {
        for _ in 0..4 {
            assert_eq!(s.sign("broker-1", &oneshot("web", "id", &key)).await.0, 200);
        }
        let want = records(&s) & !1;
        assert!(
            infrabroker_testbed::wait_until(Duration::from_secs(20), || checkpoint_size(&cosigned)
                >= want),
            "round {round}: cosigned {} of {want}\nwitness: {}\nsigner: {}",
            checkpoint_size(&cosigned),
            witness.log(),
            s.signer.child.log()
        );
    }
    let (ok, text) = cosignatures(&cosigned, &pubkey, &witness.vkey);
    assert!(ok && text.contains("cosigned by witness.test/w1"), "{text}");
    // The cosigned note is still the log's checkpoint.
    let (ok, text) = ctl(&[
        "audit".as_ref(),
        "verify".as_ref(),
        s.audit_log().as_os_str(),
        "--pubkey".as_ref(),
        pubkey.as_os_str(),
        "--checkpoint".as_ref(),
        cosigned.as_os_str(),
    ]);
    assert!(ok, "{text}");
    // A key that is not the witness's finds no cosignature.
    let other = Witness::start(&wdir.path().join("other"), ORIGIN, &log_vkey(&pubkey)).unwrap();
    let (ok, text) = cosignatures(&cosigned, &pubkey, &other.vkey);
    assert!(!ok && text.contains("no valid cosignature"), "{text}");
    drop(other);

    // A witness that is down holds nothing up; it is logged.
    witness.stop();
    for _ in 0..4 {
        assert_eq!(s.sign("broker-1", &oneshot("web", "id", &key)).await.0, 200);
    }
    wait_for_log(&s, "audit checkpoint not cosigned");
    let (_, metrics) = infrabroker_testbed::monitor::get(port, "/metrics").unwrap();
    let counter = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    assert!(
        counter("infrabroker_audit_witness_failures_total") >= Some(1),
        "{metrics}"
    );
    assert!(
        counter("infrabroker_audit_witness_cosigned_total") >= Some(2),
        "{metrics}"
    );
    witness.start_again().unwrap();

    // The log and its checkpoints replaced under the same origin (what a
    // split view needs): the witness has seen more and never cosigns it.
    let seen = checkpoint_size(&cosigned);
    s.signer.child.stop();
    let aside = s.dir.path().join("aside");
    std::fs::create_dir_all(&aside).unwrap();
    std::fs::rename(s.audit_log(), aside.join("audit.log")).unwrap();
    std::fs::rename(cp.parent().unwrap(), aside.join("checkpoints")).unwrap();
    std::fs::create_dir_all(cp.parent().unwrap()).unwrap();
    s.signer = SignerProc::start_file(s.dir.path(), &s.signer.config_path.clone()).unwrap();
    for _ in 0..2 {
        assert_eq!(s.sign("broker-1", &oneshot("web", "id", &key)).await.0, 200);
    }
    wait_for_log(&s, "cut short or replaced");
    assert!(
        checkpoint_size(&cp) > 0 && checkpoint_size(&cp) < seen,
        "{} {seen}",
        checkpoint_size(&cp)
    );
    assert!(!cosigned.exists(), "the replaced log was never cosigned");
}
