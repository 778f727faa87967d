//! A long-lived `/bin/sh` on one channel (with or without a PTY), driven by
//! writing commands and reading until a per-command marker.
//!
//! The marker is 128 random bits, new for every command, split in two in
//! the text we send so that the formatted marker appears only when the
//! shell itself prints it: command output cannot forge the end of a command
//! or its exit code. Each command runs as `{ CMD\n} </dev/null`, so it cannot
//! read (and swallow) the marker line from the shell's input. One reader
//! task per session owns the channel's read half.
//!
//! On a PTY the terminal's line discipline edits input before the shell
//! sees it (`stty kill Q` makes `Q` erase the line), so what the broker
//! judged and audited could differ from what runs. Every trailer therefore
//! also reports the terminal modes (`stty -g`); once they differ from the
//! ones the broker set, [`Shell::terminal_changed`] says so and the session
//! is closed before another line is sent. Input is written only between
//! commands, and bytes already written were edited under the old modes.

use std::sync::Arc;
use std::time::Duration;

use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::recording::Recorder;
use crate::api::ToolError;
use crate::exec::{Output, Stop, Stoppable};
use crate::ssh::Conn;

/// What the reader task reports.
#[derive(Debug)]
enum Event {
    Out(Vec<u8>),
    Err(Vec<u8>),
    Closed,
}

/// A running shell.
#[derive(Debug)]
pub struct Shell {
    write: ChannelWriteHalf<Msg>,
    events: mpsc::Receiver<Event>,
    reader: JoinHandle<()>,
    pty: bool,
    recorder: Option<Arc<Recorder>>,
    /// PTY: the terminal modes the broker set (`stty -g`).
    modes: Option<String>,
    /// PTY: set once a trailer reported other modes (or none).
    changed: Option<String>,
}

impl Stoppable for Shell {
    async fn send_signal(&mut self, sig: Sig) -> bool {
        self.write.signal(sig).await.is_ok()
    }

    async fn ended_within(&mut self, grace: Duration) -> bool {
        let ended = async {
            loop {
                if let Some(Event::Closed) | None = self.events.recv().await {
                    return true;
                }
            }
        };
        tokio::time::timeout(grace, ended).await.unwrap_or(false)
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn new_marker() -> (String, String) {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let (a, b) = hex.split_at(16);
    (format!("IBM{a}"), b.to_owned())
}

fn reader(
    mut read: ChannelReadHalf,
    tx: mpsc::Sender<Event>,
    recorder: Option<Arc<Recorder>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(msg) = read.wait().await {
            let ev = match msg {
                ChannelMsg::Data { data } => {
                    if let Some(r) = &recorder {
                        r.event("o", &data);
                    }
                    Event::Out(data.to_vec())
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    if let Some(r) = &recorder {
                        r.event("e", &data);
                    }
                    Event::Err(data.to_vec())
                }
                ChannelMsg::Eof | ChannelMsg::Close => break,
                _ => continue,
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Event::Closed).await;
    })
}

/// One stream's output while waiting for its marker: the first `cap`
/// bytes are kept, and a short tail is kept to find the marker past the cap.
#[derive(Debug, Default)]
struct Collector {
    kept: Vec<u8>,
    tail: Vec<u8>,
    seen: usize,
    done: Option<(usize, u32)>,
    modes: Option<String>,
}

const TAIL: usize = 512;

/// Output kept while the shell starts (banners, prompts); the rest of it
/// is dropped, so a chatty host cannot grow the broker's memory.
const SETUP_CAP: usize = 64 * 1024;

impl Collector {
    fn push(&mut self, data: &[u8], cap: usize, needle: &[u8]) {
        if self.done.is_some() {
            return;
        }
        let room = cap.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
        self.seen += data.len();
        self.tail.extend_from_slice(data);
        let tail_start = self.seen - self.tail.len();
        if let Some((pos, rc, modes)) = find_marker(&self.tail, needle) {
            self.done = Some((tail_start + pos, rc));
            self.modes = modes;
        } else if self.tail.len() > TAIL {
            let cut = self.tail.len() - TAIL;
            self.tail.drain(..cut);
        }
    }

