//! `broker serve`: the one-shot REST API over mTLS. `POST /v1/ssh_run`
//! takes what `ssh_execute` takes and answers with the same result shape.
//!
//! The caller is the client certificate's CN, and only a CN listed in
//! `rest_callers` gets anything done: the client CA may also issue operator
//! and other service certificates, and none of them may borrow the broker's
//! signer identity. A listed CN travels to the signer as the end user, with
//! its configured groups, so the signer's RBAC intersects the broker's
//! groups with the caller's and the control plane sees who really asked.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router, middleware};
use infrabroker_common::tls::{self, Peer, RejectHook, ServeOptions};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;

use super::limits::{self, BodyLimits};
use super::{HttpError, bind};
use crate::api::{Caller, ExecRequest, ToolError, Tools};
use crate::config::BrokerConfig;
use crate::engine::Engine;
use infrabroker_common::tls::shutdown_signal;

/// The body of `POST /v1/ssh_run`; unknown fields are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    host: String,
    command: String,
    #[serde(default)]
    sudo: bool,
    sudo_user: Option<String>,
    timeout_seconds: Option<u64>,
    #[serde(default)]
    dry_run: bool,
}

impl RunRequest {
    /// The same rules as the MCP tool's arguments.
    fn into_exec(self) -> Result<ExecRequest, ToolError> {
        if self.host.trim().is_empty() {
            return Err(ToolError::Invalid("host must not be empty".into()));
        }
        if self.command.is_empty() {
            return Err(ToolError::Invalid("command must not be empty".into()));
        }
        if let Some(t) = self.timeout_seconds
            && !(1..=3600).contains(&t)
        {
            return Err(ToolError::Invalid(
                "timeout_seconds must be between 1 and 3600".into(),
            ));
        }
        match &self.sudo_user {
            Some(_) if !self.sudo => {
                return Err(ToolError::Invalid("sudo_user requires sudo: true".into()));
            }
            Some(u) if u.is_empty() => {
                return Err(ToolError::Invalid("sudo_user must not be empty".into()));
            }
            _ => {}
        }
        Ok(ExecRequest {
            host: self.host,
            command: self.command,
            sudo: self.sudo,
            sudo_user: self.sudo_user,
            timeout: self.timeout_seconds.map(Duration::from_secs),
        })
    }
}

fn status_of(error: &ToolError) -> StatusCode {
    match error {
        ToolError::Denied { .. } => StatusCode::FORBIDDEN,
        ToolError::UnknownHost(_) => StatusCode::NOT_FOUND,
        ToolError::Invalid(_) => StatusCode::BAD_REQUEST,
        ToolError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        ToolError::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
        ToolError::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    }
}

fn failure(error: &ToolError) -> Response {
    limits::error(status_of(error), error.reason_code(), &error.to_string())
}

/// `rest_callers`: CN → groups.
type RestCallers = Arc<BTreeMap<String, Vec<String>>>;

/// The caller for `cn`, or the `403 caller_unknown` answer.
fn rest_caller(callers: &RestCallers, cn: &str) -> Result<Caller, Box<Response>> {
    match callers.get(cn) {
        Some(groups) => Ok(Caller {
            id: cn.to_owned(),
            end_user: Some(cn.to_owned()),
            end_user_groups: Some(groups.clone()),
        }),
        None => {
            tracing::warn!(cn, "REST call refused: the CN is not in rest_callers");
            Err(Box::new(limits::error(
                StatusCode::FORBIDDEN,
                "caller_unknown",
                &format!(
                    "{} is not listed in rest_callers",
                    infrabroker_common::display::escape(cn)
                ),
            )))
        }
    }
}

async fn ssh_run<T: Tools>(
    State(tools): State<Arc<T>>,
    Extension(peer): Extension<Peer>,
    Extension(callers): Extension<RestCallers>,
    body: Bytes,
) -> Response {
    let caller = match rest_caller(&callers, &peer.cn) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    let request = match serde_json::from_slice::<RunRequest>(&body) {
        Ok(r) => r,
        Err(e) => return failure(&ToolError::Invalid(e.to_string())),
    };
    let dry_run = request.dry_run;
    let exec = match request.into_exec() {
        Ok(x) => x,
        Err(e) => return failure(&e),
    };
    if dry_run {
        match tools.dry_run(&caller, exec).await {
            Ok(decision) => Json(json!({"dry_run": true, "decision": decision})).into_response(),
            Err(e) => failure(&e),
        }
    } else {
        match tools.execute(&caller, exec).await {
            Ok(result) => Json(result).into_response(),
            Err(e) => failure(&e),
        }
    }
}

/// A file route: the caller, the body read as the file tool's arguments by
/// `parse`, `run` for the answer.
async fn file_route<R, Fut>(
    callers: &RestCallers,
    peer: &Peer,
    body: &[u8],
    parse: fn(rmcp::model::JsonObject) -> Result<R, ToolError>,
    run: impl FnOnce(Caller, R) -> Fut,
) -> Response
where
    Fut: Future<Output = Result<crate::api::FileResult, ToolError>>,
{
    let caller = match rest_caller(callers, &peer.cn) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    let args = serde_json::from_slice(body)
        .map_err(|e| ToolError::Invalid(format!("the body must be a JSON object: {e}")));
    match args.and_then(parse) {
        Ok(req) => run(caller, req)
            .await
            .map_or_else(|e| failure(&e), |r| Json(r).into_response()),
        Err(e) => failure(&e),
    }
}

