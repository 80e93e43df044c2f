//! `cron.*`, `wake` and `set-heartbeats`: scheduled agent turns and the heartbeat.
//!
//! One superset for both generations: v3 (Clawdbot) names a one-shot time `atMs`, v4
//! (OpenClaw 2026.9) `at` (an ISO time); v4 adds `delivery`, v3 puts delivery in the
//! payload (`deliver`, `channel`, `to`). The params stay open (unknown fields are
//! ignored, as the reference's normalizer drops them) so both generations' CLIs and
//! Control UIs work; what Switchboard acts on is typed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a job's schedule is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CronScheduleKind {
    /// One time (`at` ISO string, or `atMs`).
    At,
    /// Every `everyMs` from `anchorMs` (default: when the job was created).
    Every,
    /// A cron expression (`expr`, 5 or 6 fields) in time zone `tz` (default: the host's).
    Cron,
}

/// A job's schedule.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronSchedule {
    pub kind: CronScheduleKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::SHORT))]
    pub at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub every_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::SHORT))]
    pub expr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::SHORT))]
    pub tz: Option<String>,
    /// v4: the reference spreads fire times over this window; kept, and Switchboard
    /// always fires at the exact time (README: cron).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stagger_ms: Option<u64>,
}

/// What a run does: `agentTurn` (a message to the agent) or `systemEvent` (a line for
/// the main session, run as a turn there).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronPayload {
    #[schemars(length(min = 1, max = crate::limits::SHORT))]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::TEXT))]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::TEXT))]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// v3: deliver the answer to `channel`/`to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_effort_deliver: Option<bool>,
    /// v4 agent-turn options Switchboard's agent runner has no control for: kept with the
    /// job and shown back, not acted on (README: cron).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::SHORT))]
    pub thinking: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools_allow: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub light_context: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallbacks: Option<Vec<String>>,
}

/// What Switchboard does with a fire time that fell while the gateway was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CronMisfire {
    /// Record the missed time as a `skipped` run and wait for the next one.
    Skip,
    /// Run once at start-up, however many times were missed (the reference's default:
    /// `cron.skipMissedJobs` is `false`).
    #[default]
    RunOnce,
}

/// `cron.add`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronAddParams {
    #[schemars(length(min = 1, max = crate::limits::NAME))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::TEXT))]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_after_run: Option<bool>,
    pub schedule: CronSchedule,
    /// `main`, `isolated`, v4 also `current` and `session:<key>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID))]
    pub session_target: Option<String>,
    /// `now` or `next-heartbeat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_mode: Option<String>,
    pub payload: CronPayload,
    /// v4: `{mode: "none"|"announce"|"webhook", channel, to, accountId, threadId}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire: Option<CronMisfire>,
    /// v4: the name lists show (default: `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::NAME))]
    pub display_name: Option<String>,
    /// v4: a caller's own key for the job; adding the same key again answers the job
    /// that has it (`created: false`) instead of a second one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID))]
    pub declaration_key: Option<String>,
    /// v4: the reference's failure-alert settings; kept, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_alert: Option<Value>,
}

/// `cron.get`, `cron.remove`: a job by `id` (or the legacy `jobId`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronJobRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID))]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID))]
    pub job_id: Option<String>,
}

/// `cron.update`: `patch` holds any of `cron.add`'s fields (a payload patch merges into
/// the payload).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronUpdateParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID))]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID))]
    pub job_id: Option<String>,
    pub patch: serde_json::Map<String, Value>,
}

/// `cron.run` modes: `force` (default) runs now, `due` only when due, `if-enabled`
/// (v4) only when the job is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CronRunMode {
    Due,
    Force,
    IfEnabled,
}

/// `cron.run`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronRunParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID))]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID))]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<CronRunMode>,
}

/// The most a job's scratch may hold, in UTF-8 bytes (the reference's limit).
pub const CRON_SCRATCH_MAX_BYTES: usize = 262_144;

/// v4 `cron.scratch.set`: replaces a job's private scratch text (`content: null`
/// clears it), compare-and-swap guarded by `expectedRevision` when given.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronScratchSetParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID))]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID))]
    pub job_id: Option<String>,
    /// The new text, or `null` to clear it; required (a missing key never clears).
    #[schemars(required, length(max = 262_144), extend("type" = ["string", "null"]))]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_revision: Option<u64>,
    /// The reference's provenance hash of the text: kept with it, not shown (as the reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::SHORT))]
    pub source_sha256: Option<String>,
}

/// `cron.list`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronListParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 200))]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// v4: `all`, `enabled`, `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<String>,
    /// v4: only the jobs of this agent (a job without one is the default agent's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID))]
    pub agent_id: Option<String>,
    /// v4: only jobs whose id, name or description contains this (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::SHORT))]
    pub query: Option<String>,
}

/// `cron.runs`: one job's runs (v3 requires the job), or all (v4 `scope: "all"`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronRunsParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID))]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID))]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5000))]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// v4 filters: `all`, `ok`, `error`, `skipped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::SHORT))]
    pub status: Option<String>,
    /// `all`, `delivered`, `not-delivered`, `unknown`, `not-requested`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::SHORT))]
    pub delivery_status: Option<String>,
    /// Only runs whose summary or error contains this (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::SHORT))]
    pub query: Option<String>,
    /// One run by its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::limits::ID))]
    pub run_id: Option<String>,
    /// `asc` or `desc` (v4 default `desc`: newest first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::limits::SHORT))]
    pub sort_dir: Option<String>,
}

/// `set-heartbeats`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SetHeartbeatsParams {
    pub enabled: bool,
}

/// When a `wake` turn happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WakeMode {
    Now,
    NextHeartbeat,
}

/// `wake`: a line for the main session, and a heartbeat now or at the next one.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WakeParams {
    pub mode: WakeMode,
    #[schemars(length(min = 1, max = crate::limits::TEXT))]
    pub text: String,
}
