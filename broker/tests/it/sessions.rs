//! Sessions against real sshd: exec, shell and pty modes, preflight,
//! limits, expiry, ownership, recordings, and many sessions over a chain.

use std::time::Duration;

use infrabroker_broker::api::{Caller, SessionMode, ToolError, Tools};
use infrabroker_broker::engine::Engine;
use infrabroker_testbed::{Sshd, SshdOptions, TestNet, ensure_user, netns_or_skip, sshd_or_skip};
use serde_json::json;

use crate::harness::{Bed, USER, caller, host_for, open_req, run, sshd};

async fn exec(
    e: &Engine,
    id: &str,
    cmd: &str,
) -> Result<infrabroker_broker::api::ExecResult, ToolError> {
    e.session_exec(&caller(), id, cmd.into(), None).await
}

struct One {
    bed: Bed,
    sshd: Sshd,
}

fn one(policy: Option<serde_json::Value>, max_ttl: Option<u64>) -> Option<One> {
    if !sshd_or_skip() {
        return None;
    }
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let mut h = host_for(&s, "web-principal");
    if let Some(p) = policy {
        h["command_policy"] = p;
    }
    if let Some(t) = max_ttl {
        h["max_ttl_seconds"] = json!(t);
    }
    let mut plain = host_for(&s, "web-principal");
    plain["allow_pty"] = json!(true);
    let bed = Bed::start(dir, pki, json!({"web": h, "plain": plain}));
    Some(One { bed, sshd: s })
}

