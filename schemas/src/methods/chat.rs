//! `sessions.list`, `chat.history`, `chat.send`, `chat.abort`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `sessions.list` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SessionsListParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub limit: Option<u64>,
    /// v4: skip this many sessions (paging).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_minutes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_global: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_unknown: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_derived_titles: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_last_message: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub spawned_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    /// v4 Control UI: only sessions of configured agents (every Switchboard session is
    /// one; accepted, nothing to filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured_agents_only: Option<bool>,
    /// v4: only sessions with a board. Switchboard offers no boards: `true` lists none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_board: Option<bool>,
    /// v4: `true`, `false` or `"all"`. Switchboard never archives a session: `true` lists
    /// none, the others all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<ArchivedFilter>,
    /// v4: also people rows (Switchboard has none; accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_people: Option<bool>,
    /// v4: leave out subagent sessions (Switchboard has none; accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_subagents: Option<bool>,
    /// v4: an activity summary per row (accepted; rows carry `updatedAt` and counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_activity_summary: Option<bool>,
    /// v4: owner's sessions first (Switchboard sessions have no owners; accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_first: Option<bool>,
    /// v4: `"activity"` (newest first, what Switchboard always does), `"updated"`,
    /// `"created"` or `"title"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub sort_by: Option<String>,
}

/// `sessions.list`'s `archived`: a flag or `"all"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ArchivedFilter {
    Flag(bool),
    All(ArchivedAll),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArchivedAll {
    All,
}

/// `chat.history` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChatHistoryParams {
    #[schemars(length(min = 1))]
    pub session_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u64>,
    /// Switchboard: only messages older than the one with this `id` (paging back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub before: Option<u64>,
    /// v4: keep the answer under this many bytes of messages (at most Switchboard's own
    /// bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_bytes: Option<u64>,
    /// v4: the run ids whose inputs the client still shows as pending. Switchboard never
    /// queues inputs (`pendingInputs` is always empty); accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_run_ids: Option<Vec<String>>,
    /// v4: the reference's paging cursor. Switchboard pages with `before`; a cursor it
    /// handed out is never given, so one is accepted and the newest page answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub agent_id: Option<String>,
}

/// `chat.startup` params (v4): the history of `sessionKey`, or a session resolved from
/// `shortId`/`slugHint`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChatStartupParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub session_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub short_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug_hint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_bytes: Option<u64>,
    /// As `chat.history`'s (accepted; Switchboard never queues inputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_run_ids: Option<Vec<String>>,
}

/// `models.list` params (v4 adds a view and a scope; Switchboard's models are the agent
/// worker's, the same for every agent and session).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelsListParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub view: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepared_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub session_key: Option<String>,
}

/// `chat.send` params: the v3 fields, and v4's optional ones (accepted; those without an
/// effect here are ignored). `message` is at most [`CHAT_MESSAGE_MAX`] characters.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChatSendParams {
    #[schemars(length(min = 1, max = 256))]
    pub session_key: String,
    #[schemars(length(min = 1, max = 100000))]
    pub message: String,
    #[schemars(length(min = 1))]
    pub idempotency_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_context: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_mode: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_auto_on_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originating_channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originating_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originating_account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originating_thread_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_bindings: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_input_provenance: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_provenance_receipt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppress_command_interpretation: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_leaf_entry_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_session_routing_contract: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_permission_mode: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_tool_overrides: Option<Value>,
}

/// The longest `chat.send` message, in characters.
pub const CHAT_MESSAGE_MAX: usize = 100_000;

/// `chat.abort` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChatAbortParams {
    #[schemars(length(min = 1))]
    pub session_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub run_id: Option<String>,
    /// v4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub agent_id: Option<String>,
    /// v4 (accepted, no effect: there are no side runs here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_side_runs: Option<bool>,
}

/// `chat.abort` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChatAbortResult {
    pub ok: bool,
    pub aborted: bool,
    pub run_ids: Vec<String>,
}
