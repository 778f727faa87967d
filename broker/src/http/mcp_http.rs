//! `broker mcp-http`: MCP over Streamable HTTP (rmcp's server transport)
//! behind an OAuth 2.1 resource server.
//!
//! Every request to the MCP endpoint must carry a valid bearer token; the
//! token's user and groups become the [`Caller`] the engine acts for, and
//! travel to the signer as `end_user` / `end_user_groups`. The token itself
//! is dropped here. An MCP session is bound to the identity that opened it:
//! another user presenting its id is refused (`403`), and the same user
//! whose groups changed is told the session is gone (`404`, so clients open
//! a new one under the new groups).
//!
//! When a user's last MCP session ends — deleted by the client, closed by
//! rmcp for idleness, or outlived by the token that proved the user (its
//! `exp` plus the leeway, unless a later token extended it) — the user's
//! SSH sessions are closed too, instead of waiting for the idle reaper: an
//! open chain must not outlast the authentication that opened it.
//!
//! rmcp builds one handler per session (or per request for stateless
//! protocol versions) from a factory that takes no arguments; the caller
//! reaches it through a task-local set around the inner service, so a
//! handler can only ever be built inside an authenticated request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper::Uri;
use infrabroker_common::tls;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{
    SessionManager as _, StreamableHttpServerConfig, StreamableHttpService,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::jwks::KeySource;
use super::limits::{self, BodyLimits};
use super::listen::{self, RemoteAddr};
use super::oauth::{AuthError, Verifier};
use super::settings::{HttpSettings, OAuthSettings, check_url, is_loopback};
use super::{HttpError, bind};
use crate::api::{Caller, Tools};
use crate::config::BrokerConfig;
use crate::engine::Engine;
use crate::mcp::BrokerMcp;
use infrabroker_common::tls::shutdown_signal;

const SESSION_HEADER: &str = "mcp-session-id";
const PRM_PATH: &str = "/.well-known/oauth-protected-resource";
/// Comments on idle event streams keep proxies and the idle timeout happy.
const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often bindings of ended or expired sessions are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(5);

tokio::task_local! {
    /// The authenticated caller of the request being served.
    static CALLER: Caller;
}

/// An MCP session's owner and how long its proof of identity holds.
struct Binding {
    caller: Caller,
    /// Latest `exp` (+ leeway) of the tokens presented with the session.
    valid_until: u64,
}

/// Shared state of the bearer middleware.
struct Guard {
    verifier: Verifier,
    /// Value of the `resource_metadata` parameter of `WWW-Authenticate`.
    metadata_url: String,
    /// Session id → the caller that opened it.
    sessions: Mutex<HashMap<String, Binding>>,
    session_manager: Arc<LocalSessionManager>,
    max_sessions_per_user: usize,
    /// Closes the SSH sessions of a user whose last MCP session ended.
    close_user: Box<dyn Fn(Caller) + Send + Sync>,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Guard {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Binding>> {
        match self.sessions.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// `401`/`403`/`503` with the RFC 6750 / RFC 9728 challenge.
    fn refuse(&self, error: &AuthError, peer: Option<RemoteAddr>) -> Response {
        let peer = peer.map(|p| p.0.to_string()).unwrap_or_default();
        tracing::info!(%peer, reason = %error, "request refused by the bearer check");
        let (status, challenge, code) = match error {
            AuthError::Missing => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer resource_metadata=\"{}\"", self.metadata_url),
                "unauthorized",
            ),
            AuthError::Scope => (
                StatusCode::FORBIDDEN,
                format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\"",
                    self.verifier.settings().required_scopes.join(" "),
                    self.metadata_url
                ),
                "insufficient_scope",
            ),
            AuthError::KeysUnavailable => {
                let body = json!({"error": "temporarily_unavailable",
                    "error_description": error.to_string()});
                return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            }
            other => (
                StatusCode::UNAUTHORIZED,
                format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\", resource_metadata=\"{}\"",
                    other.to_string().replace(['"', '\\'], "'"),
                    self.metadata_url
                ),
                "invalid_token",
            ),
        };
        let body = json!({"error": code, "error_description": error.to_string()});
        let mut resp = (status, Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }

    /// The refusal, if `caller` may not use session `id`.
    /// A later token of the owner extends the session's validity.
    fn check_binding(&self, id: &str, caller: &Caller, valid_until: u64) -> Option<Response> {
        let bound = {
            let mut map = self.sessions();
            map.get_mut(id).map(|b| {
                if b.caller == *caller {
                    b.valid_until = b.valid_until.max(valid_until);
                }
                b.caller.clone()
            })
        };
        match bound {
            Some(owner) if owner == *caller => None,
            Some(owner) if owner.end_user == caller.end_user => Some(limits::error(
                StatusCode::NOT_FOUND,
                "session_stale",
                "your groups changed since this MCP session was opened; start a new session",
            )),
            Some(_) => {
                tracing::warn!(
                    user = caller.id,
                    "refused: MCP session id of another user presented"
                );
                Some(limits::error(
                    StatusCode::FORBIDDEN,
                    "session_not_yours",
                    "this MCP session belongs to another user",
                ))
            }
            None => Some(limits::error(
                StatusCode::NOT_FOUND,
                "session_unknown",
                "unknown MCP session; start a new session",
            )),
        }
    }

    /// Binds a freshly created session, or closes it and returns the
    /// refusal when the user already has too many.
    async fn bind(&self, id: String, caller: Caller, valid_until: u64) -> Option<Response> {
        let refused = {
            let mut map = self.sessions();
            let open = map
                .values()
                .filter(|b| b.caller.end_user == caller.end_user)
                .count();
            if open >= self.max_sessions_per_user {
                true
            } else {
                map.insert(
                    id.clone(),
                    Binding {
                        caller,
                        valid_until,
                    },
                );
                false
            }
        };
        if refused {
            let _ = self.session_manager.close_session(&Arc::from(id)).await;
            return Some(limits::error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_sessions",
                &format!(
                    "you already have {} open MCP sessions; close one first",
                    self.max_sessions_per_user
                ),
            ));
        }
        None
    }

    /// Drops bindings whose session rmcp has closed (idle, deleted), and
    /// closes sessions whose token expired; then [`Guard::ended`].
    async fn prune(&self) {
        let now = now_secs();
        let ids: Vec<(String, bool)> = self
            .sessions()
            .iter()
            .map(|(id, b)| (id.clone(), now > b.valid_until))
            .collect();
        let mut gone = Vec::new();
        for (id, expired) in ids {
            let key: Arc<str> = Arc::from(id.as_str());
            let alive = matches!(self.session_manager.has_session(&key).await, Ok(true));
            if alive && expired {
                tracing::info!(session = %id, "MCP session closed: its token expired");
                let _ = self.session_manager.close_session(&key).await;
            }
            if (!alive || expired)
                && let Some(b) = self.sessions().remove(&id)
            {
                gone.push(b.caller);
            }
        }
        self.ended(gone);
    }

    /// Closes the SSH sessions of each of `callers` who has no MCP session
    /// left (another open MCP session of the same user keeps them).
    fn ended(&self, callers: Vec<Caller>) {
        for caller in callers {
            let left = self
                .sessions()
                .values()
                .any(|b| b.caller.end_user == caller.end_user);
            if !left {
                (self.close_user)(caller);
            }
        }
    }
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The bearer middleware in front of the MCP endpoint.
async fn authenticate(State(guard): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<RemoteAddr>().copied();
    let verified = match bearer(&req) {
        None => Err(AuthError::Missing),
        Some(token) => guard.verifier.verify(token).await,
    };
    let identity = match verified {
        Ok(identity) => identity,
        Err(e) => return guard.refuse(&e, peer),
    };
    let valid_until = identity.valid_until;
    let caller = Caller {
        id: identity.user.clone(),
        end_user: Some(identity.user),
        end_user_groups: identity.groups,
    };
    let session = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(id) = &session
        && let Some(resp) = guard.check_binding(id, &caller, valid_until)
    {
        return resp;
    }
    // The token has served its purpose: nothing behind this point sees it.
    req.headers_mut().remove(header::AUTHORIZATION);
    let deleting = req.method() == Method::DELETE;
    let resp = CALLER.scope(caller.clone(), next.run(req)).await;
    match (&session, resp.headers().get(SESSION_HEADER)) {
        (None, Some(created)) => {
            let Ok(id) = created.to_str() else {
                return resp;
            };
            if let Some(refusal) = guard.bind(id.to_owned(), caller, valid_until).await {
                return refusal;
            }
        }
        (Some(id), _) if deleting && resp.status().is_success() => {
            let removed = guard.sessions().remove(id);
            guard.ended(removed.map(|b| b.caller).into_iter().collect());
        }
        _ => {}
    }
    resp
}

