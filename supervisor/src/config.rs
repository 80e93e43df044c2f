//! The gateway's resolved settings: flags, then environment, then embedded defaults.
//!
//! Every setting has a default, so `switchboard gateway run` serves at once with no config.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Secret;
use crate::workers::{Timing, WorkerSpec};

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

/// Everything `gateway run` needs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub port: u16,
    pub bind: BindMode,
    pub auth: AuthConfig,
    pub state_dir: PathBuf,
    /// Open socket → valid `connect`, else close.
    pub handshake_timeout: Duration,
    pub tick_interval: Duration,
    /// Worker processes to supervise (the agent runner by default).
    pub workers: Vec<WorkerSpec>,
    pub worker_timing: Timing,
    /// Serve `wss://` with this certificate and key.
    pub tls: Option<TlsFiles>,
}

/// The certificate and key of `--tls`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl GatewayConfig {
    /// A config with every default, rooted at `state_dir`.
    pub fn with_state_dir(state_dir: PathBuf) -> GatewayConfig {
        GatewayConfig {
            port: DEFAULT_PORT,
            bind: BindMode::Loopback,
            auth: AuthConfig::default(),
            state_dir,
            handshake_timeout: Duration::from_secs(10),
            tick_interval: Duration::from_secs(30),
            workers: Vec::new(),
            worker_timing: Timing::default(),
            tls: None,
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
}

/// The first non-empty secret among the given environment variables.
pub fn secret_from_env(names: &[&str]) -> Option<Secret> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().and_then(Secret::new))
}

/// Where worker binaries live: `$SWITCHBOARD_WORKER_DIR`, else next to this executable.
pub fn worker_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SWITCHBOARD_WORKER_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The agent worker's configuration from the environment: an OpenAI-compatible backend
/// when a base URL or API key is given, else the local echo backend.
///
/// `SWITCHBOARD_AGENT_BACKEND` (`echo`|`openai`), `SWITCHBOARD_AGENT_BASE_URL`
/// (or `OPENAI_BASE_URL`), `SWITCHBOARD_AGENT_API_KEY` (or `OPENAI_API_KEY`),
/// `SWITCHBOARD_AGENT_MODEL`, `SWITCHBOARD_AGENT_ECHO_DELAY_MS`.
pub fn agent_worker_config() -> serde_json::Value {
    let var = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
    };
    let base_url = var(&["SWITCHBOARD_AGENT_BASE_URL", "OPENAI_BASE_URL"]);
    let api_key = var(&["SWITCHBOARD_AGENT_API_KEY", "OPENAI_API_KEY"]);
    let backend = var(&["SWITCHBOARD_AGENT_BACKEND"]).unwrap_or_else(|| {
        if base_url.is_some() || api_key.is_some() {
            "openai".into()
        } else {
            "echo".into()
        }
    });
    let mut cfg = serde_json::json!({ "backend": backend });
    if let Some(u) = base_url {
        cfg["baseUrl"] = u.into();
    }
    if let Some(k) = api_key {
        cfg["apiKey"] = k.into();
    }
    if let Some(m) = var(&["SWITCHBOARD_AGENT_MODEL"]) {
        cfg["model"] = m.into();
    }
    if let Some(d) = var(&["SWITCHBOARD_AGENT_ECHO_DELAY_MS"]).and_then(|d| d.parse::<u64>().ok()) {
        cfg["echoDelayMs"] = d.into();
    }
    cfg
}

/// `$SWITCHBOARD_STATE_DIR`, else `~/.switchboard`.
pub fn default_state_dir() -> Result<PathBuf, ConfigError> {
    if let Some(dir) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or(ConfigError::NoHome)?;
    Ok(PathBuf::from(home).join(".switchboard"))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid --bind value {0:?}: expected loopback, lan, or an IP address")]
    Bind(String),
    #[error(
        "refusing to bind gateway to {host}:{port} without auth (set --token, \
         SWITCHBOARD_GATEWAY_TOKEN or CLAWDBOT_GATEWAY_TOKEN, or a password)"
    )]
    UnauthenticatedBind { host: String, port: u16 },
    #[error("invalid worker: {0}")]
    Worker(String),
    #[error(
        "cannot find a home directory for the state directory: set --state-dir or SWITCHBOARD_STATE_DIR"
    )]
    NoHome,
}

#[cfg(test)]
mod tests {
    use super::*;

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
