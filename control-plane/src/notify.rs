//! Announcing new approvals: a log line, a generic JSON webhook, a Slack
//! incoming webhook or a Microsoft Teams webhook carrying an Adaptive Card.
//!
//! Delivery happens in its own task after the approval exists, with a
//! bounded number of attempts, each with a deadline; a notifier that fails
//! is logged and audited by the caller but never blocks or loses the
//! approval (operators can always `broker-ctl approval list`).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use infrabroker_common::client::error_chain;
use infrabroker_common::display::escape;
use infrabroker_common::tls::load_certs;
use rustls::RootCertStore;
use serde_json::{Value, json};

use crate::approval::ApprovalView;
use crate::config::{ApprovalConfig, NotifierKind};
use crate::error::StartError;

/// Deadline of one delivery attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before the second attempt; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Sends approval announcements.
#[derive(Debug)]
pub struct Notifier {
    kind: NotifierKind,
    url: Option<String>,
    template: Option<String>,
    attempts: u32,
    client: Option<HttpClient>,
    /// `redact`: applied to what people read before it leaves.
    redact: Option<Arc<infrabroker_common::redact::Redactor>>,
}

impl Notifier {
    /// A notifier as configured by `approval`.
    pub fn new(
        cfg: &ApprovalConfig,
        redact: Option<Arc<infrabroker_common::redact::Redactor>>,
    ) -> Result<Arc<Notifier>, StartError> {
        let client = match (&cfg.webhook_url, cfg.notifier) {
            (Some(url), NotifierKind::Webhook | NotifierKind::Slack | NotifierKind::Teams) => {
                Some(http_client(url, &cfg.webhook_ca)?)
            }
            _ => None,
        };
        Ok(Arc::new(Notifier {
            kind: cfg.notifier,
            url: cfg.webhook_url.clone(),
            template: cfg.url_template.clone(),
            attempts: cfg.notify_attempts.max(1),
            client,
            redact,
        }))
    }

    /// False when nothing is configured.
    pub fn enabled(&self) -> bool {
        self.kind != NotifierKind::None
    }

    /// The link to an approval, from `approval_url_template`.
    pub fn approval_url(&self, id: &str) -> Option<String> {
        self.template.as_ref().map(|t| t.replace("{id}", id))
    }

    /// The body sent for `view`, in this notifier's format. Every text a
    /// human reads is escaped first ([`for_humans`]).
    pub fn payload(&self, view: &ApprovalView) -> Value {
        let view = &self.for_people(view);
        let url = self.approval_url(&view.id);
        match self.kind {
            NotifierKind::Slack => slack(view, url.as_deref()),
            NotifierKind::Teams => teams(view, url.as_deref()),
            _ => webhook(view, url.as_deref()),
        }
    }

    /// `view` as a notification shows it: `redact` applied to the command
    /// and to every text derived from it, then [`for_humans`].
    fn for_people(&self, view: &ApprovalView) -> ApprovalView {
        let Some(r) = &self.redact else {
            return for_humans(view);
        };
        let t = |s: &String| r.text(s).into_owned();
        let to = |s: &Option<String>| s.as_ref().map(t);
        for_humans(&ApprovalView {
            command: t(&view.command),
            reasons: view.reasons.iter().map(t).collect(),
            rule: to(&view.rule),
            reason: to(&view.reason),
            escalation_reason: to(&view.escalation_reason),
            ..view.clone()
        })
    }

    /// Announces `view`. Returns the number of attempts made on success,
    /// or why the last attempt failed.
    pub async fn deliver(&self, view: &ApprovalView) -> Result<u32, String> {
        match self.kind {
            NotifierKind::None => Ok(0),
            NotifierKind::Log => {
                let view = &self.for_people(view);
                tracing::info!(
                    approval_id = %view.id,
                    caller = %view.caller,
                    host = %view.host,
                    command = %view.command,
                    tier = view.tier.as_str(),
                    url = self.approval_url(&view.id).unwrap_or_default(),
                    "approval requested"
                );
                Ok(1)
            }
            NotifierKind::Webhook | NotifierKind::Slack | NotifierKind::Teams => {
                let (Some(client), Some(url)) = (&self.client, &self.url) else {
                    return Err("no webhook_url configured".into());
                };
                let body = serde_json::to_vec(&self.payload(view)).map_err(|e| e.to_string())?;
                let mut last = String::new();
                let mut pause = FIRST_BACKOFF;
                for attempt in 1..=self.attempts {
                    match post(client, url, body.clone()).await {
                        Ok(()) => return Ok(attempt),
                        Err(e) => {
                            tracing::warn!(approval_id = %view.id, attempt, error = %e, "notification failed");
                            last = e;
                        }
                    }
                    if attempt < self.attempts {
                        tokio::time::sleep(pause).await;
                        pause = pause.saturating_mul(2);
                    }
                }
                Err(format!("{} attempt(s) failed; last: {last}", self.attempts))
            }
        }
    }
}

