//! The resolved settings (`GatewayConfig` and its parts), the flags and environment
//! variables they come from, where the state directory and config file are, and the
//! errors of resolution.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::channel::ChannelConfig;
use super::env::{Env, ProcessEnv};
use super::file::{self, LogFormat};

use crate::secret::Secret;
use crate::workers::{Timing, WorkerSpec};

/// The agent every session belongs to unless it names another (the reference's `main`).
pub const DEFAULT_AGENT_ID: &str = "main";
/// The v3 canvas host's port (the reference's documented default).
pub const DEFAULT_CANVAS_PORT: u16 = 18793;
/// Name of the agent runner worker.
pub const AGENT_WORKER: &str = "agent";
/// Default WebSocket port, shared with the Clawdbot/OpenClaw ecosystem.
pub const DEFAULT_PORT: u16 = 18789;

/// Environment variables read for the gateway token, first match wins.
pub const TOKEN_ENV: &[&str] = &[
    "SWITCHBOARD_GATEWAY_TOKEN",
    "CLAWDBOT_GATEWAY_TOKEN",
    "OPENCLAW_GATEWAY_TOKEN",
];
/// Environment variables read for the gateway password, first match wins.
pub const PASSWORD_ENV: &[&str] = &[
    "SWITCHBOARD_GATEWAY_PASSWORD",
    "CLAWDBOT_GATEWAY_PASSWORD",
    "OPENCLAW_GATEWAY_PASSWORD",
];
/// Environment variable for the state directory.
pub const STATE_DIR_ENV: &str = "SWITCHBOARD_STATE_DIR";
/// Environment variable for the config file.
pub const CONFIG_ENV: &str = "SWITCHBOARD_CONFIG";
/// Set by a gateway restarting in place, for its successor: the port it had bound.
pub const RESTART_PORT_ENV: &str = "SWITCHBOARD_RESTART_PORT";
pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_LOG_FILES: u32 = 5;
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// Where the gateway listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindMode {
    /// 127.0.0.1 (and ::1 when the host has IPv6).
    Loopback,
    /// Every interface (0.0.0.0). Requires auth.
    Lan,
    /// One address. Requires auth unless it is a loopback address.
    Addr(IpAddr),
}

impl BindMode {
    /// Parses `loopback`, `lan`, `any`, `all`, or an IP address.
    pub fn parse(s: &str) -> Result<BindMode, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "loopback" | "localhost" | "local" => Ok(BindMode::Loopback),
            "lan" | "any" | "all" | "0.0.0.0" => Ok(BindMode::Lan),
            other => other
                .parse::<IpAddr>()
                .map(BindMode::Addr)
                .map_err(|_| ConfigError::Bind(s.to_owned())),
        }
    }

    /// The addresses to bind, the first one mandatory, the others best-effort.
    pub fn addrs(&self) -> Vec<IpAddr> {
        match self {
            BindMode::Loopback => vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
            BindMode::Lan => vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
            BindMode::Addr(a) => vec![*a],
        }
    }

    pub fn is_loopback(&self) -> bool {
        match self {
            BindMode::Loopback => true,
            BindMode::Lan => false,
            BindMode::Addr(a) => a.is_loopback(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            BindMode::Loopback => "loopback".into(),
            BindMode::Lan => "lan".into(),
            BindMode::Addr(a) => a.to_string(),
        }
    }
}

/// How clients prove they may connect.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub token: Option<Secret>,
    pub password: Option<Secret>,
}

impl AuthConfig {
    /// `none`, `token` or `password`, as `hello-ok.snapshot.authMode` names it.
    pub fn mode(&self) -> &'static str {
        if self.token.is_some() {
            "token"
        } else if self.password.is_some() {
            "password"
        } else {
            "none"
        }
    }
}

/// The certificate and key of `--tls`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where and how the gateway logs (stderr always; a rotating file unless turned off).
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A tracing `EnvFilter` directive.
    pub level: String,
    pub format: LogFormat,
    pub file: Option<PathBuf>,
    pub max_file_bytes: u64,
    pub max_files: u32,
}

