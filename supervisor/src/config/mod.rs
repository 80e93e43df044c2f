//! The gateway's resolved settings: command-line flags, then environment variables, then
//! the config file (`file.rs`), then embedded defaults — for every setting, in that order.
//!
//! Every setting has a default, so `switchboard gateway run` serves at once with no
//! config. Everything is validated before the gateway takes its lock or binds a port: a
//! bad config never starts a half-working gateway, and every problem is reported at
//! once, each naming its key.

pub mod file;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

pub use file::{AgentBackend, DmPolicy, GroupPolicy, LogFormat};

use crate::secret::Secret;
use crate::workers::{Timing, WorkerSpec};

/// The agent every session belongs to unless it names another (the reference's `main`).
pub const DEFAULT_AGENT_ID: &str = "main";
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
/// The Telegram bot token's environment variable (the reference's name).
pub const TELEGRAM_TOKEN_ENV: &str = "TELEGRAM_BOT_TOKEN";
pub const DEFAULT_TELEGRAM_API: &str = "https://api.telegram.org";
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

/// Settings of one group (by id, or `"*"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_mention: Option<bool>,
}

/// How the supervisor routes one messaging channel's inbound messages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelConfig {
    /// The channel id (`telegram`, `whatsapp`), also its worker's name.
    pub channel: String,
    pub dm_policy: DmPolicy,
    pub allow_from: Vec<String>,
    pub group_policy: GroupPolicy,
    pub group_allow_from: Vec<String>,
    pub groups: BTreeMap<String, GroupSettings>,
}

impl ChannelConfig {
    /// The reference's defaults: pairing for DMs, allow-listed groups, mentions required.
    pub fn defaults(channel: &str) -> ChannelConfig {
        ChannelConfig {
            channel: channel.to_owned(),
            dm_policy: DmPolicy::Pairing,
            allow_from: Vec::new(),
            group_policy: GroupPolicy::Allowlist,
            group_allow_from: Vec::new(),
            groups: BTreeMap::new(),
        }
    }
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
    pub logging: LogConfig,
    /// Serve `/metrics`.
    pub metrics: bool,
    /// Routing of each enabled messaging channel.
    pub channels: Vec<ChannelConfig>,
    /// Where each secret came from (`gateway.auth.token` → `env SWITCHBOARD_GATEWAY_TOKEN`),
    /// for `config show`.
    pub sources: BTreeMap<String, String>,
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
            state_dir,
            config_file: None,
            handshake_timeout: Duration::from_secs(10),
            tick_interval: Duration::from_secs(30),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            workers: Vec::new(),
            worker_timing: Timing::default(),
            tls: None,
            metrics: true,
            channels: Vec::new(),
            sources: BTreeMap::new(),
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
                "handshakeTimeoutMs": self.handshake_timeout.as_millis() as u64,
                "shutdownGraceMs": self.shutdown_grace.as_millis() as u64,
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
    pub no_agent: bool,
    /// Extra workers as JSON objects (`--worker`).
    pub workers: Vec<String>,
}

/// Reads the environment (injectable for tests).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;

    /// The first non-blank value among `names`, with the name it came from.
    fn first(&self, names: &[&'static str]) -> Option<(&'static str, String)> {
        names.iter().find_map(|n| {
            self.var(n)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (*n, v))
        })
    }
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
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

/// Resolves and validates the whole configuration.
pub fn resolve(flags: &Flags, env: &dyn Env) -> Result<GatewayConfig, ConfigError> {
    let (state_dir, path, explicit) = locate(flags, env)?;
    let file = match file::load(&path)? {
        Some(f) => Some(f),
        None if explicit => return Err(ConfigError::Missing(path)),
        None => None,
    };
    let mut r = Resolver {
        flags,
        env,
        problems: Vec::new(),
        cfg: GatewayConfig::with_state_dir(state_dir),
    };
    r.cfg.config_file = file.as_ref().map(|_| path.clone());
    let f = file.unwrap_or_default();
    r.gateway(&f.gateway);
    r.logging(&f.logging);
    r.cfg.metrics = f.metrics.enabled.unwrap_or(true);
    r.agent(&f.agent);
    r.telegram(f.channels.telegram.as_ref());
    r.whatsapp(f.channels.whatsapp.as_ref());
    r.extra_workers(&f.workers);
    if !r.problems.is_empty() {
        return Err(ConfigError::Invalid {
            path: r.cfg.config_file.clone(),
            problems: r.problems,
        });
    }
    r.cfg.validate()?;
    Ok(r.cfg)
}

