//! One command on one SSH channel: stdout and stderr kept apart and capped,
//! exit status or signal, and a deadline that closes the channel.

use std::time::Duration;

use russh::ChannelMsg;

use crate::api::ToolError;
use crate::ssh::Conn;

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

fn push_capped(buf: &mut Vec<u8>, data: &[u8], cap: usize, truncated: &mut bool) {
    let room = cap.saturating_sub(buf.len());
    if data.len() > room {
        *truncated = true;
    }
    buf.extend_from_slice(&data[..data.len().min(room)]);
}

/// Runs `command` on a new session channel of `conn`. Output beyond `cap`
/// per stream is read and dropped (so the remote side is not blocked) and
/// flagged. Past `timeout` the channel is closed and [`ToolError::TimedOut`]
/// returned.
pub async fn run(
    conn: &Conn,
    command: &str,
    cap: usize,
    timeout: Duration,
) -> Result<Output, ToolError> {
    let broken = |e: russh::Error| ToolError::Broken(e.to_string());
    let deadline = tokio::time::Instant::now() + timeout;
    let opened = tokio::time::timeout_at(deadline, async {
        let ch = conn.channel_open_session().await.map_err(broken)?;
        ch.exec(true, command).await.map_err(broken)?;
        Ok::<_, ToolError>(ch)
    })
    .await;
    let mut ch = match opened {
        Ok(r) => r?,
        Err(_) => {
            return Err(ToolError::TimedOut {
                seconds: timeout.as_secs(),
            });
        }
    };
    let mut out = Output::default();
    let read = async {
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
    };
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            let _ = ch.close().await;
            return Err(ToolError::TimedOut {
                seconds: timeout.as_secs(),
            });
        }
    }
    if out.exit_code.is_none() && out.exit_signal.is_none() {
        return Err(ToolError::Broken(
            "the channel closed without an exit status".into(),
        ));
    }
    Ok(out)
}

fn signal_name_str(sig: &russh::Sig) -> String {
    match sig {
        russh::Sig::Custom(s) => s.clone(),
        other => format!("{other:?}"),
    }
}
