//! Params and results of the methods Switchboard serves.
//!
//! Where the reference gateways accept any params for a method (e.g. `health`, `status`),
//! the params type is open (`additionalProperties` allowed) so existing clients keep
//! working; the fields we read are still typed.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// `system-event` params: a line of text for the presence list and the system-event queue.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct SystemEventParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(rename = "deviceId", default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(
        rename = "instanceId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(
        rename = "deviceFamily",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub device_family: Option<String>,
    #[serde(
        rename = "modelIdentifier",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub model_identifier: Option<String>,
    #[serde(
        rename = "lastInputSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_input_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
pub struct HealthSnapshot {
    pub ok: bool,
    pub ts: u64,
    #[serde(rename = "durationMs")]
    pub duration_ms: u64,
    /// Per messaging channel (provider worker) state, keyed by channel id.
    pub channels: BTreeMap<String, Value>,
    #[serde(rename = "channelOrder")]
    pub channel_order: Vec<String>,
    #[serde(rename = "channelLabels")]
    pub channel_labels: BTreeMap<String, String>,
    #[serde(rename = "heartbeatSeconds")]
    pub heartbeat_seconds: u64,
    #[serde(rename = "defaultAgentId")]
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
#[serde(deny_unknown_fields)]
pub struct AgentHealth {
    #[serde(rename = "agentId")]
    pub agent_id: String,
    #[serde(rename = "isDefault")]
    pub is_default: bool,
    pub heartbeat: AgentHeartbeat,
    pub sessions: SessionSummary,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentHeartbeat {
    pub enabled: bool,
    pub every: String,
    #[serde(rename = "everyMs")]
    pub every_ms: Option<u64>,
    pub prompt: String,
    pub target: String,
    #[serde(rename = "ackMaxChars")]
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
#[serde(deny_unknown_fields)]
pub struct RecentSession {
    pub key: String,
    #[serde(rename = "updatedAt")]
    pub updated_at: Option<u64>,
    pub age: Option<u64>,
}

/// The supervisor's own health.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayHealth {
    pub version: String,
    pub pid: u32,
    #[serde(rename = "uptimeMs")]
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

/// One supervised worker process.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerHealth {
    pub name: String,
    /// `starting`, `running`, `backoff`, `failed` or `stopped`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub restarts: u64,
    #[serde(rename = "lastExit", default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
    #[serde(rename = "uptimeMs", default, skip_serializing_if = "Option::is_none")]
    pub uptime_ms: Option<u64>,
    /// The provider's own state from the last health check (`connected`, `polling`,
    /// `unauthorized`, `ready`, …).
    #[serde(
        rename = "providerState",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_state: Option<String>,
    /// Human-readable detail (last error); never secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Whether the provider connection carries data, as the worker judges it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
    /// What the worker announced it can do (`send`, `events`, `login.qr`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
}

/// `workers.restart` / `workers.stop` / `workers.start` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerControlParams {
    #[schemars(length(min = 1))]
    pub name: String,
}

/// `workers.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkersList {
    pub workers: Vec<WorkerHealth>,
}

/// `workers.restart` / `workers.stop` / `workers.start` result: the command was accepted;
/// `worker` is the state at that moment.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerControlResult {
    pub ok: bool,
    pub worker: WorkerHealth,
}

/// `agent` params (v3 and v4 share them).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentParams {
    #[schemars(length(min = 1))]
    pub message: String,
    #[serde(rename = "agentId", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(rename = "replyTo", default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(rename = "sessionId", default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(
        rename = "sessionKey",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub session_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(
        rename = "replyChannel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reply_channel: Option<String>,
    #[serde(rename = "accountId", default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(
        rename = "replyAccountId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reply_account_id: Option<String>,
    #[serde(rename = "threadId", default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    #[serde(rename = "groupId", default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(
        rename = "groupChannel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub group_channel: Option<String>,
    #[serde(
        rename = "groupSpace",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub group_space: Option<String>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
    #[serde(
        rename = "extraSystemPrompt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub extra_system_prompt: Option<String>,
    #[serde(rename = "idempotencyKey")]
    #[schemars(length(min = 1))]
    pub idempotency_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub label: Option<String>,
    #[serde(rename = "spawnedBy", default, skip_serializing_if = "Option::is_none")]
    pub spawned_by: Option<String>,
}

