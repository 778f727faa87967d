//! The broker's view of the signer: the host list (cached, refreshed) and
//! certificate requests.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use hyper::Method;
use infrabroker_common::client::{ClientError, RawResponse};
use infrabroker_common::replicas::Replicas;
use infrabroker_common::wire::{HostsResponse, RevocationsResponse, SignRequest, SignResponse};

use crate::api::ToolError;
use crate::config::SignerEndpoint;

/// Calls to the signer: one client per replica of `signer.url`, with
/// sticky failover ([`Replicas`]).
#[derive(Debug, Clone)]
pub struct SignerApi {
    replicas: Replicas,
    /// Longest wait for an approval held by a control plane.
    approval_wait: std::time::Duration,
}

/// Converts a client failure into the agent-facing error. Where the
/// signer lives and what exactly failed (addresses, TLS names) goes to the
/// broker's log only.
pub fn tool_error(e: ClientError) -> ToolError {
    match e {
        ClientError::Api { body, .. } => ToolError::Denied {
            code: body.reason_code.as_str().to_owned(),
            message: body.message,
        },
        other => {
            tracing::warn!(error = %other, "signer call failed");
            let what = match other {
                ClientError::Protocol { .. } => "the signer sent an unexpected answer",
                _ => "no answer from the signer",
            };
            ToolError::SignerUnreachable(format!("{what}; the broker's log has the details"))
        }
    }
}

impl SignerApi {
    /// A client for `endpoint`.
    pub fn new(endpoint: &SignerEndpoint) -> Result<SignerApi, ClientError> {
        Ok(SignerApi {
            replicas: Replicas::new(
                &endpoint.urls,
                &endpoint.ca,
                &endpoint.client_cert,
                &endpoint.client_key,
                endpoint.request_timeout,
            )?,
            approval_wait: endpoint.approval_wait,
        })
    }

    /// The replica calls go to first (index into `signer.url`).
    pub fn preferred(&self) -> usize {
        self.replicas.preferred()
    }

