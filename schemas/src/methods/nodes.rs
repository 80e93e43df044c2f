//! Nodes: `node.pair.*`, `node.rename`, `node.describe`, `node.invoke`, what nodes send back.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `node.pair.request` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodePairRequestParams {
    #[schemars(length(min = 1))]
    pub node_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::NAME))]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub core_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub ui_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub device_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub model_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<Vec<crate::connect::NonEmpty>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<Vec<crate::connect::NonEmpty>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub remote_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent: Option<bool>,
}

/// `node.pair.verify` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodePairVerifyParams {
    #[schemars(length(min = 1))]
    pub node_id: String,
    #[schemars(length(min = 1))]
    pub token: String,
}

/// `node.rename` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeRenameParams {
    #[schemars(length(min = 1))]
    pub node_id: String,
    #[schemars(length(min = 1, max = crate::limits::NAME))]
    pub display_name: String,
}

/// `node.describe` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeDescribeParams {
    #[schemars(length(min = 1))]
    pub node_id: String,
}

/// `node.invoke` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeInvokeParams {
    #[schemars(length(min = 1))]
    pub node_id: String,
    #[schemars(length(min = 1))]
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[schemars(length(min = 1))]
    pub idempotency_key: String,
}

/// `node.invoke.result` params (from the node).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeInvokeResultParams {
    #[schemars(length(min = 1))]
    pub id: String,
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
#[serde(deny_unknown_fields, rename_all = "camelCase")]
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

/// `node.skills.update` params (v4, from the node): the node's whole skill catalog.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSkillsUpdateParams {
    #[schemars(length(max = 64))]
    pub skills: Vec<NodeSkill>,
}

/// One skill a node offers the agent.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSkill {
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
    )]
    pub name: String,
    #[schemars(length(min = 1, max = 1024))]
    pub description: String,
    #[schemars(length(min = 1, max = 65536))]
    pub content: String,
}

/// `node.pluginTools.update` params (v4, from the node): its whole plugin/MCP tool catalog.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodePluginToolsUpdateParams {
    pub tools: Vec<NodePluginTool>,
}

/// One agent-visible tool a node offers, run through one of its commands.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodePluginTool {
    #[schemars(length(min = 1))]
    pub plugin_id: String,
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
    )]
    pub name: String,
    #[schemars(length(min = 1))]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<NodeMcpTool>,
}

/// The MCP server and tool behind a node plugin tool.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeMcpTool {
    #[schemars(length(min = 1))]
    pub server: String,
    #[schemars(length(min = 1))]
    pub tool: String,
}

/// `node.invoke.progress` params (v4, from the node): one ordered output chunk of a
/// running invoke.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeInvokeProgressParams {
    #[schemars(length(min = 1))]
    pub invoke_id: String,
    #[schemars(length(min = 1))]
    pub node_id: String,
    pub seq: u64,
    #[schemars(length(max = 16384))]
    pub chunk: String,
}

/// What `node.event` answers for an event the gateway interprets (v4), e.g.
/// `node.host.stats`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeEventResult {
    pub ok: bool,
    #[schemars(length(min = 1))]
    pub event: String,
    pub handled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub reason: Option<String>,
}

/// `plugin.surface.refresh` (operators) and `node.pluginSurface.refresh` (nodes), v4:
/// a fresh capability URL for one surface of this connection. With `observedUrl` that
/// is no longer the connection's current URL (a stale caller), the current one is
/// answered unchanged.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginSurfaceRefreshParams {
    /// `canvas` (the only surface); required (`surface required` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub surface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub observed_url: Option<String>,
}
