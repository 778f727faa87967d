//! One command on one SSH channel: stdout and stderr kept apart and capped,
//! exit status or signal, and a deadline past which the command is stopped.
//!
//! Stopping is more than closing the channel: OpenSSH does not kill a
//! command without a terminal when its channel closes, so a "timed out"
//! command would run on. Past the deadline — or when the call is dropped
//! (cancelled) — the remote process group gets an SSH `signal` request
//! (`TERM`, then `KILL` after [`TERM_GRACE`]), and only then is the channel
//! closed. sshd refuses signals to a forced-command session (every one-shot
//! certificate carries one), so there the signer's `timeout -k` wrapper in
//! the force-command does the same job on the host (see
//! `signer::deadline`); the broker still waits for its exit before it
//! reports.

use std::time::Duration;

use russh::client::Msg;
use russh::{Channel, ChannelMsg, Sig};

use crate::api::ToolError;
use crate::ssh::Conn;

/// How long a command has to exit after `TERM` before it gets `KILL`. The
/// signer's wrapper uses the same grace (`timeout -k`).
pub const TERM_GRACE: Duration = Duration::from_secs(2);

/// How long the broker waits for an exit after `KILL` before it closes the
/// channel anyway.
pub const KILL_GRACE: Duration = Duration::from_secs(1);

/// What the audit record says about a cancelled call: its stop runs after
/// the call is gone, so the record states what is done, not its outcome.
pub const STOP_ON_CANCEL: &str = "signal TERM, KILL after 2 s, then the channel is closed";

/// Output of one channel.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Output {
    /// Standard output, at most the cap.
    pub stdout: Vec<u8>,
    /// Standard error, at most the cap.
    pub stderr: Vec<u8>,
    /// More stdout arrived than the cap.
    pub stdout_truncated: bool,
    /// More stderr arrived than the cap.
    pub stderr_truncated: bool,
    /// Exit status.
    pub exit_code: Option<u32>,
    /// Signal name.
    pub exit_signal: Option<String>,
}

impl Output {
    /// The tools' result of a finished command.
    pub(crate) fn into_result(
        self,
        serial: u64,
        duration_ms: u64,
        timings: crate::api::Timings,
    ) -> crate::api::ExecResult {
        crate::api::ExecResult {
            stdout: String::from_utf8_lossy(&self.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&self.stderr).into_owned(),
            exit_code: self.exit_code,
            exit_signal: self.exit_signal,
            stdout_truncated: self.stdout_truncated,
            stderr_truncated: self.stderr_truncated,
            serial,
            duration_ms,
            timings,
        }
    }
}

/// How a command that was not allowed to finish was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// Signals sent, in order.
    pub signals: Vec<&'static str>,
    /// The host reported the command's end (exit status or signal).
    pub exited: bool,
}

impl Stop {
    /// The audit record's `stop` field.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "signals": self.signals,
            "exited": self.exited,
            "channel_closed": true,
        })
    }
}

/// A command's channel that is stopped if dropped before the command
/// ended: the drop of a cancelled call signals and closes it in a task.
struct Running {
    ch: Option<Channel<Msg>>,
}

impl Running {
    fn channel(&mut self) -> Result<&mut Channel<Msg>, ToolError> {
        self.ch
            .as_mut()
            .ok_or_else(|| ToolError::Broken("the channel is gone".into()))
    }

    /// The command ended by itself: nothing to stop.
    fn ended(&mut self) {
        self.ch = None;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(ch) = self.ch.take() else { return };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                stop(ch).await;
            });
        }
    }
}

/// Something running on the host that can be signalled and watched.
pub(crate) trait Stoppable {
    /// Sends `sig`; false if the request could not be sent.
    async fn send_signal(&mut self, sig: Sig) -> bool;
    /// True once the host reports the end of the process within `grace`.
    async fn ended_within(&mut self, grace: Duration) -> bool;
}

/// `TERM`, up to [`TERM_GRACE`] for an exit, then `KILL` and up to
/// [`KILL_GRACE`]. The caller closes the channel afterwards.
pub(crate) async fn signal_until_ended(p: &mut impl Stoppable) -> Stop {
    let mut done = Stop {
        signals: Vec::new(),
        exited: false,
    };
    for (sig, name, grace) in [
        (Sig::TERM, "TERM", TERM_GRACE),
        (Sig::KILL, "KILL", KILL_GRACE),
    ] {
        if !p.send_signal(sig).await {
            break;
        }
        done.signals.push(name);
        if p.ended_within(grace).await {
            done.exited = true;
            break;
        }
    }
    done
}

