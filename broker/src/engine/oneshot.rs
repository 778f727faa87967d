//! One-shot calls end to end: a command (`ssh_execute`) or a file transfer
//! (`ssh_put_file`, `ssh_get_file`) over fresh keys and one certificate per
//! hop, recorded before it runs and after it ends, cut by a freeze.

use std::time::Instant;

use infrabroker_common::wire::{FileTransfer, Purpose};
use serde_json::{Map, Value};

use super::{Engine, ONESHOT_STOP};
use crate::abandon::AbandonGuard;
use crate::api::{Caller, ExecRequest, Timings, ToolError, ms_since};
use crate::exec;

/// What makes a one-shot a file transfer: the purpose and file the
/// signer bakes into the force-command, the body sent on stdin (put), and
/// the output cap (get: the file's).
#[derive(Debug, Clone)]
pub(crate) struct Transfer<'a> {
    pub(crate) purpose: Purpose,
    pub(crate) file: FileTransfer,
    pub(crate) input: Option<&'a [u8]>,
    pub(crate) cap: usize,
}

impl Engine {
    /// Runs a one-shot (`transfer`: a file transfer) for `caller` and
    /// writes its execution record (`extra` fields added); the output, the
    /// target's serial and the stages' timings.
    pub(crate) async fn oneshot(
        &self,
        caller: &Caller,
        req: &ExecRequest,
        transfer: Option<Transfer<'_>>,
        extra: Map<String, Value>,
    ) -> Result<(exec::Output, u64, Timings), ToolError> {
        let _permit = self.permit(caller)?;
        let mut rec = Self::base_record(caller, req);
        rec.extend(extra);
        let started = Instant::now();
        let mut guard = AbandonGuard::new(self.audit.clone(), rec.clone());
        let mut timings = Timings::default();
        let result = self
            .oneshot_inner(caller, req, transfer, &mut rec, &mut guard, &mut timings)
            .await;
        guard.disarm();
        rec.insert(
            "timings".into(),
            serde_json::to_value(&timings).unwrap_or(Value::Null),
        );
        let outcome = result
            .as_ref()
            .map_or_else(ToolError::reason_code, |_| "ok");
        self.metrics
            .command("oneshot", outcome, &timings, ms_since(started));
        rec.insert("duration_ms".into(), ms_since(started).into());
        finish_record(&mut rec, &result);
        // The command already ran; the record is still required so the
        // execution can be joined to its issuance. A failed write turns a
        // result into an error so it is never silently unaudited.
        self.write_record(rec).await?;
        result.map(|(out, serial)| (out, serial, timings))
    }

    async fn oneshot_inner(
        &self,
        caller: &Caller,
        req: &ExecRequest,
        transfer: Option<Transfer<'_>>,
        rec: &mut Map<String, Value>,
        guard: &mut AbandonGuard,
        timings: &mut Timings,
    ) -> Result<(exec::Output, u64), ToolError> {
        let started = Instant::now();
        let timeout = self.exec_timeout(req);
        // Fail closed: a new connection never uses a stale view.
        let view = self.hosts.refresh().await?;
        let hops = Self::plan(&view, caller, &req.host)?;
        timings.plan_ms = ms_since(started);
        let (Some(first), Some(target)) = (hops.first(), hops.last()) else {
            return Err(ToolError::Invalid("empty chain".into()));
        };
        rec.insert("user".into(), target.info.user.clone().into());
        rec.insert("addr".into(), target.info.addr.clone().into());
        rec.insert(
            "chain".into(),
            hops.iter()
                .map(|h| h.name.clone())
                .collect::<Vec<_>>()
                .into(),
        );
        let pre = crate::chain::PreDial::start(first, self.cfg.connect_timeout);
        let mut target_req = self.sign_request(caller, target, true, req, String::new());
        if let Some(t) = &transfer {
            target_req.purpose = t.purpose;
            target_req.file = Some(t.file.clone());
        }
        let certified = self.certify_with(caller, &hops, target_req).await?;
        let serials: Vec<u64> = certified.creds.iter().map(|c| c.2).collect();
        let serial = serials.last().copied().unwrap_or_default();
        rec.insert("serial".into(), serial.into());
        if serials.len() > 1 {
            rec.insert("hop_serials".into(), serials.clone().into());
        }
        let (conns, hop_timings) = self.dial_chain(&hops, certified, Some(pre)).await?;
        timings.hops = hop_timings;
        if conns.is_empty() {
            return Err(ToolError::Invalid("empty chain".into()));
        }
        // Durable before anything runs: no command without its record.
        let mut start_rec = rec.clone();
        start_rec.insert("outcome".into(), "exec_started".into());
        self.write_record(start_rec).await?;
        guard.started(ONESHOT_STOP);
        let ran = Instant::now();
        let (input, cap) = match &transfer {
            Some(t) => (t.input, t.cap),
            None => (None, self.cfg.max_output_bytes),
        };
        let run = Run {
            req,
            serials: &serials,
            input,
            cap,
            timeout,
        };
        let (out, stop) = self.run_unless_frozen(&conns, caller, run, rec).await?;
        timings.exec_ms = ms_since(ran);
        if let Some(stop) = stop {
            rec.insert("stop".into(), stop.to_json());
        }
        for c in conns.iter().rev() {
            let _ = c
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
        }
        Ok((out?, serial))
    }

