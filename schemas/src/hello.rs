//! `hello-ok`: the payload of a successful `connect`, and the snapshot it carries.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::frames::StateVersion;
use crate::methods::HealthSnapshot;

/// `hello-ok` (superset of v3 and v4; [`crate::catalog`] narrows it per version).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HelloOk {
    #[serde(rename = "type")]
    #[schemars(schema_with = "literal_hello_ok")]
    pub kind: String,
    /// The negotiated protocol version (3 or 4).
    #[schemars(range(min = 1))]
    pub protocol: u64,
    pub server: ServerInfo,
    pub features: Features,
    pub snapshot: Snapshot,
    /// v3 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub canvas_host_url: Option<String>,
    /// v4 only: each plugin surface's capability-scoped URL (`canvas`:
    /// `http://host:port/__openclaw__/cap/<cap>`), rotated by `plugin.surface.refresh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_surface_urls: Option<PluginSurfaceUrls>,
    /// v3: present when the connection had a device identity; v4: always present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<HelloAuth>,
    pub policy: Policy,
    /// Switchboard's extension: only when `connect.params.resume` asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<HelloResume>,
}

/// `hello-ok.resume`: the session the connection is on, and whether it continued the
/// one asked for (`ok: false`: a fresh session; `reason` says why).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HelloResume {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub reason: Option<String>,
    #[schemars(length(min = 1))]
    pub session_id: String,
    #[schemars(length(min = 1))]
    pub epoch: String,
}

fn literal_hello_ok(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "const": "hello-ok" })
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerInfo {
    #[schemars(length(min = 1))]
    pub version: String,
    /// v3 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub commit: Option<String>,
    /// v3 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub host: Option<String>,
    /// v4 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 96))]
    pub build_id: Option<String>,
    /// v4 only: changes on every start of the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 96))]
    pub boot_id: Option<String>,
    #[schemars(length(min = 1))]
    pub conn_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Features {
    // An `Arc`: the same list goes into every `hello-ok` of a generation.
    pub methods: std::sync::Arc<Vec<String>>,
    pub events: std::sync::Arc<Vec<String>>,
    /// v4 only: capabilities this server implements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Snapshot {
    pub presence: Vec<PresenceEntry>,
    // An `Arc`: shared with the gateway's health cache, not copied per connection.
    pub health: std::sync::Arc<HealthSnapshot>,
    pub state_version: StateVersion,
    pub uptime_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub config_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub state_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_defaults: Option<SessionDefaults>,
    /// v4 only: how this gateway authenticates (`none`, `token`, `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SessionDefaults {
    #[schemars(length(min = 1))]
    pub default_agent_id: String,
    #[schemars(length(min = 1))]
    pub main_key: String,
    #[schemars(length(min = 1))]
    pub main_session_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub scope: Option<String>,
}

/// The connection's granted role and scopes (and its device token, if it has a device).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HelloAuth {
    /// v4 only: `token`, `password`, `device-token`, `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub device_token: Option<String>,
    #[schemars(length(min = 1))]
    pub role: String,
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    #[schemars(range(min = 1))]
    pub max_payload: u64,
    #[schemars(range(min = 1))]
    pub max_buffered_bytes: u64,
    #[schemars(range(min = 1))]
    pub tick_interval_ms: u64,
    /// v4 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<AttachmentPolicy>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AttachmentPolicy {
    #[schemars(range(min = 1))]
    pub max_bytes: u64,
    #[schemars(range(min = 1))]
    pub max_image_bytes: u64,
}

/// One line of the presence list: a connected client (or the gateway itself, or a
/// `system-event` line).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PresenceEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub host: Option<String>,
    /// v4 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub device_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub model_identifier: Option<String>,
    /// v4 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_input_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub ts: u64,
    /// v4 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_since: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub instance_id: Option<String>,
}

/// Fields of [`PresenceEntry`] a v3 client never sees.
pub const V4_ONLY_PRESENCE_FIELDS: &[&str] = &["clientId", "timeZone", "onlineSince"];

/// `{presence:[…]}`, the payload of the `presence` event.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceEvent {
    pub presence: Vec<PresenceEntry>,
}

/// String→string map used for labels.
pub type Labels = BTreeMap<String, String>;

/// `hello-ok.pluginSurfaceUrls` (and the refresh methods' answer): the canvas surface's
/// URL, capability included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginSurfaceUrls {
    #[schemars(length(min = 1))]
    pub canvas: String,
}