/// `agent.wait` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentWaitParams {
    #[serde(rename = "runId")]
    #[schemars(length(min = 1))]
    pub run_id: String,
    /// Default 30 000.
    #[serde(rename = "timeoutMs", default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `sessions.list` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionsListParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub limit: Option<u64>,
    /// v4: skip this many sessions (paging).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(
        rename = "activeMinutes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1))]
    pub active_minutes: Option<u64>,
    #[serde(
        rename = "includeGlobal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub include_global: Option<bool>,
    #[serde(
        rename = "includeUnknown",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub include_unknown: Option<bool>,
    #[serde(
        rename = "includeDerivedTitles",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub include_derived_titles: Option<bool>,
    #[serde(
        rename = "includeLastMessage",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub include_last_message: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub label: Option<String>,
    #[serde(rename = "spawnedBy", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub spawned_by: Option<String>,
    #[serde(rename = "agentId", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
}

/// `chat.history` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatHistoryParams {
    #[serde(rename = "sessionKey")]
    #[schemars(length(min = 1))]
    pub session_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u64>,
    /// Switchboard: only messages older than the one with this `id` (paging back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub before: Option<u64>,
}

/// `chat.send` params: the v3 fields, and v4's optional ones (accepted; those without an
/// effect here are ignored). `message` is at most [`CHAT_MESSAGE_MAX`] characters.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatSendParams {
    #[serde(rename = "sessionKey")]
    #[schemars(length(min = 1, max = 256))]
    pub session_key: String,
    #[schemars(length(min = 1, max = 100000))]
    pub message: String,
    #[serde(rename = "idempotencyKey")]
    #[schemars(length(min = 1))]
    pub idempotency_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<Value>>,
    #[serde(rename = "timeoutMs", default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(rename = "agentId", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub agent_id: Option<String>,
    #[serde(rename = "sessionId", default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Value>,
    #[serde(
        rename = "workContext",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub work_context: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Value>,
    #[serde(rename = "fastMode", default, skip_serializing_if = "Option::is_none")]
    pub fast_mode: Option<Value>,
    #[serde(
        rename = "fastAutoOnSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub fast_auto_on_seconds: Option<u64>,
    #[serde(rename = "queueMode", default, skip_serializing_if = "Option::is_none")]
    pub queue_mode: Option<String>,
    #[serde(
        rename = "originatingChannel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub originating_channel: Option<String>,
    #[serde(
        rename = "originatingTo",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub originating_to: Option<String>,
    #[serde(
        rename = "originatingAccountId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub originating_account_id: Option<String>,
    #[serde(
        rename = "originatingThreadId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub originating_thread_id: Option<String>,
    #[serde(rename = "replyToId", default, skip_serializing_if = "Option::is_none")]
    pub reply_to_id: Option<String>,
    #[serde(
        rename = "toolBindings",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tool_bindings: Option<Value>,
    #[serde(
        rename = "systemInputProvenance",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub system_input_provenance: Option<Value>,
    #[serde(
        rename = "systemProvenanceReceipt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub system_provenance_receipt: Option<String>,
    #[serde(
        rename = "suppressCommandInterpretation",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub suppress_command_interpretation: Option<bool>,
    #[serde(
        rename = "expectedLeafEntryId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub expected_leaf_entry_id: Option<Value>,
    #[serde(
        rename = "expectedSessionRoutingContract",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub expected_session_routing_contract: Option<String>,
    #[serde(
        rename = "expectedPermissionMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub expected_permission_mode: Option<Value>,
    #[serde(
        rename = "expectedToolOverrides",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub expected_tool_overrides: Option<Value>,
}

/// The longest `chat.send` message, in characters.
pub const CHAT_MESSAGE_MAX: usize = 100_000;

