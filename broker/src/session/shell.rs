//! A long-lived `/bin/sh` on one channel (with or without a PTY), driven by
//! writing commands and reading until a per-command marker.
//!
//! The marker is 128 random bits, new for every command, split in two in
//! the text we send so that the formatted marker appears only when the
//! shell itself prints it: command output cannot forge the end of a command
//! or its exit code. Each command runs as `{ CMD\n} </dev/null`, so it cannot
//! read (and swallow) the marker line from the shell's input. One reader
//! task per session owns the channel's read half.

use std::sync::Arc;
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::Msg;
use russh::{ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::recording::Recorder;
use crate::api::ToolError;
use crate::exec::Output;
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
        if let Some((pos, rc)) = find_marker(&self.tail, needle) {
            self.done = Some((tail_start + pos, rc));
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

/// Finds `needle` followed by decimal digits and a newline (`\r\n` on a
/// PTY); returns where the needle starts and the number.
fn find_marker(hay: &[u8], needle: &[u8]) -> Option<(usize, u32)> {
    let mut from = 0;
    while let Some(off) = hay[from..].windows(needle.len()).position(|w| w == needle) {
        let start = from + off;
        let rest = &hay[start + needle.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let after = &rest[digits..];
        let terminated = after.first() == Some(&b'\n') || after.starts_with(b"\r\n");
        if digits > 0 && terminated {
            let rc = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
            return Some((start, rc));
        }
        if digits == rest.len() || (digits > 0 && after == b"\r") {
            // The number or its line end has not arrived yet.
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
        };
        let setup = if shell.pty {
            "stty -echo; PS1=''; PS2=''; export PS1 PS2\n"
        } else {
            ""
        };
        shell
            .run_raw(setup.to_owned(), "", SETUP_CAP, timeout)
            .await
            .map_err(|e| match e {
                ToolError::TimedOut { .. } => {
                    ToolError::Broken("the remote shell did not start".into())
                }
                other => other,
            })?;
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
        let wrapped = format!("{{ {command}\n}} </dev/null\n");
        if let Some(r) = &self.recorder {
            r.event("i", format!("{command}\n").as_bytes());
        }
        self.run_raw(wrapped, command, cap, timeout).await
    }

    async fn run_raw(
        &mut self,
        prefix: String,
        _command: &str,
        cap: usize,
        timeout: Duration,
    ) -> Result<Output, ToolError> {
        let (m1, m2) = new_marker();
        let needle = format!("{m1}{m2}:");
        // `unset -f` is a special built-in, which no function can shadow:
        // a session that redefined `printf` cannot fake its exit codes.
        let report = format!("printf '%s%s:%d\\n' '{m1}' '{m2}' \"$__ib_rc\"");
        let trailer = if self.pty {
            format!("__ib_rc=$?; unset -f printf 2>/dev/null; {report}\n")
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
        Ok(Output {
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            exit_code: out.done.map(|(_, rc)| rc),
            exit_signal: None,
        })
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
        assert_eq!(find_marker(b"xxIBMab:0\n", n), Some((2, 0)));
        assert_eq!(find_marker(b"IBMab:127\r\n", n), Some((0, 127)));
        assert_eq!(find_marker(b"IBMab:12", n), None);
        assert_eq!(find_marker(b"IBMab:x\nIBMab:3\n", n), Some((8, 3)));
        assert_eq!(find_marker(b"IBMa b:3\n", n), None);
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