    async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        self.replicas.call_raw(method, path, body).await
    }

    /// `GET /v1/revocations`: the signer's freezes in force.
    pub async fn revocations(&self) -> Result<RevocationsResponse, ToolError> {
        let raw = self
            .call_raw(Method::GET, "/v1/revocations", None)
            .await
            .map_err(tool_error)?;
        infrabroker_common::client::decode(raw).map_err(tool_error)
    }

    /// `GET /v1/hosts`.
    pub async fn hosts(&self) -> Result<HostsResponse, ToolError> {
        let raw = self
            .call_raw(Method::GET, "/v1/hosts", None)
            .await
            .map_err(tool_error)?;
        infrabroker_common::client::decode(raw).map_err(tool_error)
    }

    /// `POST /v1/sign`. A control plane may answer `202 {approval_id}`:
    /// the result is then polled at `GET /v1/sign/result/{id}` until it
    /// arrives, is refused, or `approval_wait` has passed.
    pub async fn sign(&self, req: &SignRequest) -> Result<SignResponse, ToolError> {
        let raw = self
            .call_raw(
                hyper::Method::POST,
                "/v1/sign",
                Some(serde_json::to_vec(req).map_err(|e| ToolError::Invalid(e.to_string()))?),
            )
            .await
            .map_err(tool_error)?;
        if raw.status != hyper::StatusCode::ACCEPTED {
            return answer(raw);
        }
        let held = serde_json::from_slice::<Held>(&raw.body)
            .ok()
            .filter(|h| {
                !h.approval_id.is_empty()
                    && h.approval_id.bytes().all(|b| b.is_ascii_alphanumeric())
            })
            .ok_or_else(|| {
                ToolError::SignerUnreachable("202 without a usable approval_id".into())
            })?;
        let id = &held.approval_id;
        tracing::info!(approval_id = %id, host = %req.host, tier = %held.tier, "waiting for an approval");
        if held.tier == "user_confirm"
            && let Some(confirm) = crate::confirm::current()
        {
            self.ask_user(&*confirm, req, &held).await;
        }
        self.await_approval(id).await
    }

    /// Puts a `user_confirm` request to the person using the MCP client
    /// and relays the answer. No answer in time decides nothing: the
    /// request then waits for an operator, or expires.
    async fn ask_user(
        &self,
        confirm: &dyn crate::confirm::Confirm,
        req: &SignRequest,
        held: &Held,
    ) {
        use crate::confirm::Prompt;
        let ttl = held
            .expires_in_seconds
            .map_or(self.approval_wait, std::time::Duration::from_secs);
        let within = ttl.min(self.approval_wait);
        let prompt = Prompt {
            approval_id: held.approval_id.clone(),
            request: req.clone(),
            within,
        };
        let id = &held.approval_id;
        let Ok(Some(answer)) = tokio::time::timeout(within, confirm.ask(prompt)).await else {
            tracing::info!(approval_id = %id, "the user gave no answer in time");
            return;
        };
        tracing::info!(approval_id = %id, answer = answer.as_str(), "the user answered");
        let body = serde_json::json!({"answer": answer.as_str()}).to_string();
        let path = format!("/v1/sign/confirm/{id}");
        match self
            .call_raw(Method::POST, &path, Some(body.into_bytes()))
            .await
        {
            Ok(raw) if raw.status.is_success() => {}
            // The poll that follows reports the approval's state.
            Ok(raw) => {
                let (code, message) = refusal(&raw).unwrap_or_default();
                tracing::warn!(approval_id = %id, %code, %message, "the control plane refused the user's answer");
            }
            Err(e) => {
                tracing::warn!(approval_id = %id, error = %e, "the user's answer could not be relayed");
            }
        }
    }

    /// Polls held request `id` with a pause doubling to 2 s until it is
    /// decided or `approval_wait` has passed. A lost poll or a 503 (the
    /// control plane's store or log down for a moment) decides nothing.
    async fn await_approval(&self, id: &str) -> Result<SignResponse, ToolError> {
        use hyper::StatusCode;
        use std::time::Duration;
        let deadline = tokio::time::Instant::now() + self.approval_wait;
        let mut pause = Duration::from_millis(200);
        loop {
            if tokio::time::Instant::now() + pause > deadline {
                return Err(ToolError::Denied {
                    code: "approval_expired".into(),
                    message: format!(
                        "approval {id} was not granted within {} s; ask an operator \
                         (broker-ctl approval allow {id}) and retry",
                        self.approval_wait.as_secs()
                    ),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
            let raw = match self
                .call_raw(hyper::Method::GET, &format!("/v1/sign/result/{id}"), None)
                .await
            {
                Ok(raw) => raw,
                // One lost poll is not a refusal; the deadline still holds.
                Err(e) => {
                    tracing::warn!(approval_id = %id, error = %e, "approval poll failed; retrying");
                    continue;
                }
            };
            match raw.status {
                StatusCode::ACCEPTED => continue,
                StatusCode::SERVICE_UNAVAILABLE => {
                    tracing::warn!(approval_id = %id, "approval poll answered 503; retrying");
                    continue;
                }
                StatusCode::FORBIDDEN | StatusCode::REQUEST_TIMEOUT | StatusCode::GONE => {
                    return Err(decided_against(&raw, id));
                }
                _ => return answer(raw),
            }
        }
    }
}

/// A control plane's `202`: the request is held.
#[derive(Debug, serde::Deserialize)]
struct Held {
    approval_id: String,
    #[serde(default)]
    tier: String,
    #[serde(default)]
    expires_in_seconds: Option<u64>,
}

/// A refusal's reason code and message. Not `ErrorBody`: a control plane
/// has reason codes of its own that the signer's enum does not list.
fn refusal(raw: &RawResponse) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(&raw.body).ok()?;
    let code = v.get("reason_code")?.as_str()?.to_owned();
    let message = v
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or("")
        .to_owned();
    Some((code, message))
}

/// A sign answer: the certificate, or the refusal with its code.
fn answer(raw: RawResponse) -> Result<SignResponse, ToolError> {
    if raw.status == hyper::StatusCode::TOO_MANY_REQUESTS {
        let after = raw.retry_after.clone().unwrap_or_else(|| "a while".into());
        let message = refusal(&raw).map(|r| r.1).unwrap_or_default();
        return Err(ToolError::Denied {
            code: "rate_limited".into(),
            message: format!("{message} (Retry-After: {after} s)"),
        });
    }
    if !raw.status.is_success()
        && let Some((code, message)) = refusal(&raw)
    {
        return Err(ToolError::Denied { code, message });
    }
    infrabroker_common::client::decode(raw).map_err(tool_error)
}

/// A held request that was denied (403), expired (408) or already used
/// (410), named by its approval id.
fn decided_against(raw: &RawResponse, id: &str) -> ToolError {
    use hyper::StatusCode;
    let (code, message) = refusal(raw).unwrap_or_default();
    let code = match raw.status {
        StatusCode::FORBIDDEN if code.is_empty() => "approval_denied".into(),
        StatusCode::REQUEST_TIMEOUT => "approval_expired".into(),
        StatusCode::GONE => "approval_used".into(),
        _ => code,
    };
    let message = if message.contains(id) {
        message
    } else {
        format!("approval {id}: {message}")
    };
    ToolError::Denied { code, message }
}

/// The last host view fetched from the signer.
#[derive(Debug)]
pub struct HostCache {
    api: SignerApi,
    view: RwLock<(Arc<HostsResponse>, Option<Instant>)>,
}

impl HostCache {
    /// An empty cache over `api`.
    pub fn new(api: SignerApi) -> HostCache {
        HostCache {
            api,
            view: RwLock::new((Arc::new(HostsResponse::new()), None)),
        }
    }

    /// The cached view (possibly empty or stale).
    pub fn current(&self) -> Arc<HostsResponse> {
        match self.view.read() {
            Ok(g) => g.0.clone(),
            Err(p) => p.into_inner().0.clone(),
        }
    }

    /// Fetches a fresh view. On failure the previous view stays and the
    /// error is returned, so a caller that needs freshness can fail closed.
    pub async fn refresh(&self) -> Result<Arc<HostsResponse>, ToolError> {
        let fresh = Arc::new(self.api.hosts().await?);
        match self.view.write() {
            Ok(mut g) => *g = (fresh.clone(), Some(Instant::now())),
            Err(p) => *p.into_inner() = (fresh.clone(), Some(Instant::now())),
        }
        Ok(fresh)
    }

    /// The signer client.
    pub fn api(&self) -> &SignerApi {
        &self.api
    }
}