/// `view` with every field a person reads passed through
/// [`escape`]: the agent chose the command (and, through it, the reasons),
/// so ESC sequences, bidi overrides and zero-width characters in it must
/// show as what they are in a chat client too. The exact bytes stay
/// available from `broker-ctl approval show --json`.
pub fn for_humans(view: &ApprovalView) -> ApprovalView {
    let e = |s: &String| escape(s).into_owned();
    let eo = |s: &Option<String>| s.as_ref().map(e);
    ApprovalView {
        caller: e(&view.caller),
        end_user: eo(&view.end_user),
        host: e(&view.host),
        command: e(&view.command),
        sudo_user: eo(&view.sudo_user),
        reasons: view.reasons.iter().map(e).collect(),
        rule: eo(&view.rule),
        decided_by: eo(&view.decided_by),
        reason: eo(&view.reason),
        escalated_by: eo(&view.escalated_by),
        escalation_reason: eo(&view.escalation_reason),
        ..view.clone()
    }
}

fn http_client(url: &str, ca_bundle: &std::path::Path) -> Result<HttpClient, StartError> {
    let mut roots = RootCertStore::empty();
    // Only an https:// webhook needs trust anchors; reading the bundle for
    // a plain-HTTP one (a local relay) would make it a needless dependency.
    if url.starts_with("https://") {
        let certs = load_certs(ca_bundle)
            .map_err(|e| StartError::Other(format!("approval.webhook_ca: {e}")))?;
        let (_, skipped) = roots.add_parsable_certificates(certs);
        if roots.is_empty() {
            return Err(StartError::Other(format!(
                "approval.webhook_ca: {} holds no usable CA certificate ({skipped} skipped)",
                ca_bundle.display()
            )));
        }
    }
    infrabroker_common::client::web_client(roots, &[&rustls::version::TLS13], ATTEMPT_TIMEOUT)
        .map_err(|e| StartError::Other(format!("webhook TLS: {e}")))
}

async fn post(client: &HttpClient, url: &str, body: Vec<u8>) -> Result<(), String> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let work = async {
        let resp = client.request(req).await.map_err(|e| error_chain(&e))?;
        let status = resp.status();
        // Drain (bounded by the deadline) so the connection can be reused.
        let _ = resp.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the webhook answered {status}"))
        }
    };
    tokio::time::timeout(ATTEMPT_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())))
}

/// Generic webhook: the approval as listed by the API, plus the event name
/// and the link.
fn webhook(view: &ApprovalView, url: Option<&str>) -> Value {
    let mut body = match serde_json::to_value(view) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    body.insert("event".into(), "approval_requested".into());
    body.insert("approval_id".into(), view.id.clone().into());
    if let Some(u) = url {
        body.insert("approval_url".into(), u.into());
    }
    Value::Object(body)
}

fn who(view: &ApprovalView) -> String {
    match &view.end_user {
        Some(u) => format!("{} (for {u})", view.caller),
        None => view.caller.clone(),
    }
}

fn what(view: &ApprovalView) -> String {
    if view.command.is_empty() {
        format!("a {} certificate", view.purpose)
    } else {
        view.command.clone()
    }
}

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters.
fn slack_escape(s: &str) -> String {
    // Backticks are the agent's text too: one could close the code block
    // and render the rest as formatted (spoofed) fields.
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('`', "\u{2018}")
}

fn slack(view: &ApprovalView, url: Option<&str>) -> Value {
    let elevated = view
        .sudo_user
        .as_deref()
        .map(|u| format!(" as {u} via sudo"))
        .unwrap_or_default();
    let summary = format!(
        "Approval needed ({} tier): {} wants to run `{}` on {}{}",
        view.tier.as_str(),
        who(view),
        what(view),
        view.host,
        elevated
    );
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!(
            "*Approval needed* ({} tier)\n*Caller:* {}\n*Host:* {}{}\n*Command:*\n```{}```",
            view.tier.as_str(), slack_escape(&who(view)), slack_escape(&view.host),
            slack_escape(&elevated), slack_escape(&what(view)))}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            "id `{}` · {} · expires {}", view.id,
            slack_escape(&view.reasons.join("; ")), view.expires_at)}]}),
    ];
    if let Some(u) = url {
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button", "text": {"type": "plain_text", "text": "Review"}, "url": u}]}));
    }
    json!({"text": slack_escape(&summary), "blocks": blocks})
}