#[tokio::test]
async fn exec_shell_and_pty_sessions_run_sequences_correctly() {
    let Some(t) = one(None, None) else { return };
    let rec_dir = t.bed.dir.path().join("casts");
    let engine = t
        .bed
        .engine(json!({"session_recording_dir": rec_dir}))
        .await;

    // exec: separate channels, separate streams, no shared state.
    let s = engine
        .session_open(&caller(), open_req("plain", SessionMode::Exec))
        .await
        .unwrap();
    let r = exec(&engine, &s.session_id, "echo one; echo two >&2; exit 4")
        .await
        .unwrap();
    assert_eq!(
        (r.stdout.as_str(), r.stderr.as_str(), r.exit_code),
        ("one\n", "two\n", Some(4))
    );
    exec(&engine, &s.session_id, "cd /tmp").await.unwrap();
    assert_ne!(
        exec(&engine, &s.session_id, "pwd").await.unwrap().stdout,
        "/tmp\n",
        "exec mode keeps no state"
    );
    assert_eq!(r.serial, s.serial);
    // A session command's timings: the preflight and the run, no hops.
    let r = exec(&engine, &s.session_id, "sleep 0.2").await.unwrap();
    assert!(r.timings.hops.is_empty(), "{:?}", r.timings);
    assert!(r.timings.exec_ms >= 200, "{:?}", r.timings);
    assert!(
        r.timings.plan_ms + r.timings.exec_ms <= r.duration_ms + 1,
        "{:?}",
        r.timings
    );

    // shell: state persists, streams apart, fake markers do not end a command.
    let sh = engine
        .session_open(&caller(), open_req("plain", SessionMode::Shell))
        .await
        .unwrap();
    let id = sh.session_id.clone();
    assert_eq!(
        exec(&engine, &id, "cd /tmp").await.unwrap().exit_code,
        Some(0)
    );
    assert_eq!(exec(&engine, &id, "pwd").await.unwrap().stdout, "/tmp\n");
    exec(&engine, &id, "X=kept").await.unwrap();
    let r = exec(&engine, &id, "echo $X; echo oops >&2; false")
        .await
        .unwrap();
    assert_eq!(
        (r.stdout.as_str(), r.stderr.as_str(), r.exit_code),
        ("kept\n", "oops\n", Some(1))
    );
    let r = exec(&engine, &id, "printf 'IBM0000000000000000ffffffffffffffff:0\\n__ib_rc=0\\n'; echo after; exit_code=7; (exit 9)").await.unwrap();
    assert_eq!(
        r.stdout,
        "IBM0000000000000000ffffffffffffffff:0\n__ib_rc=0\nafter\n"
    );
    assert_eq!(
        r.exit_code,
        Some(9),
        "a forged marker neither ends the command nor sets its code"
    );
    let r = exec(&engine, &id, "cat; echo stdin-is-closed")
        .await
        .unwrap();
    assert_eq!(
        r.stdout, "stdin-is-closed\n",
        "commands cannot read the shell's input"
    );
    let r = exec(&engine, &id, "printf 'no newline'").await.unwrap();
    assert_eq!(r.stdout, "no newline");
    // What a terminal would edit is refused: the audited line is what runs.
    let e = exec(&engine, &id, "echo hi\u{15}rm -rf /tmp/x")
        .await
        .unwrap_err();
    assert_eq!(e.reason_code(), "invalid_arguments", "{e:?}");
    // A redefined printf cannot fake exit codes.
    exec(
        &engine,
        &id,
        "printf() { command printf \"$1\" \"$2\" \"$3\" 0; }",
    )
    .await
    .unwrap();
    assert_eq!(
        exec(&engine, &id, "false").await.unwrap().exit_code,
        Some(1)
    );

    // pty: a terminal, streams merged.
    let mut pty_req = open_req("plain", SessionMode::Pty);
    pty_req.cols = Some(100);
    let pty = engine.session_open(&caller(), pty_req).await.unwrap();
    let r = exec(
        &engine,
        &pty.session_id,
        "[ -t 1 ] && echo terminal; echo out; echo err >&2; cd /var",
    )
    .await
    .unwrap();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines, ["terminal", "out", "err"], "{r:?}");
    assert_eq!(r.stderr, "");
    assert_eq!(
        exec(&engine, &pty.session_id, "pwd").await.unwrap().stdout,
        "/var\n"
    );
    assert_eq!(
        exec(&engine, &pty.session_id, "stty size </dev/tty")
            .await
            .unwrap()
            .stdout,
        "24 100\n"
    );
    // Changing the line discipline would make later lines differ from what
    // was judged and recorded: refused before anything is sent.
    let refused = exec(&engine, &pty.session_id, "stty kill Q </dev/tty").await;
    assert!(
        matches!(&refused, Err(ToolError::Invalid(m)) if m.contains("stty settings")),
        "{refused:?}"
    );
    assert_eq!(
        exec(&engine, &pty.session_id, "echo okQstill-echo")
            .await
            .unwrap()
            .stdout,
        "okQstill-echo\n"
    );

    // A command past its timeout: exec sessions stay usable, shells close.
    let q = engine
        .session_exec(
            &caller(),
            &s.session_id,
            "sleep 20".into(),
            Some(Duration::from_secs(1)),
        )
        .await;
    assert_eq!(q.unwrap_err(), ToolError::TimedOut { seconds: 1 });
    assert_eq!(
        exec(&engine, &s.session_id, "echo still")
            .await
            .unwrap()
            .stdout,
        "still\n"
    );
    let q = engine
        .session_exec(
            &caller(),
            &id,
            "sleep 20".into(),
            Some(Duration::from_secs(1)),
        )
        .await;
    assert_eq!(q.unwrap_err(), ToolError::TimedOut { seconds: 1 });
    match exec(&engine, &id, "echo gone").await.unwrap_err() {
        ToolError::SessionUnknown(_) | ToolError::SessionClosed(_) => {}
        other => panic!("the timed-out shell must be closed, got {other:?}"),
    }

    // Listing and closing.
    let mine: Vec<String> = engine
        .session_list(&caller())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.session_id)
        .collect();
    assert!(mine.contains(&s.session_id) && mine.contains(&pty.session_id) && !mine.contains(&id));
    engine
        .session_close(&caller(), &pty.session_id)
        .await
        .unwrap();
    assert!(matches!(
        exec(&engine, &pty.session_id, "id").await,
        Err(ToolError::SessionUnknown(_))
    ));

    // Recordings: 0600, playable, carrying the shell's output.
    let cast = rec_dir.join(format!("{}.cast", sh.session_id));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&cast).unwrap().permissions())
            & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&cast).unwrap();
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert!(text.contains("\"i\",\"pwd\\n\""), "{text}");
    assert!(
        text.lines().any(|l| l.contains("\"e\",\"oops\\n")),
        "{text}"
    );
    if infrabroker_testbed::require(
        "asciinema (apt-get install asciinema)",
        std::path::Path::new("/usr/bin/asciinema").exists(),
    ) {
        let out = std::process::Command::new("script")
            .args([
                "-qec",
                &format!("asciinema cat {}", cast.display()),
                "/dev/null",
            ])
            .output()
            .unwrap();
        let played = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{played}");
        assert!(
            played.contains("kept") && played.contains("/tmp"),
            "{played}"
        );
    }
    let audit = t.bed.broker_records();
    assert!(
        audit
            .iter()
            .any(|r| r["outcome"] == "session_open" && r["session_id"] == sh.session_id.as_str())
    );
    assert!(audit.iter().any(|r| r["outcome"] == "session_exec"
        && r["session_id"] == sh.session_id.as_str()
        && r["command"] == "pwd"));
    assert!(
        audit
            .iter()
            .any(|r| r["outcome"] == "session_close" && r["session_id"] == id.as_str())
    );
}

