//! Only the control plane may speak for a broker: `approved` and
//! `on_behalf_of` from anyone else are refused and audited, by the signer
//! and by the control plane.

use hyper::StatusCode;
use serde_json::json;

use crate::harness::{Bed, json_of, paper_host, post_sign, sign_body};

#[tokio::test]
async fn approved_true_from_a_broker_is_refused_and_audited() {
    let bed = Bed::start_with(|pki| json!({"web": paper_host(pki, &["^systemctl "])}));
    let pubkey = bed.pki.ssh_ca_pub().unwrap();
    let mut body = sign_body("web", "systemctl restart nginx", &pubkey);
    body["approved"] = true.into();

    // Straight to the signer: broker-1 is not a trusted forwarder.
    let signer = bed.client(&bed.signer.url, "broker-1");
    let raw = post_sign(&signer, &body).await;
    assert_eq!(raw.status, StatusCode::FORBIDDEN);
    assert_eq!(json_of(&raw)["reason_code"], "forwarder_untrusted");
    let rec = bed
        .signer_records()
        .into_iter()
        .find(|r| r["reason_code"] == "forwarder_untrusted")
        .expect("the signer audits the refusal");
    assert_eq!(rec["outcome"], "denied");
    assert_eq!(rec["cn"], "broker-1");
    assert_eq!(rec["approved"], true);
    assert!(
        !bed.signer_records()
            .iter()
            .any(|r| r["outcome"] == "issued"),
        "nothing was issued"
    );

    // Without `approved` the signer's policy still holds it back.
    body["approved"] = false.into();
    let raw = post_sign(&signer, &body).await;
    assert_eq!(raw.status, StatusCode::FORBIDDEN);
    assert_eq!(json_of(&raw)["reason_code"], "needs_approval");

    // Through the control plane: a broker may not set the fields either.
    let cp = bed.control_plane("cp", json!({}));
    let via_cp = bed.client(&cp.url, "broker-1");
    for (field, value) in [
        ("approved", json!(true)),
        ("on_behalf_of", json!("broker-2")),
    ] {
        let mut forged = sign_body("web", "systemctl restart nginx", &pubkey);
        forged[field] = value;
        let raw = post_sign(&via_cp, &forged).await;
        assert_eq!(raw.status, StatusCode::FORBIDDEN, "{field}");
        assert_eq!(
            json_of(&raw)["reason_code"],
            "forwarder_untrusted",
            "{field}"
        );
    }
    let refused: Vec<_> = cp
        .outcomes("denied")
        .into_iter()
        .filter(|r| r["reason_code"] == "forwarder_untrusted")
        .collect();
    assert_eq!(refused.len(), 2);
    assert!(cp.outcomes("approval-required").is_empty());

    // A CN outside sign_callers gets nothing from the control plane.
    let stranger = bed.client(&cp.url, "stranger");
    let raw = post_sign(&stranger, &sign_body("web", "id", &pubkey)).await;
    assert_eq!(raw.status, StatusCode::FORBIDDEN);
    assert_eq!(json_of(&raw)["reason_code"], "caller_unknown");
    let hosts = stranger
        .call_raw(hyper::Method::GET, "/v1/hosts", None)
        .await
        .unwrap();
    assert_eq!(hosts.status, StatusCode::FORBIDDEN);

    // broker-1 sees its hosts through the control plane (X-On-Behalf-Of).
    let hosts = via_cp
        .call_raw(hyper::Method::GET, "/v1/hosts", None)
        .await
        .unwrap();
    assert_eq!(hosts.status, StatusCode::OK);
    assert!(json_of(&hosts)["web"]["addr"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_are_relayed_to_brokers_with_their_own_cn() {
    let bed =
        Bed::start_with(|pki| serde_json::json!({"web": crate::harness::paper_host(pki, &[])}));
    let cp = bed.control_plane("cp-rev", serde_json::json!({}));
    // An operator freezes broker-1 at the signer.
    let op = bed.client(&bed.signer.url, "operator");
    let body = serde_json::json!({"caller": "broker-1", "reason": "test"});
    let raw = op
        .call_raw(
            hyper::Method::POST,
            "/v1/freeze",
            Some(serde_json::to_vec(&body).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(
        raw.status.as_u16(),
        201,
        "{}",
        String::from_utf8_lossy(&raw.body)
    );
    // The broker asks its control plane: the freeze, and its own CN (not
    // the control plane's) as the caller it applies to.
    let broker = bed.client(&cp.url, "broker-1");
    let raw = broker
        .call_raw(hyper::Method::GET, "/v1/revocations", None)
        .await
        .unwrap();
    assert_eq!(
        raw.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&raw.body)
    );
    let v: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(v["caller"], "broker-1");
    assert_eq!(v["freezes"][0]["value"], "broker-1");
    // A CN outside sign_callers gets nothing.
    let stranger = bed.client(&cp.url, "operator");
    let raw = stranger
        .call_raw(hyper::Method::GET, "/v1/revocations", None)
        .await
        .unwrap();
    assert_eq!(raw.status.as_u16(), 403);
}