/// Everything `gateway run` needs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub port: u16,
    pub bind: BindMode,
    pub auth: AuthConfig,
    pub state_dir: PathBuf,
    /// The config file that was read, if there was one.
    pub config_file: Option<PathBuf>,
    /// Where the config file is, or would be (what `config.set` writes).
    pub config_path: PathBuf,
    /// Open socket → valid `connect`, else close.
    pub handshake_timeout: Duration,
    pub tick_interval: Duration,
    /// On stop or restart: how long in-flight work may take to finish.
    pub shutdown_grace: Duration,
    /// Worker processes to supervise (the agent runner by default).
    pub workers: Vec<WorkerSpec>,
    pub worker_timing: Timing,
    /// Serve `wss://` with this certificate and key.
    pub tls: Option<TlsFiles>,
    /// A Control UI folder served at `/` (canonical; holds `index.html`).
    pub control_ui_root: Option<PathBuf>,
    pub logging: LogConfig,
    /// Serve `/metrics`.
    pub metrics: bool,
    /// Bytes queued for all clients together before the longest queues are cut.
    pub max_queued_bytes: usize,
    /// `--reset-state`: a used state directory may start with a fresh database.
    pub reset_state: bool,
    /// Routing of each enabled messaging channel.
    pub channels: Vec<ChannelConfig>,
    /// `gateway.nodes`: commands added to and taken from every node platform's list.
    pub node_commands: crate::nodes::CommandPolicy,
    /// `gateway.requests`: each connection's request budget.
    pub request_rate: crate::auth::request_budget::RequestRate,
    /// `gateway.resume`: replay buffer bounds of resumable sessions.
    pub resume: crate::events::resume::ResumeLimits,
    /// `gateway.canvasHost.enabled`.
    pub canvas_enabled: bool,
    /// `gateway.canvasHost.port`: the v3 canvas port (0: any free one).
    pub canvas_port: u16,
    /// The command line this config was resolved from, to check an edited config file
    /// the same way (`config::edit`).
    pub flags: ResolvedFlags,
    /// Where each secret came from (`gateway.auth.token` → `env SWITCHBOARD_GATEWAY_TOKEN`),
    /// for `config show`.
    pub sources: BTreeMap<String, String>,
    /// `cron.enabled` (default on).
    pub cron_enabled: bool,
    /// `cron.skipMissedJobs`: the misfire choice of jobs that name none.
    pub cron_default_misfire: switchboard_schemas::methods::CronMisfire,
    /// The agent workspace (`HEARTBEAT.md`).
    pub workspace: PathBuf,
    /// The heartbeat (`agents.defaults.heartbeat`): recurring when `every` is set, and
    /// what a beat woken by `wake` uses either way.
    pub heartbeat: HeartbeatConfig,
}

/// `agents.defaults.heartbeat`, resolved.
#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    /// The interval; `None` (absent or `"0m"`): beats only when woken.
    pub every: Option<Duration>,
    /// Minutes after local midnight: `[start, end)`, and the zone (None: the host's).
    pub active_hours: Option<(u32, u32, Option<String>)>,
    pub prompt: String,
    /// Where a beat's answer that needs attention goes (`agents.defaults.heartbeat.target`).
    pub target: HeartbeatTarget,
    /// The recipient on a channel target (a chat id, a phone number…).
    pub to: Option<String>,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            every: None,
            active_hours: None,
            prompt: DEFAULT_HEARTBEAT_PROMPT.to_owned(),
            target: HeartbeatTarget::Owner,
            to: None,
        }
    }
}

/// `agents.defaults.heartbeat.target`, as the v4 reference documents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatTarget {
    /// The default: the owner's direct chat, the first concrete `allowFrom` entry of the
    /// configured channels (never a group); no owner, no delivery.
    Owner,
    /// The conversation the agent last answered, groups included.
    Last,
    /// Never delivered; the beat runs for its record only.
    None,
    /// A channel id: to `to`, else that channel's owner.
    Channel(String),
}

/// The reference's heartbeat instruction.
pub const DEFAULT_HEARTBEAT_PROMPT: &str = "Read HEARTBEAT.md if it exists (workspace context). \
     Follow it strictly. Do not infer or repeat old tasks from prior chats. \
     If nothing needs attention, reply HEARTBEAT_OK.";

