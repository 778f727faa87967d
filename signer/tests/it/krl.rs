//! The KRL end to end: certificates from the real signer, a real `sshd`
//! whose `RevokedKeys` file the real `broker-ctl krl fetch` keeps current
//! (over mTLS and over the plain `krl_listen`), and freezes made with
//! `broker-ctl freeze`. A frozen end user's, serial's or key id's live
//! certificates are refused by sshd itself; others still log in; a lift
//! lets new certificates in while the revoked ones stay revoked. With two
//! replicas on PostgreSQL both serve the same version, `broker-ctl certs
//! list` shows what a subject still holds, and a store outage answers `503`
//! rather than a KRL that revokes less. (That a broker closes an open
//! session of a frozen subject is shown in the broker's `revocation`
//! tests.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use infrabroker_testbed::postgres::{Postgres, postgres_or_skip};
use infrabroker_testbed::{
    SshClient, Sshd, SshdOptions, bin_path, ensure_user, free_port, sshd_or_skip,
};
use serde_json::{Value, json};
use ssh_key::{Certificate, PrivateKey};

use crate::harness::{Stack, host, keypair, oneshot};
use crate::replicas::{client, replica};

const USER: &str = "ibtest";

/// `broker-ctl ARGS…`; (success, stdout, stderr).
fn ctl(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(bin_path("broker-ctl").unwrap())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mtls<'a>(s: &'a Stack, url: &'a str, who: &str) -> Vec<String> {
    vec![
        "--url".into(),
        url.into(),
        "--ca".into(),
        s.pki.path("ca.crt").display().to_string(),
        "--cert".into(),
        s.pki.path(&format!("{who}.crt")).display().to_string(),
        "--key".into(),
        s.pki.path(&format!("{who}.key")).display().to_string(),
    ]
}