struct Resolver<'a> {
    flags: &'a Flags,
    env: &'a dyn Env,
    problems: Vec<String>,
    cfg: GatewayConfig,
}

impl Resolver<'_> {
    fn problem(&mut self, key: &str, what: impl std::fmt::Display) {
        self.problems.push(format!("{key}: {what}"));
    }

    /// A secret from a flag, else the environment, else the file; records its source.
    fn secret(
        &mut self,
        key: &str,
        flag: Option<(&str, &Option<String>)>,
        env: &[&'static str],
        file: &Option<Secret>,
    ) -> Option<Secret> {
        if let Some((name, Some(v))) = flag
            && let Some(s) = Secret::new(v.as_str())
        {
            self.cfg.sources.insert(key.into(), format!("flag {name}"));
            return Some(s);
        }
        if let Some((name, v)) = self.env.first(env)
            && let Some(s) = Secret::new(v)
        {
            self.cfg.sources.insert(key.into(), format!("env {name}"));
            return Some(s);
        }
        if file.is_some() {
            self.cfg.sources.insert(key.into(), "config file".into());
        }
        file.clone()
    }

    fn gateway(&mut self, g: &file::GatewayFile) {
        let port = self.flags.port.or_else(|| {
            self.env
                .first(&["SWITCHBOARD_GATEWAY_PORT"])
                .and_then(|(_, p)| p.trim().parse().ok())
        });
        self.cfg.port = port.or(g.port).unwrap_or(DEFAULT_PORT);
        // Port 0 means "pick one"; a gateway restarting in place keeps the one it picked.
        if self.cfg.port == 0
            && let Some(p) = self
                .env
                .first(&[RESTART_PORT_ENV])
                .and_then(|(_, p)| p.trim().parse().ok())
        {
            self.cfg.port = p;
        }
        let bind = self
            .flags
            .bind
            .clone()
            .or_else(|| {
                self.env
                    .first(&["SWITCHBOARD_GATEWAY_BIND"])
                    .map(|(_, v)| v)
            })
            .or_else(|| g.bind.clone());
        if let Some(b) = bind {
            match BindMode::parse(&b) {
                Ok(m) => self.cfg.bind = m,
                Err(_) => self.problem(
                    "gateway.bind",
                    format!("{b:?} is not loopback, lan or an IP address"),
                ),
            }
        }
        self.cfg.auth.token = self.secret(
            "gateway.auth.token",
            Some(("--token", &self.flags.token)),
            TOKEN_ENV,
            &g.auth.token,
        );
        self.cfg.auth.password = self.secret(
            "gateway.auth.password",
            Some(("--password", &self.flags.password)),
            PASSWORD_ENV,
            &g.auth.password,
        );
        let tls_on = self.flags.tls
            || self.flags.tls_cert.is_some()
            || self.flags.tls_key.is_some()
            || g.tls.enabled.unwrap_or(false);
        if tls_on {
            let cert = self.flags.tls_cert.clone().or_else(|| g.tls.cert.clone());
            let key = self.flags.tls_key.clone().or_else(|| g.tls.key.clone());
            if cert.is_some() != key.is_some() {
                self.problem(
                    "gateway.tls",
                    "give both a certificate and a key, or neither (a self-signed pair is then generated)",
                );
            }
            for (what, p) in [("cert", &cert), ("key", &key)] {
                if let Some(p) = p
                    && !p.exists()
                {
                    self.problem(
                        &format!("gateway.tls.{what}"),
                        format!("{} does not exist", p.display()),
                    );
                }
            }
            let (cert, key) =
                crate::net::tls::paths(&self.cfg.state_dir, cert.as_deref(), key.as_deref());
            self.cfg.tls = Some(TlsFiles { cert, key });
        }
        let handshake = self.flags.handshake_timeout_ms.or(g.handshake_timeout_ms);
        if let Some(ms) = handshake {
            if !(10..=300_000).contains(&ms) {
                self.problem(
                    "gateway.handshakeTimeoutMs",
                    "must be between 10 and 300000",
                );
            }
            self.cfg.handshake_timeout = Duration::from_millis(ms.max(10));
        }
        if let Some(ms) = g.shutdown_grace_ms {
            if ms > 600_000 {
                self.problem(
                    "gateway.shutdownGraceMs",
                    "must be at most 600000 (10 minutes)",
                );
            }
            self.cfg.shutdown_grace = Duration::from_millis(ms);
        }
        if let Some(ms) = self.flags.tick_interval_ms {
            self.cfg.tick_interval = Duration::from_millis(ms.max(10));
        }
        if let Some(ms) = self.flags.worker_health_interval_ms {
            let interval = Duration::from_millis(ms.max(50));
            self.cfg.worker_timing.health_interval = interval;
            self.cfg.worker_timing.health_deadline = (interval / 2).min(Duration::from_secs(1));
        }
    }

    fn logging(&mut self, l: &file::LoggingFile) {
        let level = self
            .env
            .first(&["SWITCHBOARD_LOG", "RUST_LOG"])
            .map(|(_, v)| v)
            .or_else(|| l.level.clone());
        if let Some(level) = level {
            if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
                self.problem(
                    "logging.level",
                    format!("{level:?} is not a log filter: {e}"),
                );
            }
            self.cfg.logging.level = level;
        }
        match self.env.first(&["SWITCHBOARD_LOG_FORMAT"]) {
            Some((_, v)) => match v.trim() {
                "json" => self.cfg.logging.format = LogFormat::Json,
                "text" => self.cfg.logging.format = LogFormat::Text,
                other => self.problem(
                    "logging.format",
                    format!("SWITCHBOARD_LOG_FORMAT={other:?}: expected text or json"),
                ),
            },
            None => self.cfg.logging.format = l.format.unwrap_or(LogFormat::Text),
        }
        match &l.file {
            Some(file::LogFileSetting::Enabled(false)) => self.cfg.logging.file = None,
            Some(file::LogFileSetting::Enabled(true)) | None => {}
            Some(file::LogFileSetting::Path(p)) => self.cfg.logging.file = Some(p.clone()),
        }
        if let Some(b) = l.max_file_bytes {
            if b < 64 * 1024 {
                self.problem("logging.maxFileBytes", "must be at least 65536");
            }
            self.cfg.logging.max_file_bytes = b.max(64 * 1024);
        }
        if let Some(n) = l.max_files {
            if !(1..=100).contains(&n) {
                self.problem("logging.maxFiles", "must be between 1 and 100");
            }
            self.cfg.logging.max_files = n.clamp(1, 100);
        }
    }

    fn agent(&mut self, a: &file::AgentFile) {
        if self.flags.no_agent {
            return;
        }
        let var = |names: &[&'static str]| self.env.first(names).map(|(_, v)| v);
        let base_url =
            var(&["SWITCHBOARD_AGENT_BASE_URL", "OPENAI_BASE_URL"]).or_else(|| a.base_url.clone());
        let api_key = self.secret(
            "agent.apiKey",
            None,
            &["SWITCHBOARD_AGENT_API_KEY", "OPENAI_API_KEY"],
            &a.api_key,
        );
        let backend = match var(&["SWITCHBOARD_AGENT_BACKEND"]) {
            Some(b) => match b.trim() {
                "echo" => AgentBackend::Echo,
                "openai" => AgentBackend::Openai,
                other => {
                    self.problem(
                        "agent.backend",
                        format!("SWITCHBOARD_AGENT_BACKEND={other:?}: expected echo or openai"),
                    );
                    AgentBackend::Echo
                }
            },
            None => a
                .backend
                .unwrap_or(if base_url.is_some() || api_key.is_some() {
                    AgentBackend::Openai
                } else {
                    AgentBackend::Echo
                }),
        };
        if let Some(u) = &base_url
            && !is_http_url(u)
        {
            self.problem("agent.baseUrl", format!("{u:?} is not an http(s) URL"));
        }
        if backend == AgentBackend::Openai && base_url.is_none() && api_key.is_none() {
            self.problem(
                "agent.backend",
                "openai needs agent.baseUrl or agent.apiKey (or SWITCHBOARD_AGENT_BASE_URL / SWITCHBOARD_AGENT_API_KEY)",
            );
        }
        let mut cfg = json!({ "backend": backend.as_str() });
        if let Some(u) = base_url {
            cfg["baseUrl"] = u.into();
        }
        if let Some(k) = api_key {
            cfg["apiKey"] = k.expose().into();
        }
        if let Some(m) = var(&["SWITCHBOARD_AGENT_MODEL"]).or_else(|| a.model.clone()) {
            cfg["model"] = m.into();
        }
        if let Some(d) =
            var(&["SWITCHBOARD_AGENT_ECHO_DELAY_MS"]).and_then(|d| d.trim().parse::<u64>().ok())
        {
            cfg["echoDelayMs"] = d.into();
        }
        self.cfg.workers.push(WorkerSpec {
            name: crate::config::AGENT_WORKER.into(),
            program: worker_dir(self.env).join("switchboard-worker-agent"),
            config: cfg,
            enabled: true,
        });
    }

    fn policy(&mut self, channel: &str, p: file::PolicyFile<'_>) -> ChannelConfig {
        let mut c = ChannelConfig::defaults(channel);
        let ids = |v: &[file::Id]| -> Vec<String> {
            v.iter()
                .map(file::Id::as_string)
                .filter(|s| !s.is_empty())
                .collect()
        };
        c.allow_from = ids(p.allow_from);
        c.group_allow_from = ids(p.group_allow_from);
        if let Some(d) = p.dm_policy {
            c.dm_policy = d;
        }
        if let Some(g) = p.group_policy {
            c.group_policy = g;
        }
        c.groups = p
            .groups
            .iter()
            .map(|(k, g)| {
                (
                    k.trim().to_owned(),
                    GroupSettings {
                        require_mention: g.require_mention,
                    },
                )
            })
            .collect();
        if c.dm_policy == DmPolicy::Open && !c.allow_from.iter().any(|a| a == "*") {
            self.problem(
                &format!("channels.{channel}.dmPolicy"),
                "\"open\" lets anyone talk to your agent; confirm it by adding \"*\" to allowFrom",
            );
        }
        c
    }

    fn telegram(&mut self, t: Option<&file::TelegramFile>) {
        let env_token = self.env.first(&[TELEGRAM_TOKEN_ENV]).is_some();
        // The section turns the channel on; so does the token's environment variable alone.
        let enabled = match t {
            Some(t) => t.enabled.unwrap_or(true),
            None => env_token,
        };
        if !enabled {
            return;
        }
        let empty = file::TelegramFile::default();
        let t = t.unwrap_or(&empty);
        let policy = self.policy("telegram", t.policy());
        let token = self.secret(
            "channels.telegram.botToken",
            None,
            &[TELEGRAM_TOKEN_ENV],
            &t.bot_token,
        );
        let Some(token) = token else {
            self.problem(
                "channels.telegram.botToken",
                format!("required (or set {TELEGRAM_TOKEN_ENV}); get one from @BotFather"),
            );
            return;
        };
        if !looks_like_bot_token(token.expose()) {
            self.problem(
                "channels.telegram.botToken",
                "does not look like a bot token (expected <digits>:<secret>, as @BotFather gives it)",
            );
        }
        let api_url = self
            .env
            .first(&["SWITCHBOARD_TELEGRAM_API_URL"])
            .map(|(_, v)| v)
            .or_else(|| t.api_url.clone())
            .unwrap_or_else(|| DEFAULT_TELEGRAM_API.into());
        if !is_http_url(&api_url) {
            self.problem(
                "channels.telegram.apiUrl",
                format!("{api_url:?} is not an http(s) URL"),
            );
        }
        let poll = t.poll_timeout_seconds.unwrap_or(30);
        if poll > 600 {
            self.problem(
                "channels.telegram.pollTimeoutSeconds",
                "must be at most 600",
            );
        }
        self.cfg.workers.push(WorkerSpec {
            name: "telegram".into(),
            program: worker_dir(self.env).join("switchboard-worker-telegram"),
            config: json!({
                "botToken": token.expose(),
                "apiUrl": api_url.trim_end_matches('/'),
                "pollTimeoutSeconds": poll,
            }),
            enabled: true,
        });
        self.cfg.channels.push(policy);
    }

    fn whatsapp(&mut self, w: Option<&file::WhatsAppFile>) {
        let Some(w) = w else { return };
        if !w.enabled.unwrap_or(true) {
            return;
        }
        let policy = self.policy("whatsapp", w.policy());
        let session_dir = w
            .session_dir
            .clone()
            .unwrap_or_else(|| self.cfg.state_dir.join("whatsapp"));
        let mut config = json!({ "sessionDir": session_dir });
        if let Some(url) = &w.server_url {
            if !url.starts_with("ws://") && !url.starts_with("wss://") {
                self.problem(
                    "channels.whatsapp.serverUrl",
                    format!("{url:?} is not a ws:// or wss:// URL"),
                );
            }
            config["serverUrl"] = json!(url);
        }
        if let Some(v) = w.client_version {
            config["clientVersion"] = json!(v);
        }
        self.cfg.workers.push(WorkerSpec {
            name: "whatsapp".into(),
            program: worker_dir(self.env).join("switchboard-worker-whatsapp"),
            config,
            enabled: true,
        });
        self.cfg.channels.push(policy);
    }

    fn extra_workers(&mut self, from_file: &[file::WorkerFile]) {
        for (i, w) in from_file.iter().enumerate() {
            let spec = WorkerSpec {
                name: w.name.clone(),
                program: w.program.clone(),
                config: if w.config.is_null() {
                    json!({})
                } else {
                    w.config.clone()
                },
                enabled: w.enabled.unwrap_or(true),
            };
            self.add_worker(&format!("workers[{i}]"), spec);
        }
        for raw in self.flags.workers.clone() {
            match parse_worker_flag(&raw) {
                Ok(spec) => self.add_worker("--worker", spec),
                Err(e) => self.problems.push(e),
            }
        }
    }

    fn add_worker(&mut self, key: &str, spec: WorkerSpec) {
        if spec.name.is_empty()
            || !spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.problem(
                &format!("{key}.name"),
                format!(
                    "{:?}: a worker name may use letters, digits, '-' and '_' only",
                    spec.name
                ),
            );
            return;
        }
        if self.cfg.workers.iter().any(|w| w.name == spec.name) {
            self.problem(
                &format!("{key}.name"),
                format!("a worker named {:?} already exists", spec.name),
            );
            return;
        }
        self.cfg.workers.push(spec);
    }
}

