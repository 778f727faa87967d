//! One command in a session: the signer's preflight, the call counted as
//! busy from before it, the command run by the session's runner and the
//! session closed when a shell cannot go on.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use infrabroker_common::wire::HostInfo;
use serde_json::{Map, Value};

use infrabroker_common::force_command::wrap_elevated;

use super::{Runner, Session, line_discipline};
use crate::api::{Caller, ExecResult, SessionMode, Timings, ToolError, ms_since};
use crate::engine::Engine;

/// Longest command line sent to a shell (a terminal drops bytes past 4095).
const MAX_SHELL_LINE: usize = 4000;

/// Counts a call in the session from before its preflight (which may wait
/// for an approval) to its end: the reaper never closes a session with a
/// call in it for being idle, however the calls overlap.
struct Busy<'a>(&'a Session);

impl<'a> Busy<'a> {
    fn new(session: &'a Session) -> Self {
        session.busy.fetch_add(1, Ordering::SeqCst);
        Busy(session)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut t) = self.0.last_used.lock() {
            *t = Instant::now();
        }
    }
}

/// Armed while a command runs. If the call is dropped (cancelled) before
/// it finishes, the command's end is audited as `abandoned` (its channel
/// is stopped by [`crate::exec`]'s own guard), and a shell session is
/// marked for closing: its state is unknown and its pending output would
/// be credited to the next command.
struct Running<'a> {
    session: &'a Session,
    abandon: crate::abandon::AbandonGuard,
}

impl<'a> Running<'a> {
    fn new(
        session: &'a Session,
        audit: infrabroker_common::audit::AuditLog,
        rec: Map<String, Value>,
    ) -> Self {
        let mut abandon = crate::abandon::AbandonGuard::new(audit, rec);
        abandon.started(match session.mode {
            SessionMode::Exec => crate::exec::STOP_ON_CANCEL,
            _ => "the session is closed: its shell gets TERM, KILL after 2 s",
        });
        Running { session, abandon }
    }

    fn finish(&mut self) {
        self.abandon.disarm();
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.abandon.armed() && self.session.mode != SessionMode::Exec {
            self.session.cancelled.store(true, Ordering::SeqCst);
        }
    }
}

/// What running one command in a session came to.
struct Ran {
    result: Result<crate::exec::Output, ToolError>,
    stop: Option<crate::exec::Stop>,
    /// Why the session must close after this command, if it must.
    close: Option<String>,
}

/// The end of a session command's record: how it was stopped, why the
/// session closes, how long it took and how it ended.
fn finish_record(rec: &mut Map<String, Value>, ran: &Ran, started: Instant, timings: &Timings) {
    if let Some(stop) = &ran.stop {
        rec.insert("stop".into(), stop.to_json());
    }
    if let Some(why) = &ran.close {
        rec.insert("session_closed".into(), why.clone().into());
    }
    rec.insert("duration_ms".into(), ms_since(started).into());
    rec.insert(
        "timings".into(),
        serde_json::to_value(timings).unwrap_or(Value::Null),
    );
    match &ran.result {
        Ok(out) => {
            rec.insert(
                "exit_code".into(),
                out.exit_code.map_or(Value::Null, Value::from),
            );
        }
        Err(e) => {
            rec.insert("outcome".into(), "session_exec_failed".into());
            rec.insert("reason_code".into(), e.reason_code().into());
            rec.insert("error".into(), e.to_string().into());
        }
    }
}

/// Why a shell or pty session cannot go on after a command, if it cannot:
/// a timed-out command left its state unknown, a broken one means the
/// shell is gone, and changed terminal modes would edit the next line.
fn shell_end(
    result: &Result<crate::exec::Output, ToolError>,
    tty: Option<&str>,
    recording: Option<&str>,
) -> Option<String> {
    if let Some(why) = recording {
        return Some(format!(
            "the session recording could not be written ({why}) and recording_required is set"
        ));
    }
    match (result, tty) {
        (Err(ToolError::TimedOut { seconds }), _) => Some(format!(
            "a command ran past its {seconds} s timeout and the shell's state is unknown"
        )),
        (Err(ToolError::Broken(why)), _) => Some(format!("the remote shell ended ({why})")),
        (_, Some(why)) => Some(format!(
            "{why}: the terminal would no longer pass commands as they were checked"
        )),
        _ => None,
    }
}