fn state_dir_workspace(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("workspace")
}

impl GatewayConfig {
    /// A config with every default, rooted at `state_dir`.
    pub fn with_state_dir(state_dir: PathBuf) -> GatewayConfig {
        GatewayConfig {
            port: DEFAULT_PORT,
            bind: BindMode::Loopback,
            auth: AuthConfig::default(),
            logging: LogConfig {
                level: "info".into(),
                format: LogFormat::Text,
                file: Some(default_log_file(&state_dir)),
                max_file_bytes: DEFAULT_LOG_MAX_BYTES,
                max_files: DEFAULT_LOG_FILES,
            },
            config_path: state_dir.join(super::file::FILE_NAME),
            state_dir: state_dir.clone(),
            config_file: None,
            handshake_timeout: Duration::from_secs(10),
            tick_interval: Duration::from_secs(30),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            workers: Vec::new(),
            worker_timing: Timing::default(),
            tls: None,
            control_ui_root: None,
            metrics: true,
            max_queued_bytes: crate::events::hub::DEFAULT_MAX_QUEUED_TOTAL,
            reset_state: false,
            channels: Vec::new(),
            node_commands: Default::default(),
            request_rate: Default::default(),
            resume: Default::default(),
            canvas_enabled: true,
            canvas_port: DEFAULT_CANVAS_PORT,
            flags: Default::default(),
            sources: BTreeMap::new(),
            cron_enabled: true,
            cron_default_misfire: Default::default(),
            workspace: state_dir_workspace(&state_dir),
            heartbeat: HeartbeatConfig::default(),
        }
    }

    /// Refuses settings that would be unsafe to serve.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.bind.is_loopback() && self.auth.token.is_none() && self.auth.password.is_none() {
            let host = self.bind.addrs()[0];
            return Err(ConfigError::UnauthenticatedBind {
                host: host.to_string(),
                port: self.port,
            });
        }
        Ok(())
    }

    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.channel == name)
    }

    /// The effective configuration as JSON, secrets masked (`config show`).
    pub fn masked(&self) -> Value {
        let secret = |key: &str, s: &Option<Secret>| match s {
            Some(_) => json!(format!(
                "*** (set, from {})",
                self.sources
                    .get(key)
                    .map(String::as_str)
                    .unwrap_or("config")
            )),
            None => Value::Null,
        };
        let workers: Vec<Value> = self
            .workers
            .iter()
            .map(|w| {
                json!({"name": w.name, "program": w.program, "enabled": w.enabled,
                       "config": mask_secrets(&w.config)})
            })
            .collect();
        json!({
            "configFile": self.config_file,
            "stateDir": self.state_dir,
            "gateway": {
                "port": self.port,
                "bind": self.bind.describe(),
                "auth": {
                    "mode": self.auth.mode(),
                    "token": secret("gateway.auth.token", &self.auth.token),
                    "password": secret("gateway.auth.password", &self.auth.password),
                },
                "tls": match &self.tls {
                    Some(t) => json!({"enabled": true, "cert": t.cert, "key": t.key}),
                    None => json!({"enabled": false}),
                },
                "controlUi": match &self.control_ui_root {
                    Some(root) => json!({"enabled": true, "root": root}),
                    None => json!({"enabled": false}),
                },
                "handshakeTimeoutMs": self.handshake_timeout.as_millis() as u64,
                "shutdownGraceMs": self.shutdown_grace.as_millis() as u64,
                "canvasHost": {"enabled": self.canvas_enabled, "port": self.canvas_port},
                "resume": {
                    "maxEvents": self.resume.max_events,
                    "maxBytes": self.resume.max_bytes,
                    "windowMs": self.resume.window.as_millis() as u64,
                    "maxSessions": self.resume.max_detached,
                },
            },
            "logging": {
                "level": self.logging.level,
                "format": match self.logging.format { LogFormat::Text => "text", LogFormat::Json => "json" },
                "file": match &self.logging.file { Some(p) => json!(p), None => json!(false) },
                "maxFileBytes": self.logging.max_file_bytes,
                "maxFiles": self.logging.max_files,
            },
            "metrics": {"enabled": self.metrics},
            "channels": self.channels.iter().map(|c| (c.channel.clone(), json!(c))).collect::<serde_json::Map<_, _>>(),
            "workers": workers,
        })
    }
}

