//! The control plane's audit log as operators handle it (issue 11 §2, §5):
//! the real binary checkpoints it and rotates it on SIGUSR1 into a pair
//! that `broker-ctl audit verify OLD NEW` accepts.

use std::time::Duration;

use infrabroker_common::audit::AuditKey;
use infrabroker_common::audit::checkpoint::Checkpoint;
use serde_json::json;

use crate::harness::{Bed, paper_host};

const SIGUSR1: i32 = 10;

#[tokio::test]
async fn sigusr1_rotates_the_log_and_checkpoints_follow() {
    let bed = Bed::start_with(|pki| json!({"web": paper_host(pki, &[])}));
    let cp_dir = bed.dir.path().join("checkpoints");
    std::fs::create_dir(&cp_dir).unwrap();
    let cp_file = cp_dir.join("cp.cp");
    let mut cp = bed.control_plane(
        "cp",
        json!({"audit_checkpoint": {"path": cp_file, "origin": "infrabroker.test/cp", "every_records": 1}}),
    );
    let archived = || {
        std::fs::read_dir(bed.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains("cp-audit.log.2"))
    };
    assert!(cp.child.signal(SIGUSR1));
    infrabroker_testbed::wait_until(Duration::from_secs(10), || archived().is_some());
    let old = archived().expect("the control plane rotated its log");
    cp.child.stop();

    let pubkey = bed.pki.path("control-plane-audit.pub");
    let (ok, text) = infrabroker_testbed::broker_ctl(&[
        "audit".as_ref(),
        "verify".as_ref(),
        old.as_os_str(),
        cp.audit.as_os_str(),
        "--pubkey".as_ref(),
        pubkey.as_os_str(),
    ])
    .unwrap();
    assert!(ok, "{text}");
    assert!(
        text.contains("2 files, each continuing the one before"),
        "{text}"
    );

    let key = AuditKey::from_seed_file(bed.pki.path("control-plane-audit.seed")).unwrap();
    let note = std::fs::read_to_string(&cp_file).unwrap();
    let checkpoint = Checkpoint::open_own(&note, &key.verifying_key()).unwrap();
    let lines = std::fs::read_to_string(&cp.audit).unwrap().lines().count();
    assert_eq!(
        checkpoint.size, lines as u64,
        "the new file's checkpoint covers it"
    );
}
