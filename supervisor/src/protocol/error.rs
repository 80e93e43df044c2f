//! Errors that reach a client, mapped to the protocol's codes and shapes in one place.

use serde_json::{Value, json};
use switchboard_schemas::frames::{ErrorCode, ErrorShape};

use super::ProtocolVersion;

/// An error answer to a request.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
    pub retryable: Option<bool>,
    pub retry_after_ms: Option<u64>,
}

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            details: None,
            retryable: None,
            retry_after_ms: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> RpcError {
        RpcError::new(ErrorCode::InvalidRequest, message)
    }

    pub fn unavailable(message: impl Into<String>) -> RpcError {
        RpcError::new(ErrorCode::Unavailable, message)
    }

    pub fn with_details(mut self, details: Value) -> RpcError {
        self.details = Some(details);
        self
    }

    /// A refused scope: v3 `INVALID_REQUEST`, v4 `FORBIDDEN` with `details.code MISSING_SCOPE`.
    pub fn missing_scope(version: ProtocolVersion, scope: &str) -> RpcError {
        let message = format!("missing scope: {scope}");
        match version {
            ProtocolVersion::V3 => RpcError::invalid_request(message),
            ProtocolVersion::V4 => {
                RpcError::new(ErrorCode::Forbidden, message).with_details(json!({
                    "code": "MISSING_SCOPE",
                    "missingScope": scope,
                    "requiredScopes": [scope],
                }))
            }
        }
    }

    /// A method the caller's role may not call.
    pub fn unauthorized_role(role: &str) -> RpcError {
        RpcError::invalid_request(format!("unauthorized role: {role}"))
    }

    pub fn is_unauthorized_role(&self) -> bool {
        self.code == ErrorCode::InvalidRequest && self.message.starts_with("unauthorized role: ")
    }

    pub fn to_shape(&self) -> ErrorShape {
        ErrorShape {
            code: self.code.as_str().to_owned(),
            message: self.message.clone(),
            details: self.details.clone(),
            retryable: self.retryable,
            retry_after_ms: self.retry_after_ms,
        }
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// The one mapping of a database failure to what a client hears: the failure is logged
/// with its cause, the client gets a retryable `UNAVAILABLE` without internals.
impl From<crate::state::db::DbError> for RpcError {
    fn from(e: crate::state::db::DbError) -> RpcError {
        tracing::error!(error = %e, "database call failed");
        let mut err = RpcError::unavailable("the gateway's database is unavailable; retry later");
        err.retryable = Some(true);
        err
    }
}
