//! Commands stop when the broker says they stopped: timed-out and
//! cancelled commands are killed on the host (a file the command would
//! write later never appears), cancelled exec-session commands give their
//! channel back, busy sessions are not reaped, a shell that ended closes
//! its session, and a PTY whose modes changed is closed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use infrabroker_broker::api::{ExecRequest, SessionMode, SessionOpenRequest, ToolError, Tools};
use infrabroker_broker::engine::Engine;
use infrabroker_testbed::sshd_or_skip;
use serde_json::{Value, json};

use crate::harness::{Bed, caller, host_for, sshd};

fn open_req(mode: SessionMode) -> SessionOpenRequest {
    SessionOpenRequest {
        host: "plain".into(),
        mode,
        sudo: false,
        sudo_user: None,
        cols: None,
        rows: None,
    }
}

fn bed() -> Option<(Bed, infrabroker_testbed::Sshd)> {
    if !sshd_or_skip() {
        return None;
    }
    let (dir, pki) = Bed::pki();
    let s = sshd(&pki, "web-principal");
    let mut plain = host_for(&s, "web-principal");
    plain["allow_pty"] = json!(true);
    Some((Bed::start(dir, pki, json!({"plain": plain})), s))
}

/// A directory the test account can write, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let p = std::env::temp_dir().join(format!("ib-stop-{:08x}", rand::random::<u32>()));
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        Scratch(p)
    }

    /// `touch START; sleep SECS; touch DONE` with names for `tag`.
    fn command(&self, tag: &str, secs: u32, prefix: &str) -> String {
        let d = self.0.display();
        format!("{prefix}touch {d}/{tag}.start; sleep {secs}; touch {d}/{tag}.done")
    }

    fn has(&self, name: &str) -> bool {
        Path::new(&self.0).join(name).exists()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn in_session(e: &Engine, id: &str, cmd: String, secs: u64) -> Result<String, ToolError> {
    e.session_exec(&caller(), id, cmd, Some(Duration::from_secs(secs)))
        .await
        .map(|r| r.stdout)
}

fn record<'a>(records: &'a [Value], outcome: &str, command: &str) -> Option<&'a Value> {
    records
        .iter()
        .find(|r| r["outcome"] == outcome && r["command"] == command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_commands_are_stopped_on_the_host() {
    let Some((bed, _sshd)) = bed() else { return };
    let engine = bed.engine(json!({})).await;
    let scratch = Scratch::new();
    let exec_s = engine
        .session_open(&caller(), open_req(SessionMode::Exec))
        .await
        .unwrap();
    let shell = engine
        .session_open(&caller(), open_req(SessionMode::Shell))
        .await
        .unwrap();
    let pty = engine
        .session_open(&caller(), open_req(SessionMode::Pty))
        .await
        .unwrap();
    let oneshot_cmd = scratch.command("oneshot", 4, "");
    let exec_cmd = scratch.command("exec", 4, "");
    // Ignoring TERM earns a KILL.
    let stubborn_cmd = scratch.command("stubborn", 5, "trap '' TERM; ");
    let started = Instant::now();
    let me = caller();
    let oneshot = engine.execute(
        &me,
        ExecRequest {
            host: "plain".into(),
            command: oneshot_cmd.clone(),
            sudo: false,
            sudo_user: None,
            timeout: Some(Duration::from_secs(1)),
        },
    );
    let stubborn_s = engine
        .session_open(&caller(), open_req(SessionMode::Exec))
        .await
        .unwrap();
    let (a, b, c, d, f) = tokio::join!(
        oneshot,
        in_session(&engine, &exec_s.session_id, exec_cmd.clone(), 1),
        in_session(&engine, &stubborn_s.session_id, stubborn_cmd.clone(), 1),
        in_session(
            &engine,
            &shell.session_id,
            scratch.command("shell", 4, ""),
            1
        ),
        in_session(&engine, &pty.session_id, scratch.command("pty", 4, ""), 1),
    );
    assert_eq!(a.unwrap_err(), ToolError::TimedOut { seconds: 1 });
    for r in [b, c, d, f] {
        assert_eq!(r.unwrap_err(), ToolError::TimedOut { seconds: 1 });
    }
    // Every command had started; none reaches its second touch.
    for tag in ["oneshot", "exec", "stubborn", "shell", "pty"] {
        assert!(scratch.has(&format!("{tag}.start")), "{tag} never ran");
    }
    let past = Duration::from_secs(5 + 3);
    tokio::time::sleep(past.saturating_sub(started.elapsed())).await;
    for tag in ["oneshot", "exec", "stubborn", "shell", "pty"] {
        assert!(
            !scratch.has(&format!("{tag}.done")),
            "{tag}: the timed-out command ran on"
        );
    }
    let records = bed.broker_records();
    let r = record(&records, "timed_out", &oneshot_cmd).expect("one-shot timed_out record");
    assert_eq!(r["stop"]["channel_closed"], true, "{r}");
    assert_eq!(
        r["stop"]["exited"], true,
        "the host's wrapper ended it: {r}"
    );
    let r = record(&records, "session_exec_failed", &exec_cmd).expect("exec record");
    assert_eq!(r["stop"]["signals"], json!(["TERM"]), "{r}");
    assert_eq!(r["stop"]["exited"], true, "{r}");
    let r = record(&records, "session_exec_failed", &stubborn_cmd).expect("stubborn record");
    assert_eq!(
        r["stop"]["signals"],
        json!(["TERM", "KILL"]),
        "TERM is ignored: {r}"
    );
    assert_eq!(r["stop"]["exited"], true, "{r}");
    let issued = bed
        .signer_records()
        .into_iter()
        .find(|r| r["command"] == oneshot_cmd.as_str() && r["force_command"].is_string())
        .expect("the one-shot issuance");
    assert!(
        issued["force_command"]
            .as_str()
            .unwrap()
            .starts_with("exec timeout -k 2 1 /bin/sh -c "),
        "{issued}"
    );
    // The exec session is still usable.
    assert_eq!(
        in_session(&engine, &exec_s.session_id, "echo on".into(), 5)
            .await
            .unwrap(),
        "on\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_cancelled_commands_leave_the_exec_session_usable() {
    let Some((bed, _sshd)) = bed() else { return };
    let engine = bed.engine(json!({})).await;
    let scratch = Scratch::new();
    let s = engine
        .session_open(&caller(), open_req(SessionMode::Exec))
        .await
        .unwrap();
    for i in 0..20 {
        let tag = format!("c{i}");
        let cmd = scratch.command(&tag, 3, "");
        let call = in_session(&engine, &s.session_id, cmd, 30);
        let started = format!("{tag}.start");
        let cancelled = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::pin!(call);
            loop {
                tokio::select! {
                    r = &mut call => return Some(r),
                    () = tokio::time::sleep(Duration::from_millis(20)) => {
                        if scratch.has(&started) {
                            return None;
                        }
                    }
                }
            }
        })
        .await
        .unwrap();
        assert!(cancelled.is_none(), "command {i} ended: {cancelled:?}");
    }
    assert_eq!(
        in_session(&engine, &s.session_id, "echo alive".into(), 10)
            .await
            .unwrap(),
        "alive\n",
        "past sshd's MaxSessions (10) the session still opens channels"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    for i in 0..20 {
        assert!(
            !scratch.has(&format!("c{i}.done")),
            "cancelled command {i} ran on"
        );
    }
    let abandoned = bed
        .broker_records()
        .into_iter()
        .filter(|r| r["outcome"] == "abandoned" && r["stop"].is_string())
        .count();
    assert_eq!(abandoned, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_concurrent_command_keeps_its_session_from_the_reaper() {
    let Some((bed, _sshd)) = bed() else { return };
    let engine = bed.engine(json!({"session_idle_seconds": 5})).await;
    let s = engine
        .session_open(&caller(), open_req(SessionMode::Exec))
        .await
        .unwrap();
    let (short, long) = tokio::join!(
        in_session(&engine, &s.session_id, "sleep 1; echo short".into(), 30),
        in_session(&engine, &s.session_id, "sleep 9; echo long".into(), 30),
    );
    assert_eq!(short.unwrap(), "short\n");
    assert_eq!(
        long.unwrap(),
        "long\n",
        "the session was reaped while a command ran"
    );
}

#[tokio::test]
async fn a_shell_that_ended_closes_its_session_at_once() {
    let Some((bed, _sshd)) = bed() else { return };
    let engine = bed.engine(json!({})).await;
    for cmd in ["exit 3", "fi"] {
        let s = engine
            .session_open(&caller(), open_req(SessionMode::Shell))
            .await
            .unwrap();
        let e = in_session(&engine, &s.session_id, cmd.into(), 10)
            .await
            .unwrap_err();
        assert!(matches!(e, ToolError::Broken(_)), "{cmd}: {e:?}");
        let open: Vec<String> = engine
            .session_list(&caller())
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.session_id)
            .collect();
        assert!(!open.contains(&s.session_id), "{cmd}: still open");
        assert!(
            bed.broker_records()
                .iter()
                .any(|r| r["outcome"] == "session_close"
                    && r["session_id"] == s.session_id.as_str()
                    && r["reason"].as_str().unwrap().contains("shell ended"))
        );
    }
}

#[tokio::test]
async fn a_pty_whose_terminal_modes_changed_is_closed() {
    let Some((bed, sshd)) = bed() else { return };
    let engine = bed.engine(json!({})).await;
    let s = engine
        .session_open(&caller(), open_req(SessionMode::Pty))
        .await
        .unwrap();
    let id = &s.session_id;
    assert_eq!(
        in_session(&engine, id, "echo fine".into(), 10)
            .await
            .unwrap(),
        "fine\n"
    );
    // A function or alias cannot fake the report.
    in_session(
        &engine,
        id,
        "stty() { echo 500:5:bf; }; alias printf=true".into(),
        10,
    )
    .await
    .unwrap();
    assert_eq!(
        in_session(&engine, id, "echo still".into(), 10)
            .await
            .unwrap(),
        "still\n"
    );
    // The broker refuses `stty` settings by word; a spelling the word scan
    // misses is caught by the modes each command's trailer reports.
    let evasive = r#"command s""tty kill Q </dev/tty"#;
    in_session(&engine, id, evasive.into(), 10).await.unwrap();
    let e = in_session(&engine, id, "echo okQtouch /tmp/ib-never".into(), 10)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ToolError::SessionClosed(_) | ToolError::SessionUnknown(_)
        ),
        "{e:?}"
    );
    assert!(!Path::new("/tmp/ib-never").exists());
    let records = bed.broker_records();
    let close = records
        .iter()
        .find(|r| r["outcome"] == "session_close" && r["session_id"] == id.as_str())
        .expect("a session_close record");
    assert!(
        close["reason"].as_str().unwrap().contains("terminal modes"),
        "{close}"
    );
    assert!(record(&records, "session_exec", evasive).unwrap()["session_closed"].is_string());
    assert!(!sshd.log().contains("ib-never"));
}