fn teams(view: &ApprovalView, url: Option<&str>) -> Value {
    let mut facts = vec![
        json!({"title": "Approval id", "value": view.id}),
        json!({"title": "Tier", "value": view.tier.as_str()}),
        json!({"title": "Caller", "value": who(view)}),
        json!({"title": "Host", "value": view.host}),
        json!({"title": "Why", "value": view.reasons.join("; ")}),
        json!({"title": "Expires", "value": view.expires_at}),
    ];
    if let Some(u) = &view.sudo_user {
        facts.push(json!({"title": "Sudo", "value": u}));
    }
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "size": "Medium", "weight": "Bolder",
             "text": "infrabroker: approval needed", "wrap": true},
            {"type": "FactSet", "facts": facts},
            {"type": "TextBlock", "text": what(view), "fontType": "Monospace", "wrap": true},
        ],
    });
    if let Some(u) = url {
        card["actions"] = json!([{"type": "Action.OpenUrl", "title": "Review", "url": u}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::{Status, Tier};

    fn view() -> ApprovalView {
        ApprovalView {
            id: "0123456789abcdef0123456789abcdef".into(),
            status: Status::Pending,
            tier: Tier::Human,
            escalated: false,
            caller: "broker-1".into(),
            end_user: None,
            host: "web".into(),
            role: "target".into(),
            purpose: "oneshot".into(),
            session_mode: None,
            command: "echo <a> & b".into(),
            file: None,
            sudo: false,
            sudo_user: None,
            pty: false,
            dry_run: false,
            reasons: vec!["policy rule".into()],
            rule: None,
            created_at: "t0".into(),
            expires_at: "t1".into(),
            decided_by: None,
            decided_via: None,
            decided_at: None,
            reason: None,
            escalated_by: None,
            escalation_reason: None,
        }
    }

    fn notifier(kind: NotifierKind) -> Notifier {
        Notifier {
            kind,
            url: None,
            template: Some("https://cp.example/a/{id}".into()),
            attempts: 1,
            client: None,
            redact: None,
        }
    }

    #[test]
    fn redact_rules_apply_to_every_notification_text() {
        let mut n = notifier(NotifierKind::Webhook);
        n.redact = Some(Arc::new(
            infrabroker_common::redact::Redactor::new([("tok", "tok_[a-z0-9]+")]).unwrap(),
        ));
        let mut v = view();
        v.command = "curl -H 'Authorization: tok_abc123' https://x".into();
        v.reasons = vec!["novel command curl -H 'Authorization: tok_abc123'".into()];
        let body = n.payload(&v).to_string();
        assert!(!body.contains("tok_abc123"), "{body}");
        assert!(body.contains("[REDACTED:tok]"), "{body}");
        for kind in [NotifierKind::Slack, NotifierKind::Teams] {
            n.kind = kind;
            assert!(!n.payload(&v).to_string().contains("tok_abc123"));
        }
    }

    #[test]
    fn slack_escapes_control_characters_and_links_the_approval() {
        let p = notifier(NotifierKind::Slack).payload(&view());
        let text = p["text"].as_str().unwrap();
        assert!(text.contains("echo &lt;a&gt; &amp; b"), "{text}");
        assert_eq!(
            slack_escape("a```*Caller:* x"),
            "a\u{2018}\u{2018}\u{2018}*Caller:* x"
        );
        assert_eq!(
            p["blocks"][2]["elements"][0]["url"],
            "https://cp.example/a/0123456789abcdef0123456789abcdef"
        );
    }

    fn all_strings(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(items) => items.iter().for_each(|i| all_strings(i, out)),
            Value::Object(m) => m.values().for_each(|i| all_strings(i, out)),
            _ => {}
        }
    }

    #[test]
    fn every_format_shows_hidden_characters_escaped() {
        let mut v = view();
        v.command = "ls\x1b[2K\r\u{202e}fdp.exe".into();
        v.end_user = Some("eve\u{200b}".into());
        v.reasons = vec!["novel command ls\u{2066}".into()];
        for kind in [
            NotifierKind::Slack,
            NotifierKind::Teams,
            NotifierKind::Webhook,
        ] {
            let mut text = String::new();
            all_strings(&notifier(kind).payload(&v), &mut text);
            for raw in ['\x1b', '\r', '\u{202e}', '\u{200b}', '\u{2066}'] {
                assert!(
                    !text.contains(raw),
                    "{kind:?} carries U+{:04X}",
                    u32::from(raw)
                );
            }
            for shown in ["\\x1b[2K\\r", "\\u{202e}fdp.exe", "eve\\u{200b}"] {
                assert!(text.contains(shown), "{kind:?}: {shown} missing in {text}");
            }
        }
    }

    #[test]
    fn teams_is_an_adaptive_card() {
        let p = notifier(NotifierKind::Teams).payload(&view());
        let att = &p["attachments"][0];
        assert_eq!(
            att["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(att["content"]["type"], "AdaptiveCard");
        assert_eq!(att["content"]["actions"][0]["type"], "Action.OpenUrl");
    }

    #[test]
    fn webhook_is_the_listed_approval_plus_event() {
        let p = notifier(NotifierKind::Webhook).payload(&view());
        assert_eq!(p["event"], "approval_requested");
        assert_eq!(p["command"], "echo <a> & b");
        assert_eq!(p["approval_id"], p["id"]);
        assert!(p.get("pubkey").is_none());
    }
}
