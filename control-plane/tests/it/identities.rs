//! Requester ≠ approver across namespaces: an operator CN may not decide a
//! request its own person made under another name — an OIDC subject
//! through a broker (what `mcp-http` sends), or a REST client CN through a
//! real `broker serve`. The map is `identities` in control-plane.json.

use std::process::Command;
use std::time::Duration;

use infrabroker_broker::api::{Caller, Tools};
use infrabroker_common::client::MtlsClient;
use infrabroker_testbed::{bin_path, free_port, spawn_logged};
use serde_json::{Value, json};

use crate::harness::{Bed, Cp, paper_host, req};

const HELD: &str = "systemctl restart nginx";

/// `operator` tries to allow and to deny `id`: both refused as
/// `self_approval`, the approval stays pending, and the attempt is audited.
async fn operator_cannot_decide(cp: &Cp, id: &str, tied_to: &str) {
    for args in [vec!["allow", id], vec!["deny", id, "--reason", "mine"]] {
        let (ok, _, err) = cp.ctl("operator", &args).await;
        assert!(!ok, "operator decided a request of {tied_to}");
        assert!(err.contains("self_approval"), "{err}");
    }
    let (ok, out, err) = cp.ctl("operator", &["show", id, "--json"]).await;
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "pending", "{v}");
    assert_eq!(v["end_user"], tied_to, "{v}");
    let refused: Vec<Value> = cp
        .records()
        .into_iter()
        .filter(|r| r["approval_id"] == id && r["reason_code"] == "self_approval")
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_cannot_approve_what_its_oidc_subject_asked_for() {
    let bed = Bed::start_with(|pki| json!({"web": paper_host(pki, &["^systemctl "])}));
    let cp = bed.control_plane(
        "cp-oidc",
        json!({"identities": {"alice": {"operator_cns": ["operator"],
                                        "oidc_subjects": ["alice@example.com"]}}}),
    );
    let engine = bed.engine(&cp, 60).await;
    // What `broker mcp-http` makes of a verified token with sub
    // alice@example.com and groups ["web"].
    let alice = Caller {
        id: "alice@example.com".into(),
        end_user: Some("alice@example.com".into()),
        end_user_groups: Some(vec!["web".into()]),
    };
    let e = engine.clone();
    let run = tokio::spawn(async move { e.execute(&alice, req("web", HELD)).await });
    let a = cp.pending(HELD, &[]).await;
    let id = a["id"].as_str().unwrap();
    operator_cannot_decide(&cp, id, "alice@example.com").await;
    run.abort();
}

/// `broker serve` in front of `cp` whose `rest_callers` are `callers`.
fn broker_serve(bed: &Bed, cp: &Cp, callers: Value) -> (infrabroker_testbed::ChildGuard, String) {
    let path = bed.broker_json(cp, 60);
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let port = free_port();
    cfg["listen"] = format!("127.0.0.1:{port}").into();
    cfg["server_cert"] = json!(bed.pki.path("control-plane.crt"));
    cfg["server_key"] = json!(bed.pki.path("control-plane.key"));
    cfg["client_ca"] = json!(bed.pki.path("ca.crt"));
    cfg["rest_callers"] = callers;
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let mut cmd = Command::new(bin_path("broker").unwrap());
    cmd.args(["serve", "--config"]).arg(&path);
    let child = spawn_logged(&mut cmd, bed.dir.path().join(format!("serve-{port}.log"))).unwrap();
    assert!(
        child.wait_for_log("listening on", Duration::from_secs(20)),
        "{}",
        child.log()
    );
    (child, format!("https://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_cannot_approve_what_it_or_its_rest_cn_asked_for() {
    let bed = Bed::start_with(|pki| json!({"web": paper_host(pki, &["^systemctl "])}));
    let cp = bed.control_plane(
        "cp-rest",
        json!({"identities": {"ops": {"operator_cns": ["operator"],
                                      "rest_cns": ["stranger"]}}}),
    );
    let (_serve, url) = broker_serve(
        &bed,
        &cp,
        json!({"operator": {"allowed_groups": ["web"]},
               "stranger": {"allowed_groups": ["web"]}}),
    );
    let mut seen: Vec<String> = Vec::new();
    // `operator` through REST is the review's exact attack (same CN, no map
    // needed); `stranger` is the same person under another CN (the map).
    for who in ["operator", "stranger"] {
        let client = MtlsClient::new(
            &url,
            &bed.pki.path("ca.crt"),
            &bed.pki.path(&format!("{who}.crt")),
            &bed.pki.path(&format!("{who}.key")),
            Duration::from_secs(90),
        )
        .unwrap();
        let body = serde_json::to_vec(&json!({"host": "web", "command": HELD})).unwrap();
        let run = tokio::spawn(async move {
            client
                .call_raw(hyper::Method::POST, "/v1/ssh_run", Some(body))
                .await
        });
        let skip: Vec<&str> = seen.iter().map(String::as_str).collect();
        let a = cp.pending(HELD, &skip).await;
        let id = a["id"].as_str().unwrap().to_owned();
        assert_eq!(a["caller"], "broker-1");
        operator_cannot_decide(&cp, &id, who).await;
        run.abort();
        seen.push(id);
    }
}