fn parse_worker_flag(raw: &str) -> Result<WorkerSpec, String> {
    let bad = |why: &str| format!("--worker {raw:?}: {why}");
    let v: Value = serde_json::from_str(raw).map_err(|e| bad(&e.to_string()))?;
    let name = v["name"].as_str().ok_or_else(|| bad("missing \"name\""))?;
    let program = v["program"]
        .as_str()
        .ok_or_else(|| bad("missing \"program\""))?;
    Ok(WorkerSpec {
        name: name.to_owned(),
        program: program.into(),
        config: v
            .get("config")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({})),
        enabled: v["enabled"].as_bool().unwrap_or(true),
    })
}

fn is_http_url(u: &str) -> bool {
    let u = u.trim();
    (u.starts_with("http://") || u.starts_with("https://"))
        && u.split("://")
            .nth(1)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
}

/// `<digits>:<35ish url-safe chars>`, as @BotFather issues them.
fn looks_like_bot_token(t: &str) -> bool {
    match t.split_once(':') {
        Some((id, secret)) => {
            !id.is_empty()
                && id.chars().all(|c| c.is_ascii_digit())
                && !secret.is_empty()
                && secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }
        None => false,
    }
}

/// The first non-empty secret among the given environment variables.
pub fn secret_from_env(names: &[&'static str]) -> Option<Secret> {
    ProcessEnv.first(names).and_then(|(_, v)| Secret::new(v))
}

/// Where worker binaries live: `$SWITCHBOARD_WORKER_DIR`, else next to this executable.
pub fn worker_dir(env: &dyn Env) -> PathBuf {
    if let Some((_, dir)) = env.first(&["SWITCHBOARD_WORKER_DIR"]) {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct FakeEnv(HashMap<&'static str, &'static str>);
    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
    }

    fn env(pairs: &[(&'static str, &'static str)]) -> FakeEnv {
        let mut m: HashMap<_, _> = pairs.iter().copied().collect();
        m.insert("HOME", "/home/u");
        FakeEnv(m)
    }

    fn with_file(text: &str) -> (tempfile::TempDir, Flags) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file::FILE_NAME), text).unwrap();
        let flags = Flags {
            state_dir: Some(dir.path().to_owned()),
            ..Flags::default()
        };
        (dir, flags)
    }

    #[test]
    fn bind_modes_parse() {
        assert_eq!(BindMode::parse("loopback").unwrap(), BindMode::Loopback);
        assert_eq!(BindMode::parse("lan").unwrap(), BindMode::Lan);
        assert_eq!(
            BindMode::parse("::1").unwrap(),
            BindMode::Addr("::1".parse().unwrap())
        );
        assert!(BindMode::parse("nowhere").is_err());
        assert!(BindMode::parse("127.0.0.2").unwrap().is_loopback());
    }

    #[test]
    fn no_file_means_every_default() {
        let flags = Flags {
            state_dir: Some("/nonexistent-sb".into()),
            ..Flags::default()
        };
        let c = resolve(&flags, &env(&[])).unwrap();
        assert_eq!(c.port, DEFAULT_PORT);
        assert_eq!(c.bind, BindMode::Loopback);
        assert!(c.config_file.is_none());
        assert_eq!(
            c.logging.file.as_deref(),
            Some(Path::new("/nonexistent-sb/logs/switchboard.log"))
        );
        assert_eq!(c.workers.len(), 1, "the agent worker only");
        assert_eq!(c.workers[0].config["backend"], "echo");
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let (_d, mut flags) =
            with_file(r#"{ gateway: { port: 1111, auth: { token: "file-tok" } } }"#);
        let e = env(&[("SWITCHBOARD_GATEWAY_PORT", "2222")]);
        let c = resolve(&flags, &e).unwrap();
        assert_eq!(c.port, 2222);
        assert_eq!(c.auth.token.as_ref().unwrap().expose(), "file-tok");
        assert_eq!(c.sources["gateway.auth.token"], "config file");
        flags.port = Some(3333);
        flags.token = Some("flag-tok".into());
        let c = resolve(&flags, &env(&[("CLAWDBOT_GATEWAY_TOKEN", "env-tok")])).unwrap();
        assert_eq!(c.port, 3333);
        assert_eq!(c.auth.token.as_ref().unwrap().expose(), "flag-tok");
        flags.token = None;
        let c = resolve(&flags, &env(&[("CLAWDBOT_GATEWAY_TOKEN", "env-tok")])).unwrap();
        assert_eq!(
            c.sources["gateway.auth.token"],
            "env CLAWDBOT_GATEWAY_TOKEN"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_key_and_no_secret() {
        let (_d, flags) = with_file(
            r#"{ gateway: { bind: "moon" }, logging: { maxFiles: 0 },
                 channels: { telegram: { botToken: "not a token sekrit", dmPolicy: "open", apiUrl: "ftp://x" } } }"#,
        );
        let e = resolve(&flags, &env(&[])).unwrap_err().to_string();
        for key in [
            "gateway.bind:",
            "logging.maxFiles:",
            "channels.telegram.botToken: does not look like a bot token",
            "channels.telegram.dmPolicy:",
            "channels.telegram.apiUrl:",
        ] {
            assert!(e.contains(key), "{key} missing from:\n{e}");
        }
        assert!(!e.contains("sekrit"), "the token leaked:\n{e}");
    }

    #[test]
    fn telegram_needs_a_token_and_turns_on_from_the_section_or_the_env() {
        let (_d, flags) = with_file(r#"{ channels: { telegram: {} } }"#);
        let e = resolve(&flags, &env(&[])).unwrap_err().to_string();
        assert!(e.contains("channels.telegram.botToken: required"), "{e}");
        let c = resolve(&flags, &env(&[(TELEGRAM_TOKEN_ENV, "123:abc_DEF-9")])).unwrap();
        let w = c.workers.iter().find(|w| w.name == "telegram").unwrap();
        assert_eq!(w.config["apiUrl"], DEFAULT_TELEGRAM_API);
        assert_eq!(c.channel("telegram").unwrap().dm_policy, DmPolicy::Pairing);
        let shown = c.masked().to_string();
        assert!(!shown.contains("abc_DEF"), "config show leaks: {shown}");
        let (_d, flags) = with_file(r#"{ channels: { telegram: { enabled: false } } }"#);
        let c = resolve(&flags, &env(&[(TELEGRAM_TOKEN_ENV, "123:abc")])).unwrap();
        assert!(c.channel("telegram").is_none());
    }

    #[test]
    fn a_named_config_file_must_exist() {
        let flags = Flags {
            state_dir: Some("/tmp".into()),
            config: Some("/nonexistent/sb.json5".into()),
            ..Flags::default()
        };
        let e = resolve(&flags, &env(&[])).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/sb.json5 does not exist"), "{e}");
    }

    #[test]
    fn the_documented_example_is_valid_and_means_the_defaults() {
        let (_d, flags) = with_file(include_str!("../../../deploy/config.example.json5"));
        let c = resolve(&flags, &env(&[])).expect("the example validates");
        let d = resolve(
            &Flags {
                state_dir: flags.state_dir.clone(),
                config: Some("/dev/null".into()),
                ..Flags::default()
            },
            &env(&[]),
        )
        .unwrap();
        assert_eq!(c.port, d.port);
        assert_eq!(c.handshake_timeout, d.handshake_timeout);
        assert_eq!(c.shutdown_grace, d.shutdown_grace);
        assert_eq!(c.logging.level, d.logging.level);
        assert_eq!(c.logging.file, d.logging.file);
        assert_eq!(c.logging.max_file_bytes, d.logging.max_file_bytes);
        assert_eq!(c.logging.max_files, d.logging.max_files);
        assert_eq!(c.metrics, d.metrics);
        assert_eq!(
            c.workers[0].config["backend"],
            d.workers[0].config["backend"]
        );
    }

    #[test]
    fn beyond_loopback_needs_auth() {
        let mut cfg = GatewayConfig::with_state_dir("/tmp/x".into());
        cfg.bind = BindMode::Lan;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("refusing to bind gateway to 0.0.0.0:18789 without auth"),
            "{err}"
        );
        cfg.auth.token = Secret::new("t");
        cfg.validate().expect("token makes it fine");
    }
}
