//! The configuration file: `config.json5` in the state directory (or `--config PATH`).
//!
//! JSON5 because it is the reference gateway's format: the `gateway` and
//! `channels.<provider>` sections of a Clawdbot/OpenClaw config carry
//! over key for key, and a hand-edited file may have comments and trailing commas.
//! Parsing is two steps so every error names where it is: JSON5 syntax (line and
//! column), then the typed schema (the key path, e.g. `gateway.auth.token`).
//! Unknown keys are errors: a typo must not silently leave a default in force.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::secret::Secret;

/// The file name looked for in the state directory.
pub const FILE_NAME: &str = "config.json5";

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct FileConfig {
    /// Editors' schema hint; ignored.
    #[serde(rename = "$schema")]
    pub schema: Option<String>,
    pub gateway: GatewayFile,
    pub logging: LoggingFile,
    pub metrics: MetricsFile,
    pub agent: AgentFile,
    /// `channels.<provider>`: read by each provider's registry entry
    /// (`channels/providers/`); unknown providers are refused there.
    pub channels: BTreeMap<String, Value>,
    /// Extra worker processes (advanced; providers are configured under `channels`).
    pub workers: Vec<WorkerFile>,
    /// `confinement.<worker>`: rights added to one worker's confinement (`readWrite`,
    /// `readOnly`, `exec`: absolute paths; `spawn`, `off`: booleans). Logged as a
    /// warning at every start.
    pub confinement: BTreeMap<String, Value>,
    /// The Control UI's own preferences (`ui.prefs`, written by its `config.patch`):
    /// kept for it; Switchboard does not read them.
    pub ui: Option<Value>,
    /// `cron`: the scheduler (`enabled`, `skipMissedJobs`), the reference's keys.
    pub cron: CronFile,
    /// `agents.defaults`: the agent's workspace and its heartbeat.
    pub agents: AgentsFile,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct CronFile {
    pub enabled: Option<bool>,
    /// The misfire choice of jobs that name none: `true` = `skip`, `false` (default, as
    /// the reference) = `run-once`.
    pub skip_missed_jobs: Option<bool>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AgentsFile {
    pub defaults: AgentDefaultsFile,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AgentDefaultsFile {
    /// Where `HEARTBEAT.md` lives (default: `<state dir>/workspace`).
    pub workspace: Option<PathBuf>,
    pub heartbeat: HeartbeatFile,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HeartbeatFile {
    /// `"30m"`, `"1h"`, `"90s"`; `"0m"` (or absent) turns the heartbeat off.
    pub every: Option<String>,
    pub active_hours: Option<ActiveHoursFile>,
    /// The instruction sent with `HEARTBEAT.md` (default: the reference's prompt).
    pub prompt: Option<String>,
    /// Where an answer that needs attention goes: `"owner"` (default: the owner's direct
    /// chat, the first concrete `allowFrom` entry), `"last"` (the conversation the agent
    /// last answered), `"none"`, or a channel id (with `to`, else that channel's owner).
    pub target: Option<String>,
    /// The recipient on a channel target (a chat id, a phone number…); ignored otherwise.
    pub to: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ActiveHoursFile {
    /// `"HH:MM"` local time, inclusive.
    pub start: String,
    /// `"HH:MM"` (`"24:00"` = midnight), exclusive.
    pub end: String,
    /// IANA zone (default: the host's).
    #[serde(default)]
    pub timezone: Option<String>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct GatewayFile {
    pub port: Option<u16>,
    pub bind: Option<String>,
    pub auth: AuthFile,
    pub tls: TlsFile,
    pub handshake_timeout_ms: Option<u64>,
    /// On stop or restart: how long in-flight agent runs and deliveries may take to finish.
    pub shutdown_grace_ms: Option<u64>,
    pub nodes: NodesFile,
    /// `gateway.requests`: how fast one connection may make requests.
    pub requests: RequestsFile,
    /// `gateway.controlUi`: serve an installed Control UI at `/` (WebChat moves to
    /// `/webchat`).
    pub control_ui: ControlUiFile,
    /// `gateway.resume`: bounds of resumable sessions' replay buffers.
    pub resume: ResumeFile,
    /// `gateway.canvasHost`: the canvas (`<state dir>/canvas`) and its v3 port.
    pub canvas_host: CanvasHostFile,
}

/// `gateway.canvasHost`: `enabled` (default true) serves the canvas folder and A2UI —
/// v4 on the gateway port, v3 on `port` (default 18793, 0 for any free one; the
/// gateway's bind and TLS).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct CanvasHostFile {
    pub enabled: Option<bool>,
    pub port: Option<u16>,
}

/// `gateway.resume` (Switchboard's event resumption, `docs/resume.md`): per session at
/// most `maxEvents` events and `maxBytes` bytes are held for replay, for `windowMs` after
/// its socket went; at most `maxSessions` detached sessions are kept.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ResumeFile {
    pub max_events: Option<usize>,
    pub max_bytes: Option<usize>,
    pub window_ms: Option<u64>,
    pub max_sessions: Option<usize>,
}

/// `gateway.controlUi`, the reference's keys: `root` is a folder holding the UI's
/// `index.html` (e.g. `…/node_modules/openclaw/dist/control-ui`); `enabled: false`
/// turns it off without removing the path.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ControlUiFile {
    pub enabled: Option<bool>,
    pub root: Option<PathBuf>,
}

/// `gateway.requests`: `perSecond` sustained and `burst` at once, per connection
/// (`perSecond: 0`: no limit). See `auth::request_budget`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RequestsFile {
    pub per_second: Option<u32>,
    pub burst: Option<u32>,
}

/// `gateway.nodes`: what the operator adds to and takes from every platform's node
/// command list. OpenClaw spells it `commands.allow`/`commands.deny`, Clawdbot
/// `allowCommands`/`denyCommands`; both are read.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct NodesFile {
    pub commands: NodeCommandsFile,
    pub allow_commands: Vec<String>,
    pub deny_commands: Vec<String>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NodeCommandsFile {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AuthFile {
    pub token: Option<Secret>,
    pub password: Option<Secret>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TlsFile {
    pub enabled: Option<bool>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LoggingFile {
    /// A tracing filter: `info`, `debug`, `info,switchboard::workers=debug`.
    pub level: Option<String>,
    /// Format of the log file: `text` (default) or `json` (one object per line).
    pub format: Option<LogFormat>,
    /// `false` for no log file, or a path (default `<state-dir>/logs/switchboard.log`).
    pub file: Option<LogFileSetting>,
    pub max_file_bytes: Option<u64>,
    pub max_files: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum LogFileSetting {
    Enabled(bool),
    Path(PathBuf),
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct MetricsFile {
    /// Serve Prometheus metrics at `/metrics` (loopback peers, or with the token).
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AgentFile {
    pub backend: Option<AgentBackend>,
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    pub model: Option<String>,
    /// Echo backend only: the pause between streamed words, in milliseconds (default
    /// [`crate::config::DEFAULT_ECHO_DELAY_MS`], so a reply visibly streams; 0: at once).
    pub echo_delay_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentBackend {
    Echo,
    Openai,
}

impl AgentBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentBackend::Echo => "echo",
            AgentBackend::Openai => "openai",
        }
    }
}

/// Who may talk to the agent in direct messages (the reference's `dmPolicy`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DmPolicy {
    /// Unknown senders get a pairing code; an operator approves it.
    Pairing,
    /// Only senders in `allowFrom` (or approved by pairing earlier).
    Allowlist,
    /// Anyone (`allowFrom` must contain `"*"`, as a deliberate opt-in).
    Open,
    /// No direct messages at all.
    Disabled,
}

/// Whether group messages are accepted at all (the reference's `groupPolicy`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum GroupPolicy {
    Open,
    Allowlist,
    Disabled,
}

/// Sender or group ids: numeric ids may be written as numbers.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Id {
    Text(String),
    Number(i64),
}

impl Id {
    pub fn as_string(&self) -> String {
        match self {
            Id::Text(s) => s.trim().to_owned(),
            Id::Number(n) => n.to_string(),
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkerFile {
    pub name: String,
    pub program: PathBuf,
    #[serde(default)]
    pub config: Value,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A problem with the file, naming where it is.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config file {path}: {key}: {message}")]
    Key {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// Reads and parses the file; `Ok(None)` when it does not exist.
pub fn load(path: &Path) -> Result<Option<FileConfig>, FileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FileError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    parse(&text, path).map(Some)
}

/// Parses JSON5 text (an empty file is an empty config).
pub fn parse(text: &str, path: &Path) -> Result<FileConfig, FileError> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    let value: Value = json5::from_str(text).map_err(|e| FileError::Syntax {
        path: path.to_owned(),
        message: syntax_message(&e),
    })?;
    if !value.is_object() {
        return Err(FileError::Syntax {
            path: path.to_owned(),
            message: "the top level must be an object ({ … })".into(),
        });
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        FileError::Key {
            path: path.to_owned(),
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            message: e.into_inner().to_string(),
        }
    })
}

fn syntax_message(e: &json5::Error) -> String {
    match e.position() {
        Some(p) => format!(
            "invalid JSON5 at line {}, column {}: {e}",
            p.line + 1,
            p.column + 1
        ),
        None => format!("invalid JSON5: {e}"),
    }
}

impl schemars::JsonSchema for Secret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "minLength": 1, "writeOnly": true})
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Secret::new(s).ok_or_else(|| serde::de::Error::custom("must not be empty"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, Path::new("c.json5")).unwrap_err().to_string()
    }

    #[test]
    fn comments_and_trailing_commas_parse() {
        let c = parse(
            r#"{
              // the reference's keys
              gateway: { port: 18790, bind: "loopback", auth: { token: "t0k" }, },
            }"#,
            Path::new("c.json5"),
        )
        .unwrap();
        assert_eq!(c.gateway.port, Some(18790));
    }

    #[test]
    fn errors_name_the_key_or_the_position() {
        let e = err(r#"{ gateway: { prot: 1 } }"#);
        assert!(e.contains("gateway.prot: unknown field `prot`"), "{e}");
        let e = err(r#"{ gateway: { port: 70000 } }"#);
        assert!(e.contains("gateway.port:"), "{e}");
        let e = err("{ gateway: { port: 1 ");
        assert!(e.contains("line 1"), "{e}");
        let e = err(r#"{ gateway: { auth: { token: "  " } } }"#);
        assert!(e.contains("gateway.auth.token: must not be empty"), "{e}");
        assert!(err("[1]").contains("top level must be an object"));
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        let c = parse("  \n", Path::new("c.json5")).unwrap();
        assert!(c.gateway.port.is_none() && c.channels.is_empty());
    }
}
