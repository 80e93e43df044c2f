//! `health`, `status`, `system-event`, `logs.tail` and the events `tick`/`shutdown`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::workers::WorkerHealth;

/// `health` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct HealthParams {
    /// Force a fresh snapshot instead of the cached one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<bool>,
}

/// Params of methods that take none (`status`, `system-presence`, `last-heartbeat`, …).
/// Open, like the references: extra fields are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct NoParams {}

/// Params of methods that take none and refuse unknown fields (`models.list`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClosedNoParams {}

/// `system-event` params: a line of text for the presence list and the system-event queue.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemEventParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::TEXT))]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::ID))]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::ID))]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::NAME))]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::ID))]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::SHORT))]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::SHORT))]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::SHORT))]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::SHORT))]
    pub device_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::SHORT))]
    pub model_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_input_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::SHORT))]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::TAGS), inner(length(max = crate::limits::SHORT)))]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::TAGS), inner(length(max = crate::limits::SHORT)))]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::TAGS), inner(length(max = crate::limits::SHORT)))]
    pub tags: Option<Vec<String>>,
}

/// `{ok:true}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OkResult {
    pub ok: bool,
}

/// The health snapshot: the `health` result, the `health` event payload and
/// `hello-ok.snapshot.health`. The first fields are the reference's shape; `gateway` and
/// `workers` are Switchboard's additions.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthSnapshot {
    pub ok: bool,
    pub ts: u64,
    pub duration_ms: u64,
    /// Per messaging channel (provider worker) state, keyed by channel id.
    pub channels: BTreeMap<String, Value>,
    pub channel_order: Vec<String>,
    pub channel_labels: BTreeMap<String, String>,
    pub heartbeat_seconds: u64,
    pub default_agent_id: String,
    pub agents: Vec<AgentHealth>,
    pub sessions: SessionSummary,
    /// Switchboard: the supervisor itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayHealth>,
    /// Switchboard: every supervised worker process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<Vec<WorkerHealth>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentHealth {
    pub agent_id: String,
    pub is_default: bool,
    pub heartbeat: AgentHeartbeat,
    pub sessions: SessionSummary,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentHeartbeat {
    pub enabled: bool,
    pub every: String,
    pub every_ms: Option<u64>,
    pub prompt: String,
    pub target: String,
    pub ack_max_chars: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionSummary {
    pub path: String,
    pub count: u64,
    pub recent: Vec<RecentSession>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RecentSession {
    pub key: String,
    pub updated_at: Option<u64>,
    pub age: Option<u64>,
}

/// The supervisor's own health.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayHealth {
    pub version: String,
    pub pid: u32,
    pub uptime_ms: u64,
    pub port: u16,
    pub connections: ConnectionCounts,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionCounts {
    pub total: u64,
    pub operators: u64,
    pub nodes: u64,
}

/// The `status` result: the reference's summary plus Switchboard's `gateway` and `workers`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusSummary {
    pub heartbeat: StatusHeartbeat,
    pub channel_summary: Vec<String>,
    pub queued_system_events: Vec<String>,
    pub sessions: StatusSessions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayHealth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<Vec<WorkerHealth>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatusHeartbeat {
    pub default_agent_id: String,
    pub agents: Vec<StatusHeartbeatAgent>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatusHeartbeatAgent {
    pub agent_id: String,
    pub enabled: bool,
    pub every: String,
    pub every_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatusSessions {
    pub paths: Vec<String>,
    pub count: u64,
    pub defaults: SessionModelDefaults,
    pub recent: Vec<RecentSession>,
    pub by_agent: Vec<AgentSessions>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SessionModelDefaults {
    pub model: Option<String>,
    pub context_tokens: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentSessions {
    pub agent_id: String,
    pub path: String,
    pub count: u64,
    pub recent: Vec<RecentSession>,
}

/// `tick` event payload.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TickEvent {
    pub ts: u64,
}

/// `shutdown` event payload.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ShutdownEvent {
    #[schemars(length(min = 1))]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_expected_ms: Option<u64>,
}

/// `logs.tail` params (the reference's bounds).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogsTailParams {
    /// Byte offset returned by the previous call; absent: the last `maxBytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5000))]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_bytes: Option<u64>,
}

/// `logs.tail` result: lines of the gateway's log file after the cursor.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsTailResult {
    pub file: String,
    /// Pass back as `cursor` to get what follows.
    pub cursor: u64,
    pub size: u64,
    pub lines: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    /// The file was rotated (or the cursor was too far behind): reading restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<bool>,
}
