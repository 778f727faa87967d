//! Freezes reach open sessions: a broker polling `GET /v1/revocations`
//! (every second here) closes the session whose serial an operator froze,
//! audited with the freeze id, while another session stays usable; a frozen
//! caller loses every session and can open no new one.

use std::time::Duration;

use infrabroker_broker::api::{SessionMode, SessionOpenRequest, ToolError, Tools};
use infrabroker_common::client::MtlsClient;
use serde_json::{Value, json};

use crate::harness::{Bed, caller, host_for, sshd};

fn open_req() -> SessionOpenRequest {
    SessionOpenRequest {
        host: "web".into(),
        mode: SessionMode::Exec,
        sudo: false,
        sudo_user: None,
        cols: None,
        rows: None,
    }
}

async fn freeze(bed: &Bed, body: Value) -> String {
    let op = MtlsClient::new(
        &bed.signer.url,
        &bed.pki.path("ca.crt"),
        &bed.pki.path("operator.crt"),
        &bed.pki.path("operator.key"),
        Duration::from_secs(10),
    )
    .unwrap();
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
    serde_json::from_slice::<Value>(&raw.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn open_ids(engine: &infrabroker_broker::engine::Engine) -> Vec<String> {
    engine
        .session_list(&caller())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.session_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_serial_closes_its_session_and_a_frozen_caller_all_of_them() {
    if !infrabroker_testbed::sshd_or_skip() {
        return;
    }
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let bed = Bed::start(dir, pki, json!({"web": host_for(&s, "web-principal")}));
    let engine = bed.engine(json!({"revocation_poll_seconds": 1})).await;
    let one = engine.session_open(&caller(), open_req()).await.unwrap();
    let two = engine.session_open(&caller(), open_req()).await.unwrap();

    let id = freeze(&bed, json!({"serial": one.serial, "reason": "key copied"})).await;
    let mut closed = false;
    for _ in 0..50 {
        if !open_ids(&engine).await.contains(&one.session_id) {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "the frozen serial's session was closed");
    assert_eq!(
        open_ids(&engine).await,
        std::slice::from_ref(&two.session_id),
        "the other one stays"
    );
    let r = engine
        .session_exec(&caller(), &two.session_id, "echo still".into(), None)
        .await
        .unwrap();
    assert_eq!(r.stdout, "still\n");
    let audit = bed.broker_records();
    assert!(
        audit.iter().any(|r| r["outcome"] == "session_close"
            && r["freeze_id"] == id.as_str()
            && r["session_id"] == one.session_id.as_str()),
        "the close is audited with the freeze id: {audit:?}"
    );

    // Freezing the broker's CN closes everything it holds, and it can open
    // nothing new.
    freeze(
        &bed,
        json!({"caller": "broker-1", "reason": "broker compromised"}),
    )
    .await;
    let mut empty = false;
    for _ in 0..50 {
        if open_ids(&engine).await.is_empty() {
            empty = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(empty, "every session of the frozen caller was closed");
    match engine.session_open(&caller(), open_req()).await {
        Err(ToolError::Denied { code, .. }) => assert_eq!(code, "frozen"),
        other => panic!("a frozen caller opened a session: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_one_shot_of_a_frozen_serial_is_cut() {
    if !infrabroker_testbed::sshd_or_skip() {
        return;
    }
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let bed = Bed::start(dir, pki, json!({"web": host_for(&s, "web-principal")}));
    let engine = bed.engine(json!({"revocation_poll_seconds": 1})).await;
    let e = engine.clone();
    let t = std::time::Instant::now();
    let run = tokio::spawn(async move { crate::harness::run(&e, "web", "sleep 30").await });
    // The command is running once its exec_started record is written.
    let mut serial = None;
    for _ in 0..100 {
        serial = bed
            .broker_records()
            .iter()
            .find(|r| r["outcome"] == "exec_started")
            .and_then(|r| r["serial"].as_u64());
        if serial.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let serial = serial.expect("the command started");
    let id = freeze(&bed, json!({"serial": serial, "reason": "cut it"})).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap();
    match answer {
        Err(ToolError::Denied { code, message }) => {
            assert_eq!(code, "frozen");
            assert!(message.contains(&id), "{message}");
        }
        other => panic!("the frozen one-shot was not cut: {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "cut long before sleep 30 ended"
    );
    let recs = bed.broker_records();
    assert!(
        recs.iter()
            .any(|r| r["freeze_id"] == id.as_str() && r["serial"] == serial),
        "the cut call's record names the freeze: {recs:?}"
    );
}