    /// Output before the marker (at most `cap` bytes) and whether some was dropped.
    fn output(&self) -> (Vec<u8>, bool) {
        let end = self.done.map_or(self.seen, |(pos, _)| pos);
        if end <= self.kept.len() {
            (self.kept[..end].to_vec(), false)
        } else {
            (self.kept.clone(), true)
        }
    }
}

/// Finds `needle` followed by decimal digits, optionally `:` and terminal
/// modes (`[0-9a-f:]`, a PTY trailer), and a newline (`\r\n` on a PTY);
/// returns where the needle starts, the number and the modes.
fn find_marker(hay: &[u8], needle: &[u8]) -> Option<(usize, u32, Option<String>)> {
    let mut from = 0;
    while let Some(off) = hay[from..].windows(needle.len()).position(|w| w == needle) {
        let start = from + off;
        let rest = &hay[start + needle.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let modes_len = match rest.get(digits) {
            Some(b':') if digits > 0 => {
                1 + rest[digits + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_hexdigit() || **b == b':')
                    .count()
            }
            _ => 0,
        };
        let after = &rest[digits + modes_len..];
        let terminated = after.first() == Some(&b'\n') || after.starts_with(b"\r\n");
        if digits > 0 && terminated {
            let rc = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
            let modes = (modes_len > 0)
                .then(|| String::from_utf8_lossy(&rest[digits + 1..digits + modes_len]).into());
            return Some((start, rc, modes));
        }
        if after.is_empty() || (digits > 0 && after == b"\r") {
            // The number, the modes or the line end has not arrived yet.
            return None;
        }
        from = start + 1;
    }
    None
}

impl Shell {
    /// Starts `shell_cmd` (`/bin/sh` or `sudo -n … -- /bin/sh`) on a new
    /// channel, with a PTY of `cols`×`rows` when `pty`, and waits until it
    /// answers.
    pub async fn start(
        conn: &Conn,
        shell_cmd: &str,
        pty: Option<(u32, u32)>,
        recorder: Option<Arc<Recorder>>,
        timeout: Duration,
    ) -> Result<Shell, ToolError> {
        let broken = |e: russh::Error| ToolError::Broken(e.to_string());
        let opened = tokio::time::timeout(timeout, async {
            let ch = conn.channel_open_session().await.map_err(broken)?;
            if let Some((cols, rows)) = pty {
                ch.request_pty(true, "xterm", cols, rows, 0, 0, &[])
                    .await
                    .map_err(broken)?;
            }
            ch.exec(true, shell_cmd).await.map_err(broken)?;
            Ok::<_, ToolError>(ch)
        })
        .await;
        let ch = match opened {
            Ok(r) => r?,
            Err(_) => return Err(ToolError::Broken("the remote shell did not start".into())),
        };
        let (read, write) = ch.split();
        let (tx, events) = mpsc::channel(256);
        let reader = reader(read, tx, recorder.clone());
        let mut shell = Shell {
            write,
            events,
            reader,
            pty: pty.is_some(),
            recorder,
            modes: None,
            changed: None,
        };
        let setup = if shell.pty {
            "stty -echo; PS1=''; PS2=''; export PS1 PS2\n"
        } else {
            ""
        };
        let (_, modes) = shell
            .run_raw(setup.to_owned(), SETUP_CAP, timeout)
            .await
            .map_err(|e| match e {
                ToolError::TimedOut { .. } => {
                    ToolError::Broken("the remote shell did not start".into())
                }
                other => other,
            })?;
        if shell.pty && modes.is_none() {
            return Err(ToolError::Broken(
                "the remote shell did not report its terminal modes".into(),
            ));
        }
        shell.modes = modes;
        Ok(shell)
    }

    async fn send(&self, text: &str) -> Result<(), ToolError> {
        self.write
            .data_bytes(text.as_bytes().to_vec())
            .await
            .map_err(|e| ToolError::Broken(format!("cannot write to the shell: {e}")))
    }

    /// Runs one command; `Err(TimedOut)` leaves the shell in an unknown
    /// state, so the caller closes the session.
    pub async fn run(
        &mut self,
        command: &str,
        cap: usize,
        timeout: Duration,
    ) -> Result<Output, ToolError> {
        if let Some(why) = self.recording_refusal() {
            return Err(ToolError::Broken(format!(
                "the session recording could not be written: {why}"
            )));
        }
        let wrapped = format!("{{ {command}\n}} </dev/null\n");
        if let Some(r) = &self.recorder {
            r.event("i", format!("{command}\n").as_bytes());
        }
        let (out, modes) = self.run_raw(wrapped, cap, timeout).await?;
        if self.pty && self.changed.is_none() && modes != self.modes {
            self.changed = Some(match modes {
                Some(m) => format!("the terminal modes changed to {m}"),
                None => "the terminal modes were not reported".to_owned(),
            });
        }
        Ok(out)
    }

    /// Why the session may not go on because its required recording
    /// failed, if it did.
    pub fn recording_refusal(&self) -> Option<&str> {
        self.recorder.as_deref().and_then(Recorder::refusal)
    }

    /// PTY: why the terminal no longer has the modes the broker set, if it
    /// does not. The caller closes the session before sending more input.
    pub fn terminal_changed(&self) -> Option<&str> {
        self.changed.as_deref()
    }

    async fn run_raw(
        &mut self,
        prefix: String,
        cap: usize,
        timeout: Duration,
    ) -> Result<(Output, Option<String>), ToolError> {
        let (m1, m2) = new_marker();
        let needle = format!("{m1}{m2}:");
        // `unset -f` is a special built-in, which no function can shadow:
        // a session that redefined `printf` cannot fake its exit codes.
        let report = format!("printf '%s%s:%d\\n' '{m1}' '{m2}' \"$__ib_rc\"");
        let trailer = if self.pty {
            // Quoted words are never alias-expanded; `command -p` finds the
            // real stty whatever PATH and functions the session set.
            format!(
                "__ib_rc=$?; \\unset -f printf command 2>/dev/null; \\printf '%s%s:%d:%s\\n' \
                 '{m1}' '{m2}' \"$__ib_rc\" \"$(\\command -p stty -g 2>/dev/null)\"\n"
            )
        } else {
            format!("__ib_rc=$?; unset -f printf 2>/dev/null; {report}; {report} >&2\n")
        };
        self.send(&format!("{prefix}{trailer}")).await?;
        let mut out = Collector::default();
        let mut err = Collector::default();
        let wait = async {
            loop {
                let stdout_done = out.done.is_some();
                let stderr_done = self.pty || err.done.is_some();
                if stdout_done && stderr_done {
                    return Ok(());
                }
                match self.events.recv().await {
                    Some(Event::Out(d)) => out.push(&d, cap, needle.as_bytes()),
                    Some(Event::Err(d)) => err.push(&d, cap, needle.as_bytes()),
                    Some(Event::Closed) | None => {
                        return Err(ToolError::Broken("the remote shell exited".into()));
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(ToolError::TimedOut {
                    seconds: timeout.as_secs(),
                });
            }
        }
        let (mut stdout, stdout_truncated) = out.output();
        let (stderr, stderr_truncated) = err.output();
        if self.pty {
            stdout = normalize_crlf(&stdout);
        }
        let output = Output {
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            exit_code: out.done.map(|(_, rc)| rc),
            exit_signal: None,
        };
        Ok((output, out.modes.take()))
    }

    /// Stops whatever the shell runs (its process group gets `TERM`, then
    /// `KILL`) and closes the channel.
    pub async fn stop(&mut self) -> Stop {
        let done = crate::exec::signal_until_ended(self).await;
        self.close().await;
        done
    }

    /// Ends the shell.
    pub async fn close(&self) {
        let _ = self.write.eof().await;
        let _ = self.write.close().await;
    }
}

fn normalize_crlf(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_needs_digits_and_a_line_end() {
        let n = b"IBMab:";
        assert_eq!(find_marker(b"xxIBMab:0\n", n), Some((2, 0, None)));
        assert_eq!(find_marker(b"IBMab:127\r\n", n), Some((0, 127, None)));
        assert_eq!(find_marker(b"IBMab:12", n), None);
        assert_eq!(find_marker(b"IBMab:x\nIBMab:3\n", n), Some((8, 3, None)));
        assert_eq!(find_marker(b"IBMa b:3\n", n), None);
        let modes = Some("500:5:bf:8a3b".to_owned());
        assert_eq!(
            find_marker(b"IBMab:0:500:5:bf:8a3b\r\n", n),
            Some((0, 0, modes))
        );
        assert_eq!(
            find_marker(b"IBMab:0:500:5:b", n),
            None,
            "modes still arriving"
        );
        assert_eq!(
            find_marker(b"IBMab:0:\r\n", n),
            Some((0, 0, Some(String::new())))
        );
    }

    #[test]
    fn collector_keeps_the_cap_and_finds_the_marker_past_it() {
        let n = b"IBMzz:";
        let mut c = Collector::default();
        c.push(&[b'a'; 3000], 1000, n);
        c.push(b"bbbIBMz", 1000, n);
        c.push(b"z:5\n", 1000, n);
        assert_eq!(c.done, Some((3003, 5)));
        let (out, truncated) = c.output();
        assert_eq!((out.len(), truncated), (1000, true));
        let mut c = Collector::default();
        c.push(b"hello IBMzz:0\n", 1000, n);
        assert_eq!(c.output(), (b"hello ".to_vec(), false));
    }
}
