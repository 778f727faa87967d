//! What a certificate lets OpenSSH's own `ssh` do against a real `sshd`
//! (SPEC §3 issuance rules, checked end to end).

use std::process::Output;
use std::time::Duration;

use infrabroker_testbed::{SshClient, Sshd, SshdOptions, ensure_user, sshd_or_skip, sudoers};
use serde_json::{Value, json};
use ssh_key::PrivateKey;

use crate::harness::{Stack, host, keypair, oneshot};

const USER: &str = "ibtest";

struct Bed {
    stack: Stack,
    sshd: Sshd,
}

fn bed(edit: impl FnOnce(&mut Value)) -> Option<Bed> {
    if !sshd_or_skip() {
        return None;
    }
    ensure_user(USER).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = infrabroker_testbed::stack::Pki::create(dir.path()).unwrap();
    let sshd = Sshd::start(
        SshdOptions::new(pki.ssh_ca_pub().unwrap()).with_principals(USER, ["web-principal"]),
    )
    .unwrap();
    let addr = sshd.addr().to_string();
    let hk = sshd.host_key_openssh();
    let stack = Stack::start_in(dir, pki, |cfg, _| {
        cfg["hosts"]["web"] = host(&addr, &hk, "web-principal");
        cfg["hosts"]["web"]["allow_sudo"] = json!(true);
        cfg["hosts"]["web"]["allow_pty"] = json!(true);
        cfg["hosts"]["elsewhere"] = host(&addr, &hk, "web-principal");
        cfg["hosts"]["elsewhere"]["source_address"] = json!("10.200.99.99/32");
        cfg["hosts"]["other-principal"] = host(&addr, &hk, "someone-else");
        cfg["hosts"]["short"] = host(&addr, &hk, "web-principal");
        cfg["hosts"]["short"]["max_ttl_seconds"] = json!(1);
        edit(cfg);
    });
    Some(Bed { stack, sshd })
}

