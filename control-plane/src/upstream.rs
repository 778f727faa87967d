//! The control plane's mTLS client toward the signer (one client per
//! signer replica, with sticky failover: [`Replicas`]) with the
//! `X-On-Behalf-Of` header that `GET /v1/hosts` needs from a forwarder;
//! answers come back raw so they can be relayed byte for byte.

use hyper::Method;
use infrabroker_common::client::RawResponse;
use infrabroker_common::replicas::Replicas;
use infrabroker_common::wire::SignRequest;

use crate::config::SignerEndpoint;
use crate::error::StartError;

/// The signer could not be asked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("signer unreachable: {0}")]
pub struct Unreachable(pub String);

/// Calls to the signer as the control plane's own CN.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: Replicas,
}

impl Upstream {
    /// A client for `endpoint`.
    pub fn new(endpoint: &SignerEndpoint) -> Result<Upstream, StartError> {
        let client = Replicas::new(
            &endpoint.urls,
            &endpoint.ca,
            &endpoint.client_cert,
            &endpoint.client_key,
            endpoint.request_timeout,
        )
        .map_err(|e| StartError::Other(format!("signer client: {e}")))?;
        Ok(Upstream { client })
    }

    /// `GET /v1/hosts` for the broker `on_behalf_of`.
    pub async fn hosts(&self, on_behalf_of: &str) -> Result<RawResponse, Unreachable> {
        self.client
            .call_raw_with_headers(
                Method::GET,
                "/v1/hosts",
                None,
                &[("x-on-behalf-of", on_behalf_of)],
            )
            .await
            .map_err(|e| Unreachable(e.to_string()))
    }

    /// `GET /v1/revocations` as the control plane (freezes for brokers).
    pub async fn revocations(&self) -> Result<RawResponse, Unreachable> {
        self.client
            .call_raw(Method::GET, "/v1/revocations", None)
            .await
            .map_err(|e| Unreachable(e.to_string()))
    }

    /// `GET /healthz`: whether the signer answers at all (readiness).
    pub async fn healthz(&self) -> Result<(), Unreachable> {
        let raw = self
            .client
            .call_raw(Method::GET, "/healthz", None)
            .await
            .map_err(|e| Unreachable(e.to_string()))?;
        if raw.status.is_success() {
            Ok(())
        } else {
            Err(Unreachable(format!("HTTP {}", raw.status)))
        }
    }

    /// `POST /v1/sign` with `req` as is (the caller sets `on_behalf_of`).
    pub async fn sign(&self, req: &SignRequest) -> Result<RawResponse, Unreachable> {
        let body = serde_json::to_vec(req)
            .map_err(|e| Unreachable(format!("encoding the request: {e}")))?;
        self.client
            .call_raw(Method::POST, "/v1/sign", Some(body))
            .await
            .map_err(|e| Unreachable(e.to_string()))
    }
}
