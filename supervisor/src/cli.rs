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
    /// List and control the running gateway's worker processes.
    #[command(after_help = ExitCode::HELP)]
    Workers {
        #[command(subcommand)]
        command: WorkersCommand,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Pair, list and revoke devices of the running gateway.
    #[command(after_help = ExitCode::HELP)]
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// The running gateway's health snapshot.
    #[command(after_help = ExitCode::HELP)]
    Health {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// The running gateway's status summary.
    #[command(after_help = ExitCode::HELP)]
    Status {
        #[command(flatten)]
        conn: ConnArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// Every worker: state, pid, restarts, last exit, uptime.
    List,
    /// Restart one worker (the others are untouched).
    Restart { name: String },
    /// Stop one worker until it is started again.
    Stop { name: String },
    /// Start a stopped or failed worker.
    Start { name: String },
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Pending pairing requests and paired devices (tokens are never shown).
    List,
    /// Approve a pending pairing request.
    Approve { request_id: String },
    /// Reject a pending pairing request.
    Reject { request_id: String },
    /// Revoke a device's token; its live connections are closed.
    Revoke {
        device_id: String,
        #[arg(long, default_value = "operator")]
        role: String,
    },
}

/// How CLI commands reach the running gateway.
#[derive(Debug, Args)]
pub struct ConnArgs {
    /// Gateway URL.
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_GATEWAY_URL",
        default_value = "ws://127.0.0.1:18789"
    )]
    pub url: String,
    /// Gateway token (else SWITCHBOARD_GATEWAY_TOKEN, CLAWDBOT_GATEWAY_TOKEN, OPENCLAW_GATEWAY_TOKEN).
    #[arg(long, global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Print the gateway's JSON answer.
    #[arg(long, global = true)]
    pub json: bool,
    /// For wss:// URLs: accept only the certificate with this SHA-256 fingerprint
    /// (any spelling: `AB:CD:…`, hex, `sha256:…`).
    #[arg(long, global = true)]
    pub tls_fingerprint: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Run the gateway in the foreground (no config needed).
    #[command(after_help = ExitCode::HELP)]
    Run(RunArgs),
    /// Print the SHA-256 fingerprint of the gateway's TLS certificate (generating the
    /// self-signed one if there is none yet), for clients to pin with --tls-fingerprint.
    #[command(after_help = ExitCode::HELP)]
    Fingerprint(FingerprintArgs),
}

#[derive(Debug, Args)]
pub struct FingerprintArgs {
    /// State directory (as for `gateway run`).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Certificate file (default: the state directory's self-signed one).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// Key file (default: next to the self-signed certificate).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Print JSON (`{"sha256": …, "fingerprint256": …}`).
    #[arg(long)]
    pub json: bool,
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
    /// Serve wss:// (TLS). Without --tls-cert/--tls-key a self-signed certificate is
    /// generated into the state directory on first use.
    #[arg(long)]
    pub tls: bool,
    /// TLS certificate (PEM). Implies --tls.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM). Implies --tls.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
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
        let tls = (self.tls || self.tls_cert.is_some() || self.tls_key.is_some()).then(|| {
            let (cert, key) = crate::tls::paths(
                &state_dir,
                self.tls_cert.as_deref(),
                self.tls_key.as_deref(),
            );
            config::TlsFiles { cert, key }
        });
        let mut cfg = GatewayConfig::with_state_dir(state_dir);
        cfg.tls = tls;
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

fn print_workers(list: &serde_json::Value) {
    println!(
        "{:<12} {:<9} {:>8} {:>8} {:>10}  last exit",
        "NAME", "STATE", "PID", "RESTARTS", "UPTIME"
    );
    for w in list["workers"].as_array().into_iter().flatten() {
        let uptime = w["uptimeMs"]
            .as_u64()
            .map(|ms| format!("{}s", ms / 1000))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<12} {:<9} {:>8} {:>8} {:>10}  {}",
            w["name"].as_str().unwrap_or("?"),
            w["state"].as_str().unwrap_or("?"),
            w["pid"]
                .as_u64()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            w["restarts"].as_u64().unwrap_or(0),
            uptime,
            w["lastExit"].as_str().unwrap_or("-"),
        );
    }
}

