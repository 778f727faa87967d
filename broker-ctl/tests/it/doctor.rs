//! `broker-ctl doctor` on a good setup (a real signer and sshd) and on each
//! seeded misconfiguration: an expired certificate, a 0644 key, a wrong
//! pinned host key, an unreachable signer.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use infrabroker_common::pki::load_ca;
use infrabroker_testbed::stack::{Pki, SignerProc, signer_config};
use infrabroker_testbed::{Sshd, SshdOptions, ensure_user, free_port, sshd_or_skip};
use serde_json::{Value, json};

use super::{ctl, text};

const USER: &str = "ibdoctor";

/// Runs doctor on `config` with `--json`: exit code and the report.
fn doctor(config: &Path) -> (i32, Value) {
    let o = ctl(&["doctor", "--config", config.to_str().unwrap(), "--json"]);
    let report = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {}", text(&o)));
    (o.status.code().unwrap(), report)
}

fn codes(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_owned())
        .collect()
}

fn write(path: &Path, v: &Value) -> PathBuf {
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    path.to_owned()
}

fn broker_config(pki: &Pki, dir: &Path, url: &str) -> Value {
    json!({
        "signer": {
            "url": url,
            "client_cert": pki.path("broker-1.crt"),
            "client_key": pki.path("broker-1.key"),
            "ca": pki.path("ca.crt"),
        },
        "audit_log": dir.join("broker-audit.log"),
        "audit_key": pki.path("broker-audit.seed"),
    })
}

#[test]
fn doctor_is_clean_on_a_good_setup_and_names_each_seeded_fault() {
    if !sshd_or_skip() {
        return;
    }
    ensure_user(USER).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path()).unwrap();
    let sshd = Sshd::start(
        SshdOptions::new(pki.ssh_ca_pub().unwrap()).with_principals(USER, ["web-doctor"]),
    )
    .unwrap();
    let mut signer_cfg = signer_config(&pki, &dir.path().join("signer-audit.log"));
    signer_cfg["callers"] = json!({"broker-1": {"allowed_groups": ["web"]}});
    signer_cfg["hosts"]["web"] = json!({
        "addr": sshd.addr().to_string(), "user": USER, "host_key": sshd.host_key_openssh(),
        "principal": "web-doctor", "groups": ["web"],
    });
    let signer = SignerProc::start(dir.path(), &signer_cfg).unwrap();
    let broker_path = write(
        &dir.path().join("broker.json"),
        &broker_config(&pki, dir.path(), &signer.url),
    );

    // Good setup: nothing found, every check ran.
    let (code, report) = doctor(&signer.config_path);
    assert_eq!((code, codes(&report)), (0, vec![]), "{report}");
    assert_eq!(report["kind"], "signer");
    let (code, report) = doctor(&broker_path);
    assert_eq!((code, codes(&report)), (0, vec![]), "{report}");
    assert_eq!(report["kind"], "broker");
    assert!(report["checks"].as_u64().unwrap() >= 5, "{report}");

    // A wrong pinned host key.
    let other = Sshd::start(SshdOptions::new(pki.ssh_ca_pub().unwrap())).unwrap();
    let mut wrong = signer_cfg.clone();
    wrong["hosts"]["web"]["host_key"] = json!(other.host_key_openssh());
    let (code, report) = doctor(&write(&dir.path().join("wrong-key.json"), &wrong));
    assert_eq!(
        (code, codes(&report)),
        (1, vec!["host_key_mismatch".to_owned()])
    );

    // An unreachable signer.
    let closed = format!("https://127.0.0.1:{}", free_port());
    let away = write(
        &dir.path().join("away.json"),
        &broker_config(&pki, dir.path(), &closed),
    );
    let (code, report) = doctor(&away);
    assert_eq!(
        (code, codes(&report)),
        (69, vec!["signer_unreachable".to_owned()])
    );

    // An expired client certificate (signed by the right CA) is named.
    let ca = load_ca(&pki.path("ca.crt"), &pki.path("ca.key")).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let leaf = ca
        .issue_client_with_validity(
            "broker-1",
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        )
        .unwrap();
    let (cert, key) = leaf.write(dir.path(), "expired").unwrap();
    let mut expired = broker_config(&pki, dir.path(), &signer.url);
    expired["signer"]["client_cert"] = json!(cert);
    expired["signer"]["client_key"] = json!(key);
    let (code, report) = doctor(&write(&dir.path().join("expired.json"), &expired));
    assert!(
        codes(&report).contains(&"cert_expired".to_owned()),
        "{report}"
    );
    assert_ne!(code, 0);

    // A key readable by others.
    let seed = pki.path("broker-audit.seed");
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, report) = doctor(&broker_path);
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(codes(&report).contains(&"key_mode".to_owned()), "{report}");
    assert_eq!(code, 1, "{report}");
    let finding = &report["findings"][0];
    assert!(
        finding["fix"].as_str().unwrap().contains("chmod 600"),
        "{finding}"
    );
}

#[test]
fn doctor_refuses_what_is_not_a_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir.path().join("x.json"),
        &json!({"listen": "127.0.0.1:1"}),
    );
    let o = ctl(&["doctor", "--config", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(
        text(&o).contains("not a signer, broker or control-plane"),
        "{}",
        text(&o)
    );
}