/// Replaces every string under a key that names a secret with `***`.
fn mask_secrets(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let secret = ["token", "key", "password", "secret"]
                        .iter()
                        .any(|s| lower.contains(s));
                    let masked = match v {
                        Value::String(_) if secret => json!("***"),
                        other => mask_secrets(other),
                    };
                    (k.clone(), masked)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(mask_secrets).collect()),
        other => other.clone(),
    }
}

fn default_log_file(state_dir: &Path) -> PathBuf {
    state_dir.join("logs").join("switchboard.log")
}

/// The flags a config was resolved from; its `Debug` shows none of them (they may hold
/// the token or password).
#[derive(Clone, Default)]
pub struct ResolvedFlags(pub Flags);

impl std::fmt::Debug for ResolvedFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Flags { .. }")
    }
}

/// What the command line gave (`None`: not given).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub port: Option<u16>,
    pub bind: Option<String>,
    pub token: Option<String>,
    pub password: Option<String>,
    pub tls: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tick_interval_ms: Option<u64>,
    pub handshake_timeout_ms: Option<u64>,
    pub worker_health_interval_ms: Option<u64>,
    pub max_queued_bytes: Option<usize>,
    pub no_agent: bool,
    /// `--reset-state`: accept a fresh database in a used state directory.
    pub reset_state: bool,
    /// Extra workers as JSON objects (`--worker`).
    pub workers: Vec<String>,
}

/// The state directory and config file path, before anything is read.
pub fn locate(flags: &Flags, env: &dyn Env) -> Result<(PathBuf, PathBuf, bool), ConfigError> {
    let state_dir = match &flags.state_dir {
        Some(d) => d.clone(),
        None => match env.first(&[STATE_DIR_ENV]) {
            Some((_, d)) => PathBuf::from(d),
            None => {
                let home = env
                    .var("HOME")
                    .filter(|h| !h.is_empty())
                    .ok_or(ConfigError::NoHome)?;
                PathBuf::from(home).join(".switchboard")
            }
        },
    };
    let (path, explicit) = match (&flags.config, env.first(&[CONFIG_ENV])) {
        (Some(p), _) => (p.clone(), true),
        (None, Some((_, p))) => (PathBuf::from(p), true),
        (None, None) => (state_dir.join(file::FILE_NAME), false),
    };
    Ok((state_dir, path, explicit))
}

/// `$SWITCHBOARD_STATE_DIR`, else `~/.switchboard`.
pub fn default_state_dir() -> Result<PathBuf, ConfigError> {
    locate(&Flags::default(), &ProcessEnv).map(|(d, _, _)| d)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid --bind value {0:?}: expected loopback, lan, or an IP address")]
    Bind(String),
    #[error(
        "refusing to bind gateway to {host}:{port} without auth (set --token, \
         SWITCHBOARD_GATEWAY_TOKEN or CLAWDBOT_GATEWAY_TOKEN, gateway.auth.token in the config, or a password)"
    )]
    UnauthenticatedBind { host: String, port: u16 },
    #[error(
        "cannot find a home directory for the state directory: set --state-dir or SWITCHBOARD_STATE_DIR"
    )]
    NoHome,
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    #[error(transparent)]
    File(#[from] file::FileError),
    #[error("{}", invalid_message(path.as_deref(), problems))]
    Invalid {
        path: Option<PathBuf>,
        problems: Vec<String>,
    },
}

fn invalid_message(path: Option<&Path>, problems: &[String]) -> String {
    let head = match path {
        Some(p) => format!("invalid configuration ({}):", p.display()),
        None => "invalid configuration:".to_owned(),
    };
    let mut out = head;
    for p in problems {
        out.push_str("\n  - ");
        out.push_str(p);
    }
    out
}
