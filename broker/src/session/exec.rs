//! Running one command in an open session: the shell/pty line checks, the
//! signer's preflight dry run, and the channel or shell that carries it.

use super::*;

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
        let mut rec = self.session_record(caller, &s, "session_exec");
        rec.insert("command".into(), command.clone().into());
        let checked = self.check_session_command(&s, &command);
        let checked = match checked {
            Ok(()) => self.preflight(caller, &s, &command).await,
            Err(e) => Err(e),
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
        let timeout = timeout
            .unwrap_or(self.config().exec_timeout)
            .min(self.config().exec_timeout_max);
        // Durable before anything is sent: no command without its record.
        let mut start_rec = rec.clone();
        start_rec.insert("outcome".into(), "session_exec_started".into());
        self.write_record(start_rec).await?;
        let mut guard = BusyGuard::new(&s, self.audit().clone(), rec.clone());
        let result = self.run_in(&s, &command, timeout).await;
        guard.finish();
        if let Ok(mut t) = s.last_used.lock() {
            *t = Instant::now();
        }
        rec.insert(
            "duration_ms".into(),
            u64::try_from(started.elapsed().as_millis())
                .unwrap_or(u64::MAX)
                .into(),
        );
        match &result {
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
        self.write_record(rec).await?;
        let out = result?;
        Ok(ExecResult {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            exit_code: out.exit_code,
            exit_signal: out.exit_signal,
            stdout_truncated: out.stdout_truncated,
            stderr_truncated: out.stderr_truncated,
            serial: s.serial,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
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

    /// The signer's dry run for this command in this session, after checking
    /// that the host's connection details are unchanged.
    async fn preflight(
        &self,
        caller: &Caller,
        s: &Session,
        command: &str,
    ) -> Result<(), ToolError> {
        let view = self.hosts_cache().refresh().await?;
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
        let mut req = self.session_request(caller, &s.host, s.mode, s.sudo, s.sudo_user.clone());
        req.command = command.to_owned();
        req.dry_run = true;
        let resp = self.hosts_cache().api().sign(&req).await?;
        let d = resp.decision;
        if !d.allowed {
            return Err(ToolError::Denied {
                code: d.reason_code.as_str().to_owned(),
                message: d.message,
            });
        }
        Ok(())
    }

    async fn run_in(
        &self,
        s: &Session,
        command: &str,
        timeout: Duration,
    ) -> Result<crate::exec::Output, ToolError> {
        let mut closed = s.closed.subscribe();
        let mut runner = s.runner.lock().await;
        if let Some(reason) = s.closed_reason() {
            return Err(ToolError::SessionClosed(reason));
        }
        let cap = self.config().max_output_bytes;
        let target = s
            .conns
            .last()
            .ok_or_else(|| ToolError::Invalid("empty chain".into()))?;
        let work = async {
            match &mut *runner {
                Runner::Exec => {
                    // The same string the signer bakes into one-shot
                    // certificates: inert in every login shell.
                    let wrapped = wrap_elevated(s.elevation_prefix.as_deref(), command)
                        .map_err(|e| ToolError::Invalid(e.to_string()))?;
                    crate::exec::run(target, &wrapped, cap, timeout).await
                }
                Runner::Shell(sh) => sh.run(command, cap, timeout).await,
            }
        };
        let result = tokio::select! {
            biased;
            _ = closed.wait_for(Option::is_some) => {
                Err(ToolError::SessionClosed(s.closed_reason().unwrap_or_else(|| "closed".into())))
            }
            r = work => match (r, s.closed_reason()) {
                // The connection went down because the session was closed:
                // say why rather than "broken".
                (Err(_), Some(reason)) => Err(ToolError::SessionClosed(reason)),
                (r, _) => r,
            },
        };
        drop(runner);
        if let (Err(ToolError::TimedOut { seconds }), SessionMode::Shell | SessionMode::Pty) =
            (&result, s.mode)
        {
            let reason = format!(
                "a command ran past its {seconds} s timeout and the shell's state is unknown"
            );
            self.close_session(s, &reason).await;
        }
        result
    }
}
