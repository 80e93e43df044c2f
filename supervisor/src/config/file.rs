//! The configuration file: `config.json5` in the state directory (or `--config PATH`).
//!
//! JSON5 because it is the reference gateway's format: the `gateway` and
//! `channels.telegram` / `channels.whatsapp` sections of a Clawdbot/OpenClaw config carry
//! over key for key, and a hand-edited file may have comments and trailing commas.
//! Parsing is two steps so every error names where it is: JSON5 syntax (line and
//! column), then the typed schema (the key path, e.g. `channels.telegram.dmPolicy`).
//! Unknown keys are errors: a typo must not silently leave a default in force.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::secret::Secret;

/// The file name looked for in the state directory.
pub const FILE_NAME: &str = "config.json5";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct FileConfig {
    /// Editors' schema hint; ignored.
    #[serde(rename = "$schema")]
    pub schema: Option<String>,
    pub gateway: GatewayFile,
    pub logging: LoggingFile,
    pub metrics: MetricsFile,
    pub agent: AgentFile,
    pub channels: ChannelsFile,
    /// Extra worker processes (advanced; providers are configured under `channels`).
    pub workers: Vec<WorkerFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct GatewayFile {
    pub port: Option<u16>,
    pub bind: Option<String>,
    pub auth: AuthFile,
    pub tls: TlsFile,
    pub handshake_timeout_ms: Option<u64>,
    /// On stop or restart: how long in-flight agent runs and deliveries may take to finish.
    pub shutdown_grace_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AuthFile {
    pub token: Option<Secret>,
    pub password: Option<Secret>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TlsFile {
    pub enabled: Option<bool>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum LogFileSetting {
    Enabled(bool),
    Path(PathBuf),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct MetricsFile {
    /// Serve Prometheus metrics at `/metrics` (loopback peers, or with the token).
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AgentFile {
    pub backend: Option<AgentBackend>,
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ChannelsFile {
    pub telegram: Option<TelegramFile>,
    pub whatsapp: Option<WhatsAppFile>,
}

/// Who may talk to the agent in direct messages (the reference's `dmPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupPolicy {
    Open,
    Allowlist,
    Disabled,
}

/// Sender or group ids: Telegram ids may be written as numbers.
#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct GroupFile {
    pub require_mention: Option<bool>,
}

/// Declares a channel section: the routing keys every messaging channel shares (the
/// reference's names), then the channel's own. (`serde(flatten)` cannot be combined
/// with `deny_unknown_fields`, hence a macro rather than a shared struct.)
macro_rules! channel_file {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase", default)]
        pub struct $name {
            /// Default: on when the section exists.
            pub enabled: Option<bool>,
            pub dm_policy: Option<DmPolicy>,
            pub allow_from: Vec<Id>,
            pub group_policy: Option<GroupPolicy>,
            pub group_allow_from: Vec<Id>,
            /// Per-group settings by group id, `"*"` for every group. Listing a group admits it.
            pub groups: BTreeMap<String, GroupFile>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            pub fn policy(&self) -> PolicyFile<'_> {
                PolicyFile {
                    dm_policy: self.dm_policy,
                    allow_from: &self.allow_from,
                    group_policy: self.group_policy,
                    group_allow_from: &self.group_allow_from,
                    groups: &self.groups,
                }
            }
        }
    };
}

/// The routing keys of a channel section.
#[derive(Debug, Clone, Copy)]
pub struct PolicyFile<'a> {
    pub dm_policy: Option<DmPolicy>,
    pub allow_from: &'a [Id],
    pub group_policy: Option<GroupPolicy>,
    pub group_allow_from: &'a [Id],
    pub groups: &'a BTreeMap<String, GroupFile>,
}

channel_file!(
    /// `channels.telegram`.
    TelegramFile {
        bot_token: Option<Secret>,
        /// Bot API base URL (default `https://api.telegram.org`).
        api_url: Option<String>,
        /// Long-polling timeout of `getUpdates`, in seconds (default 30).
        poll_timeout_seconds: Option<u32>,
    }
);

channel_file!(
    /// `channels.whatsapp`.
    WhatsAppFile {
        /// Where the session (credentials, lock) lives; default `<state-dir>/whatsapp`.
        session_dir: Option<PathBuf>,
        /// The WhatsApp Web socket URL; only for tests and relays.
        server_url: Option<String>,
        /// Pin the WhatsApp Web client version `[primary, secondary, tertiary]` instead
        /// of asking WhatsApp for the latest; only for tests and relays.
        client_version: Option<[u32; 3]>,
    }
);

#[derive(Debug, Deserialize)]
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
    fn the_reference_shape_parses_with_comments_and_trailing_commas() {
        let c = parse(
            r#"{
              // the reference's keys
              gateway: { port: 18790, bind: "loopback", auth: { token: "t0k" }, },
              channels: { telegram: { botToken: "1:abc", dmPolicy: "pairing",
                          allowFrom: [12345, "@alice"], groups: { "*": { requireMention: true } } } },
            }"#,
            Path::new("c.json5"),
        )
        .unwrap();
        assert_eq!(c.gateway.port, Some(18790));
        let tg = c.channels.telegram.unwrap();
        assert_eq!(tg.dm_policy, Some(DmPolicy::Pairing));
        assert_eq!(tg.allow_from[0].as_string(), "12345");
        assert_eq!(tg.groups["*"].require_mention, Some(true));
    }

    #[test]
    fn errors_name_the_key_or_the_position() {
        let e = err(r#"{ gateway: { prot: 1 } }"#);
        assert!(e.contains("gateway.prot: unknown field `prot`"), "{e}");
        let e = err(r#"{ gateway: { port: 70000 } }"#);
        assert!(e.contains("gateway.port:"), "{e}");
        let e = err(r#"{ channels: { telegram: { dmPolicy: "nobody" } } }"#);
        assert!(e.contains("channels.telegram.dmPolicy"), "{e}");
        assert!(e.contains("pairing"), "names the allowed values: {e}");
        let e = err("{ gateway: { port: 1 ");
        assert!(e.contains("line 1"), "{e}");
        let e = err(r#"{ gateway: { auth: { token: "  " } } }"#);
        assert!(e.contains("gateway.auth.token: must not be empty"), "{e}");
        assert!(err("[1]").contains("top level must be an object"));
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        let c = parse("  \n", Path::new("c.json5")).unwrap();
        assert!(c.gateway.port.is_none() && c.channels.telegram.is_none());
    }
}