impl Bed {
    /// Signs `req` (its host re-pointed at the running sshd is not needed:
    /// hosts carry the sshd's address) and runs `ssh … client_cmd`.
    async fn run(
        &self,
        req: Value,
        key: &PrivateKey,
        client_cmd: &str,
        opts: &[&str],
    ) -> (Value, Output) {
        let (st, v) = self.stack.sign("broker-1", &req).await;
        assert_eq!(st, 200, "sign: {v}");
        let dir = tempfile::tempdir().unwrap();
        let client =
            SshClient::create(dir.path(), key, v["certificate"].as_str().unwrap()).unwrap();
        let out = client
            .run(&self.sshd.target(), USER, client_cmd, opts)
            .unwrap();
        (v, out)
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn force_command_runs_whatever_the_client_sends() {
    let Some(b) = bed(|_| {}) else { return };
    let key = keypair();
    let (v, out) = b
        .run(
            oneshot("web", "echo judged", &key),
            &key,
            "echo smuggled; id",
            &[],
        )
        .await;
    assert_eq!(
        stdout(&out),
        "judged\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let serial = v["serial"].as_u64().unwrap();
    assert!(
        b.sshd
            .wait_for_log(&format!("serial {serial}"), Duration::from_secs(5)),
        "{}",
        b.sshd.log()
    );
}

#[tokio::test]
async fn sudo_form_runs_through_sudo_n() {
    let Some(b) = bed(|_| {}) else { return };
    let _guard = sudoers(USER, &format!("{USER} ALL=(root) NOPASSWD: ALL")).unwrap();
    let key = keypair();
    let mut req = oneshot("web", "id -u; echo 'quoted $HOME'", &key);
    req["sudo"] = json!(true);
    let (_, out) = b.run(req, &key, "true", &[]).await;
    assert_eq!(
        stdout(&out),
        "0\nquoted $HOME\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec = b
        .stack
        .wait_audit(|r| r["outcome"] == "issued" && r["elevation"] == "sudo:root")
        .unwrap();
    assert_eq!(
        rec["force_command"],
        infrabroker_common::force_command::wrap(
            &["sudo", "-n", "--"],
            "id -u; echo 'quoted $HOME'"
        )
        .unwrap()
    );
}

#[tokio::test]
async fn another_principal_is_refused() {
    let Some(b) = bed(|_| {}) else { return };
    let key = keypair();
    let (_, out) = b
        .run(oneshot("other-principal", "echo in", &key), &key, "x", &[])
        .await;
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "");
    assert!(
        b.sshd.wait_for_log(
            "does not contain an authorized principal",
            Duration::from_secs(5)
        ),
        "{}",
        b.sshd.log()
    );
}

#[tokio::test]
async fn source_address_pinned_elsewhere_is_refused() {
    let Some(b) = bed(|_| {}) else { return };
    let key = keypair();
    let (_, out) = b
        .run(oneshot("elsewhere", "echo in", &key), &key, "x", &[])
        .await;
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "");
    assert!(
        b.sshd
            .wait_for_log("source address", Duration::from_secs(5)),
        "{}",
        b.sshd.log()
    );
}

#[tokio::test]
async fn permit_pty_only_when_asked_and_allowed() {
    let Some(b) = bed(|_| {}) else { return };
    let key = keypair();
    let probe = "if [ -t 1 ]; then echo pty; else echo nopty; fi";
    let mut req = oneshot("web", probe, &key);
    req["pty"] = json!(true);
    let (_, out) = b.run(req, &key, "x", &["-tt"]).await;
    assert_eq!(stdout(&out).trim(), "pty", "asked and allowed");
    let key = keypair();
    let (_, out) = b
        .run(oneshot("web", probe, &key), &key, "x", &["-tt"])
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(stdout(&out).trim(), "pty", "not asked: {err}");
    assert!(err.contains("PTY allocation request failed"), "{err}");
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let Some(b) = bed(|_| {}) else { return };
    let key = keypair();
    let (st, v) = b
        .stack
        .sign("broker-1", &oneshot("short", "echo in", &key))
        .await;
    assert_eq!(st, 200, "{v}");
    let cert = ssh_key::Certificate::from_openssh(v["certificate"].as_str().unwrap()).unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    // The certificate's own lifetime is the thing under test: wait it out.
    while now() <= cert.valid_before() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let client = SshClient::create(dir.path(), &key, v["certificate"].as_str().unwrap()).unwrap();
    let out = client.run(&b.sshd.target(), USER, "x", &[]).unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "");
    assert!(
        b.sshd.wait_for_log("expired", Duration::from_secs(5)),
        "{}",
        b.sshd.log()
    );
}

#[tokio::test]
async fn ssh_keygen_shows_one_principal_key_id_serial_and_validity() {
    if !sshd_or_skip() {
        return;
    }
    let s = Stack::start(|_, _| {});
    let key = keypair();
    let mut req = oneshot("web", "uptime", &key);
    req["end_user"] = json!("alice@example.com");
    let (st, v) = s.sign("broker-1", &req).await;
    assert_eq!(st, 200, "{v}");
    let path = s.dir.path().join("c-cert.pub");
    std::fs::write(&path, v["certificate"].as_str().unwrap()).unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let serial = v["serial"].as_u64().unwrap();
    assert!(text.contains(&format!("Serial: {serial}")), "{text}");
    assert!(text.contains("Key ID: \"caller=broker-1 user=alice@example.com host=web role=target purpose=oneshot elev=none pty=0\""), "{text}");
    let principals: Vec<&str> = text
        .split("Principals:")
        .nth(1)
        .unwrap()
        .split("Critical Options:")
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(principals, ["web-principal"], "{text}");
    let wrapped = infrabroker_common::force_command::wrap(&[], "uptime").unwrap();
    assert!(text.contains(&format!("force-command {wrapped}")), "{text}");
    assert!(text.contains("Valid: from "), "{text}");
    assert!(
        !text.contains("permit-port-forwarding")
            && !text.contains("permit-agent-forwarding")
            && !text.contains("permit-X11")
            && !text.contains("permit-user-rc")
            && !text.contains("permit-pty"),
        "{text}"
    );
}
