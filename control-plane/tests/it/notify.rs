//! Notifications reach a local receiver as a generic webhook, a Slack
//! message and a Teams Adaptive Card; a dead webhook does not stop
//! approvals.

use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::json;

use crate::harness::{Bed, Receiver, eventually, json_of, paper_host, post_sign, sign_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_slack_and_teams_formats_reach_the_receiver() {
    let bed = Bed::start_with(|pki| json!({"web": paper_host(pki, &["^systemctl "])}));
    let rx = Receiver::start();
    let pubkey = bed.pki.ssh_ca_pub().unwrap();
    let template = "https://cp.example.test/approvals/{id}";
    for kind in ["webhook", "slack", "teams"] {
        let cp = bed.control_plane(
            &format!("cp-{kind}"),
            json!({"approval": {"notifier": kind, "webhook_url": format!("{}/{kind}", rx.url),
                                "approval_url_template": template}}),
        );
        let broker = bed.client(&cp.url, "broker-1");
        let held = post_sign(
            &broker,
            &sign_body("web", "systemctl restart nginx", &pubkey),
        )
        .await;
        assert_eq!(held.status, StatusCode::ACCEPTED, "{kind}");
        let id = json_of(&held)["approval_id"].as_str().unwrap().to_owned();
        let link = template.replace("{id}", &id);
        let body = rx.wait_for(&format!("/{kind}")).await;
        match kind {
            "webhook" => {
                assert_eq!(body["event"], "approval_requested");
                assert_eq!(body["approval_id"], id.as_str());
                assert_eq!(body["command"], "systemctl restart nginx");
                assert_eq!(body["host"], "web");
                assert_eq!(body["caller"], "broker-1");
                assert_eq!(body["tier"], "human");
                assert_eq!(body["approval_url"], link.as_str());
                assert!(body.get("pubkey").is_none());
            }
            "slack" => {
                let text = body["text"].as_str().unwrap();
                assert!(
                    text.contains("systemctl restart nginx") && text.contains("broker-1"),
                    "{text}"
                );
                let blocks = body["blocks"].as_array().unwrap();
                assert_eq!(blocks[0]["type"], "section");
                assert!(
                    blocks[1]["elements"][0]["text"]
                        .as_str()
                        .unwrap()
                        .contains(&id)
                );
                assert_eq!(blocks[2]["elements"][0]["url"], link.as_str());
            }
            "teams" => {
                assert_eq!(body["type"], "message");
                let att = &body["attachments"][0];
                assert_eq!(
                    att["contentType"],
                    "application/vnd.microsoft.card.adaptive"
                );
                let card = &att["content"];
                assert_eq!(card["type"], "AdaptiveCard");
                assert!(card["body"].to_string().contains("systemctl restart nginx"));
                assert!(card["body"].to_string().contains(&id));
                assert_eq!(card["actions"][0]["url"], link.as_str());
            }
            _ => unreachable!(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_neither_blocks_nor_loses_the_approval() {
    let bed = Bed::start_with(|pki| json!({"web": paper_host(pki, &["^systemctl "])}));
    let dead = format!("http://127.0.0.1:{}/hook", infrabroker_testbed::free_port());
    let cp = bed.control_plane(
        "cp-dead",
        json!({"approval": {"notifier": "webhook", "webhook_url": dead, "notify_attempts": 2}}),
    );
    let broker = bed.client(&cp.url, "broker-1");
    let started = Instant::now();
    let held = post_sign(
        &broker,
        &sign_body(
            "web",
            "systemctl restart nginx",
            &bed.pki.ssh_ca_pub().unwrap(),
        ),
    )
    .await;
    assert_eq!(held.status, StatusCode::ACCEPTED);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the answer did not wait for the notifier"
    );
    let id = json_of(&held)["approval_id"].as_str().unwrap().to_owned();

    assert!(eventually(15, || !cp.outcomes("notify-failed").is_empty()).await);
    let failed = &cp.outcomes("notify-failed")[0];
    assert_eq!(failed["approval_id"], id.as_str());
    assert!(
        failed["err"]
            .as_str()
            .unwrap()
            .contains("2 attempt(s) failed")
    );
    assert!(cp.child.log().contains("notification failed"));

    let pending = cp.pending("systemctl restart nginx", &[]).await;
    assert_eq!(pending["id"], id.as_str());
    let (ok, _, err) = cp.ctl("operator", &["allow", &id]).await;
    assert!(ok, "{err}");
    let result = broker
        .call_raw(hyper::Method::GET, &format!("/v1/sign/result/{id}"), None)
        .await
        .unwrap();
    assert_eq!(result.status, StatusCode::OK);
    assert!(
        json_of(&result)["certificate"]
            .as_str()
            .unwrap()
            .contains("cert")
    );
}
