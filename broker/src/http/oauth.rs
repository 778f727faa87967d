//! Bearer-token validation of the OAuth 2.1 resource server: a JWT access
//! token is checked locally (signature against the issuer's JWKS, then
//! `iss`, `aud`, `exp`, `nbf`, `iat`, scopes, user and groups claims) and
//! becomes the end user the broker acts for. The token itself goes no
//! further than this module.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use infrabroker_common::names::{is_identity, is_name as is_group};
use serde_json::{Map, Value};

use super::jwks::{KeySource, Lookup};
use super::jws::{JwsError, Unverified};
use super::settings::{OAuthSettings, normalise_typ};

/// The end user a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Value of the user claim.
    pub user: String,
    /// Value of the groups claim; `None` when no groups claim is configured.
    pub groups: Option<Vec<String>>,
    /// The token's `exp` plus the clock leeway: after this (seconds since
    /// the epoch) the identity is no longer proven.
    pub valid_until: u64,
}

/// Why a request is not authenticated. The sentence is safe to send back
/// in `error_description`: it says which rule failed, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// The JWS layer refused the token.
    #[error("{0}")]
    Jws(#[from] JwsError),
    /// The token names a key the issuer does not publish.
    #[error("unknown signing key")]
    UnknownKey,
    /// The payload is not a JSON object.
    #[error("malformed claims")]
    Claims,
    /// The `typ` header is missing or not an accepted access-token type.
    #[error("not an access token (typ)")]
    TokenType,
    /// The token carries ID-token claims (`nonce`, `at_hash`, `c_hash`,
    /// `typ: ID`): an ID token is not an access token for this resource.
    #[error("an ID token is not an access token")]
    IdToken,
    /// `iss` differs from the configured issuer.
    #[error("wrong issuer")]
    Issuer,
    /// `aud` does not name this resource.
    #[error("wrong audience")]
    Audience,
    /// `exp` is missing or past.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is missing or older than `max_token_age_seconds`.
    #[error("token too old")]
    TooOld,
    /// A required claim is absent or not of the expected type.
    #[error("claim {0:?} missing or invalid")]
    Claim(String),
    /// The token lacks a required scope (`403 insufficient_scope`).
    #[error("insufficient scope")]
    Scope,
    /// The issuer's keys cannot be fetched (`503`).
    #[error("the authorization server's keys are unavailable")]
    KeysUnavailable,
}

impl AuthError {
    /// Whether this is the client's fault (401/403) rather than ours (503).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, AuthError::KeysUnavailable)
    }
}

/// Validates bearer tokens for one issuer and audience.
#[derive(Debug)]
pub struct Verifier {
    settings: OAuthSettings,
    audience: String,
    keys: Arc<KeySource>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A NumericDate claim: integer or fractional seconds, never negative.
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| AuthError::Claim(name.into())),
        Some(_) => Err(AuthError::Claim(name.into())),
    }
}