impl Stoppable for Channel<Msg> {
    async fn send_signal(&mut self, sig: Sig) -> bool {
        self.signal(sig).await.is_ok()
    }

    async fn ended_within(&mut self, grace: Duration) -> bool {
        let ended = async {
            while let Some(msg) = self.wait().await {
                if matches!(
                    msg,
                    ChannelMsg::ExitStatus { .. }
                        | ChannelMsg::ExitSignal { .. }
                        | ChannelMsg::Eof
                        | ChannelMsg::Close
                ) {
                    return true;
                }
            }
            true
        };
        tokio::time::timeout(grace, ended).await.unwrap_or(false)
    }
}

/// Stops the command of `ch` (see the module docs) and closes the channel.
/// Output arriving meanwhile is discarded.
pub async fn stop(mut ch: Channel<Msg>) -> Stop {
    let done = signal_until_ended(&mut ch).await;
    let _ = ch.close().await;
    done
}

fn push_capped(buf: &mut Vec<u8>, data: &[u8], cap: usize, truncated: &mut bool) {
    let room = cap.saturating_sub(buf.len());
    if data.len() > room {
        *truncated = true;
    }
    buf.extend_from_slice(&data[..data.len().min(room)]);
}

/// Runs `command` on a new session channel of `conn`. Output beyond `cap`
/// per stream is read and dropped (so the remote side is not blocked) and
/// flagged. Past `timeout` the command is stopped (see the module docs),
/// [`ToolError::TimedOut`] returned and how it was stopped reported.
pub async fn run(
    conn: &Conn,
    command: &str,
    cap: usize,
    timeout: Duration,
) -> (Result<Output, ToolError>, Option<Stop>) {
    run_with_input(conn, command, None, cap, timeout).await
}

/// [`run`], with `input` sent on the command's stdin (then end of file)
/// before its output is read: a file transfer's body.
pub async fn run_with_input(
    conn: &Conn,
    command: &str,
    input: Option<&[u8]>,
    cap: usize,
    timeout: Duration,
) -> (Result<Output, ToolError>, Option<Stop>) {
    let broken = |e: russh::Error| ToolError::Broken(e.to_string());
    let timed_out = ToolError::TimedOut {
        seconds: timeout.as_secs(),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let opened = tokio::time::timeout_at(deadline, async {
        let ch = conn.channel_open_session().await.map_err(broken)?;
        // Guarded from here: a command may start as soon as exec is sent.
        let running = Running { ch: Some(ch) };
        if let Some(ch) = &running.ch {
            ch.exec(true, command).await.map_err(broken)?;
            if let Some(body) = input {
                // A host that refuses at once (the target exists…) closes
                // the channel mid-body: its exit status, read below, says
                // why, so a failed write is not the answer.
                if ch.data(body).await.is_ok() {
                    let _ = ch.eof().await;
                }
            }
        }
        Ok::<_, ToolError>(running)
    })
    .await;
    let mut running = match opened {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return (Err(e), None),
        Err(_) => return (Err(timed_out), None),
    };
    let mut out = Output::default();
    let read = read_all(&mut running, &mut out, cap);
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(())) => running.ended(),
        Ok(Err(e)) => return (Err(e), None),
        Err(_) => {
            let stopped = match running.ch.take() {
                Some(ch) => stop(ch).await,
                None => Stop {
                    signals: Vec::new(),
                    exited: false,
                },
            };
            return (Err(timed_out), Some(stopped));
        }
    }
    if out.exit_code.is_none() && out.exit_signal.is_none() {
        return (
            Err(ToolError::Broken(
                "the channel closed without an exit status".into(),
            )),
            None,
        );
    }
    (Ok(out), None)
}

async fn read_all(running: &mut Running, out: &mut Output, cap: usize) -> Result<(), ToolError> {
    let ch = running.channel()?;
    while let Some(msg) = ch.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                push_capped(&mut out.stdout, &data, cap, &mut out.stdout_truncated);
            }
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                push_capped(&mut out.stderr, &data, cap, &mut out.stderr_truncated);
            }
            ChannelMsg::ExitStatus { exit_status } => out.exit_code = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                out.exit_signal = Some(signal_name_str(&signal_name));
            }
            ChannelMsg::Failure => {
                return Err(ToolError::Broken(
                    "the host refused to run the command".into(),
                ));
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    Ok(())
}

fn signal_name_str(sig: &russh::Sig) -> String {
    match sig {
        russh::Sig::Custom(s) => s.clone(),
        other => format!("{other:?}"),
    }
}