#[tokio::test]
async fn preflight_refuses_before_anything_is_sent() {
    let Some(t) = one(
        Some(json!({"mode": "denylist", "deny": ["^rm( |$)", "^echo secret"]})),
        None,
    ) else {
        return;
    };
    let rec_dir = t.bed.dir.path().join("casts");
    let engine = t
        .bed
        .engine(json!({"session_recording_dir": rec_dir}))
        .await;
    // Only exec sessions on a host with a command policy.
    for mode in [SessionMode::Shell, SessionMode::Pty] {
        let e = engine
            .session_open(&caller(), open_req("web", mode))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ToolError::Denied { code, .. } if code == "session_mode_not_allowed" || code == "pty_not_allowed"),
            "{e:?}"
        );
    }
    let s = engine
        .session_open(&caller(), open_req("web", SessionMode::Exec))
        .await
        .unwrap();
    assert_eq!(
        exec(&engine, &s.session_id, "echo fine")
            .await
            .unwrap()
            .stdout,
        "fine\n"
    );
    let e = exec(&engine, &s.session_id, "echo secret stuff")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ToolError::Denied { code, .. } if code == "command_denied"),
        "{e:?}"
    );
    assert!(!t.sshd.log().contains("secret"));

    // A shell on the policy-free host, then a reload that adds a policy to it.
    let sh = engine
        .session_open(&caller(), open_req("plain", SessionMode::Shell))
        .await
        .unwrap();
    assert_eq!(
        exec(&engine, &sh.session_id, "echo before")
            .await
            .unwrap()
            .stdout,
        "before\n"
    );
    assert!(
        exec(&engine, &s.session_id, "uptime; echo up")
            .await
            .unwrap()
            .stdout
            .ends_with("up\n")
    );
    let mut cfg = t.bed.signer_cfg.clone();
    cfg["hosts"]["plain"]["command_policy"] = json!({"mode": "denylist", "deny": ["^touch "]});
    cfg["hosts"]["web"]["command_policy"]["deny"] = json!(["^rm( |$)", "^echo secret", "^uptime"]);
    t.bed.signer.write_config(&cfg).unwrap();
    t.bed.signer.hup().unwrap();
    assert!(infrabroker_testbed::wait_until(
        Duration::from_secs(10),
        || {
            t.bed
                .signer_records()
                .iter()
                .any(|r| r["outcome"] == "reloaded")
        }
    ));
    let e = exec(&engine, &sh.session_id, "echo after-reload")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ToolError::Denied { code, .. } if code == "session_mode_not_allowed"),
        "{e:?}"
    );
    let e = exec(&engine, &s.session_id, "uptime").await.unwrap_err();
    assert!(
        matches!(&e, ToolError::Denied { code, .. } if code == "command_denied"),
        "previously allowed, now denied: {e:?}"
    );
    let cast = std::fs::read_to_string(rec_dir.join(format!("{}.cast", sh.session_id))).unwrap();
    assert!(
        cast.contains("before") && !cast.contains("after-reload"),
        "{cast}"
    );
    assert!(
        t.bed
            .broker_records()
            .iter()
            .any(|r| r["outcome"] == "session_exec_denied")
    );

    // The host's connection details change (a rebuilt host, a new address):
    // the open session refuses its next command and is closed.
    cfg["hosts"]["web"]["addr"] = json!("127.0.0.1:9");
    t.bed.signer.write_config(&cfg).unwrap();
    t.bed.signer.hup().unwrap();
    assert!(infrabroker_testbed::wait_until(
        Duration::from_secs(10),
        || {
            t.bed
                .signer_records()
                .iter()
                .filter(|r| r["outcome"] == "reloaded")
                .count()
                == 2
        }
    ));
    let e = exec(&engine, &s.session_id, "echo fine").await.unwrap_err();
    assert_eq!(e, ToolError::SessionChainChanged, "{e:?}");
    let e = exec(&engine, &s.session_id, "echo fine").await.unwrap_err();
    assert!(
        matches!(
            e,
            ToolError::SessionClosed(_) | ToolError::SessionUnknown(_)
        ),
        "closed after the change: {e:?}"
    );
}

