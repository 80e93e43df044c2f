//! `connect` params: the first request of every connection.
//!
//! [`ConnectParams`] is the superset of both generations; [`crate::catalog`] narrows it to
//! each version's schema (client ids, v4-only fields, `device.nonce` required on v4).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ProtocolVersion;
use crate::limits;

/// Client ids a v3 (Clawdbot-era) client may send.
pub const CLIENT_IDS_V3: &[&str] = &[
    "webchat-ui",
    "clawdbot-control-ui",
    "webchat",
    "cli",
    "gateway-client",
    "clawdbot-macos",
    "clawdbot-ios",
    "clawdbot-android",
    "node-host",
    "test",
    "fingerprint",
    "clawdbot-probe",
];

/// Client ids a v4 (OpenClaw) client may send; every `clawdbot-*` id is gone.
pub const CLIENT_IDS_V4: &[&str] = &[
    "webchat-ui",
    "openclaw-control-ui",
    "openclaw-browser-copilot",
    "openclaw-tui",
    "webchat",
    "cli",
    "gateway-client",
    "openclaw-macos",
    "openclaw-linux",
    "openclaw-ios",
    "openclaw-watchos",
    "openclaw-android",
    "node-host",
    "openclaw-worker",
    "test",
    "fingerprint",
    "openclaw-probe",
];

/// Client modes of v3; v4 adds `worker`.
pub const CLIENT_MODES_V3: &[&str] = &["webchat", "cli", "ui", "backend", "node", "probe", "test"];
/// Client modes of v4.
pub const CLIENT_MODES_V4: &[&str] = &[
    "webchat", "cli", "ui", "backend", "node", "probe", "test", "worker",
];

/// Fields of [`ConnectParams`] that only v4 has.
pub const V4_ONLY_FIELDS: &[&str] = &["computerUse", "workerRuns", "modelCatalog"];
/// Fields of [`ClientInfo`] that only v4 has.
pub const V4_ONLY_CLIENT_FIELDS: &[&str] = &["buildId", "timeZone"];
/// Fields of [`ConnectAuth`] that only v4 has.
pub const V4_ONLY_AUTH_FIELDS: &[&str] = &[
    "bootstrapToken",
    "deviceToken",
    "approvalRuntimeToken",
    "agentRuntimeIdentityToken",
];

pub fn client_ids(version: ProtocolVersion) -> &'static [&'static str] {
    match version {
        ProtocolVersion::V3 => CLIENT_IDS_V3,
        ProtocolVersion::V4 => CLIENT_IDS_V4,
    }
}

pub fn client_modes(version: ProtocolVersion) -> &'static [&'static str] {
    match version {
        ProtocolVersion::V3 => CLIENT_MODES_V3,
        ProtocolVersion::V4 => CLIENT_MODES_V4,
    }
}

/// `connect` params (superset of v3 and v4).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectParams {
    #[schemars(range(min = 1))]
    pub min_protocol: u64,
    #[schemars(range(min = 1))]
    pub max_protocol: u64,
    pub client: ClientInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::CAPS))]
    pub caps: Option<Vec<NonEmpty>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::COMMANDS))]
    pub commands: Option<Vec<NonEmpty>>,
    /// v4: a Computer Use declaration (opaque here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_use: Option<Value>,
    /// v4 (deprecated): worker-run admission of old node hosts (opaque here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_runs: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = limits::PERMISSIONS, "propertyNames" = {"maxLength": limits::SHORT}))]
    pub permissions: Option<BTreeMap<String, bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::PATH_ENV))]
    pub path_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::SHORT))]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::SCOPES))]
    pub scopes: Option<Vec<NonEmpty>>,
    /// v4: initial model-catalog read scope (opaque here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_catalog: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceProof>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ConnectAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::SHORT))]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::USER_AGENT))]
    pub user_agent: Option<String>,
    /// Switchboard's extension (both versions; `docs/resume.md`): `{}` asks for a
    /// resumable session, `{sessionId, epoch, lastSeq}` resumes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumeRequest>,
}

/// `connect.params.resume`: empty on a first connect; all three fields on a reconnect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("dependentRequired" = {
    "sessionId": ["epoch", "lastSeq"],
    "epoch": ["sessionId", "lastSeq"],
    "lastSeq": ["sessionId", "epoch"],
}))]
pub struct ResumeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::ID))]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::ID))]
    pub epoch: Option<String>,
    /// The `seq` of the last event the client received on the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
}

/// A non-empty name: a scope, capability or command (1 to [`limits::SHORT`] characters).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct NonEmpty(#[schemars(length(min = 1, max = limits::SHORT))] pub String);

impl NonEmpty {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who the client is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientInfo {
    /// One of [`CLIENT_IDS_V3`] / [`CLIENT_IDS_V4`], per the negotiated version.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::NAME))]
    pub display_name: Option<String>,
    #[schemars(length(min = 1, max = limits::SHORT))]
    pub version: String,
    /// v4 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 96))]
    pub build_id: Option<String>,
    #[schemars(length(min = 1, max = limits::SHORT))]
    pub platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::SHORT))]
    pub device_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::SHORT))]
    pub model_identifier: Option<String>,
    /// v4 only: self-reported IANA time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
    /// One of [`CLIENT_MODES_V3`] / [`CLIENT_MODES_V4`].
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::ID))]
    pub instance_id: Option<String>,
}

/// The device's ed25519 proof over the server's challenge.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceProof {
    #[schemars(length(min = 1, max = limits::ID))]
    pub id: String,
    #[schemars(length(min = 1, max = limits::KEY))]
    pub public_key: String,
    #[schemars(length(min = 1, max = limits::KEY))]
    pub signature: String,
    pub signed_at: u64,
    /// Optional on v3 (local peers may sign `v1` without it), required on v4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::ID))]
    pub nonce: Option<String>,
}

/// Shared secrets a client presents.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::SECRET))]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::SECRET))]
    pub bootstrap_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::SECRET))]
    pub device_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::SECRET))]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::SECRET))]
    pub approval_runtime_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::SECRET))]
    pub agent_runtime_identity_token: Option<String>,
}