    /// Runs a one-shot on the last of `conns`, unless a freeze covers it
    /// while it runs ([`crate::oneshots`]): then its connection is closed
    /// and the call answers `frozen`, with `freeze_id` in `rec`.
    async fn run_unless_frozen(
        &self,
        conns: &[crate::ssh::Conn],
        caller: &Caller,
        run: Run<'_>,
        rec: &mut Map<String, Value>,
    ) -> Result<(Result<exec::Output, ToolError>, Option<exec::Stop>), ToolError> {
        let target = conns
            .last()
            .ok_or_else(|| ToolError::Invalid("empty chain".into()))?;
        let mut cuttable = self.oneshots.register(
            run.serials.to_vec(),
            &run.req.host,
            caller.end_user.as_deref(),
        );
        let command = if run.req.command.is_empty() {
            // A file transfer: the force-command is all that runs.
            "infrabroker-file"
        } else {
            &run.req.command
        };
        let running = exec::run_with_input(target, command, run.input, run.cap, run.timeout);
        tokio::select! {
            done = running => Ok(done),
            f = cuttable.cut() => {
                for c in conns.iter().rev() {
                    let _ = c.disconnect(russh::Disconnect::ByApplication, "frozen", "en").await;
                }
                rec.insert("freeze_id".into(), f.id.clone().into());
                Err(ToolError::Denied {
                    code: "frozen".into(),
                    message: format!(
                        "{} {} was frozen (freeze {}) while the command ran; its connection was closed: {}",
                        f.kind, f.value, f.id, f.reason
                    ),
                })
            }
        }
    }
}

/// One run on the target's connection.
struct Run<'a> {
    req: &'a ExecRequest,
    serials: &'a [u64],
    input: Option<&'a [u8]>,
    cap: usize,
    timeout: std::time::Duration,
}

/// The end of an execution record: how it ended.
fn finish_record(rec: &mut Map<String, Value>, result: &Result<(exec::Output, u64), ToolError>) {
    match result {
        Ok((out, _)) => {
            rec.insert("outcome".into(), "executed".into());
            rec.insert(
                "exit_code".into(),
                out.exit_code.map_or(Value::Null, Value::from),
            );
            if let Some(s) = &out.exit_signal {
                rec.insert("exit_signal".into(), s.clone().into());
            }
            if out.stdout_truncated || out.stderr_truncated {
                rec.insert("truncated".into(), true.into());
            }
        }
        Err(e) => {
            let outcome = match e {
                ToolError::Denied { .. } => "denied",
                ToolError::TimedOut { .. } => "timed_out",
                _ => "failed",
            };
            rec.insert("outcome".into(), outcome.into());
            rec.insert("reason_code".into(), e.reason_code().into());
            rec.insert("error".into(), e.to_string().into());
        }
    }
}