#[tokio::test]
async fn limits_idle_expiry_and_ownership() {
    let Some(t) = one(None, Some(3)) else { return };
    let engine = t
        .bed
        .engine(json!({"max_sessions_per_caller": 2, "session_idle_seconds": 5}))
        .await;
    let a = engine
        .session_open(&caller(), open_req("plain", SessionMode::Exec))
        .await
        .unwrap();
    let _b = engine
        .session_open(&caller(), open_req("plain", SessionMode::Shell))
        .await
        .unwrap();
    let e = engine
        .session_open(&caller(), open_req("plain", SessionMode::Exec))
        .await
        .unwrap_err();
    assert!(matches!(e, ToolError::SessionLimit(_)), "{e:?}");
    // Another caller cannot see or use them.
    let mallory = Caller::local("mallory");
    assert!(matches!(
        engine
            .session_exec(&mallory, &a.session_id, "id".into(), None)
            .await,
        Err(ToolError::SessionUnknown(_))
    ));
    assert!(matches!(
        engine.session_close(&mallory, &a.session_id).await,
        Err(ToolError::SessionUnknown(_))
    ));
    assert!(engine.session_list(&mallory).await.unwrap().is_empty());
    let other_user = Caller {
        id: "mcp-stdio".into(),
        end_user: Some("eve".into()),
        end_user_groups: None,
    };
    assert!(matches!(
        engine
            .session_exec(&other_user, &a.session_id, "id".into(), None)
            .await,
        Err(ToolError::SessionUnknown(_))
    ));

    // Idle: closed by the reaper.
    assert!(
        wait(&engine, Duration::from_secs(15), |n| n == 0).await,
        "idle sessions are reaped"
    );
    assert!(
        t.bed
            .broker_records()
            .iter()
            .any(|r| r["outcome"] == "session_close"
                && r["reason"].as_str().unwrap_or("").starts_with("idle"))
    );

    // Expiry: "web" has max_ttl 3 s; a busy session is closed at its end.
    let s = engine
        .session_open(&caller(), open_req("web", SessionMode::Shell))
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(s.expires_at <= now + 3);
    let e = engine
        .session_exec(
            &caller(),
            &s.session_id,
            "sleep 30".into(),
            Some(Duration::from_secs(30)),
        )
        .await
        .unwrap_err();
    match e {
        ToolError::SessionClosed(reason) => assert!(reason.contains("expired"), "{reason}"),
        other => panic!("expected the session to close at expiry, got {other:?}"),
    }
}