/// `channels.status` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelsStatusParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<bool>,
    #[serde(rename = "timeoutMs", default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Params of methods that take none and refuse unknown fields (`models.list`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClosedNoParams {}

/// `device.pair.approve` / `device.pair.reject` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PairingRequestParams {
    #[serde(rename = "requestId")]
    #[schemars(length(min = 1))]
    pub request_id: String,
}

/// `device.token.rotate` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceTokenRotateParams {
    #[serde(rename = "deviceId")]
    #[schemars(length(min = 1))]
    pub device_id: String,
    #[schemars(length(min = 1))]
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

/// `device.token.revoke` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceTokenRevokeParams {
    #[serde(rename = "deviceId")]
    #[schemars(length(min = 1))]
    pub device_id: String,
    #[schemars(length(min = 1))]
    pub role: String,
}

/// `node.pair.request` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodePairRequestParams {
    #[serde(rename = "nodeId")]
    #[schemars(length(min = 1))]
    pub node_id: String,
    #[serde(
        rename = "displayName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1))]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub version: Option<String>,
    #[serde(
        rename = "coreVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1))]
    pub core_version: Option<String>,
    #[serde(rename = "uiVersion", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub ui_version: Option<String>,
    #[serde(
        rename = "deviceFamily",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1))]
    pub device_family: Option<String>,
    #[serde(
        rename = "modelIdentifier",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1))]
    pub model_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<Vec<crate::connect::NonEmpty>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<Vec<crate::connect::NonEmpty>>,
    #[serde(rename = "remoteIp", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub remote_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent: Option<bool>,
}

/// `node.pair.verify` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodePairVerifyParams {
    #[serde(rename = "nodeId")]
    #[schemars(length(min = 1))]
    pub node_id: String,
    #[schemars(length(min = 1))]
    pub token: String,
}

/// `node.rename` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeRenameParams {
    #[serde(rename = "nodeId")]
    #[schemars(length(min = 1))]
    pub node_id: String,
    #[serde(rename = "displayName")]
    #[schemars(length(min = 1))]
    pub display_name: String,
}

/// `node.describe` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeDescribeParams {
    #[serde(rename = "nodeId")]
    #[schemars(length(min = 1))]
    pub node_id: String,
}

/// `node.invoke` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeInvokeParams {
    #[serde(rename = "nodeId")]
    #[schemars(length(min = 1))]
    pub node_id: String,
    #[schemars(length(min = 1))]
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    #[serde(rename = "timeoutMs", default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(rename = "idempotencyKey")]
    #[schemars(length(min = 1))]
    pub idempotency_key: String,
}

/// `node.invoke.result` params (from the node).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeInvokeResultParams {
    #[schemars(length(min = 1))]
    pub id: String,
    #[serde(rename = "nodeId")]
    #[schemars(length(min = 1))]
    pub node_id: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(
        rename = "payloadJSON",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub payload_json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<NodeError>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub message: Option<String>,
}

/// `node.event` params (from the node).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeEventParams {
    #[schemars(length(min = 1))]
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(
        rename = "payloadJSON",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub payload_json: Option<String>,
}

/// `chat.abort` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatAbortParams {
    #[serde(rename = "sessionKey")]
    #[schemars(length(min = 1))]
    pub session_key: String,
    #[serde(rename = "runId", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub run_id: Option<String>,
    /// v4.
    #[serde(rename = "agentId", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub agent_id: Option<String>,
    /// v4 (accepted, no effect: there are no side runs here).
    #[serde(
        rename = "preserveSideRuns",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub preserve_side_runs: Option<bool>,
}

/// `chat.abort` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatAbortResult {
    pub ok: bool,
    pub aborted: bool,
    #[serde(rename = "runIds")]
    pub run_ids: Vec<String>,
}

/// `agent` event payload.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentEvent {
    #[serde(rename = "runId")]
    pub run_id: String,
    pub stream: String,
    pub data: serde_json::Map<String, Value>,
    #[serde(
        rename = "sessionKey",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub session_key: Option<String>,
    pub seq: u64,
    pub ts: u64,
}

