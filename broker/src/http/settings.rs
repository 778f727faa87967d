//! The `oauth` and `http` sections of `broker.json`, read by
//! [`crate::config`]. Only the network frontends use them; a stdio-only
//! configuration leaves both out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::Uri;
use infrabroker_common::config::{Obj, kind};
use serde_json::Value;

/// Default leeway on `exp`, `nbf` and `iat`.
const DEFAULT_CLOCK_SKEW: u64 = 60;

/// How `broker mcp-http` validates bearer tokens (OAuth 2.1 resource server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    /// The issuer, exactly as in the tokens' `iss` and the discovery document.
    pub issuer: String,
    /// Expected `aud`; `None` = the top-level `resource_url`.
    pub audience: Option<String>,
    /// Scopes every token must carry (`scope` or `scp`).
    pub required_scopes: Vec<String>,
    /// Claim naming the end user (default `sub`).
    pub user_claim: String,
    /// Claim listing the end user's groups; when set it must be present in
    /// every token. `None` = groups are not used (no per-user RBAC).
    pub groups_claim: Option<String>,
    /// Tokens issued (`iat`) longer ago than this are refused.
    pub max_token_age: Option<Duration>,
    /// Leeway on `exp`, `nbf` and `iat`.
    pub clock_skew: Duration,
    /// JWKS location; `None` = from OIDC discovery.
    pub jwks_uri: Option<String>,
    /// CA bundle trusted for the issuer's TLS; `None` = the Mozilla roots.
    pub ca: Option<PathBuf>,
    /// Least time between two JWKS fetches caused by an unknown `kid`.
    pub jwks_refresh_min: Duration,
    /// Age after which the JWKS is fetched again on the next token.
    pub jwks_max_age: Duration,
    /// When the JWKS could not be refreshed for this long, tokens are
    /// refused (`503`) instead of checked against keys the issuer may have
    /// withdrawn.
    pub jwks_max_stale: Duration,
    /// Accepted JWT `typ` headers, lowercase, without `application/`
    /// (RFC 9068: `at+jwt`).
    pub accepted_token_types: Vec<String>,
}

/// The RFC 9068 access-token type.
pub const AT_JWT: &str = "at+jwt";

/// A `typ` value as compared: lowercase, `application/` dropped (RFC 7515
/// §4.1.9 allows both spellings).
pub fn normalise_typ(typ: &str) -> String {
    let t = typ.trim().to_ascii_lowercase();
    t.strip_prefix("application/")
        .map(str::to_owned)
        .unwrap_or(t)
}

/// Limits of the HTTP listeners (`mcp-http` and `serve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Time to receive a request's headers; also bounds idle keep-alive
    /// connections between requests.
    pub header_read_timeout: Duration,
    /// Time to receive a request's body.
    pub body_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (an
    /// open event stream is a request in flight; PINGs are not).
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections per remote address at most (behind a proxy every
    /// connection has the proxy's address: raise it to `max_connections`).
    pub max_connections_per_ip: usize,
    /// Requests handled at once; more get `503`.
    pub max_concurrent_requests: usize,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// `Host` values the MCP endpoint answers; empty = the host of
    /// `resource_url` plus loopback names.
    pub allowed_hosts: Vec<String>,
    /// Open MCP sessions per end user.
    pub max_mcp_sessions_per_user: usize,
    /// Allow `mcp-http` without TLS on a non-loopback address (a trusted
    /// reverse proxy terminates TLS in front of it).
    pub plaintext_behind_proxy: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_body_bytes: 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: 256,
            max_connections_per_ip: 64,
            max_concurrent_requests: 64,
            max_concurrent_streams: 32,
            shutdown_grace: Duration::from_secs(10),
            allowed_hosts: Vec::new(),
            max_mcp_sessions_per_user: 16,
            plaintext_behind_proxy: false,
        }
    }
}

/// Whether a URL may be used: `https://`, or `http://` on a loopback host
/// (a local test provider, or a reverse proxy on the same machine).
pub fn check_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|_| "must be an absolute URL".to_owned())?;
    let host = uri.host().ok_or("must be an absolute URL with a host")?;
    if uri.query().is_some() || text.contains('#') {
        return Err("must not have a query or fragment".into());
    }
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback(host) => Ok(uri),
        Some("http") => Err("must be https:// (http:// is allowed for loopback hosts only)".into()),
        _ => Err("must be an https:// URL".into()),
    }
}

/// `localhost`, `127.0.0.0/8` or `[::1]`.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn secs(o: &Obj<'_>, key: &str, default: u64, min: u64, max: u64) -> Duration {
    let v = o.opt_u64(key).unwrap_or(default);
    if v < min || v > max {
        o.error(key, format!("must be between {min} and {max}"));
    }
    Duration::from_secs(v.clamp(min, max))
}