impl Engine {
    /// Runs one command in a session after a signer preflight.
    pub(crate) async fn exec_in_session(
        &self,
        caller: &Caller,
        id: &str,
        command: String,
        timeout: Option<Duration>,
    ) -> Result<ExecResult, ToolError> {
        let started = Instant::now();
        let s = self.session_of(caller, id)?;
        if let Some(reason) = s.closed_reason() {
            return Err(ToolError::SessionClosed(reason));
        }
        let _busy = Busy::new(&s);
        let mut rec = self.session_record(caller, &s, "session_exec");
        rec.insert("command".into(), command.clone().into());
        let checked = self.check_session_command(&s, &command);
        let planning = Instant::now();
        let timeout = timeout
            .unwrap_or(self.config().exec_timeout)
            .min(self.config().exec_timeout_max);
        let checked = match checked {
            Ok(()) => self.preflight(caller, &s, &command, timeout).await,
            Err(e) => Err(e),
        };
        let envelope = checked.as_ref().ok().cloned().flatten();
        if envelope.is_some() {
            rec.insert("sealed".into(), true.into());
        }
        let mut timings = Timings {
            plan_ms: ms_since(planning),
            ..Timings::default()
        };
        if let Err(e) = checked {
            rec.insert("outcome".into(), "session_exec_denied".into());
            rec.insert("reason_code".into(), e.reason_code().into());
            rec.insert("error".into(), e.to_string().into());
            self.write_record(rec).await?;
            if matches!(e, ToolError::SessionChainChanged) {
                self.close_session(&s, "the host's connection details changed")
                    .await;
            }
            return Err(e);
        }
        // Durable before anything is sent: no command without its record.
        let mut start_rec = rec.clone();
        start_rec.insert("outcome".into(), "session_exec_started".into());
        self.write_record(start_rec).await?;
        let mut guard = Running::new(&s, self.audit().clone(), rec.clone());
        let running = Instant::now();
        let ran = self
            .run_in(&s, &command, envelope.as_deref(), timeout)
            .await;
        timings.exec_ms = ms_since(running);
        guard.finish();
        finish_record(&mut rec, &ran, started, &timings);
        let outcome = ran
            .result
            .as_ref()
            .map_or_else(ToolError::reason_code, |_| "ok");
        self.metrics()
            .command("session", outcome, &timings, ms_since(started));
        let result = ran.result;
        let written = self.write_record(rec).await;
        if let Some(why) = &ran.close {
            self.close_session(&s, why).await;
        }
        written?;
        Ok(result?.into_result(s.serial, ms_since(started), timings))
    }

