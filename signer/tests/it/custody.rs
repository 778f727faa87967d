//! CA custody end to end: the CA key on a SoftHSM2 token (made by the real
//! `broker-ctl pki init --hsm`) and behind a real `ssh-agent`; certificates
//! from both accepted by a real sshd; the token or agent taken away mid-run
//! answers `503 ca_unavailable` with no certificate, and signing resumes
//! when it is back. A CA per host group picked by the host's *declared*
//! group order, proven with two sshds that trust different CAs; a rotation
//! through `next` with `broker-ctl pki ssh-ca-pubs`, overlap and removal of
//! the old line.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use infrabroker_testbed::custody::{Agent, SoftHsm, agent_or_skip, softhsm_or_skip};
use infrabroker_testbed::stack::Pki;
use infrabroker_testbed::{SshClient, Sshd, SshdOptions, bin_path, ensure_user, sshd_or_skip};
use serde_json::{Value, json};
use ssh_key::{Certificate, PrivateKey};

use crate::harness::{Stack, host, keypair, oneshot};

const USER: &str = "ibtest";

/// `<algorithm> <base64>` of a key line (comments differ by custody).
fn key_of(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The CA key that signed `cert`, as `<algorithm> <base64>`.
fn signed_by(cert: &str) -> String {
    let c = Certificate::from_openssh(cert).unwrap();
    let line = ssh_key::PublicKey::from(c.signature_key().clone())
        .to_openssh()
        .unwrap();
    key_of(&line)
}

/// A new Ed25519 CA key file (0600) in `dir`; its path and public line.
fn ca_file(dir: &Path, name: &str) -> (PathBuf, String, PrivateKey) {
    use std::os::unix::fs::PermissionsExt;
    let key = keypair();
    let path = dir.join(name);
    let text = key.to_openssh(ssh_key::LineEnding::LF).unwrap();
    std::fs::write(&path, text.as_bytes()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let public = key.public_key().to_openssh().unwrap();
    (path, public, key)
}

/// A one-shot certificate for `host`: (status, answer, key).
async fn issue(s: &Stack, host: &str) -> (u16, Value, PrivateKey) {
    let key = keypair();
    let (st, v) = s.sign("broker-1", &oneshot(host, "echo in", &key)).await;
    (st, v, key)
}

/// Asks until a certificate comes back (the CA recovering), at most
/// `limit`; the last answer.
async fn issue_within(s: &Stack, host: &str, limit: Duration) -> (u16, Value, PrivateKey) {
    let until = Instant::now() + limit;
    loop {
        let got = issue(s, host).await;
        if got.0 == 200 || Instant::now() >= until {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether `ssh` with this certificate gets into `sshd`.
fn logs_in(sshd: &Sshd, key: &PrivateKey, cert: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let client = SshClient::create(dir.path(), key, cert).unwrap();
    let out = client.run(&sshd.target(), USER, "echo in", &[]).unwrap();
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("in")
}

fn sshd_trusting(ca_lines: &str) -> Sshd {
    let opts = SshdOptions::new(ca_lines).with_principals(USER, ["web-principal"]);
    Sshd::start(opts).unwrap()
}

/// `BIN ARGS…` with `env`; (exit code, stdout + stderr).
fn run(bin: &str, args: &[&OsStr], env: &[(&str, &OsStr)]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(bin_path(bin).unwrap());
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// `signer check --config CFG` with `env`.
fn signer_check(cfg: &OsStr, env: &[(&str, &OsStr)]) -> (Option<i32>, String) {
    run("signer", &["check".as_ref(), "--config".as_ref(), cfg], env)
}

/// Writes `cfg` to `path` and runs `signer check` on it.
fn check_config(path: &Path, cfg: &Value) -> (Option<i32>, String) {
    std::fs::write(path, serde_json::to_vec_pretty(cfg).unwrap()).unwrap();
    signer_check(path.as_os_str(), &[])
}

/// The answer of a CA that cannot sign: 503, the reason, no certificate,
/// and the refusal in the audit log.
fn assert_ca_unavailable(s: &Stack, st: u16, v: &Value) {
    assert_eq!(st, 503, "{v}");
    assert_eq!(v["reason_code"], "ca_unavailable", "{v}");
    assert!(v.get("certificate").is_none_or(Value::is_null), "{v}");
    let rec = s.wait_audit(|r| r["reason_code"] == "ca_unavailable");
    assert!(rec.is_some_and(|r| r["outcome"] == "denied"));
    // Which CA, not where it lives: token, module and socket paths stay in
    // the operator's log.
    let dir = std::env::temp_dir().display().to_string();
    assert!(
        !v.to_string().contains(&dir),
        "the answer names a path: {v}"
    );
    assert!(s.signer.child.log().contains("the CA cannot sign"));
}

/// The test user, a temporary directory and a dev PKI in it.
fn fresh() -> (tempfile::TempDir, Pki) {
    ensure_user(USER).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path()).unwrap();
    (dir, pki)
}

/// A signer whose only CA is `entry`, with host `web` on `sshd`.
fn start_with_ca(
    (dir, pki): (tempfile::TempDir, Pki),
    env: &[(&str, &OsStr)],
    entry: Value,
    sshd: &Sshd,
) -> Stack {
    let (addr, hk) = (sshd.addr().to_string(), sshd.host_key_openssh());
    Stack::start_env(dir, pki, env, |cfg, _| {
        cfg.as_object_mut().unwrap().remove("ca_key");
        cfg["ca_keys"] = json!({"_default": entry});
        cfg["hosts"]["web"] = host(&addr, &hk, "web-principal");
    })
}

/// Every OpenSSH private key file under `dir`.
fn private_keys_under(dir: &Path, found: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            private_keys_under(&path, found);
        } else if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(key) = PrivateKey::from_openssh(text.as_bytes())
        {
            found.push((path, key_of(&key.public_key().to_openssh().unwrap())));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_ca_signs_for_sshd_refuses_while_the_token_is_gone_and_resumes() {
    if !sshd_or_skip() || !softhsm_or_skip() {
        return;
    }
    let (dir, pki) = fresh();
    let hsm = SoftHsm::create(&dir.path().join("hsm")).unwrap();
    let sshd = sshd_trusting(&hsm.public_key);
    let (var, conf) = hsm.env();
    let env = [(var, conf.as_os_str())];
    let s = start_with_ca((dir, pki), &env, hsm.ca_entry(), &sshd);

    // The key was made on the token: no key file anywhere holds it.
    let mut keys = Vec::new();
    private_keys_under(s.dir.path(), &mut keys);
    assert!(!keys.is_empty(), "the file PKI's own keys are found");
    assert!(
        keys.iter().all(|(_, k)| *k != key_of(&hsm.public_key)),
        "a file holds the token's key: {keys:?}"
    );

    let (st, v, key) = issue(&s, "web").await;
    assert_eq!(st, 200, "{v}");
    let cert = v["certificate"].as_str().unwrap();
    assert_eq!(signed_by(cert), key_of(&hsm.public_key));
    assert!(logs_in(&sshd, &key, cert), "{}", sshd.log());

    // signer check and broker-ctl pki show-ca open the token too.
    let cfg = s.signer.config_path.as_os_str();
    let (code, text) = signer_check(cfg, &env);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("CA _default: pkcs11 SHA256:"), "{text}");
    assert!(text.contains("host web: CA _default"), "{text}");
    let show = ["pki", "show-ca", "--json", "--config"].map(OsStr::new);
    let (code, text) = run("broker-ctl", &[&show[..], &[cfg]].concat(), &env);
    assert_eq!(code, Some(0), "{text}");
    let rows: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(rows[0]["type"], "pkcs11");
    assert_eq!(
        key_of(rows[0]["public_key"].as_str().unwrap()),
        key_of(&hsm.public_key)
    );

    // The token goes away mid-run: refused, nothing issued, no other key.
    let away = hsm.dir.join("tokens.away");
    std::fs::rename(hsm.token_dir(), &away).unwrap();
    let (st, v, _) = issue(&s, "web").await;
    assert_ca_unavailable(&s, st, &v);
    let (st, v, _) = issue(&s, "web").await;
    assert_eq!(
        (st, v["reason_code"].as_str()),
        (503, Some("ca_unavailable")),
        "{v}"
    );
    // A start without the token is refused with the reason.
    let (code, text) = signer_check(cfg, &env);
    assert_eq!(code, Some(64), "{text}");
    // (SoftHSM2 cannot even initialise without its token directory.)
    assert!(
        text.contains("ca_keys._default: cannot initialise the PKCS#11 module"),
        "{text}"
    );

    // Back: signing resumes by itself.
    std::fs::rename(&away, hsm.token_dir()).unwrap();
    let (st, v, key) = issue_within(&s, "web", Duration::from_secs(20)).await;
    assert_eq!(st, 200, "{v}\n{}", s.signer.log());
    let cert = v["certificate"].as_str().unwrap();
    assert_eq!(signed_by(cert), key_of(&hsm.public_key));
    assert!(logs_in(&sshd, &key, cert));
    let pin = std::fs::read_to_string(hsm.dir.join("pin")).unwrap();
    assert!(
        !s.signer.log().contains(pin.trim()),
        "the PIN reached the log"
    );

    // A wrong PIN is refused at start, naming the token, and never shown.
    std::fs::write(hsm.dir.join("pin"), "000000\n").unwrap();
    let (code, text) = signer_check(cfg, &env);
    assert_eq!(code, Some(64), "{text}");
    assert!(text.contains("the token \"ca\" refused the PIN"), "{text}");
    assert!(!text.contains("000000"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_ca_signs_for_sshd_refuses_while_the_agent_is_gone_and_resumes() {
    if !sshd_or_skip() || !agent_or_skip() {
        return;
    }
    let (dir, pki) = fresh();
    let socket = dir.path().join("ca-agent.sock");
    let mut agent = Agent::start(&socket).unwrap();
    // The key goes into the agent and its file is removed.
    let scratch = tempfile::tempdir().unwrap();
    let add_key = |agent: &Agent, key: &PrivateKey| {
        let (path, _, _) = ca_file(scratch.path(), "agent-key-tmp");
        std::fs::write(
            &path,
            key.to_openssh(ssh_key::LineEnding::LF).unwrap().as_bytes(),
        )
        .unwrap();
        agent.add(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
    };
    let ca_key = keypair();
    add_key(&agent, &ca_key);
    let public = ca_key.public_key().to_openssh().unwrap();
    let sshd = sshd_trusting(&public);
    let entry = json!({"type": "agent", "socket": socket, "public_key": public});
    let s = start_with_ca((dir, pki), &[], entry, &sshd);

    let (st, v, key) = issue(&s, "web").await;
    assert_eq!(st, 200, "{v}");
    let cert = v["certificate"].as_str().unwrap();
    assert_eq!(signed_by(cert), key_of(&public));
    assert!(logs_in(&sshd, &key, cert), "{}", sshd.log());

    agent.stop();
    let (st, v, _) = issue(&s, "web").await;
    assert_ca_unavailable(&s, st, &v);

    // An agent at the same socket without the key still refuses …
    let mut agent = Agent::start(&socket).unwrap();
    let (st, v, _) = issue(&s, "web").await;
    assert_eq!(
        (st, v["reason_code"].as_str()),
        (503, Some("ca_unavailable")),
        "{v}"
    );
    assert!(s.signer.child.log().contains("refused to sign"));
    // … and signs again once the key is added.
    add_key(&agent, &ca_key);
    let (st, v, key) = issue_within(&s, "web", Duration::from_secs(10)).await;
    assert_eq!(st, 200, "{v}");
    assert!(logs_in(&sshd, &key, v["certificate"].as_str().unwrap()));

    // The agent restarts between two requests: the connection the signer
    // kept is dead, and the next request still signs (one fresh try).
    agent.stop();
    let agent = Agent::start(&socket).unwrap();
    add_key(&agent, &ca_key);
    let (st, v, _) = issue(&s, "web").await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_host_is_signed_by_the_ca_of_its_first_declared_group() {
    if !sshd_or_skip() {
        return;
    }
    let (dir, pki) = fresh();
    let (red_key, red_pub, _) = ca_file(dir.path(), "red_ca");
    let (blue_key, blue_pub, _) = ca_file(dir.path(), "blue_ca");
    let red = sshd_trusting(&red_pub);
    let blue = sshd_trusting(&blue_pub);
    let entry = |sshd: &Sshd, groups: &[&str]| {
        let mut h = host(
            &sshd.addr().to_string(),
            &sshd.host_key_openssh(),
            "web-principal",
        );
        h["groups"] = json!(groups);
        h
    };
    // "a" declares red first, "b" blue first: alphabetical order would
    // give both the blue CA.
    let (a, b) = (
        entry(&red, &["web", "red", "blue"]),
        entry(&blue, &["blue", "red", "web"]),
    );
    let s = Stack::start_in(dir, pki, |cfg, pki| {
        cfg.as_object_mut().unwrap().remove("ca_key");
        cfg["ca_keys"] = json!({
            "_default": {"path": pki.path("ssh_user_ca")},
            "red": {"type": "pem", "path": red_key},
            "blue": {"path": blue_key},
        });
        cfg["hosts"] = json!({"a": a, "b": b});
    });

    let (st, v, key_a) = issue(&s, "a").await;
    assert_eq!(st, 200, "{v}");
    let cert_a = v["certificate"].as_str().unwrap().to_owned();
    let (st, v, key_b) = issue(&s, "b").await;
    assert_eq!(st, 200, "{v}");
    let cert_b = v["certificate"].as_str().unwrap().to_owned();
    assert_eq!(signed_by(&cert_a), key_of(&red_pub));
    assert_eq!(signed_by(&cert_b), key_of(&blue_pub));
    assert!(logs_in(&red, &key_a, &cert_a), "{}", red.log());
    assert!(
        !logs_in(&blue, &key_a, &cert_a),
        "blue's sshd took red's certificate"
    );
    assert!(logs_in(&blue, &key_b, &cert_b), "{}", blue.log());
    assert!(
        !logs_in(&red, &key_b, &cert_b),
        "red's sshd took blue's certificate"
    );

    let cfg = s.signer.config_path.as_os_str();
    let (code, text) = signer_check(cfg, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("host a: CA red SHA256:"), "{text}");
    assert!(text.contains("host b: CA blue SHA256:"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_through_next_keeps_both_cas_working_during_the_overlap() {
    if !sshd_or_skip() {
        return;
    }
    let (dir, pki) = fresh();
    let old_pub = pki.ssh_ca_pub().unwrap();
    let old_key = pki.path("ssh_user_ca");
    let (new_key, new_pub, _) = ca_file(dir.path(), "ssh_user_ca_next");
    let s = Stack::start_in(dir, pki, |cfg, _| {
        cfg.as_object_mut().unwrap().remove("ca_key");
        cfg["ca_keys"] = json!({"_default": {"path": old_key, "next": {"path": new_key}}});
    });
    let cfg_path = s.signer.config_path.clone();
    let pubs = || {
        let args = ["pki", "ssh-ca-pubs", "--config"].map(OsStr::new);
        let (code, text) = run(
            "broker-ctl",
            &[&args[..], &[cfg_path.as_os_str()]].concat(),
            &[],
        );
        assert_eq!(code, Some(0), "{text}");
        text
    };

    // Step 1: hosts trust current + next.
    let lines = pubs();
    let keys: Vec<String> = lines.lines().map(key_of).collect();
    assert_eq!(keys, vec![key_of(&old_pub), key_of(&new_pub)], "{lines}");
    let sshd = sshd_trusting(&lines);
    let (addr, hk) = (sshd.addr().to_string(), sshd.host_key_openssh());
    let mut config = s.config.clone();
    config["hosts"]["web"] = host(&addr, &hk, "web-principal");
    s.signer.write_config(&config).unwrap();
    s.signer.hup().unwrap();
    let (st, v, old_cert_key) = issue_within(&s, "web", Duration::from_secs(10)).await;
    assert_eq!(st, 200, "{v}");
    let old_cert = v["certificate"].as_str().unwrap().to_owned();
    assert_eq!(signed_by(&old_cert), key_of(&old_pub), "next never signs");
    assert!(logs_in(&sshd, &old_cert_key, &old_cert), "{}", sshd.log());

    // Step 2: switch (config change + reload); the old certificate still
    // works during the overlap.
    let next = config["ca_keys"]["_default"]["next"]["path"].clone();
    config["ca_keys"] = json!({"_default": {"path": next}});
    s.signer.write_config(&config).unwrap();
    s.signer.hup().unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let (new_cert_key, new_cert) = loop {
        let (st, v, key) = issue(&s, "web").await;
        assert_eq!(st, 200, "{v}");
        let cert = v["certificate"].as_str().unwrap().to_owned();
        if signed_by(&cert) == key_of(&new_pub) || Instant::now() > until {
            break (key, cert);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        signed_by(&new_cert),
        key_of(&new_pub),
        "the reload switched the CA"
    );
    assert!(logs_in(&sshd, &new_cert_key, &new_cert));
    assert!(
        logs_in(&sshd, &old_cert_key, &old_cert),
        "overlap: the old CA still works"
    );

    // Step 3: the hosts drop the old line: only the new CA works.
    let lines = pubs();
    assert_eq!(
        lines.lines().map(key_of).collect::<Vec<_>>(),
        vec![key_of(&new_pub)]
    );
    std::fs::write(sshd.dir().join("user_ca.pub"), &lines).unwrap();
    assert!(
        !logs_in(&sshd, &old_cert_key, &old_cert),
        "the removed CA still works"
    );
    assert!(logs_in(&sshd, &new_cert_key, &new_cert));
}

#[test]
fn ca_key_entries_are_validated_with_their_paths() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path()).unwrap();
    let mut cfg = infrabroker_testbed::stack::signer_config(&pki, &dir.path().join("a.log"));
    cfg["ca_keys"] = json!({
        "_default": {"path": pki.path("ssh_user_ca")},
        "a": {"type": "pkcs11", "module": "/nonexistent.so", "token_label": "ca", "key_label": "ca"},
        "b": {"type": "pkcs11", "module": "/x.so", "token_label": "ca", "key_label": "ca",
              "pin_file": "p", "pin_env": "P"},
        "c": {"type": "agent", "socket": "/run/x.sock", "public_key": "ssh-rsa AAAA", "pool_size": 0},
        "d": {"type": "akv", "vault": "v"},
        "e": {"type": "hsm"},
        "f": {"path": pki.path("ssh_user_ca"), "next": {"path": "x", "next": {"path": "y"}}},
        "g": {"type": "pkcs11", "module": "/nonexistent.so", "token_label": "ca",
              "key_label": "ca", "pin_env": "IB_NO_SUCH_PIN"},
    });
    let path = dir.path().join("signer.json");
    let (code, text) = check_config(&path, &cfg);
    assert_eq!(code, Some(64), "{text}");
    for needle in [
        "ca_keys.a.pin_file: a pkcs11 key needs pin_file or pin_env",
        "ca_keys.b.pin_env: set pin_file or pin_env, not both",
        "ca_keys.c.public_key:",
        "ca_keys.c.pool_size: must be 1 to 64",
        "ca_keys.d.type: \"akv\" (Azure Key Vault) CA keys are not implemented",
        "ca_keys.e.type: \"hsm\" is not a CA key type",
        "ca_keys.f.next.next: unknown field",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // Structure is fine now; opening the keys reports what is missing.
    cfg.as_object_mut().unwrap().remove("ca_key");
    cfg["ca_keys"] = json!({
        "_default": {"path": pki.path("ssh_user_ca")},
        "g": {"type": "pkcs11", "module": "/nonexistent.so", "token_label": "ca",
              "key_label": "ca", "pin_env": "IB_NO_SUCH_PIN"},
        "h": {"type": "agent", "socket": dir.path().join("none.sock"),
              "public_key": pki.ssh_ca_pub().unwrap()},
    });
    let (code, text) = check_config(&path, &cfg);
    assert_eq!(code, Some(64), "{text}");
    assert!(
        text.contains("ca_keys.g: the PIN variable IB_NO_SUCH_PIN is not set"),
        "{text}"
    );
    assert!(
        text.contains("ca_keys.h: cannot reach the ssh-agent at"),
        "{text}"
    );
}