fn count(o: &Obj<'_>, key: &str, default: u64, min: u64, max: u64) -> u64 {
    let v = o.opt_u64(key).unwrap_or(default);
    if v < min || v > max {
        o.error(key, format!("must be between {min} and {max}"));
    }
    v.clamp(min, max)
}

fn url(o: &Obj<'_>, key: &str, value: Option<String>) -> Option<String> {
    let value = value?;
    match check_url(&value) {
        Ok(_) => Some(value),
        Err(e) => {
            o.error(key, e);
            None
        }
    }
}

/// Upstream semantics: absent or 0 = 60 s, negative = no leeway.
fn clock_skew(o: &Obj<'_>) -> Duration {
    match o.raw("clock_skew_seconds") {
        None => Duration::from_secs(DEFAULT_CLOCK_SKEW),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => Duration::from_secs(DEFAULT_CLOCK_SKEW),
            Some(v) if v < 0 => Duration::ZERO,
            Some(v) if v <= 600 => Duration::from_secs(v.unsigned_abs()),
            _ => {
                o.error("clock_skew_seconds", "must be an integer of at most 600");
                Duration::from_secs(DEFAULT_CLOCK_SKEW)
            }
        },
        Some(other) => {
            o.error(
                "clock_skew_seconds",
                format!("expected an integer, found {}", kind(other)),
            );
            Duration::from_secs(DEFAULT_CLOCK_SKEW)
        }
    }
}

fn non_empty(o: &Obj<'_>, key: &str, value: Option<String>) -> Option<String> {
    match value {
        Some(v) if v.trim().is_empty() => {
            o.error(key, "must not be empty");
            None
        }
        v => v,
    }
}

/// Reads `oauth` from `root`, if present.
pub fn read_oauth(root: &Obj<'_>, base: &Path) -> Option<OAuthSettings> {
    let o = root.opt_obj("oauth")?;
    let issuer = o.str("issuer").and_then(|v| url(&o, "issuer", Some(v)));
    let audience = non_empty(&o, "audience", o.opt_str("audience"));
    let required_scopes = o.str_list("required_scopes");
    let user_claim =
        non_empty(&o, "user_claim", o.opt_str("user_claim")).unwrap_or_else(|| "sub".into());
    let groups_claim = non_empty(&o, "groups_claim", o.opt_str("groups_claim"));
    let max_token_age = match o.opt_u64("max_token_age_seconds") {
        None | Some(0) => None,
        Some(v) => Some(Duration::from_secs(v)),
    };
    let clock_skew = clock_skew(&o);
    let jwks_uri = url(&o, "jwks_uri", o.opt_str("jwks_uri"));
    let ca = o.opt_str("ca").map(|p| base.join(p));
    let jwks_refresh_min = secs(&o, "jwks_refresh_min_seconds", 30, 1, 3600);
    let jwks_max_age = secs(&o, "jwks_max_age_seconds", 3600, 60, 86_400);
    let jwks_max_stale = secs(&o, "jwks_max_stale_seconds", 21_600, 60, 7 * 86_400);
    if jwks_max_stale < jwks_max_age {
        o.error(
            "jwks_max_stale_seconds",
            "must be at least jwks_max_age_seconds",
        );
    }
    let accepted_token_types = token_types(&o);
    o.finish();
    Some(OAuthSettings {
        issuer: issuer?,
        audience,
        required_scopes,
        user_claim,
        groups_claim,
        max_token_age,
        clock_skew,
        jwks_uri,
        ca,
        jwks_refresh_min,
        jwks_max_age,
        jwks_max_stale,
        accepted_token_types,
    })
}

/// `accepted_token_types`; absent = `["at+jwt"]`. An empty list would
/// accept nothing, and a missing `typ` header is never accepted.
fn token_types(o: &Obj<'_>) -> Vec<String> {
    if o.raw("accepted_token_types").is_none() {
        return vec![AT_JWT.to_owned()];
    }
    let list: Vec<String> = o
        .str_list("accepted_token_types")
        .iter()
        .map(|t| normalise_typ(t))
        .collect();
    if list.is_empty() || list.iter().any(String::is_empty) {
        o.error(
            "accepted_token_types",
            "must list non-empty JWT typ values, e.g. [\"at+jwt\"]",
        );
    }
    list
}

