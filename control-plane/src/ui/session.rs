//! Web-page sessions: a random id in an `HttpOnly; Secure; SameSite=Strict`
//! cookie, bound to the operator's certificate CN, holding the token every
//! form must echo. Bounded in number and age; kept in memory (a restart
//! only asks operators to reload the page).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};

/// Cookie name.
const COOKIE: &str = "ib_ui";
/// Sessions kept at most; the oldest is dropped first.
const MAX_SESSIONS: usize = 4096;
/// A session lives this long.
const MAX_AGE: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug)]
struct Session {
    cn: String,
    token: String,
    created: Instant,
}

/// The sessions of one control-plane process.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// Equal strings, compared in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    /// The form token for this request's session, and a `Set-Cookie` value
    /// when a new session had to be made (none, expired, or another CN's).
    pub fn for_request(&self, headers: &HeaderMap, cn: &str) -> (String, Option<String>) {
        let Ok(mut map) = self.inner.lock() else {
            return (String::new(), None);
        };
        if let Some(id) = cookie_value(headers)
            && let Some(s) = map.get(&id)
            && s.cn == cn
            && s.created.elapsed() < MAX_AGE
        {
            return (s.token.clone(), None);
        }
        map.retain(|_, s| s.created.elapsed() < MAX_AGE);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        let (id, token) = (random_hex(), random_hex());
        map.insert(
            id.clone(),
            Session {
                cn: cn.to_owned(),
                token: token.clone(),
                created: Instant::now(),
            },
        );
        let cookie = format!(
            "{COOKIE}={id}; Path=/ui; Max-Age={}; Secure; HttpOnly; SameSite=Strict",
            MAX_AGE.as_secs()
        );
        (token, Some(cookie))
    }

    /// The request carries a live session of `cn` whose token is `token`.
    pub fn check(&self, headers: &HeaderMap, cn: &str, token: &str) -> bool {
        let Some(id) = cookie_value(headers) else {
            return false;
        };
        let Ok(map) = self.inner.lock() else {
            return false;
        };
        map.get(&id).is_some_and(|s| {
            s.cn == cn
                && s.created.elapsed() < MAX_AGE
                && !token.is_empty()
                && same(&s.token, token)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(c: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, c.parse().unwrap_or_else(|_| unreachable!()));
        h
    }

    #[test]
    fn a_token_works_only_with_its_session_and_its_operator() {
        let s = Sessions::default();
        let (token, cookie) = s.for_request(&HeaderMap::new(), "operator");
        let cookie = cookie.unwrap_or_default();
        assert!(cookie.contains("SameSite=Strict") && cookie.contains("HttpOnly"));
        let pair = cookie.split(';').next().unwrap_or_default().to_owned();
        let h = with_cookie(&format!("other=1; {pair}"));
        assert!(s.check(&h, "operator", &token));
        assert!(!s.check(&h, "operator", "0"), "wrong token");
        assert!(!s.check(&h, "operator", ""), "empty token");
        assert!(!s.check(&h, "mallory", &token), "another CN");
        assert!(!s.check(&HeaderMap::new(), "operator", &token), "no cookie");
        // The same session is reused, not replaced.
        let (again, set) = s.for_request(&h, "operator");
        assert_eq!((again, set), (token, None));
    }
}
