//! Confirmation in the conversation: a request a control plane holds in
//! the `user_confirm` tier is put to the person using the MCP client, and
//! their answer is relayed to the control plane.
//!
//! The frontend that owns the client connection sets a [`Confirm`] for the
//! call it runs ([`scope`]); the signer client asks it ([`current`]) when
//! a `202` names the `user_confirm` tier. Without one (a REST call, a
//! client without elicitation) the request waits for an operator as any
//! held request does. What the user sees is built here, the same for
//! every way of asking.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use infrabroker_common::display::escape;
use infrabroker_common::wire::SignRequest;

/// The held request put to the user.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The control plane's approval id.
    pub approval_id: String,
    /// The request exactly as sent.
    pub request: SignRequest,
    /// How long the answer may take (the approval's time to live, at most
    /// the broker's `approval_wait`).
    pub within: Duration,
}

/// What the user answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Run it.
    Accept,
    /// Do not run it.
    Decline,
    /// Dismissed without a choice.
    Cancel,
}

impl Answer {
    /// The control plane's spelling (`POST /v1/sign/confirm/{id}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Accept => "accept",
            Answer::Decline => "decline",
            Answer::Cancel => "cancel",
        }
    }
}

/// A future that resolves to the user's answer.
pub type Asking = Pin<Box<dyn Future<Output = Option<Answer>> + Send>>;

/// Someone who can ask the user. `None`: no answer (the client could not
/// ask, or the user did not answer in time).
pub trait Confirm: Send + Sync {
    /// Puts `prompt` to the user.
    fn ask(&self, prompt: Prompt) -> Asking;
}

tokio::task_local! {
    static CONFIRMER: Arc<dyn Confirm>;
}

/// Runs `work` with `confirm` as the way to ask the user.
pub async fn scope<F: Future>(confirm: Option<Arc<dyn Confirm>>, work: F) -> F::Output {
    match confirm {
        Some(c) => CONFIRMER.scope(c, work).await,
        None => work.await,
    }
}

/// The way to ask the user in the current call, if it has one.
pub fn current() -> Option<Arc<dyn Confirm>> {
    CONFIRMER.try_with(Arc::clone).ok()
}

/// The field the form asks for: `true` to run the command.
pub const FIELD: &str = "confirm";

/// The sentence the user reads: host, exact command (hidden characters
/// made visible), sudo, tier and how long the question stands.
pub fn message(p: &Prompt) -> String {
    let r = &p.request;
    let sudo = match (r.sudo, r.sudo_user.as_deref()) {
        (false, _) => "no".to_owned(),
        (true, None) => "yes, as root".to_owned(),
        (true, Some(u)) => format!("yes, as {}", escape(u)),
    };
    let (question, what) = match &r.file {
        Some(f) => (
            "Move this file on",
            format!("file: {}", escape(&f.describe(r.purpose))),
        ),
        None => (
            "Run this command on",
            format!("command: {}", escape(&r.command)),
        ),
    };
    format!(
        "{question} {host}?\n\n{what}\nsudo: {sudo}\n\
         tier: user_confirm (approval {id})\nexpires in: {secs} s\n\n\
         Set \"{FIELD}\" to true and accept to run it; decline to refuse it.",
        host = escape(&r.host),
        id = p.approval_id,
        secs = p.within.as_secs(),
    )
}

/// An elicitation answer as an [`Answer`]: accepting without setting the
/// field to `true` is a decline (the form's default is `false`).
pub fn answer_of(action: &str, content: Option<&serde_json::Value>) -> Answer {
    match action {
        "accept"
            if content
                .and_then(|c| c.get(FIELD))
                .and_then(serde_json::Value::as_bool)
                == Some(true) =>
        {
            Answer::Accept
        }
        "accept" | "decline" => Answer::Decline,
        _ => Answer::Cancel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_an_explicit_true_accepts() {
        assert_eq!(
            answer_of("accept", Some(&json!({"confirm": true}))),
            Answer::Accept
        );
        assert_eq!(
            answer_of("accept", Some(&json!({"confirm": false}))),
            Answer::Decline
        );
        assert_eq!(
            answer_of("accept", Some(&json!({"confirm": "true"}))),
            Answer::Decline
        );
        assert_eq!(answer_of("accept", None), Answer::Decline);
        assert_eq!(answer_of("decline", None), Answer::Decline);
        assert_eq!(answer_of("cancel", None), Answer::Cancel);
        assert_eq!(answer_of("other", None), Answer::Cancel);
    }

    #[test]
    fn the_message_shows_the_exact_command_with_controls_visible() {
        let request: SignRequest = serde_json::from_value(json!({
            "host": "web1", "role": "target", "purpose": "oneshot",
            "command": "echo hi\u{1b}[2J; rm -rf /tmp/x\nreboot",
            "pubkey": "ssh-ed25519 AAAA", "sudo": true, "sudo_user": "deploy",
        }))
        .unwrap();
        let p = Prompt {
            approval_id: "ab12".into(),
            request,
            within: Duration::from_secs(90),
        };
        let m = message(&p);
        assert!(
            m.contains("command: echo hi\\x1b[2J; rm -rf /tmp/x\\nreboot"),
            "{m}"
        );
        assert!(m.contains("on web1?"), "{m}");
        assert!(m.contains("sudo: yes, as deploy"), "{m}");
        assert!(m.contains("approval ab12"), "{m}");
        assert!(m.contains("expires in: 90 s"), "{m}");
        assert!(!m.contains('\u{1b}'), "{m}");
    }
}
