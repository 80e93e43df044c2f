//! The three frame kinds every message on the socket is: request, response, event.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `{type:"req", id, method, params?}` from a client.
///
/// v4 adds the optional `traceparent` and `expectedProfileId`; the v3 schema leaves them out
/// (a v3 client sending one is refused, as the v3 reference does).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestFrame {
    #[serde(rename = "type")]
    #[schemars(schema_with = "literal_req")]
    pub kind: String,
    #[schemars(length(min = 1))]
    pub id: String,
    #[schemars(length(min = 1))]
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// W3C trace context (v4 only). At most 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub traceparent: Option<String>,
    /// The profile the client expects to act as (v4 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub expected_profile_id: Option<String>,
}

fn literal_req(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "const": "req" })
}

fn literal_res(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "const": "res" })
}

fn literal_event(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "const": "event" })
}

/// `{type:"res", id, ok, payload?, error?}` to a client.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResponseFrame {
    #[serde(rename = "type")]
    #[schemars(schema_with = "literal_res")]
    pub kind: String,
    #[schemars(length(min = 1))]
    pub id: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorShape>,
}

/// `{type:"event", event, payload?, seq?, stateVersion?}` to a client.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventFrame {
    #[serde(rename = "type")]
    #[schemars(schema_with = "literal_event")]
    pub kind: String,
    #[schemars(length(min = 1))]
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Per-connection sequence number of broadcast events (1, 2, 3…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_version: Option<StateVersion>,
}

/// Two counters that grow when the presence list or the health snapshot changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateVersion {
    pub presence: u64,
    pub health: u64,
}

/// The `error` of a failed response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ErrorShape {
    #[schemars(length(min = 1))]
    pub code: String,
    #[schemars(length(min = 1))]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// The error codes of the protocol. v4 adds `FORBIDDEN` (missing scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ErrorCode {
    #[serde(rename = "INVALID_REQUEST")]
    InvalidRequest,
    #[serde(rename = "UNAVAILABLE")]
    Unavailable,
    #[serde(rename = "NOT_PAIRED")]
    NotPaired,
    #[serde(rename = "NOT_LINKED")]
    NotLinked,
    #[serde(rename = "AGENT_TIMEOUT")]
    AgentTimeout,
    #[serde(rename = "FORBIDDEN")]
    Forbidden,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 6] = [
        ErrorCode::InvalidRequest,
        ErrorCode::Unavailable,
        ErrorCode::NotPaired,
        ErrorCode::NotLinked,
        ErrorCode::AgentTimeout,
        ErrorCode::Forbidden,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::NotPaired => "NOT_PAIRED",
            ErrorCode::NotLinked => "NOT_LINKED",
            ErrorCode::AgentTimeout => "AGENT_TIMEOUT",
            ErrorCode::Forbidden => "FORBIDDEN",
        }
    }
}
