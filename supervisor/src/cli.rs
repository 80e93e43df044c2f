//! The `switchboard` command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, BindMode, GatewayConfig, PASSWORD_ENV, TOKEN_ENV};
use crate::exit::ExitCode;
use crate::secret::Secret;
use crate::workers::WorkerSpec;

#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about = "Switchboard: a personal messaging gateway", after_help = ExitCode::HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run and manage the gateway daemon.
    Gateway {
        #[command(subcommand)]
        command: GatewayCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Run the gateway in the foreground (no config needed).
    #[command(after_help = ExitCode::HELP)]
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// WebSocket port.
    #[arg(long, default_value_t = config::DEFAULT_PORT)]
    pub port: u16,
    /// Where to listen: `loopback` (default), `lan` (all interfaces), or an IP address.
    /// Anything beyond loopback requires a token or password.
    #[arg(long, default_value = "loopback")]
    pub bind: String,
    /// Shared token clients must present. Also read from SWITCHBOARD_GATEWAY_TOKEN,
    /// CLAWDBOT_GATEWAY_TOKEN or OPENCLAW_GATEWAY_TOKEN.
    #[arg(long, hide_env_values = true)]
    pub token: Option<String>,
    /// Shared password (alternative to a token). Also read from SWITCHBOARD_GATEWAY_PASSWORD,
    /// CLAWDBOT_GATEWAY_PASSWORD or OPENCLAW_GATEWAY_PASSWORD.
    #[arg(long, hide_env_values = true)]
    pub password: Option<String>,
    /// State directory (database, locks, sockets). Default: $SWITCHBOARD_STATE_DIR, else
    /// ~/.switchboard.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Interval of `tick` events, in milliseconds (testing aid).
    #[arg(long, default_value_t = 30_000, hide = true)]
    pub tick_interval_ms: u64,
    /// Time from socket open to a valid `connect`, in milliseconds (testing aid).
    #[arg(long, default_value_t = 10_000, hide = true)]
    pub handshake_timeout_ms: u64,
    /// Do not run the agent worker.
    #[arg(long)]
    pub no_agent: bool,
    /// An extra worker process, as JSON `{"name":…,"program":…,"config":{…}}` (repeatable).
    #[arg(long = "worker", value_name = "JSON")]
    pub workers: Vec<String>,
    /// Interval between worker health checks, in milliseconds (testing aid).
    #[arg(long, default_value_t = 2_000, hide = true)]
    pub worker_health_interval_ms: u64,
}

impl RunArgs {
    pub fn into_config(self) -> Result<GatewayConfig, config::ConfigError> {
        let state_dir = match self.state_dir {
            Some(d) => d,
            None => config::default_state_dir()?,
        };
        let mut cfg = GatewayConfig::with_state_dir(state_dir);
        cfg.port = self.port;
        cfg.bind = BindMode::parse(&self.bind)?;
        cfg.auth.token = self
            .token
            .and_then(Secret::new)
            .or_else(|| config::secret_from_env(TOKEN_ENV));
        cfg.auth.password = self
            .password
            .and_then(Secret::new)
            .or_else(|| config::secret_from_env(PASSWORD_ENV));
        cfg.tick_interval = Duration::from_millis(self.tick_interval_ms.max(10));
        cfg.handshake_timeout = Duration::from_millis(self.handshake_timeout_ms.max(10));
        let interval = Duration::from_millis(self.worker_health_interval_ms.max(50));
        cfg.worker_timing.health_interval = interval;
        cfg.worker_timing.health_deadline = (interval / 2).min(Duration::from_secs(1));
        if !self.no_agent {
            cfg.workers.push(WorkerSpec {
                name: crate::agent::AGENT_WORKER.into(),
                program: config::worker_dir().join("switchboard-worker-agent"),
                config: config::agent_worker_config(),
                enabled: true,
            });
        }
        for raw in self.workers {
            cfg.workers.push(parse_worker(&raw)?);
        }
        Ok(cfg)
    }
}

fn parse_worker(raw: &str) -> Result<WorkerSpec, config::ConfigError> {
    let bad = |why: &str| config::ConfigError::Worker(format!("{why} in --worker {raw:?}"));
    let v: serde_json::Value = serde_json::from_str(raw).map_err(|e| bad(&e.to_string()))?;
    let name = v["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("missing \"name\""))?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad(
            "a worker name may use letters, digits, '-' and '_' only",
        ));
    }
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

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Gateway {
            command: GatewayCommand::Run(args),
        } => {
            init_logging();
            let config = match args.into_config() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::Config;
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("cannot start the async runtime: {e}");
                    return ExitCode::Failure;
                }
            };
            match runtime.block_on(crate::server::run(config)) {
                Ok(()) => ExitCode::Ok,
                Err(e) => {
                    tracing::error!("{e}");
                    e.exit_code()
                }
            }
        }
    }
}