fn print_devices(list: &serde_json::Value) {
    println!("PENDING");
    for p in list["pending"].as_array().into_iter().flatten() {
        println!(
            "  {}  device {}  {} {} from {}",
            p["requestId"].as_str().unwrap_or("?"),
            p["deviceId"].as_str().unwrap_or("?"),
            p["clientId"].as_str().unwrap_or("?"),
            p["role"].as_str().unwrap_or("?"),
            p["remoteIp"].as_str().unwrap_or("local"),
        );
    }
    println!("PAIRED");
    for d in list["paired"].as_array().into_iter().flatten() {
        println!(
            "  {}  {}  roles {}",
            d["deviceId"].as_str().unwrap_or("?"),
            d["displayName"]
                .as_str()
                .or(d["clientId"].as_str())
                .unwrap_or("?"),
            d["roles"],
        );
    }
}

fn fingerprint(args: FingerprintArgs) -> ExitCode {
    let state_dir = match args
        .state_dir
        .map(Ok)
        .unwrap_or_else(config::default_state_dir)
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::Config;
        }
    };
    let (cert, key) = crate::tls::paths(
        &state_dir,
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
    );
    let result = crate::tls::ensure_certificate(&cert, &key)
        .and_then(|_| crate::tls::file_fingerprint(&cert));
    match result {
        Ok(fp) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"sha256": crate::tls::normalize_fingerprint(&fp), "fingerprint256": fp, "certificate": cert})
                );
            } else {
                println!("{fp}");
            }
            ExitCode::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::Config
        }
    }
}

/// Runs one request against the running gateway and prints the answer.
fn call_gateway(conn: ConnArgs, method: &str, params: serde_json::Value) -> ExitCode {
    let token = conn
        .token
        .and_then(Secret::new)
        .or_else(|| config::secret_from_env(TOKEN_ENV));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::Failure;
        }
    };
    let result = runtime.block_on(async {
        let mut c = crate::client::Client::connect(
            &conn.url,
            token.as_ref().map(Secret::expose),
            conn.tls_fingerprint.as_deref(),
            &[crate::access::ADMIN],
        )
        .await?;
        c.call(method, params).await
    });
    match result {
        Ok(payload) => {
            if conn.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&payload).unwrap_or_default()
                );
            } else if method == "device.pair.list" {
                print_devices(&payload);
            } else if let Some(action) = method.strip_prefix("workers.") {
                if action == "list" {
                    print_workers(&payload);
                } else {
                    let w = &payload["worker"];
                    println!(
                        "{}: {action} requested (now {})",
                        w["name"].as_str().unwrap_or("?"),
                        w["state"].as_str().unwrap_or("?")
                    );
                }
            } else {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&payload).unwrap_or_default()
                );
            }
            ExitCode::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::Unreachable
        }
    }
}

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    crate::tls::provider();
    match cli.command {
        Command::Gateway {
            command: GatewayCommand::Fingerprint(args),
        } => fingerprint(args),
        Command::Workers { command, conn } => {
            let (method, params) = match command {
                WorkersCommand::List => ("workers.list", serde_json::json!({})),
                WorkersCommand::Restart { name } => {
                    ("workers.restart", serde_json::json!({ "name": name }))
                }
                WorkersCommand::Stop { name } => {
                    ("workers.stop", serde_json::json!({ "name": name }))
                }
                WorkersCommand::Start { name } => {
                    ("workers.start", serde_json::json!({ "name": name }))
                }
            };
            call_gateway(conn, method, params)
        }
        Command::Devices { command, conn } => {
            let (method, params) = match command {
                DevicesCommand::List => ("device.pair.list", serde_json::json!({})),
                DevicesCommand::Approve { request_id } => (
                    "device.pair.approve",
                    serde_json::json!({ "requestId": request_id }),
                ),
                DevicesCommand::Reject { request_id } => (
                    "device.pair.reject",
                    serde_json::json!({ "requestId": request_id }),
                ),
                DevicesCommand::Revoke { device_id, role } => (
                    "device.token.revoke",
                    serde_json::json!({ "deviceId": device_id, "role": role }),
                ),
            };
            call_gateway(conn, method, params)
        }
        Command::Health { conn } => call_gateway(conn, "health", serde_json::json!({})),
        Command::Status { conn } => call_gateway(conn, "status", serde_json::json!({})),
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