/// `broker-ctl freeze add <subject> --reason test --json` as the operator;
/// the freeze id.
fn freeze(s: &Stack, url: &str, subject: &[&str]) -> String {
    let mut args = vec!["freeze", "add"];
    args.extend_from_slice(subject);
    args.extend(["--reason", "test", "--json"]);
    let conn = mtls(s, url, "operator");
    args.extend(conn.iter().map(String::as_str));
    let (ok, out, err) = ctl(&args);
    assert!(ok, "freeze {subject:?}: {out}{err}");
    serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `broker-ctl krl fetch --out FILE --json` from `conn`; its JSON answer.
fn fetch(out: &Path, conn: &[String]) -> Value {
    let mut args = vec!["krl", "fetch", "--json", "--out"];
    let file = out.display().to_string();
    args.push(&file);
    args.extend(conn.iter().map(String::as_str));
    let (ok, stdout, err) = ctl(&args);
    assert!(ok, "krl fetch: {stdout}{err}");
    serde_json::from_str(&stdout).unwrap()
}

struct Bed {
    stack: Stack,
    sshd: Sshd,
    krl: PathBuf,
    plain: Vec<String>,
}

fn bed() -> Option<Bed> {
    if !sshd_or_skip() {
        return None;
    }
    ensure_user(USER).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = infrabroker_testbed::stack::Pki::create(dir.path()).unwrap();
    let krl = dir.path().join("revoked.krl");
    let mut opts =
        SshdOptions::new(pki.ssh_ca_pub().unwrap()).with_principals(USER, ["web-principal"]);
    opts.extra_config
        .push(format!("RevokedKeys {}", krl.display()));
    let sshd = Sshd::start(opts).unwrap();
    let (addr, hk) = (sshd.addr().to_string(), sshd.host_key_openssh());
    let port = free_port();
    let stack = Stack::start_in(dir, pki, |cfg, _| {
        cfg["hosts"]["web"] = host(&addr, &hk, "web-principal");
        cfg["krl_listen"] = json!(format!("127.0.0.1:{port}"));
        cfg["max_ttl_seconds"] = json!(900);
    });
    let plain = vec!["--url".into(), format!("http://127.0.0.1:{port}")];
    Some(Bed {
        stack,
        sshd,
        krl,
        plain,
    })
}

/// A one-shot certificate for `end_user` on host `web`, and its key.
async fn issue(s: &Stack, end_user: &str) -> (PrivateKey, String) {
    let key = keypair();
    let mut req = oneshot("web", "echo in", &key);
    req["end_user"] = json!(end_user);
    signed(s, req, key).await
}

/// A session certificate (no force-command) for `end_user` for 900 s.
async fn session(s: &Stack, end_user: &str) -> (PrivateKey, String) {
    let key = keypair();
    let req = json!({
        "host": "web", "role": "target", "purpose": "session", "ttl_seconds": 900,
        "end_user": end_user, "pubkey": crate::harness::pubkey_line(&key),
    });
    let (key, cert) = signed(s, req, key).await;
    let c = Certificate::from_openssh(&cert).unwrap();
    assert_eq!(
        c.valid_before() - c.valid_after(),
        900 + 30,
        "TTL 900 s (+ 30 s backdating)"
    );
    (key, cert)
}

async fn signed(s: &Stack, req: Value, key: PrivateKey) -> (PrivateKey, String) {
    let (st, v) = s.sign("broker-1", &req).await;
    assert_eq!(st, 200, "{v}");
    (key, v["certificate"].as_str().unwrap().to_owned())
}

/// Whether `ssh` with this certificate gets in.
fn logs_in(b: &Bed, key: &PrivateKey, cert: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let client = SshClient::create(dir.path(), key, cert).unwrap();
    let out = client.run(&b.sshd.target(), USER, "echo in", &[]).unwrap();
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("in")
}

fn serial_of(cert: &str) -> u64 {
    Certificate::from_openssh(cert).unwrap().serial()
}

#[tokio::test]
async fn freezes_reach_sshd_through_the_krl_and_outlive_their_lift() {
    let Some(b) = bed() else { return };
    let s = &b.stack;
    let operator = mtls(s, &s.signer.url, "operator");
    // Without a file sshd refuses every key: the host installs one first,
    // here over the plain listener that needs no client certificate.
    let first = fetch(&b.krl, &b.plain);
    assert_eq!(
        (&first["result"], &first["serials"]),
        (&json!("replaced"), &json!(0))
    );
    let (alice_key, alice) = issue(s, "alice").await;
    let (bob_key, bob) = session(s, "bob").await;
    assert!(logs_in(&b, &alice_key, &alice) && logs_in(&b, &bob_key, &bob));

    let alice_freeze = freeze(s, &s.signer.url, &["--end-user", "alice"]);
    let after = fetch(&b.krl, &operator);
    assert_eq!(after["result"], "replaced", "{after}");
    assert!(
        after["version"].as_u64() > first["version"].as_u64(),
        "{after}"
    );
    assert_eq!(after["serials"], 1, "{after}");
    assert!(
        !logs_in(&b, &alice_key, &alice),
        "a frozen end user's certificate dies"
    );
    assert!(
        b.sshd
            .wait_for_log("revoked by file", Duration::from_secs(5)),
        "sshd says why: {}",
        b.sshd.log()
    );
    assert!(
        logs_in(&b, &bob_key, &bob),
        "another end user still logs in"
    );
    let mut conn = b.plain.clone();
    conn.extend(["--wait".into(), "1".into()]);
    let again = fetch(&b.krl, &conn);
    assert_eq!(
        (&again["result"], &again["version"]),
        (&json!("unchanged"), &after["version"]),
        "same content, same version, a 304 on either listener"
    );

    // Lifted: alice gets new certificates, her old one stays revoked.
    let lift = ["freeze", "lift", &alice_freeze];
    let (ok, out, err) = ctl(&[
        &lift[..],
        &operator.iter().map(String::as_str).collect::<Vec<_>>(),
    ]
    .concat());
    assert!(ok, "{out}{err}");
    let (new_key, new_cert) = issue(s, "alice").await;
    fetch(&b.krl, &b.plain);
    assert!(logs_in(&b, &new_key, &new_cert));
    assert!(
        !logs_in(&b, &alice_key, &alice),
        "a lift does not revive a revoked certificate"
    );

    // A serial freeze revokes exactly that certificate; a key id freeze
    // every certificate with that key id.
    // A long poll that is waiting when the freeze comes answers with the
    // new list at once rather than after its 30 s.
    let (krl, plain) = (b.krl.clone(), b.plain.clone());
    let waiting = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let mut conn = plain;
        conn.extend(["--wait".into(), "30".into()]);
        (fetch(&krl, &conn), started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(1500));
    freeze(
        s,
        &s.signer.url,
        &["--serial", &serial_of(&bob).to_string()],
    );
    let (polled, took) = waiting.join().unwrap();
    assert_eq!(polled["result"], "replaced", "{polled}");
    assert!(
        took < Duration::from_secs(20),
        "the long poll answered the change: {took:?}"
    );
    let key_id = Certificate::from_openssh(&new_cert)
        .unwrap()
        .key_id()
        .to_owned();
    freeze(s, &s.signer.url, &["--key-id", &key_id]);
    let last = fetch(&b.krl, &b.plain);
    // alice's old and new (the key id freeze revokes the indexed one by
    // serial too) and bob's.
    assert_eq!(
        (&last["serials"], &last["key_ids"]),
        (&json!(3), &json!(1)),
        "{last}"
    );
    assert!(
        !logs_in(&b, &bob_key, &bob),
        "the frozen serial's session certificate dies"
    );
    assert!(!logs_in(&b, &new_key, &new_cert));
    let (carol_key, carol) = issue(s, "carol").await;
    assert!(
        logs_in(&b, &carol_key, &carol),
        "other certificates are untouched"
    );

    // The file is what ssh-keygen reads back.
    let listed = std::process::Command::new("ssh-keygen")
        .arg("-Ql")
        .arg("-f")
        .arg(&b.krl)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains(&serial_of(&alice).to_string()), "{listed}");
    assert!(listed.contains(&key_id), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_serve_one_krl_and_refuse_when_the_store_is_down() {
    if !postgres_or_skip() {
        return;
    }
    let pg = Postgres::start(false).unwrap();
    pg.create_db("krl").unwrap();
    let s = Stack::start(|_, _| {});
    let store = json!({"postgres": {"url": pg.url("krl"), "pool_size": 2}});
    let (a, b) = (replica(&s, "a", &store), replica(&s, "b", &store));
    let on_a = client(&s, &a.url);
    let mut serials = Vec::new();
    for user in ["alice", "alice", "bob"] {
        let mut req = oneshot("web", "id", &keypair());
        req["end_user"] = json!(user);
        let raw = on_a
            .call_raw(
                hyper::Method::POST,
                "/v1/sign",
                Some(serde_json::to_vec(&req).unwrap()),
            )
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&raw.body).unwrap();
        serials.push(v["serial"].as_u64().unwrap());
    }
    // Frozen on a, revoked in b's KRL: the index is shared.
    freeze(&s, &a.url, &["--end-user", "alice"]);
    let dir = tempfile::tempdir().unwrap();
    let from_b = fetch(&dir.path().join("b.krl"), &mtls(&s, &b.url, "broker-1"));
    let from_a = fetch(&dir.path().join("a.krl"), &mtls(&s, &a.url, "broker-1"));
    assert_eq!(
        from_a["version"], from_b["version"],
        "one version for one content"
    );
    assert_eq!(from_b["serials"], 2);
    let bytes = std::fs::read(dir.path().join("b.krl")).unwrap();
    let krl = infrabroker_common::krl::Krl::parse_sealed(&bytes).unwrap();
    let revoked = krl.cas.values().next().unwrap();
    assert!(revoked.revokes(serials[0], "") && revoked.revokes(serials[1], ""));
    assert!(!revoked.revokes(serials[2], ""), "bob is not frozen");

    // What a subject still holds, from either replica.
    let certs = |who: &str, filter: &[&str]| {
        let mut args = vec!["certs", "list", "--json"];
        args.extend_from_slice(filter);
        let conn = mtls(&s, &b.url, who);
        args.extend(conn.iter().map(String::as_str));
        ctl(&args)
    };
    let (ok, out, err) = certs("operator", &["--end-user", "alice"]);
    assert!(ok, "{out}{err}");
    let held: Value = serde_json::from_str(&out).unwrap();
    let held = held["certificates"].as_array().unwrap();
    assert_eq!(held.len(), 2, "{out}");
    assert!(
        held.iter()
            .all(|c| c["revoked_by"].is_string() && c["end_user"] == "alice")
    );
    let (ok, out, _) = certs("operator", &[]);
    assert!(ok);
    let all: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(all["certificates"].as_array().unwrap().len(), 3, "{out}");
    assert_eq!(
        all["certificates"][2]["revoked_by"],
        Value::Null,
        "bob's is live"
    );
    let (ok, _, err) = certs("broker-1", &[]);
    assert!(
        !ok && err.contains("freeze_forbidden"),
        "operators only: {err}"
    );
    let (ok, _, err) = certs("operator", &["--caller", "broker-1", "--host", "web"]);
    assert!(
        !ok && err.contains("cannot be used with"),
        "one subject at most: {err}"
    );

    pg.stop_immediate().unwrap();
    let on_b = client(&s, &b.url);
    let mut raw = None;
    // The last build is served for up to a second; then the store is asked.
    for _ in 0..100 {
        let r = on_b
            .call_raw(hyper::Method::GET, "/v1/krl", None)
            .await
            .unwrap();
        if r.status.as_u16() != 200 {
            raw = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let raw = raw.expect("a KRL was served with the store down");
    assert_eq!(raw.status.as_u16(), 503);
    let v: Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(v["reason_code"], "store_unavailable", "{v}");
    let (ok, _, err) = ctl(&[
        &["krl", "fetch", "--out"][..],
        &[dir.path().join("b.krl").to_str().unwrap()],
        &mtls(&s, &b.url, "broker-1")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ]
    .concat());
    assert!(!ok && err.contains("503"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("b.krl")).unwrap(),
        bytes,
        "the host keeps its file"
    );
}