    /// Commands a terminal would edit before the shell sees them (erase,
    /// kill-line, literal-next…) are refused in shell and pty sessions, as
    /// are lines a terminal truncates: what is audited must be what runs.
    fn check_session_command(&self, s: &Session, command: &str) -> Result<(), ToolError> {
        if s.mode == SessionMode::Exec {
            return Ok(());
        }
        if command
            .chars()
            .any(|c| (c.is_control() && c != '\t') || c == '\u{7f}')
        {
            return Err(ToolError::Invalid(
                "control characters are not allowed in shell and pty sessions".into(),
            ));
        }
        if command.len() > MAX_SHELL_LINE {
            return Err(ToolError::Invalid(format!(
                "commands in shell and pty sessions are limited to {MAX_SHELL_LINE} bytes"
            )));
        }
        if s.mode == SessionMode::Pty && line_discipline::changes_settings(command) {
            return Err(ToolError::Invalid(
                "stty settings are refused in pty sessions: the terminal would edit later \
                 commands after they were judged and recorded (queries like `stty size` pass)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The signer's dry run for this command in this session, and a check
    /// that the host's connection details are unchanged. Both questions go
    /// to the signer at once (a dry run issues nothing); both must pass, and
    /// a changed chain refuses without waiting for the dry run. A sealed
    /// host's answer carries the envelope its shim runs, with `timeout`.
    async fn preflight(
        &self,
        caller: &Caller,
        s: &Session,
        command: &str,
        timeout: Duration,
    ) -> Result<Option<String>, ToolError> {
        let mut req = self.session_request(caller, &s.host, s.mode, s.sudo, s.sudo_user.clone());
        req.command = command.to_owned();
        req.dry_run = true;
        // A sealed host's shim stops the command at this deadline.
        req.timeout_seconds = Some(timeout.as_secs().max(1));
        let sign = self.hosts_cache().api().sign(&req);
        tokio::pin!(sign);
        let mut judged = None;
        let view = tokio::select! {
            view = self.hosts_cache().refresh() => view,
            answer = &mut sign => {
                judged = Some(answer);
                self.hosts_cache().refresh().await
            }
        };
        // A changed chain refuses at once; the dry run still in flight (it
        // may be waiting for an approval) is dropped with it.
        let view = view?;
        let hops = Engine::plan(&view, caller, &s.host)?;
        let now: Vec<(String, HostInfo)> = hops
            .iter()
            .map(|h| (h.name.clone(), h.info.clone()))
            .collect();
        let same = now.len() == s.chain.len()
            && now.iter().zip(&s.chain).all(|((an, a), (bn, b))| {
                an == bn
                    && a.addr == b.addr
                    && a.user == b.user
                    && a.host_key == b.host_key
                    && a.jump == b.jump
            });
        if !same {
            return Err(ToolError::SessionChainChanged);
        }
        let judged = match judged {
            Some(answer) => answer,
            None => sign.await,
        };
        let judged = judged?;
        let d = judged.decision;
        if !d.allowed {
            return Err(ToolError::Denied {
                code: d.reason_code.as_str().to_owned(),
                message: d.message,
            });
        }
        Ok(judged.envelope)
    }

    /// Runs `command` (on a sealed host: its `envelope`, which names it).
    async fn run_in(
        &self,
        s: &Session,
        command: &str,
        envelope: Option<&str>,
        timeout: Duration,
    ) -> Ran {
        let mut closed = s.closed.subscribe();
        let mut runner = s.runner.lock().await;
        let mut ran = Ran {
            result: Err(ToolError::Invalid("empty chain".into())),
            stop: None,
            close: None,
        };
        if let Some(reason) = s.closed_reason() {
            ran.result = Err(ToolError::SessionClosed(reason));
            return ran;
        }
        let cap = self.config().max_output_bytes;
        let Some(target) = s.conns.last() else {
            return ran;
        };
        let work = async {
            match (&mut *runner, envelope) {
                // The shim runs the envelope's command (sudo included).
                (Runner::Exec, Some(line)) => crate::exec::run(target, line, cap, timeout).await,
                (Runner::Exec, None) => {
                    // The same string the signer bakes into one-shot
                    // certificates: inert in every login shell.
                    let wrapped = match wrap_elevated(s.elevation_prefix.as_deref(), command) {
                        Ok(w) => w,
                        Err(e) => return (Err(ToolError::Invalid(e.to_string())), None),
                    };
                    crate::exec::run(target, &wrapped, cap, timeout).await
                }
                (Runner::Shell(sh), _) => (sh.run(command, cap, timeout).await, None),
            }
        };
        (ran.result, ran.stop) = tokio::select! {
            biased;
            _ = closed.wait_for(Option::is_some) => {
                (Err(ToolError::SessionClosed(s.closed_reason().unwrap_or_else(|| "closed".into()))), None)
            }
            r = work => match (r, s.closed_reason()) {
                // The connection went down because the session was closed:
                // say why rather than "broken".
                ((Err(_), stop), Some(reason)) => (Err(ToolError::SessionClosed(reason)), stop),
                (r, _) => r,
            },
        };
        if let Runner::Shell(sh) = &mut *runner {
            ran.close = shell_end(&ran.result, sh.terminal_changed(), sh.recording_refusal());
            if matches!(ran.result, Err(ToolError::TimedOut { .. })) {
                ran.stop = Some(sh.stop().await);
            }
        }
        ran
    }
}
