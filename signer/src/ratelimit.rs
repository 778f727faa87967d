//! `sign_rate_limit_per_min`: certificates per caller per minute.
//!
//! The subject is the caller's CN; behind a trusted forwarder (the control
//! plane) it is the broker the forwarder names plus the end user, so one
//! person's burst neither hides behind the forwarder's CN nor throttles the
//! people next to them. Each subject has its own fixed one-minute window,
//! and the map is locked only to count: a limited subject never delays
//! another one. A refusal is `429 rate_limited` with `Retry-After`; only
//! the first refusal of a window is audited, with the count of the refusals
//! of the window before it, so a flood cannot fill the audit disk.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use infrabroker_common::wire::{ErrorBody, ReasonCode, SignRequest};
use serde_json::{Map, Value};

use crate::issuance::Runtime;
use crate::server::Shared;

const WINDOW_MS: u64 = 60_000;
/// Windows kept before finished ones are dropped.
const TIDY_ABOVE: usize = 4096;

#[derive(Debug, Default)]
struct Window {
    start_ms: u64,
    count: u32,
    audited: bool,
    refused: u64,
}

/// What [`RateLimiter::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Within the limit (or no limit).
    Yes,
    /// Over the limit.
    Limited {
        /// Seconds until the subject's window ends (at least 1).
        retry_after: u64,
        /// This is the window's first refusal: audit it.
        audit: bool,
        /// Refusals of the subject's previous window (reported once).
        refused_before: u64,
    },
}

/// Counts sign requests per subject.
#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<String, Window>>,
    carried: Mutex<HashMap<String, u64>>,
}

/// The rate-limit subject of `req` from `cn`.
pub fn subject(cn: &str, req: &SignRequest, forwarders: &BTreeSet<String>) -> String {
    if !forwarders.contains(cn) {
        return cn.to_owned();
    }
    let who = req.on_behalf_of.as_deref().unwrap_or(cn);
    match &req.end_user {
        Some(user) => format!("{who}/{user}"),
        None => who.to_owned(),
    }
}

impl RateLimiter {
    /// Counts one request of `subject` at `now_ms` against `limit` per
    /// minute (0 = no limit).
    pub fn admit(&self, subject: &str, limit: u32, now_ms: u64) -> Admit {
        if limit == 0 {
            return Admit::Yes;
        }
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > TIDY_ABOVE {
            map.retain(|_, w| w.start_ms.saturating_add(WINDOW_MS) > now_ms);
        }
        let w = map.entry(subject.to_owned()).or_default();
        if w.start_ms.saturating_add(WINDOW_MS) <= now_ms {
            if w.refused > 0 {
                let mut carried = self.carried.lock().unwrap_or_else(|p| p.into_inner());
                carried.insert(subject.to_owned(), w.refused);
            }
            *w = Window {
                start_ms: now_ms,
                ..Window::default()
            };
        }
        if w.count < limit {
            w.count += 1;
            return Admit::Yes;
        }
        w.refused += 1;
        let audit = !w.audited;
        w.audited = true;
        let left_ms = w.start_ms.saturating_add(WINDOW_MS).saturating_sub(now_ms);
        let refused_before = if audit {
            let mut carried = self.carried.lock().unwrap_or_else(|p| p.into_inner());
            carried.remove(subject).unwrap_or(0)
        } else {
            0
        };
        Admit::Limited {
            retry_after: left_ms.div_ceil(1000).max(1),
            audit,
            refused_before,
        }
    }
}

/// Counts an issuance request (dry runs issue nothing and are not
/// counted); over the limit answers `429` with `Retry-After`, audited once
/// per window.
pub(crate) async fn enforce(
    s: &Shared,
    rt: &Runtime,
    cn: &str,
    req: &SignRequest,
    rec: &Map<String, Value>,
) -> Result<(), Response> {
    let cfg = &rt.config;
    if req.dry_run || cfg.sign_rate_limit_per_min == 0 {
        return Ok(());
    }
    let who = subject(cn, req, &cfg.trusted_forwarders);
    let limit = cfg.sign_rate_limit_per_min;
    let Admit::Limited {
        retry_after,
        audit,
        refused_before,
    } = s.limiter().admit(&who, limit, now_ms())
    else {
        return Ok(());
    };
    s.metrics.denied(ReasonCode::RateLimited.as_str());
    let msg =
        format!("{who} exceeded {limit} certificates per minute; retry after {retry_after} s");
    if audit {
        let mut r = rec.clone();
        r.insert("outcome".into(), "rate_limited".into());
        r.insert(
            "reason_code".into(),
            ReasonCode::RateLimited.as_str().into(),
        );
        r.insert("subject".into(), who.clone().into());
        r.insert("message".into(), msg.clone().into());
        if refused_before > 0 {
            r.insert("refused_previous_window".into(), refused_before.into());
        }
        if let Err(e) = s.audit().append(r).await {
            s.metrics.audit_failure();
            tracing::error!(error = %e, "audit record of a rate limit could not be written");
        }
    }
    let body = ErrorBody {
        reason_code: ReasonCode::RateLimited,
        message: msg,
        errors: Vec::new(),
    };
    Err((
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, HeaderValue::from(retry_after))],
        axum::Json(body),
    )
        .into_response())
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use infrabroker_common::wire::{Purpose, Role};

    fn limited(a: Admit) -> (u64, bool) {
        match a {
            Admit::Limited {
                retry_after, audit, ..
            } => (retry_after, audit),
            Admit::Yes => panic!("not limited"),
        }
    }

    #[test]
    fn each_subject_has_its_own_window_audited_once() {
        let r = RateLimiter::default();
        assert_eq!(r.admit("a", 2, 0), Admit::Yes);
        assert_eq!(r.admit("a", 2, 1_000), Admit::Yes);
        assert_eq!(limited(r.admit("a", 2, 20_000)), (40, true));
        assert_eq!(limited(r.admit("a", 2, 59_100)), (1, false));
        assert_eq!(
            r.admit("b", 2, 30_000),
            Admit::Yes,
            "others are not blocked"
        );
        assert_eq!(r.admit("a", 2, 60_000), Admit::Yes, "a new window");
        r.admit("a", 2, 60_001);
        assert_eq!(
            r.admit("a", 2, 60_002),
            Admit::Limited {
                retry_after: 60,
                audit: true,
                refused_before: 2
            }
        );
        assert_eq!(r.admit("c", 0, 0), Admit::Yes, "0 = no limit");
    }

    #[test]
    fn the_subject_is_the_end_user_behind_a_forwarder() {
        let fwd = BTreeSet::from(["control-plane".to_owned()]);
        let mut req = SignRequest {
            host: "web".into(),
            role: Role::Target,
            purpose: Purpose::Oneshot,
            command: "id".into(),
            pubkey: String::new(),
            sudo: false,
            sudo_user: None,
            pty: false,
            session_mode: None,
            ttl_seconds: None,
            end_user: Some("alice".into()),
            end_user_groups: None,
            dry_run: false,
            on_behalf_of: Some("broker-1".into()),
            approved: false,
            file: None,
            timeout_seconds: None,
        };
        assert_eq!(subject("control-plane", &req, &fwd), "broker-1/alice");
        assert_eq!(
            subject("broker-2", &req, &fwd),
            "broker-2",
            "per CN otherwise"
        );
        req.end_user = None;
        assert_eq!(subject("control-plane", &req, &fwd), "broker-1");
    }
}