/// Where the protected-resource metadata of `resource` lives (RFC 9728
/// §3.1: the well-known path, then the resource's own path).
fn metadata_url(resource: &Uri) -> String {
    let origin = format!(
        "{}://{}",
        resource.scheme_str().unwrap_or("https"),
        resource.authority().map_or("", |a| a.as_str())
    );
    match resource.path() {
        "" | "/" => format!("{origin}{PRM_PATH}"),
        path => format!("{origin}{PRM_PATH}{path}"),
    }
}

/// `Host` values rmcp accepts: configured, else the resource's host (with
/// and without port) and loopback names.
fn allowed_hosts(resource: &Uri, http: &HttpSettings) -> Vec<String> {
    if !http.allowed_hosts.is_empty() {
        return http.allowed_hosts.clone();
    }
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(String::from)
        .collect();
    if let Some(authority) = resource.authority() {
        hosts.push(authority.host().to_owned());
        hosts.push(authority.as_str().to_owned());
    }
    hosts
}

/// Runs `broker mcp-http` until SIGTERM/SIGINT.
pub async fn run_mcp_http(cfg: BrokerConfig) -> Result<(), HttpError> {
    let engine = Engine::start(cfg.clone()).await?;
    serve_mcp_http(engine, &cfg, shutdown_signal()).await
}

