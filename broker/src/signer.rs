//! The broker's view of the signer: the host list (cached, refreshed) and
//! certificate requests.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use hyper::Method;
use infrabroker_common::client::{ClientError, MtlsClient};
use infrabroker_common::wire::{HostsResponse, SignRequest, SignResponse};

use crate::api::ToolError;
use crate::config::SignerEndpoint;

/// Calls to the signer.
#[derive(Debug, Clone)]
pub struct SignerApi {
    client: MtlsClient,
}

/// Converts a client failure into the agent-facing error.
pub fn tool_error(e: ClientError) -> ToolError {
    match e {
        ClientError::Api { body, .. } => ToolError::Denied {
            code: body.reason_code.as_str().to_owned(),
            message: body.message,
        },
        other => ToolError::SignerUnreachable(other.to_string()),
    }
}

impl SignerApi {
    /// A client for `endpoint`.
    pub fn new(endpoint: &SignerEndpoint) -> Result<SignerApi, ClientError> {
        Ok(SignerApi {
            client: MtlsClient::new(
                &endpoint.url,
                &endpoint.ca,
                &endpoint.client_cert,
                &endpoint.client_key,
                endpoint.request_timeout,
            )?,
        })
    }

    /// `GET /v1/hosts`.
    pub async fn hosts(&self) -> Result<HostsResponse, ToolError> {
        self.client
            .call(Method::GET, "/v1/hosts", None::<&()>)
            .await
            .map_err(tool_error)
    }

    /// `POST /v1/sign`.
    pub async fn sign(&self, req: &SignRequest) -> Result<SignResponse, ToolError> {
        self.client
            .call(Method::POST, "/v1/sign", Some(req))
            .await
            .map_err(tool_error)
    }
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