/// `POST /v1/put_file`: `ssh_put_file`'s arguments and result.
async fn put_file<T: Tools>(
    State(tools): State<Arc<T>>,
    Extension(peer): Extension<Peer>,
    Extension(callers): Extension<RestCallers>,
    body: Bytes,
) -> Response {
    let parse = crate::mcp::put_file_request;
    file_route(&callers, &peer, &body, parse, |caller, req| async move {
        tools.put_file(&caller, req).await
    })
    .await
}

/// `POST /v1/get_file`: `ssh_get_file`'s arguments and result.
async fn get_file<T: Tools>(
    State(tools): State<Arc<T>>,
    Extension(peer): Extension<Peer>,
    Extension(callers): Extension<RestCallers>,
    body: Bytes,
) -> Response {
    let parse = crate::mcp::get_file_request;
    file_route(&callers, &peer, &body, parse, |caller, req| async move {
        tools.get_file(&caller, req).await
    })
    .await
}

/// Runs `broker serve` until SIGTERM/SIGINT.
pub async fn run_serve(cfg: BrokerConfig) -> Result<(), HttpError> {
    let engine = Engine::start(cfg.clone()).await?;
    serve_rest(engine, &cfg, shutdown_signal()).await
}

/// Serves the REST API for `tools` over mTLS until `shutdown` resolves.
pub async fn serve_rest<T: Tools>(
    tools: Arc<T>,
    cfg: &BrokerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    let need =
        |what: &str| HttpError::Setup(format!("broker serve needs `{what}` in the configuration"));
    let addr = cfg.listen.ok_or_else(|| need("listen"))?;
    let cert = cfg
        .server_cert
        .as_ref()
        .ok_or_else(|| need("server_cert"))?;
    let key = cfg.server_key.as_ref().ok_or_else(|| need("server_key"))?;
    let client_ca = cfg.client_ca.as_ref().ok_or_else(|| need("client_ca"))?;
    let callers: RestCallers = Arc::new(
        cfg.rest_callers
            .clone()
            .ok_or_else(|| need("rest_callers"))?,
    );
    let tls_config = tls::server_config(cert, key, client_ca)?;
    let body_limits = BodyLimits {
        max_bytes: cfg.http.max_body_bytes,
        timeout: cfg.http.body_read_timeout,
    };
    let app = Router::new()
        .route("/v1/ssh_run", post(ssh_run::<T>))
        .route("/v1/put_file", post(put_file::<T>))
        .route("/v1/get_file", post(get_file::<T>))
        .with_state(tools)
        .layer(Extension(callers))
        .layer(middleware::from_fn_with_state(
            body_limits,
            limits::read_body,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::new(Semaphore::new(cfg.http.max_concurrent_requests)),
            limits::concurrency,
        ));
    let opts = ServeOptions {
        handshake_timeout: cfg.http.header_read_timeout,
        header_read_timeout: cfg.http.header_read_timeout,
        max_connections: cfg.http.max_connections,
        max_connections_per_ip: cfg.http.max_connections_per_ip,
        first_request_timeout: cfg.http.header_read_timeout,
        idle_timeout: cfg.http.idle_timeout,
        max_concurrent_streams: cfg.http.max_concurrent_streams,
        grace: cfg.http.shutdown_grace,
        ..ServeOptions::default()
    };
    let on_reject: RejectHook = Arc::new(|addr, reason| {
        tracing::info!(%addr, %reason, "TLS handshake refused");
    });
    let listener = bind(addr).await?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!("broker serve listening on https://{local}");
    tls::serve_mtls(
        listener,
        Arc::new(tls_config),
        app,
        opts,
        on_reject,
        shutdown,
    )
    .await;
    tracing::info!("broker serve stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<ExecRequest, ToolError> {
        serde_json::from_value::<RunRequest>(v)
            .map_err(|e| ToolError::Invalid(e.to_string()))
            .and_then(RunRequest::into_exec)
    }

    #[test]
    fn run_requests_follow_the_tool_rules() {
        let ok = parse(
            json!({"host": "web", "command": "id", "sudo": true, "sudo_user": "www",
            "timeout_seconds": 5}),
        )
        .unwrap();
        assert_eq!(ok.timeout, Some(Duration::from_secs(5)));
        for bad in [
            json!({"command": "id"}),
            json!({"host": " ", "command": "id"}),
            json!({"host": "web", "command": ""}),
            json!({"host": "web", "command": "id", "sudo_user": "x"}),
            json!({"host": "web", "command": "id", "timeout_seconds": 0}),
            json!({"host": "web", "command": "id", "user": "root"}),
        ] {
            assert_eq!(
                parse(bad.clone()).unwrap_err().reason_code(),
                "invalid_arguments",
                "{bad}"
            );
        }
        assert_eq!(
            status_of(&ToolError::UnknownHost("x".into())),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn only_listed_cns_become_callers_and_carry_their_groups() {
        let callers: RestCallers = Arc::new(BTreeMap::from([(
            "ci-runner".to_owned(),
            vec!["web".to_owned()],
        )]));
        let c = rest_caller(&callers, "ci-runner").unwrap();
        assert_eq!(c.end_user.as_deref(), Some("ci-runner"));
        assert_eq!(c.end_user_groups, Some(vec!["web".to_owned()]));
        let refused = rest_caller(&callers, "operator").unwrap_err();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }
}
