//! HTML of the approval pages. Every value is HTML-escaped, and characters
//! that could make what a human reads differ from what runs (the shared
//! rule of `infrabroker_common::display::is_hidden`: controls, bidi
//! overrides, zero-width and other format characters) are shown as a
//! highlighted `U+XXXX` instead of being passed to the browser.

use std::fmt::Write as _;

use infrabroker_common::display::is_hidden;

use crate::approval::Status;
use crate::view::ApprovalView;

/// The stylesheet (served from `/ui/style.css`; no inline styles).
pub const STYLE: &str = include_str!("style.css");

/// `text` escaped for HTML, hidden characters made visible.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if is_hidden(c) => {
                let _ = write!(out, "<span class=\"esc\">U+{:04X}</span>", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

fn layout(title: &str, refresh: Option<u32>, body: &str) -> String {
    let meta = refresh.map_or(String::new(), |s| {
        format!("<meta http-equiv=\"refresh\" content=\"{s}\">")
    });
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{meta}\
         <title>{} · infrabroker approvals</title>\
         <link rel=\"stylesheet\" href=\"/ui/style.css\"></head><body>\
         <header><a href=\"/ui/approvals\">infrabroker approvals</a></header>\
         <main>{body}</main></body></html>",
        esc(title)
    )
}

fn requester(a: &ApprovalView) -> String {
    match &a.end_user {
        Some(u) => format!("{} for {}", esc(&a.caller), esc(u)),
        None => esc(&a.caller),
    }
}

fn what(a: &ApprovalView) -> String {
    let mut s = if let Some(file) = &a.file {
        format!("<em>file</em> <code>{}</code>", esc(file))
    } else if a.command.is_empty() {
        format!(
            "<em>{} session</em>",
            esc(a.session_mode.as_deref().unwrap_or("shell"))
        )
    } else {
        format!("<code>{}</code>", esc(&a.command))
    };
    if a.sudo {
        let user = a.sudo_user.as_deref().unwrap_or("root");
        let _ = write!(s, " <span class=\"sudo\">sudo → {}</span>", esc(user));
    }
    s
}

fn decided(a: &ApprovalView) -> String {
    match (&a.decided_by, a.decided_via) {
        (Some(by), Some(via)) => format!("{} by {} ({})", a.status.as_str(), esc(by), via.as_str()),
        (Some(by), None) => format!("{} by {}", a.status.as_str(), esc(by)),
        _ => a.status.as_str().to_owned(),
    }
}

/// The list of approvals, newest first; decided and expired ones greyed.
pub fn list(all: &[ApprovalView], refresh: u32) -> String {
    let mut rows = String::new();
    for a in all {
        let class = if a.status == Status::Pending {
            "pending"
        } else {
            "final"
        };
        let _ = write!(
            rows,
            "<tr class=\"{class}\" data-id=\"{id}\"><td><a href=\"/ui/approvals/{id}\">{id}</a></td>\
             <td>{host}</td><td>{what}</td><td>{who}</td><td>{tier}</td><td>{reasons}</td>\
             <td>{created}</td><td>{expires}</td><td class=\"status\">{status}</td></tr>",
            id = esc(&a.id),
            host = esc(&a.host),
            what = what(a),
            who = requester(a),
            tier = esc(a.tier.as_str()),
            reasons = esc(&a.reasons.join("; ")),
            created = esc(&a.created_at),
            expires = esc(&a.expires_at),
            status = decided(a),
        );
    }
    let table = if all.is_empty() {
        "<p class=\"empty\">Nothing is waiting for a decision.</p>".to_owned()
    } else {
        format!(
            "<table><thead><tr><th>id</th><th>host</th><th>command</th><th>requested by</th>\
             <th>tier</th><th>why held</th><th>created</th><th>expires</th><th>status</th>\
             </tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    layout(
        "Approvals",
        Some(refresh),
        &format!("<h1>Approvals</h1>{table}"),
    )
}

/// One approval; the form only when `viewer` may decide it now.
pub fn detail(a: &ApprovalView, viewer: &str, token: &str) -> String {
    let mut dl = String::new();
    let mut row = |k: &str, v: String| {
        let _ = write!(dl, "<dt>{k}</dt><dd>{v}</dd>");
    };
    row("status", decided(a));
    row(
        "host",
        format!("{} ({}, {})", esc(&a.host), esc(&a.role), esc(&a.purpose)),
    );
    row("command", what(a));
    row("requested by", requester(a));
    row("tier", esc(a.tier.as_str()));
    row("why held", esc(&a.reasons.join("; ")));
    if let Some(rule) = &a.rule {
        row("rule", format!("<code>{}</code>", esc(rule)));
    }
    row("created", esc(&a.created_at));
    row("expires", esc(&a.expires_at));
    if let Some(reason) = &a.reason {
        row("decision reason", esc(reason));
    }
    let own = viewer == a.caller || a.end_user.as_deref() == Some(viewer);
    let form = if a.status != Status::Pending {
        String::new()
    } else if own {
        "<p class=\"own\">You asked for this: someone else must decide it.</p>".to_owned()
    } else {
        format!(
            "<form method=\"post\" action=\"/ui/approvals/{id}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
             <label for=\"reason\">Reason (required)</label>\
             <input id=\"reason\" name=\"reason\" required maxlength=\"500\" autocomplete=\"off\">\
             <button name=\"decision\" value=\"approve\" id=\"approve\">Approve</button>\
             <button name=\"decision\" value=\"deny\" id=\"deny\">Deny</button></form>",
            id = esc(&a.id),
            token = esc(token),
        )
    };
    let body = format!("<h1>Approval {}</h1><dl>{dl}</dl>{form}", esc(&a.id));
    layout(&format!("Approval {}", a.id), None, &body)
}

/// An error page with the reason code.
pub fn error(code: &str, message: &str) -> String {
    let body = format!(
        "<h1>Refused</h1><p class=\"error\"><code>{}</code> {}</p>",
        esc(code),
        esc(message)
    );
    layout("Refused", None, &body)
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn markup_and_hidden_characters_are_shown_escaped() {
        assert_eq!(esc("<b>&\"'"), "&lt;b&gt;&amp;&quot;&#39;");
        let shown = esc("echo ok\u{202E}fdsa\u{1b}[2K\u{200B}x\u{E0041}");
        for cp in ["U+202E", "U+001B", "U+200B", "U+E0041"] {
            assert!(shown.contains(cp), "{cp} in {shown}");
        }
        assert!(!shown.contains('\u{202E}') && !shown.contains('\u{1b}'));
        assert_eq!(esc("grep 'café' f €"), "grep &#39;café&#39; f €");
    }
}