/// The `status` result: the reference's summary plus Switchboard's `gateway` and `workers`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StatusSummary {
    pub heartbeat: StatusHeartbeat,
    #[serde(rename = "channelSummary")]
    pub channel_summary: Vec<String>,
    #[serde(rename = "queuedSystemEvents")]
    pub queued_system_events: Vec<String>,
    pub sessions: StatusSessions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayHealth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<Vec<WorkerHealth>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusHeartbeat {
    #[serde(rename = "defaultAgentId")]
    pub default_agent_id: String,
    pub agents: Vec<StatusHeartbeatAgent>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusHeartbeatAgent {
    #[serde(rename = "agentId")]
    pub agent_id: String,
    pub enabled: bool,
    pub every: String,
    #[serde(rename = "everyMs")]
    pub every_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusSessions {
    pub paths: Vec<String>,
    pub count: u64,
    pub defaults: SessionModelDefaults,
    pub recent: Vec<RecentSession>,
    #[serde(rename = "byAgent")]
    pub by_agent: Vec<AgentSessions>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionModelDefaults {
    pub model: Option<String>,
    #[serde(rename = "contextTokens")]
    pub context_tokens: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSessions {
    #[serde(rename = "agentId")]
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
#[serde(deny_unknown_fields)]
pub struct ShutdownEvent {
    #[schemars(length(min = 1))]
    pub reason: String,
    #[serde(
        rename = "restartExpectedMs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub restart_expected_ms: Option<u64>,
}

/// `logs.tail` params (the reference's bounds).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsTailParams {
    /// Byte offset returned by the previous call; absent: the last `maxBytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5000))]
    pub limit: Option<u64>,
    #[serde(rename = "maxBytes", default, skip_serializing_if = "Option::is_none")]
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

/// `send` params (the reference's fields; media is refused until supported).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendParams {
    #[schemars(length(min = 1))]
    pub to: String,
    #[schemars(length(min = 1))]
    pub message: String,
    #[serde(rename = "mediaUrl", default, skip_serializing_if = "Option::is_none")]
    pub media_url: Option<String>,
    #[serde(rename = "mediaUrls", default, skip_serializing_if = "Option::is_none")]
    pub media_urls: Option<Vec<String>>,
    #[serde(
        rename = "gifPlayback",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub gif_playback: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(rename = "accountId", default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Mirror the delivered text into this session's history.
    #[serde(
        rename = "sessionKey",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub session_key: Option<String>,
    #[serde(rename = "idempotencyKey")]
    #[schemars(length(min = 1))]
    pub idempotency_key: String,
}

/// `send` result: the provider's message id.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendResult {
    /// The request's idempotency key.
    #[serde(rename = "runId")]
    pub run_id: String,
    #[serde(rename = "messageId")]
    pub message_id: String,
    pub channel: String,
    #[serde(rename = "chatId", default, skip_serializing_if = "Option::is_none")]
    pub chat_id: Option<String>,
}

/// `pairing.list` params (Switchboard: DM pairing of messaging channels).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PairingListParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// `pairing.approve` / `pairing.reject` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PairingCodeParams {
    #[schemars(length(min = 1))]
    pub channel: String,
    #[schemars(length(min = 1))]
    pub code: String,
    /// Tell the sender they were approved (approve only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<bool>,
}

/// `pairing.revoke` params: remove an approved sender.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PairingRevokeParams {
    #[schemars(length(min = 1))]
    pub channel: String,
    #[schemars(length(min = 1))]
    pub id: String,
}

/// `web.login.start` params (the reference's).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebLoginStartParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
    #[serde(rename = "timeoutMs", default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbose: Option<bool>,
    #[serde(rename = "accountId", default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

/// `web.login.wait` params (the reference's).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebLoginWaitParams {
    #[serde(rename = "timeoutMs", default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(rename = "accountId", default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

/// `channels.logout` params (the reference's).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelsLogoutParams {
    #[schemars(length(min = 1))]
    pub channel: String,
    #[serde(rename = "accountId", default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}
