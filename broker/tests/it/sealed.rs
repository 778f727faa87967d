//! Sealed exec end to end: a host marked `sealed_exec` runs the real
//! `infrabroker-shim` as its session certificates' force-command; the
//! broker's session commands run through signer-signed envelopes, and what
//! a compromised broker could send over the same certificate does not.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use infrabroker_broker::api::{SessionMode, ToolError, Tools};
use infrabroker_common::client::MtlsClient;
use infrabroker_common::wire::SignResponse;
use infrabroker_testbed::shim::ShimHost;
use infrabroker_testbed::{SshClient, bin_path, broker_ctl, sshd_or_skip};
use serde_json::{Value, json};

use crate::harness::{Bed, USER, caller, host_for, open_req, sshd};

async fn sign(mtls: &MtlsClient, body: Value) -> SignResponse {
    mtls.call(hyper::Method::POST, "/v1/sign", Some(&body))
        .await
        .unwrap()
}

fn session_body(host: &str, pubkey: &str, command: &str, dry_run: bool) -> Value {
    json!({"host": host, "role": "target", "purpose": "session", "session_mode": "exec",
           "command": command, "dry_run": dry_run, "pubkey": pubkey})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_session_commands_run_only_from_signed_envelopes() {
    if !sshd_or_skip() {
        return;
    }
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let shim = ShimHost::install("sealed", "web-principal", USER).unwrap();
    let mut sealed = host_for(&s, "web-principal");
    sealed["sealed_exec"] = json!(true);
    sealed["shim_path"] = json!(shim.force_command());
    // Sealed too, with a command policy; its shim would be configured
    // with its own name, so `sealed`'s shim refuses its envelopes.
    let mut other = sealed.clone();
    other["command_policy"] = json!({"mode": "denylist", "deny": ["^rm "]});
    let plain = host_for(&s, "web-principal");
    let seed = dir.path().join("envelope.seed");
    std::fs::write(&seed, rand::random::<[u8; 32]>()).unwrap();
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o600)).unwrap();
    let hosts = json!({"sealed": sealed, "other": other, "plain": plain});
    let bed = Bed::start_with(dir, pki, hosts, |cfg| {
        cfg["envelope_key"] = json!(seed);
    });
    let config = bed.signer.config_path.display().to_string();
    let (ok, line) = broker_ctl(&["pki", "envelope-pub", "--config", &config]).unwrap();
    assert!(ok && line.starts_with("ssh-ed25519 "), "{line}");
    shim.pin(&line).unwrap();

    // The broker's session commands run, each through its own envelope.
    let engine = bed.engine(json!({})).await;
    let open = engine
        .session_open(&caller(), open_req("sealed", SessionMode::Exec))
        .await
        .unwrap();
    for word in ["one", "two"] {
        let out = engine
            .session_exec(
                &caller(),
                &open.session_id,
                format!("echo sealed-{word}"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(out.stdout, format!("sealed-{word}\n"), "{out:?}");
    }
    let nonces: Vec<Value> = bed
        .signer_records()
        .into_iter()
        .filter(|r| r["outcome"] == "dry_run" && r["host"] == "sealed")
        .map(|r| r["envelope_nonce"].clone())
        .collect();
    assert_eq!(nonces.len(), 2, "{nonces:?}");
    assert!(nonces.iter().all(Value::is_string) && nonces[0] != nonces[1]);
    let sealed_runs = bed
        .broker_records()
        .into_iter()
        .filter(|r| r["outcome"] == "session_exec_started" && r["sealed"] == true)
        .count();
    assert_eq!(sealed_runs, 2);

    // The host stops a sealed command at its deadline (sshd passes no
    // signal to a forced command): it never gets to its second step.
    let late = shim.marker("late");
    let slow = format!("sleep 3; touch {}", late.display());
    let e = engine
        .session_exec(
            &caller(),
            &open.session_id,
            slow,
            Some(Duration::from_secs(1)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ToolError::TimedOut { .. }), "{e:?}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!late.exists(), "the timed-out command ran on");

    // Shell and PTY sessions are refused on a sealed host.
    for mode in [SessionMode::Shell, SessionMode::Pty] {
        let e = engine
            .session_open(&caller(), open_req("sealed", mode))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ToolError::Denied { code, .. } if code == "session_mode_not_allowed"),
            "{e:?}"
        );
    }

    // What a compromised broker holds: a session certificate (its
    // force-command is the shim) and whatever envelopes it was given.
    let mtls = MtlsClient::new(
        &bed.signer.url,
        &bed.pki.path("ca.crt"),
        &bed.pki.path("broker-1.crt"),
        &bed.pki.path("broker-1.key"),
        Duration::from_secs(5),
    )
    .unwrap();
    let key =
        ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&rand::random()));
    let pubkey = key.public_key().to_openssh().unwrap();
    let cert = sign(&mtls, session_body("sealed", &pubkey, "", false)).await;
    let cert = cert.certificate.unwrap();
    let parsed = ssh_key::Certificate::from_openssh(&cert).unwrap();
    let force = parsed.critical_options().get("force-command").cloned();
    assert_eq!(force.as_deref(), Some(shim.force_command().as_str()));
    let client_dir = bed.dir.path().join("compromised");
    std::fs::create_dir(&client_dir).unwrap();
    let client = SshClient::create(&client_dir, &key, &cert).unwrap();
    let ssh = |request: &str| client.run(&s.target(), USER, request, &[]).unwrap();

    // A bare command never runs.
    let bare = shim.marker("bare");
    let out = ssh(&format!("touch {}", bare.display()));
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    assert!(!bare.exists(), "a bare command ran on a sealed host");

    // An envelope runs once; replayed or altered, it is refused.
    let good = shim.marker("good");
    let judged = sign(
        &mtls,
        session_body(
            "sealed",
            &pubkey,
            &format!("touch {}", good.display()),
            true,
        ),
    )
    .await;
    let envelope = judged.envelope.unwrap();
    assert_eq!(ssh(&envelope).status.code(), Some(0));
    assert!(good.exists());
    std::fs::remove_file(&good).unwrap();
    let out = ssh(&envelope);
    assert_eq!(out.status.code(), Some(126), "replayed: {out:?}");
    assert!(!good.exists(), "a replayed envelope ran");
    let altered = envelope.replacen("IBX1.e", "IBX1.f", 1);
    assert_ne!(altered, envelope);
    assert_eq!(ssh(&altered).status.code(), Some(126));
    assert!(!good.exists());

    // An envelope for another host is refused by this host's shim.
    let elsewhere = shim.marker("elsewhere");
    let judged = sign(
        &mtls,
        session_body(
            "other",
            &pubkey,
            &format!("touch {}", elsewhere.display()),
            true,
        ),
    )
    .await;
    let out = ssh(&judged.envelope.unwrap());
    assert_eq!(
        out.status.code(),
        Some(126),
        "other host's envelope: {out:?}"
    );
    assert!(!elsewhere.exists());

    // A refused command gets no envelope; an unsealed host never one.
    let refused = sign(&mtls, session_body("other", &pubkey, "rm -rf /tmp/x", true)).await;
    assert!(
        !refused.decision.allowed && refused.envelope.is_none(),
        "{refused:?}"
    );
    let plain = sign(&mtls, session_body("plain", &pubkey, "echo hi", true)).await;
    assert!(
        plain.decision.allowed && plain.envelope.is_none(),
        "{plain:?}"
    );
}

#[test]
fn a_sealed_host_needs_an_envelope_key() {
    let (dir, pki) = Bed::pki();
    let mut cfg = infrabroker_testbed::stack::signer_config(&pki, &dir.path().join("audit.log"));
    cfg["callers"] = json!({"broker-1": {"allowed_groups": ["web"]}});
    cfg["hosts"] = json!({"sealed": {
        "addr": "127.0.0.1:22", "user": "u", "principal": "p", "groups": ["web"],
        "host_key": pki.ssh_ca_pub().unwrap(), "sealed_exec": true, "shim_path": "shim",
    }});
    let path = dir.path().join("signer.json");
    std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let out = std::process::Command::new(bin_path("signer").unwrap())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{text}");
    assert!(
        text.contains("hosts.sealed.sealed_exec: a sealed host needs \"envelope_key\""),
        "{text}"
    );
    assert!(
        text.contains("hosts.sealed.shim_path: must be an absolute path"),
        "{text}"
    );
}
