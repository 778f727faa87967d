//! `broker-ctl policy explain`: a host's composed command policy and the
//! offline decision for one command, judged exactly as the signer would.

use std::path::Path;
use std::process::ExitCode;

use infrabroker_common::display::escape;
use infrabroker_firewall::{Context, JudgedCommand, RuleForm, render};
use infrabroker_signer::config::SignerConfig;
use infrabroker_signer::issuance::to_wire;

use super::{Failure, Outcome};

pub fn explain(config: &Path, host: &str, command: Option<&str>, pty: bool, json: bool) -> Outcome {
    let cfg = SignerConfig::load(config)
        .map_err(|e| Failure::config(format!("{}: {e}", config.display())))?;
    let Some(h) = cfg.hosts.get(host) else {
        return Err(Failure::config(format!(
            "no host named {host:?} in {}",
            config.display()
        )));
    };
    let explanation = h.policy.explain();
    let ctx = Context { terminal: pty };
    let judged = command.map(|c| h.policy.explain_command(c, ctx));
    let commands = judged
        .as_ref()
        .map(|j| j.commands.clone())
        .unwrap_or_default();
    let decision = judged.map(|j| to_wire(j.decision));
    if json {
        let out = serde_json::json!({
            "host": host,
            "policy": explanation,
            "decision": decision,
            "commands": commands,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| Failure::other(e.to_string()))?
        );
    } else {
        let word = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_owned();
        let ex = serde_json::to_value(&explanation).map_err(|e| Failure::other(e.to_string()))?;
        println!(
            "host {host}: mode {}, shell_parse {}, enforcement {}",
            word(&ex["mode"]),
            ex["shell_parse"],
            word(&ex["enforcement"])
        );
        if h.policy.is_empty() {
            println!("  no command policy: every command without NUL/CR/LF is allowed");
        }
        for part in ex["parts"].as_array().into_iter().flatten() {
            println!(
                "  part {}: mode {}, shell_parse {}, enforcement {}",
                word(&part["source"]),
                word(&part["mode"]),
                part["shell_parse"],
                word(&part["enforcement"])
            );
        }
        for rule in ex["rules"].as_array().into_iter().flatten() {
            println!(
                "  {:<17} {:<40} from {}",
                word(&rule["kind"]),
                word(&rule["pattern"]),
                word(&rule["source"])
            );
        }
        if let Some(d) = &decision {
            println!(
                "decision: {} ({})",
                if d.allowed { "allowed" } else { "refused" },
                d.reason_code
            );
            if let Some(rule) = &d.matched_rule {
                println!("  matched rule: {}", escape(rule));
            }
            println!("  {}", escape(&d.message));
            for w in &d.warnings {
                println!("  warning: {w}");
            }
        }
        print_commands(&commands);
    }
    match decision {
        Some(d) if !d.allowed => Ok(ExitCode::from(1)),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Each simple command: the words judged, the normalised argv when a
/// structured rule admitted it, and what decided it.
fn print_commands(commands: &[JudgedCommand]) {
    for (i, c) in commands.iter().enumerate() {
        println!("simple command {}: {}", i + 1, escape(&c.text));
        if let Some(words) = &c.normalized {
            println!("  normalised: {}", escape(&render(words)));
        }
        match &c.decided_by {
            Some(by) => {
                let form = match by.form {
                    RuleForm::Regex => "regex",
                    RuleForm::Structured => "structured rule",
                    RuleForm::ExecTable => "built-in exec-option table",
                };
                let from = by
                    .source
                    .as_deref()
                    .map(|s| format!(" from {s}"))
                    .unwrap_or_default();
                println!("  decided by {form}: {}{from}", escape(&by.rule));
            }
            None => println!("  decided by: no rule (not reached, or nothing matched)"),
        }
        for miss in &c.structured_misses {
            println!("  not admitted by {}", escape(miss));
        }
    }
}