/// A claim by exact name, or else by dotted path (`realm_access.roles`).
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for part in parts {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

impl Verifier {
    /// A verifier whose expected audience is `oauth.audience`, else
    /// `resource_url`.
    pub fn new(settings: OAuthSettings, resource_url: &str, keys: Arc<KeySource>) -> Verifier {
        let audience = settings
            .audience
            .clone()
            .unwrap_or_else(|| resource_url.to_owned());
        Verifier {
            settings,
            audience,
            keys,
        }
    }

    /// The configured settings.
    pub fn settings(&self) -> &OAuthSettings {
        &self.settings
    }

    /// Checks `token` completely; the first failed rule is the answer.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let jws = Unverified::parse(token)?;
        self.check_type(jws.typ.as_deref())?;
        let key = match self.keys.key(&jws.kid).await {
            Lookup::Found(key) => key,
            Lookup::Unknown => return Err(AuthError::UnknownKey),
            Lookup::Unavailable(reason) => {
                tracing::error!(%reason, "cannot validate tokens: the issuer's keys are unavailable");
                return Err(AuthError::KeysUnavailable);
            }
        };
        let payload = jws.verify(&key)?;
        let claims: Map<String, Value> =
            serde_json::from_slice(&payload).map_err(|_| AuthError::Claims)?;
        self.check_claims(&claims, now())
    }

    /// RFC 9068 §4: the `typ` header must name an access-token type
    /// (`at+jwt` unless configured otherwise). Checked before any key is
    /// looked up, like `alg`.
    fn check_type(&self, typ: Option<&str>) -> Result<(), AuthError> {
        let typ = typ.map(normalise_typ).ok_or(AuthError::TokenType)?;
        if self.settings.accepted_token_types.contains(&typ) {
            Ok(())
        } else {
            Err(AuthError::TokenType)
        }
    }

    /// The claim rules, at time `now` (seconds since the epoch).
    fn check_claims(&self, claims: &Map<String, Value>, now: u64) -> Result<Identity, AuthError> {
        let s = &self.settings;
        // An ID token says who logged in to a client; it is not a grant to
        // this resource, whatever its `aud` and `typ` header say.
        let id_token_typ = claims
            .get("typ")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("id"));
        if id_token_typ
            || ["nonce", "at_hash", "c_hash"]
                .iter()
                .any(|c| claims.contains_key(*c))
        {
            return Err(AuthError::IdToken);
        }
        let skew = s.clock_skew.as_secs();
        if claims.get("iss").and_then(Value::as_str) != Some(s.issuer.as_str()) {
            return Err(AuthError::Issuer);
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == self.audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(&self.audience)),
            _ => false,
        };
        if !audience_ok {
            return Err(AuthError::Audience);
        }
        let exp = time_claim(claims, "exp")?.ok_or(AuthError::Expired)?;
        if now > exp.saturating_add(skew) {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = time_claim(claims, "nbf")?
            && nbf > now.saturating_add(skew)
        {
            return Err(AuthError::NotYetValid);
        }
        let iat = time_claim(claims, "iat")?;
        if let Some(iat) = iat
            && iat > now.saturating_add(skew)
        {
            return Err(AuthError::NotYetValid);
        }
        if let Some(max_age) = s.max_token_age {
            let iat = iat.ok_or(AuthError::TooOld)?;
            if now.saturating_sub(iat) > max_age.as_secs().saturating_add(skew) {
                return Err(AuthError::TooOld);
            }
        }
        if !s.required_scopes.is_empty() {
            let granted = granted_scopes(claims);
            if !s
                .required_scopes
                .iter()
                .all(|r| granted.contains(&r.as_str()))
            {
                return Err(AuthError::Scope);
            }
        }
        let user = claim(claims, &s.user_claim)
            .and_then(Value::as_str)
            .filter(|u| is_identity(u))
            .ok_or_else(|| AuthError::Claim(s.user_claim.clone()))?
            .to_owned();
        let groups = match &s.groups_claim {
            None => None,
            Some(name) => Some(groups(claims, name).ok_or_else(|| AuthError::Claim(name.clone()))?),
        };
        Ok(Identity {
            user,
            groups,
            valid_until: exp.saturating_add(skew),
        })
    }
}

/// `scope` (RFC 9068, space-separated) or `scp` (Entra ID: string; Okta:
/// list).
fn granted_scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split(' ').filter(|x| !x.is_empty())),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

