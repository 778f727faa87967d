//! Errors of the control plane: start-up failures, and the one error answer
//! of its API (a stable `reason_code` and one sentence, the same JSON shape
//! as the signer's `ErrorBody`).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use infrabroker_common::config::ConfigErrors;
use serde::{Deserialize, Serialize};

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid (exit 64).
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// The audit log cannot be continued (exit 65 when its last record
    /// does not verify, else 1).
    #[error("opening the audit log: {0}")]
    Audit(infrabroker_common::audit::AuditError),
    /// Anything else at start-up (exit 1).
    #[error("{0}")]
    Other(String),
}

impl StartError {
    /// The process exit code for this start-up failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => 64,
            StartError::Audit(e) if e.is_unverified_tail() => {
                infrabroker_common::audit::EXIT_UNVERIFIED_TAIL
            }
            _ => 1,
        }
    }
}

impl infrabroker_common::service::StartFailure for StartError {
    fn exit_code(&self) -> u8 {
        StartError::exit_code(self)
    }
}

/// Stable reason codes of the control plane's own answers. Answers relayed
/// from the signer keep the signer's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The body is not valid JSON or has unknown or mistyped fields.
    MalformedRequest,
    /// The body is larger than the limit.
    BodyTooLarge,
    /// The caller's CN is not in `sign_callers`.
    CallerUnknown,
    /// A broker sent `on_behalf_of` or `approved`: only the control plane sets them.
    ForwarderUntrusted,
    /// The caller's CN is not in `approval.callers`.
    ApproverForbidden,
    /// The decider made the request (or it was made for them).
    SelfApproval,
    /// The AI reviewer may not approve a `human` request.
    TierForbidden,
    /// No such approval (or not this caller's).
    ApprovalUnknown,
    /// The approval was already decided.
    ApprovalDecided,
    /// The approval was denied.
    ApprovalDenied,
    /// No decision (or no collection) in time.
    ApprovalExpired,
    /// The approval was already used once.
    ApprovalUsed,
    /// The request now needs a stricter tier than the one that decided it.
    TierRaised,
    /// The caller already has `approval.max_pending_per_caller` open approvals.
    TooManyPending,
    /// A decision needs a reason.
    ReasonRequired,
    /// The subject exceeded `behavior.rate_limit_per_min`.
    RateLimited,
    /// The signer could not be reached.
    SignerUnavailable,
    /// The audit record could not be written; nothing was done.
    AuditUnavailable,
    /// The state store (SQLite or PostgreSQL) could not be used; nothing
    /// was decided or issued.
    StoreUnavailable,
    /// No such route.
    NotFound,
    /// Missing or wrong bearer token (reviewer endpoint).
    Unauthorized,
    /// A web-page form without this operator's session token.
    CsrfInvalid,
}

impl Code {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::MalformedRequest => "malformed_request",
            Code::BodyTooLarge => "body_too_large",
            Code::CallerUnknown => "caller_unknown",
            Code::ForwarderUntrusted => "forwarder_untrusted",
            Code::ApproverForbidden => "approver_forbidden",
            Code::SelfApproval => "self_approval",
            Code::TierForbidden => "tier_forbidden",
            Code::ApprovalUnknown => "approval_unknown",
            Code::ApprovalDecided => "approval_decided",
            Code::ApprovalDenied => "approval_denied",
            Code::ApprovalExpired => "approval_expired",
            Code::ApprovalUsed => "approval_used",
            Code::TierRaised => "tier_raised",
            Code::TooManyPending => "too_many_pending",
            Code::ReasonRequired => "reason_required",
            Code::RateLimited => "rate_limited",
            Code::SignerUnavailable => "signer_unavailable",
            Code::AuditUnavailable => "audit_unavailable",
            Code::StoreUnavailable => "store_unavailable",
            Code::NotFound => "not_found",
            Code::Unauthorized => "unauthorized",
            Code::CsrfInvalid => "csrf_invalid",
        }
    }

    /// The HTTP status that carries it.
    pub fn status(self) -> StatusCode {
        match self {
            Code::MalformedRequest | Code::ReasonRequired => StatusCode::BAD_REQUEST,
            Code::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::CallerUnknown
            | Code::ForwarderUntrusted
            | Code::ApproverForbidden
            | Code::SelfApproval
            | Code::TierForbidden
            | Code::ApprovalDenied
            | Code::CsrfInvalid
            | Code::TierRaised => StatusCode::FORBIDDEN,
            Code::ApprovalUnknown | Code::NotFound => StatusCode::NOT_FOUND,
            Code::ApprovalDecided => StatusCode::CONFLICT,
            Code::ApprovalExpired => StatusCode::REQUEST_TIMEOUT,
            Code::ApprovalUsed => StatusCode::GONE,
            Code::RateLimited | Code::TooManyPending => StatusCode::TOO_MANY_REQUESTS,
            Code::SignerUnavailable => StatusCode::BAD_GATEWAY,
            Code::AuditUnavailable | Code::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The JSON body of every error answer of the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable reason.
    pub reason_code: Code,
    /// One sentence for humans.
    pub message: String,
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The code.
    pub code: Code,
    /// The sentence.
    pub message: String,
    /// Seconds for `Retry-After` (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            reason_code: self.code,
            message: self.message,
        };
        let mut resp = (self.code.status(), axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(hyper::header::RETRY_AFTER, v);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_matches_serde() {
        for code in [
            Code::MalformedRequest,
            Code::BodyTooLarge,
            Code::CallerUnknown,
            Code::ForwarderUntrusted,
            Code::ApproverForbidden,
            Code::SelfApproval,
            Code::TierForbidden,
            Code::ApprovalUnknown,
            Code::ApprovalDecided,
            Code::ApprovalDenied,
            Code::ApprovalExpired,
            Code::ApprovalUsed,
            Code::ReasonRequired,
            Code::RateLimited,
            Code::SignerUnavailable,
            Code::AuditUnavailable,
            Code::StoreUnavailable,
            Code::NotFound,
            Code::Unauthorized,
        ] {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::String(code.as_str().into())
            );
        }
    }
}