/// Serves MCP over Streamable HTTP for `tools` until `shutdown` resolves.
pub async fn serve_mcp_http<T: Tools>(
    tools: Arc<T>,
    cfg: &BrokerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    let Setup {
        addr,
        oauth,
        resource_url,
        resource,
        tls,
    } = setup(cfg)?;

    let keys = KeySource::new(&oauth)?;
    let first_fetch = keys.clone();
    tokio::spawn(async move { first_fetch.refresh_once().await });

    let mut session_manager = LocalSessionManager::default();
    session_manager.session_config.keep_alive =
        Some(cfg.http.idle_timeout.max(Duration::from_secs(300)));
    let session_manager = Arc::new(session_manager);
    let mcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(allowed_hosts(&resource, &cfg.http))
        .with_max_request_body_bytes(cfg.http.max_body_bytes)
        .with_sse_keep_alive(Some(SSE_KEEP_ALIVE));
    let cancel = mcp_config.cancellation_token.clone();
    let factory_tools = tools.clone();
    let service = StreamableHttpService::new(
        move || {
            CALLER
                .try_with(|caller| BrokerMcp::new(factory_tools.clone(), caller.clone()))
                .map_err(|_| std::io::Error::other("no authenticated caller for this MCP handler"))
        },
        session_manager.clone(),
        mcp_config,
    );

    let guard = Arc::new(Guard {
        verifier: Verifier::new(oauth.clone(), &resource_url, keys),
        metadata_url: metadata_url(&resource),
        sessions: Mutex::new(HashMap::new()),
        session_manager,
        max_sessions_per_user: cfg.http.max_mcp_sessions_per_user,
        close_user: close_user(tools),
    });
    spawn_pruner(&guard);

    let body_limits = BodyLimits {
        max_bytes: cfg.http.max_body_bytes,
        timeout: cfg.http.body_read_timeout,
    };
    let mcp_path = mcp_path(&resource);
    let mcp = Router::new()
        .route_service(&mcp_path, service)
        .layer(middleware::from_fn_with_state(
            body_limits,
            limits::read_body,
        ))
        .layer(middleware::from_fn_with_state(guard.clone(), authenticate));
    let public = metadata_routes(&resource_url, &oauth, &mcp_path);
    let app = mcp.merge(public).layer(middleware::from_fn_with_state(
        Arc::new(Semaphore::new(cfg.http.max_concurrent_requests)),
        limits::concurrency,
    ));

    let listener = bind(addr).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        "broker mcp-http listening on {scheme}://{}{mcp_path} (resource {resource_url}, issuer {})",
        listener.local_addr().unwrap_or(addr),
        oauth.issuer
    );
    let stop = drain_after(shutdown, cfg.http.shutdown_grace, move || cancel.cancel());
    listen::serve(listener, tls, app, &cfg.http, stop).await;
    tracing::info!("broker mcp-http stopped");
    Ok(())
}

/// The path the MCP endpoint is served on: the resource URL's.
fn mcp_path(resource: &Uri) -> String {
    match resource.path() {
        "" => "/".to_owned(),
        p => p.to_owned(),
    }
}

/// What [`Guard`] runs when a user's last MCP session ends: close their
/// SSH sessions.
fn close_user<T: Tools>(tools: Arc<T>) -> Box<dyn Fn(Caller) + Send + Sync> {
    Box::new(move |caller| {
        let t = tools.clone();
        tokio::spawn(async move { t.close_sessions_of(&caller).await });
    })
}