/// A list of valid group names, sorted and without repeats (so the same
/// groups always compare equal); anything else fails closed.
fn groups(claims: &Map<String, Value>, name: &str) -> Option<Vec<String>> {
    let Value::Array(items) = claim(claims, name)? else {
        return None;
    };
    let mut groups: Vec<String> = items
        .iter()
        .map(|g| g.as_str().filter(|g| is_group(g)).map(str::to_owned))
        .collect::<Option<_>>()?;
    groups.sort();
    groups.dedup();
    Some(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn verifier(edit: impl FnOnce(&mut OAuthSettings)) -> Verifier {
        let mut s = OAuthSettings {
            issuer: "https://idp.example".into(),
            audience: None,
            required_scopes: vec![],
            user_claim: "sub".into(),
            groups_claim: Some("groups".into()),
            max_token_age: None,
            clock_skew: Duration::from_secs(60),
            jwks_uri: None,
            ca: None,
            jwks_refresh_min: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(3600),
            jwks_max_stale: Duration::from_secs(21_600),
            accepted_token_types: vec!["at+jwt".into()],
        };
        edit(&mut s);
        let keys = KeySource::new(&s).unwrap();
        Verifier::new(s, "https://broker.example/mcp", keys)
    }

    fn claims(patch: Value) -> Map<String, Value> {
        let mut c = json!({
            "iss": "https://idp.example", "aud": "https://broker.example/mcp",
            "sub": "alice", "groups": ["a"], "iat": 1000, "exp": 2000
        });
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c.as_object().unwrap().clone()
    }

    #[test]
    fn each_claim_rule_refuses_on_its_own() {
        let v = verifier(|s| s.max_token_age = Some(Duration::from_secs(300)));
        let ok = v.check_claims(&claims(json!({})), 1100).unwrap();
        assert_eq!(
            ok,
            Identity {
                user: "alice".into(),
                groups: Some(vec!["a".into()]),
                valid_until: 2060,
            }
        );
        let rows = [
            (json!({"iss": "https://evil"}), 1100, AuthError::Issuer),
            (json!({"aud": "https://other"}), 1100, AuthError::Audience),
            (json!({"aud": ["x", "y"]}), 1100, AuthError::Audience),
            (json!({"exp": null}), 1100, AuthError::Expired),
            (json!({}), 2061, AuthError::Expired),
            (json!({"nbf": 1200}), 1100, AuthError::NotYetValid),
            (json!({"iat": 1200}), 1100, AuthError::NotYetValid),
            (json!({}), 1361, AuthError::TooOld),
            (json!({"iat": null}), 1100, AuthError::TooOld),
            (
                json!({"groups": null}),
                1100,
                AuthError::Claim("groups".into()),
            ),
            (
                json!({"groups": "a"}),
                1100,
                AuthError::Claim("groups".into()),
            ),
            (
                json!({"groups": ["a b"]}),
                1100,
                AuthError::Claim("groups".into()),
            ),
            (json!({"sub": ""}), 1100, AuthError::Claim("sub".into())),
            (json!({"sub": "a\nb"}), 1100, AuthError::Claim("sub".into())),
            (json!({"exp": "2000"}), 1100, AuthError::Claim("exp".into())),
            (json!({"nonce": "n-0S6_WzA2Mj"}), 1100, AuthError::IdToken),
            (
                json!({"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"}),
                1100,
                AuthError::IdToken,
            ),
            (
                json!({"c_hash": "LDktKdoQak3Pk0cnXxCltA"}),
                1100,
                AuthError::IdToken,
            ),
            (json!({"typ": "ID"}), 1100, AuthError::IdToken),
        ];
        for (patch, at, want) in rows {
            assert_eq!(
                v.check_claims(&claims(patch.clone()), at),
                Err(want),
                "{patch}"
            );
        }
        let sorted = v.check_claims(&claims(json!({"groups": ["b", "a", "b"]})), 1100);
        assert_eq!(sorted.unwrap().groups, Some(vec!["a".into(), "b".into()]));
        // Within the leeway.
        assert!(v.check_claims(&claims(json!({"iat": 1900})), 2059).is_ok());
        assert!(v.check_claims(&claims(json!({})), 1359).is_ok());
        assert!(v.check_claims(&claims(json!({"nbf": 1150})), 1100).is_ok());
        assert!(
            v.check_claims(
                &claims(json!({"aud": ["x", "https://broker.example/mcp"]})),
                1100
            )
            .is_ok()
        );
    }

    #[test]
    fn only_access_token_types_are_accepted() {
        let v = verifier(|_| {});
        assert!(v.check_type(Some("at+jwt")).is_ok());
        assert!(v.check_type(Some("application/AT+JWT")).is_ok());
        for bad in [
            None,
            Some("JWT"),
            Some("jwt"),
            Some(""),
            Some("id_token+jwt"),
        ] {
            assert_eq!(v.check_type(bad), Err(AuthError::TokenType), "{bad:?}");
        }
        // Keycloak and Entra put `JWT` in the header: an operator may opt in.
        let v = verifier(|s| s.accepted_token_types = vec!["at+jwt".into(), "jwt".into()]);
        assert!(v.check_type(Some("JWT")).is_ok());
        assert_eq!(v.check_type(None), Err(AuthError::TokenType));
        // Keycloak marks its access tokens `typ: Bearer` in the payload.
        assert!(
            v.check_claims(&claims(json!({"typ": "Bearer"})), 1100)
                .is_ok()
        );
    }

    #[test]
    fn scopes_audience_and_claim_names_follow_the_settings() {
        let v = verifier(|s| {
            s.required_scopes = vec!["mcp".into()];
            s.audience = Some("api://broker".into());
            s.user_claim = "preferred_username".into();
            s.groups_claim = Some("realm_access.roles".into());
        });
        let c = claims(json!({
            "aud": "api://broker", "preferred_username": "alice@example",
            "realm_access": {"roles": ["ops"]}, "scp": "openid mcp"
        }));
        assert_eq!(
            v.check_claims(&c, 1100).unwrap(),
            Identity {
                user: "alice@example".into(),
                groups: Some(vec!["ops".into()]),
                valid_until: 2060,
            }
        );
        let c = claims(json!({
            "aud": "api://broker", "preferred_username": "alice@example",
            "realm_access": {"roles": []}, "scope": "openid"
        }));
        assert_eq!(v.check_claims(&c, 1100), Err(AuthError::Scope));
        let v = verifier(|s| s.groups_claim = None);
        assert_eq!(
            v.check_claims(&claims(json!({"groups": null})), 1100)
                .unwrap()
                .groups,
            None
        );
    }
}