/// Reads `http` from `root`; absent = defaults.
pub fn read_http(root: &Obj<'_>) -> HttpSettings {
    let d = HttpSettings::default();
    let Some(o) = root.opt_obj("http") else {
        return d;
    };
    let max_body_bytes = count(&o, "max_body_bytes", 1024 * 1024, 1024, 64 * 1024 * 1024);
    let settings = HttpSettings {
        max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(d.max_body_bytes),
        header_read_timeout: secs(&o, "header_read_timeout_seconds", 10, 1, 300),
        body_read_timeout: secs(&o, "body_read_timeout_seconds", 30, 1, 600),
        // Above the 15 s keep-alive comments of MCP event streams.
        idle_timeout: secs(&o, "idle_timeout_seconds", 120, 20, 3600),
        max_connections: usize::try_from(count(&o, "max_connections", 256, 1, 100_000))
            .unwrap_or(d.max_connections),
        max_connections_per_ip: usize::try_from(count(
            &o,
            "max_connections_per_ip",
            64,
            1,
            100_000,
        ))
        .unwrap_or(d.max_connections_per_ip),
        max_concurrent_requests: usize::try_from(count(
            &o,
            "max_concurrent_requests",
            64,
            1,
            100_000,
        ))
        .unwrap_or(d.max_concurrent_requests),
        max_concurrent_streams: u32::try_from(count(&o, "max_concurrent_streams", 32, 1, 1000))
            .unwrap_or(d.max_concurrent_streams),
        shutdown_grace: secs(&o, "shutdown_grace_seconds", 10, 0, 600),
        allowed_hosts: o.str_list("allowed_hosts"),
        max_mcp_sessions_per_user: usize::try_from(count(
            &o,
            "max_mcp_sessions_per_user",
            16,
            1,
            10_000,
        ))
        .unwrap_or(d.max_mcp_sessions_per_user),
        plaintext_behind_proxy: o.opt_bool("plaintext_behind_proxy").unwrap_or(false),
    };
    o.finish();
    settings
}

/// Reads `resource_url`: the public URL of the MCP endpoint.
pub fn read_resource_url(root: &Obj<'_>) -> Option<String> {
    url(root, "resource_url", root.opt_str("resource_url"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;

    const SIGNER: &str = r#""signer": {"url": "https://127.0.0.1:9443", "client_cert": "c",
        "client_key": "k", "ca": "ca"}, "audit_log": "a.log", "audit_key": "a.seed""#;

    #[test]
    fn network_sections_are_read_with_defaults_and_checked() {
        let cfg = BrokerConfig::from_text(
            &format!(
                r#"{{{SIGNER}, "listen": "127.0.0.1:8080",
                    "resource_url": "https://broker.example.com/mcp",
                    "oauth": {{"issuer": "https://idp.example.com/realms/ops",
                               "groups_claim": "groups", "clock_skew_seconds": -1,
                               "ca": "idp-ca.pem"}},
                    "http": {{"max_body_bytes": 65536, "allowed_hosts": ["broker.example.com"]}}}}"#
            ),
            Path::new("/etc/ib"),
        )
        .unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:8080".parse().ok());
        let oauth = cfg.oauth.unwrap();
        assert_eq!(oauth.user_claim, "sub");
        assert_eq!(oauth.clock_skew, Duration::ZERO);
        assert_eq!(oauth.jwks_refresh_min, Duration::from_secs(30));
        assert_eq!(oauth.jwks_max_stale, Duration::from_secs(21_600));
        assert_eq!(oauth.accepted_token_types, vec!["at+jwt".to_owned()]);
        assert_eq!(oauth.ca, Some(PathBuf::from("/etc/ib/idp-ca.pem")));
        assert_eq!(cfg.http.max_body_bytes, 65536);
        assert_eq!(
            cfg.http.max_connections,
            HttpSettings::default().max_connections
        );

        let e = BrokerConfig::from_text(
            &format!(
                r#"{{{SIGNER}, "listen": "localhost", "server_cert": "s.crt",
                    "resource_url": "http://broker.example.com/mcp",
                    "oauth": {{"issuer": "http://idp.example.com", "extra": 1,
                               "jwks_max_age_seconds": 600, "jwks_max_stale_seconds": 300,
                               "accepted_token_types": []}},
                    "http": {{"idle_timeout_seconds": 1}}}}"#
            ),
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "listen: must be ip:port",
            "server_key: server_cert and server_key go together",
            "resource_url: must be https://",
            "oauth.issuer: must be https://",
            "oauth.extra: unknown field",
            "oauth.jwks_max_stale_seconds: must be at least jwks_max_age_seconds",
            "oauth.accepted_token_types: must list non-empty",
            "http.idle_timeout_seconds: must be between",
        ] {
            assert!(e.contains(needle), "{needle} missing in:\n{e}");
        }
    }

    #[test]
    fn urls_must_be_https_unless_loopback() {
        assert!(check_url("https://idp.example.com/realms/x").is_ok());
        assert!(check_url("http://127.0.0.1:8080").is_ok());
        assert!(check_url("http://localhost:8080/mcp").is_ok());
        assert!(check_url("http://[::1]:8080/mcp").is_ok());
        for bad in [
            "http://idp.example.com",
            "ftp://127.0.0.1",
            "/relative",
            "https://x.example/?a=b",
            "https://x.example/#f",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
