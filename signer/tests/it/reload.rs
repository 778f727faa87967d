//! Reload: a broken configuration is refused and the old one keeps serving;
//! a good one takes effect for the next request.

use serde_json::json;

use crate::harness::{DUMMY_HOST_KEY, Stack, keypair, oneshot};

#[tokio::test]
async fn broken_reload_keeps_the_old_config_and_a_good_one_takes_effect() {
    let s = Stack::start(|_, _| {});
    let key = keypair();
    let operator = s.client("operator");

    // Only reload_callers may reload.
    let raw = s
        .client("broker-1")
        .call_raw(hyper::Method::POST, "/v1/reload", None)
        .await
        .unwrap();
    assert_eq!(raw.status.as_u16(), 403);
    assert!(String::from_utf8_lossy(&raw.body).contains("reload_forbidden"));

    // Broken: an unknown field and a jump to nowhere, both reported by path.
    let mut broken = s.config.clone();
    broken["hosts"]["web"]["colour"] = json!("blue");
    broken["hosts"]["web"]["jump"] = json!("nowhere");
    s.signer.write_config(&broken).unwrap();
    let raw = operator
        .call_raw(hyper::Method::POST, "/v1/reload", None)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(raw.status.as_u16(), 422, "{body}");
    assert_eq!(body["reason_code"], "reload_failed");
    let errors = body["errors"].to_string();
    assert!(
        errors.contains("hosts.web.colour: unknown field"),
        "{errors}"
    );
    assert!(errors.contains("hosts.web.jump: no host named"), "{errors}");
    // SIGHUP with the same broken file: refused too, audited.
    s.signer.hup().unwrap();
    assert!(
        s.wait_audit(|r| r["outcome"] == "reload_failed" && r["by"] == "sighup")
            .is_some()
    );
    let (st, v) = s.sign("broker-1", &oneshot("web", "id", &key)).await;
    assert_eq!(st, 200, "old config still serves: {v}");

    // Good: a new host appears for the next request.
    let (st, _) = s.sign("broker-1", &oneshot("web2", "id", &key)).await;
    assert_eq!(st, 404);
    let mut good = s.config.clone();
    good["hosts"]["web2"] = json!({
        "addr": "127.0.0.1:4", "user": "ibtest", "host_key": DUMMY_HOST_KEY,
        "principal": "web2-principal", "groups": ["web"],
    });
    s.signer.write_config(&good).unwrap();
    let r: infrabroker_common::wire::ReloadResponse = operator
        .call(hyper::Method::POST, "/v1/reload", None::<&()>)
        .await
        .unwrap();
    assert_eq!(r.hosts, 3);
    let (st, v) = s.sign("broker-1", &oneshot("web2", "id", &key)).await;
    assert_eq!(st, 200, "{v}");
    assert!(s.wait_audit(|r| r["outcome"] == "reloaded").is_some());

    // Settings read only at start-up are not silently ignored by a reload.
    let mut moved = good.clone();
    moved["client_ca"] = json!(s.pki.path("operator.crt"));
    moved["audit_log"] = json!(s.dir.path().join("elsewhere.log"));
    s.signer.write_config(&moved).unwrap();
    let raw = operator
        .call_raw(hyper::Method::POST, "/v1/reload", None)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(raw.status.as_u16(), 422, "{body}");
    let errors = body["errors"].to_string();
    assert!(
        errors.contains("client_ca: changed; restart the signer"),
        "{errors}"
    );
    assert!(
        errors.contains("audit_log: changed; restart the signer"),
        "{errors}"
    );
}

#[tokio::test]
async fn hosts_are_filtered_by_the_callers_groups_and_hide_policy() {
    let s = Stack::start(|cfg, _| {
        cfg["hosts"]["db"] = json!({
            "addr": "127.0.0.1:5", "user": "x", "host_key": DUMMY_HOST_KEY,
            "principal": "secret-principal", "groups": ["db"], "source_address": "10.1.1.1",
        });
    });
    let hosts: serde_json::Value = s
        .client("broker-1")
        .call(hyper::Method::GET, "/v1/hosts", None::<&()>)
        .await
        .unwrap();
    let names: Vec<&String> = hosts.as_object().unwrap().keys().collect();
    assert_eq!(names, ["jumpbox", "web"]);
    let text = hosts.to_string();
    assert!(
        !text.contains("principal") && !text.contains("source_address"),
        "{text}"
    );
    let raw = s
        .client("stranger")
        .call_raw(hyper::Method::GET, "/v1/hosts", None)
        .await
        .unwrap();
    assert_eq!(raw.status.as_u16(), 403);
}