async fn wait(engine: &Engine, limit: Duration, ok: impl Fn(usize) -> bool) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if ok(engine.session_list(&caller()).await.unwrap().len()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sessions_in_parallel_across_a_bastion_chain() {
    if !netns_or_skip() {
        return;
    }
    ensure_user(USER).unwrap();
    let chain = TestNet::bastion_chain(1).unwrap();
    let (dir, pki) = Bed::pki();
    let b = &chain.bastions[0];
    let start = |ns: &str, addr: std::net::Ipv4Addr, p: &str| {
        let mut o = SshdOptions::new(pki.ssh_ca_pub().unwrap()).with_principals(USER, [p]);
        o.netns = Some(ns.to_owned());
        o.listen = addr.into();
        o.port = Some(2222);
        o.extra_config = vec!["MaxStartups 100:30:200".into(), "MaxSessions 100".into()];
        Sshd::start(o).unwrap()
    };
    let bastion = start(&b.netns, b.addr, "b-p");
    let target = start(&chain.target.netns, chain.target.addr, "t-p");
    let entry = |s: &Sshd, p: &str| json!({"addr": s.addr().to_string(), "user": USER, "host_key": s.host_key_openssh(), "principal": p, "groups": ["web"]});
    let mut t = entry(&target, "t-p");
    t["jump"] = json!("bastion");
    t["source_address"] = json!(b.next.unwrap().to_string());
    let bed = Bed::start(
        dir,
        pki,
        json!({"bastion": entry(&bastion, "b-p"), "target": t}),
    );
    let engine = bed
        .engine(json!({"max_sessions_per_caller": 40, "max_concurrent_per_caller": 64}))
        .await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let e = engine.clone();
        tasks.push(tokio::spawn(async move {
            let mode = if i % 2 == 0 {
                SessionMode::Shell
            } else {
                SessionMode::Exec
            };
            let s = e.session_open(&caller(), open_req("target", mode)).await?;
            for j in 0..3 {
                let r = e
                    .session_exec(&caller(), &s.session_id, format!("echo {i}-{j}"), None)
                    .await?;
                assert_eq!(r.stdout, format!("{i}-{j}\n"));
                assert_eq!(r.exit_code, Some(0));
            }
            e.session_close(&caller(), &s.session_id).await?;
            Ok::<_, ToolError>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(engine.session_list(&caller()).await.unwrap().is_empty());
}

#[tokio::test]
async fn elevated_sessions_run_through_sudo() {
    let Some(t) = one(None, None) else { return };
    let _rule =
        infrabroker_testbed::sudoers(USER, &format!("{USER} ALL=(root) NOPASSWD: ALL")).unwrap();
    let mut cfg = t.bed.signer_cfg.clone();
    cfg["hosts"]["plain"]["allow_sudo"] = json!(true);
    t.bed.signer.write_config(&cfg).unwrap();
    t.bed.signer.hup().unwrap();
    assert!(infrabroker_testbed::wait_until(
        Duration::from_secs(10),
        || {
            t.bed
                .signer_records()
                .iter()
                .any(|r| r["outcome"] == "reloaded")
        }
    ));
    let engine = t.bed.engine(json!({})).await;
    for mode in [SessionMode::Exec, SessionMode::Shell] {
        let mut req = open_req("plain", mode);
        req.sudo = true;
        let s = engine.session_open(&caller(), req).await.unwrap();
        let r = exec(&engine, &s.session_id, "id -un").await.unwrap();
        assert_eq!(r.stdout, "root\n", "{mode:?}: {r:?}");
    }
    // Not elevated: the account itself.
    let s = engine
        .session_open(&caller(), open_req("plain", SessionMode::Shell))
        .await
        .unwrap();
    assert_eq!(
        exec(&engine, &s.session_id, "id -un").await.unwrap().stdout,
        format!("{USER}\n")
    );
    // Elevation to a user the host does not allow is refused at open.
    let mut req = open_req("plain", SessionMode::Shell);
    req.sudo = true;
    req.sudo_user = Some("postgres".into());
    let e = engine.session_open(&caller(), req).await.unwrap_err();
    assert!(
        matches!(&e, ToolError::Denied { code, .. } if code == "sudo_user_not_allowed"),
        "{e:?}"
    );
}

/// `broker-ctl recording verify CAST` against this bed's broker log.
fn verify_recording(bed: &Bed, cast: &std::path::Path) -> (bool, String) {
    let log = bed.dir.path().join("broker-audit.log");
    let pubkey = bed.pki.path("broker-audit.pub");
    infrabroker_testbed::broker_ctl(&[
        "recording".as_ref(),
        "verify".as_ref(),
        cast.as_os_str(),
        "--audit".as_ref(),
        log.as_os_str(),
        "--pubkey".as_ref(),
        pubkey.as_os_str(),
    ])
    .unwrap()
}

/// Issue 11 §3: a shell session's recording goes into the broker's audit
/// chain chunk by chunk; `broker-ctl recording verify` proves the cast
/// byte-exact and names a modified, cut-short or appended-to file.
#[tokio::test]
async fn a_recording_is_proved_byte_exact_by_its_chunks_in_the_chain() {
    let Some(t) = one(None, None) else { return };
    let rec_dir = t.bed.dir.path().join("casts");
    let engine = t
        .bed
        .engine(json!({"session_recording_dir": rec_dir}))
        .await;
    let sh = engine
        .session_open(&caller(), open_req("plain", SessionMode::Shell))
        .await
        .unwrap();
    let id = sh.session_id.clone();
    // Three commands of 70 KB output each: every one ends with more than
    // 64 KiB since the last seal, so at least three chunks however the
    // output was split into reads (one read of 150 KB would make one).
    for _ in 0..3 {
        exec(&engine, &id, "head -c 70000 /dev/zero | tr '\\0' a; echo")
            .await
            .unwrap();
    }
    exec(&engine, &id, "printf 'caf\\303\\251\\n'")
        .await
        .unwrap();
    engine.session_close(&caller(), &id).await.unwrap();
    let cast = rec_dir.join(format!("{id}.cast"));
    let (ok, text) = verify_recording(&t.bed, &cast);
    assert!(ok, "{text}");
    assert!(
        text.contains("byte-exact") && text.contains("as its close record says"),
        "{text}"
    );
    let orig = std::fs::read(&cast).unwrap();
    assert!(String::from_utf8_lossy(&orig).contains("café"));
    let records = t.bed.broker_records();
    let chunks = records
        .iter()
        .filter(|r| r["event"] == "recording_chunk" && r["session_id"] == id.as_str())
        .count();
    assert!(chunks >= 3, "{chunks} chunk records");
    let close = records
        .iter()
        .find(|r| r["outcome"] == "session_close" && r["session_id"] == id.as_str())
        .unwrap();
    assert_eq!(close["recording_size"], orig.len() as u64);

    let mut edited = orig.clone();
    edited[orig.len() / 2] = b'b';
    let cut = orig[..orig.len() - 10].to_vec();
    let mut appended = orig.clone();
    appended.extend_from_slice(b"[9.9, \"o\", \"rm -rf /\"]\n");
    for (bytes, want) in [
        (edited, "was modified"),
        (cut, "was removed or cut short"),
        (
            appended,
            "bytes were appended after the last recorded chunk",
        ),
    ] {
        std::fs::write(&cast, &bytes).unwrap();
        let (ok, text) = verify_recording(&t.bed, &cast);
        assert!(!ok && text.contains(want), "{want:?} not in {text}");
    }
}

/// `recording_required` (the default): once the recording cannot be
/// written the session runs no further command and is closed, saying why.
#[tokio::test]
async fn a_recording_that_cannot_be_written_closes_its_session() {
    if !infrabroker_testbed::prereq::require(
        "root (to mount a small tmpfs)",
        infrabroker_testbed::prereq::is_root(),
    ) {
        return;
    }
    let Some(t) = one(None, None) else { return };
    let disk = infrabroker_testbed::SmallDisk::mount(t.bed.dir.path()).unwrap();
    let engine = t
        .bed
        .engine(json!({"session_recording_dir": disk.path()}))
        .await;
    let sh = engine
        .session_open(&caller(), open_req("plain", SessionMode::Shell))
        .await
        .unwrap();
    let _filler = disk.fill();
    // Output the full disk cannot take; the recorder stops on it.
    exec(
        &engine,
        &sh.session_id,
        "head -c 300000 /dev/zero | tr '\\0' a",
    )
    .await
    .unwrap();
    let mut refused = None;
    for _ in 0..100 {
        match exec(&engine, &sh.session_id, "echo next").await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    // Refused by the recording check, or the session is already closed
    // (when the recording failed during the previous command).
    let e = refused.expect("a command refused once the recording failed");
    let text = e.to_string();
    assert!(
        text.contains("the session recording could not be written")
            || text.contains("no open session"),
        "{text}"
    );
    let close = t
        .bed
        .broker_records()
        .into_iter()
        .find(|r| r["outcome"] == "session_close" && r["session_id"] == sh.session_id.as_str())
        .expect("the session was closed");
    let reason = close["reason"].as_str().unwrap();
    assert!(reason.contains("recording_required"), "{reason}");
    assert!(close["recording_error"].is_string(), "{close}");
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            out.extend(files_under(&path));
        } else if kind.is_file() {
            out.push(path);
        }
    }
    out
}

/// SPEC §7 / issue 11 §4: a secret on a command line, matched by `redact`
/// in the signer and the broker, reaches no file the services write —
/// neither audit log (nor the signer's force-command, which carries the
/// command base64-encoded), nor a recording, nor the state store — while
/// the command itself runs with the real value.
#[tokio::test]
async fn a_redacted_secret_never_reaches_a_file() {
    if !sshd_or_skip() {
        return;
    }
    const SECRET: &str = "tok_s3cr3tvalue42";
    let redact = json!({"api_token": "tok_[a-z0-9]+"});
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let mut plain = host_for(&s, "web-principal");
    plain["allow_pty"] = json!(true);
    let bed = Bed::start_with(dir, pki, json!({"plain": plain}), |cfg| {
        cfg["redact"] = redact.clone();
    });
    let rec_dir = bed.dir.path().join("casts");
    let engine = bed
        .engine(json!({"session_recording_dir": rec_dir, "redact": redact}))
        .await;
    let command = format!("echo {SECRET} | tr a-z A-Z");
    let r = run(&engine, "plain", &command).await.unwrap();
    assert_eq!(r.stdout, SECRET.to_uppercase() + "\n", "the real value ran");
    let sh = engine
        .session_open(&caller(), open_req("plain", SessionMode::Shell))
        .await
        .unwrap();
    let out = exec(&engine, &sh.session_id, &format!("echo {SECRET}"))
        .await
        .unwrap();
    assert_eq!(out.stdout, format!("{SECRET}\n"));
    engine
        .session_close(&caller(), &sh.session_id)
        .await
        .unwrap();
    drop(engine);

    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&command)
    };
    let files = files_under(bed.dir.path());
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "cast"))
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(SECRET), "{} holds the secret", f.display());
        assert!(
            !text.contains(&b64),
            "{} holds the secret base64-encoded",
            f.display()
        );
    }
    let records = bed.broker_records();
    let ran = records
        .iter()
        .find(|r| r["command_sha256"].is_string())
        .expect("a redacted record keeps the command's hash");
    assert!(
        ran["command"]
            .as_str()
            .unwrap()
            .contains("[REDACTED:api_token]")
    );
    let signer = bed.signer_records();
    assert!(
        signer
            .iter()
            .any(|r| r["force_command"] == "[REDACTED:command]"),
        "the signer's force_command is replaced"
    );
}