/// Resolves when `shutdown` does. In-flight calls then get most of the
/// `grace` period to finish; after that `end_streams` ends the event
/// streams and sessions still open, so the drain completes in time.
async fn drain_after(
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    end_streams: impl FnOnce() + Send + 'static,
) {
    shutdown.await;
    tokio::spawn(async move {
        tokio::time::sleep(grace.mul_f32(0.75)).await;
        end_streams();
    });
}

/// What `mcp-http` needs from the configuration, checked.
struct Setup {
    addr: std::net::SocketAddr,
    oauth: OAuthSettings,
    resource_url: String,
    resource: Uri,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// The listen address, OAuth settings, resource URL and TLS, refusing
/// plain HTTP where bearer tokens would cross the network in clear.
fn setup(cfg: &BrokerConfig) -> Result<Setup, HttpError> {
    let missing = |what: &str| {
        HttpError::Setup(format!(
            "broker mcp-http needs `{what}` in the configuration"
        ))
    };
    let addr = cfg.listen.ok_or_else(|| missing("listen"))?;
    let oauth = cfg.oauth.clone().ok_or_else(|| missing("oauth"))?;
    if oauth.groups_claim.is_none() {
        tracing::warn!(
            "oauth.groups_claim is not set: no per-user RBAC, every authenticated user \
             reaches everything this broker can"
        );
    }
    let resource_url = cfg
        .resource_url
        .clone()
        .ok_or_else(|| missing("resource_url"))?;
    let resource =
        check_url(&resource_url).map_err(|e| HttpError::Setup(format!("resource_url {e}")))?;
    let tls = server_tls(cfg)?;
    if tls.is_none() && !addr.ip().is_loopback() && !cfg.http.plaintext_behind_proxy {
        return Err(HttpError::Setup(format!(
            "refusing plain HTTP on non-loopback {addr}: bearer tokens would cross the network \
             in clear. Set server_cert/server_key, listen on loopback behind a TLS proxy, or set \
             http.plaintext_behind_proxy"
        )));
    }
    if resource.scheme_str() == Some("http") && !is_loopback(resource.host().unwrap_or("")) {
        return Err(HttpError::Setup("resource_url must be https://".into()));
    }
    Ok(Setup {
        addr,
        oauth,
        resource_url,
        resource,
        tls,
    })
}

/// The listener's TLS configuration (TLS 1.3, h2 and http/1.1) when
/// `server_cert` and `server_key` are set.
fn server_tls(cfg: &BrokerConfig) -> Result<Option<Arc<rustls::ServerConfig>>, HttpError> {
    let (Some(cert), Some(key)) = (&cfg.server_cert, &cfg.server_key) else {
        return Ok(None);
    };
    let mut config = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| HttpError::Setup(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(tls::load_certs(cert)?, tls::load_key(key)?)
        .map_err(|e| HttpError::Setup(format!("TLS: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// Drops idle MCP sessions every [`PRUNE_EVERY`] while `guard` lives.
fn spawn_pruner(guard: &Arc<Guard>) {
    let pruner = Arc::downgrade(guard);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        loop {
            tick.tick().await;
            let Some(g) = pruner.upgrade() else { break };
            g.prune().await;
        }
    });
}

/// The unauthenticated RFC 9728 protected-resource metadata, at the well-
/// known path and (for an MCP endpoint below `/`) at its path-suffixed form.
fn metadata_routes(resource_url: &str, oauth: &OAuthSettings, mcp_path: &str) -> Router {
    let mut prm = json!({
        "resource": resource_url,
        "authorization_servers": [oauth.issuer],
        "bearer_methods_supported": ["header"],
        "resource_name": "infrabroker",
    });
    if !oauth.required_scopes.is_empty() {
        prm["scopes_supported"] = json!(oauth.required_scopes);
    }
    let prm = Arc::new(prm);
    let prm_handler = move || {
        let prm = prm.clone();
        async move { Json(Value::clone(&prm)) }
    };
    let mut public = Router::new().route(PRM_PATH, get(prm_handler.clone()));
    if mcp_path != "/" {
        public = public.route(&format!("{PRM_PATH}{mcp_path}"), get(prm_handler));
    }
    public
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_url_follows_rfc_9728() {
        let u: Uri = "https://broker.example.com/mcp".parse().unwrap();
        assert_eq!(
            metadata_url(&u),
            "https://broker.example.com/.well-known/oauth-protected-resource/mcp"
        );
        let u: Uri = "http://127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            metadata_url(&u),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource"
        );
    }
}
