//! The `switchboard` command line: `main.rs` parses it, [`run`] carries it out.

pub mod client;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use serde_json::{Value, json};

use crate::cli::client::{Client, Credentials};
use crate::config::{self, Flags, PASSWORD_ENV, ProcessEnv, TOKEN_ENV};
use crate::ops::exit::ExitCode;
use crate::secret::Secret;

#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about = "Switchboard: a personal messaging gateway", after_help = ExitCode::HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run, inspect, restart and install the gateway daemon.
    Gateway {
        #[command(subcommand)]
        command: GatewayCommand,
    },
    /// Check and show the configuration (`config.json5` in the state directory).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
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
    /// Messaging channels: their state, and linking WhatsApp by QR code.
    #[command(after_help = ExitCode::HELP)]
    Channels {
        #[command(subcommand)]
        command: ChannelsCommand,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Approve who may message the agent on a channel (DM pairing codes).
    #[command(after_help = ExitCode::HELP)]
    Pairing {
        #[command(subcommand)]
        command: PairingCommand,
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
    /// Show the gateway's log (its file in the state directory), optionally following it.
    #[command(after_help = ExitCode::HELP)]
    Logs(LogsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Run the gateway in the foreground (no config needed).
    #[command(after_help = ExitCode::HELP)]
    Run(RunArgs),
    /// Whether a gateway runs for this state directory: pid, address, uptime, workers.
    #[command(after_help = ExitCode::HELP)]
    Status(LocalArgs),
    /// Restart the running gateway in place (clients are told; accepted work is kept).
    #[command(after_help = ExitCode::HELP)]
    Restart(LocalArgs),
    /// Install and start the gateway as a user service (systemd on Linux, launchd on macOS).
    #[command(after_help = ExitCode::HELP)]
    Install(InstallArgs),
    /// Stop and remove the user service.
    #[command(after_help = ExitCode::HELP)]
    Uninstall(InstallArgs),
    /// Print the SHA-256 fingerprint of the gateway's TLS certificate (generating the
    /// self-signed one if there is none yet), for clients to pin with --tls-fingerprint.
    #[command(after_help = ExitCode::HELP)]
    Fingerprint(FingerprintArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration; every problem is listed with its key.
    #[command(after_help = ExitCode::HELP)]
    Validate(ConfigArgs),
    /// Print the effective configuration (file, environment and defaults), secrets masked.
    #[command(after_help = ExitCode::HELP)]
    Show(ConfigArgs),
}

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// Every worker: state, pid, restarts, last exit, uptime.
    #[command(after_help = ExitCode::HELP)]
    List,
    /// Restart one worker (the others are untouched).
    #[command(after_help = ExitCode::HELP)]
    Restart { name: String },
    /// Stop one worker until it is started again.
    #[command(after_help = ExitCode::HELP)]
    Stop { name: String },
    /// Start a stopped or failed worker.
    #[command(after_help = ExitCode::HELP)]
    Start { name: String },
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Pending pairing requests and paired devices (tokens are never shown).
    #[command(after_help = ExitCode::HELP)]
    List,
    /// Approve a pending pairing request.
    #[command(after_help = ExitCode::HELP)]
    Approve { request_id: String },
    /// Reject a pending pairing request.
    #[command(after_help = ExitCode::HELP)]
    Reject { request_id: String },
    /// Revoke a device's token; its live connections are closed.
    #[command(after_help = ExitCode::HELP)]
    Revoke {
        device_id: String,
        #[arg(long, default_value = "operator")]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChannelsCommand {
    /// Each configured channel: running, connected, last error.
    #[command(after_help = ExitCode::HELP)]
    Status,
    /// Link a channel that logs in as a device (WhatsApp): shows a QR code to scan in
    /// WhatsApp → Linked Devices, and waits until it is linked.
    #[command(after_help = ExitCode::HELP)]
    Login {
        /// The channel (whatsapp).
        channel: String,
        /// Drop the current session and link anew.
        #[arg(long)]
        force: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
    },
    /// Unlink the channel and delete its stored session.
    #[command(after_help = ExitCode::HELP)]
    Logout { channel: String },
}

#[derive(Debug, Subcommand)]
pub enum PairingCommand {
    /// Pending pairing codes and approved senders (of one channel, or all).
    #[command(after_help = ExitCode::HELP)]
    List { channel: Option<String> },
    /// Approve a sender's pairing code: they may talk to the agent from now on.
    #[command(after_help = ExitCode::HELP)]
    Approve {
        channel: String,
        code: String,
        /// Tell the sender they were approved.
        #[arg(long)]
        notify: bool,
    },
    /// Reject a pending pairing code.
    #[command(after_help = ExitCode::HELP)]
    Reject { channel: String, code: String },
    /// Remove an approved sender (by their id on the channel).
    #[command(after_help = ExitCode::HELP)]
    Revoke { channel: String, id: String },
}

/// Where the state directory and config file are (as for `gateway run`).
#[derive(Debug, Args, Clone, Default)]
pub struct LocateArgs {
    /// State directory. Default: $SWITCHBOARD_STATE_DIR, else ~/.switchboard.
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
    /// Config file. Default: $SWITCHBOARD_CONFIG, else config.json5 in the state directory.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
}

impl LocateArgs {
    fn flags(&self) -> Flags {
        Flags {
            state_dir: self.state_dir.clone(),
            config: self.config.clone(),
            ..Flags::default()
        }
    }
}

/// How CLI commands reach the running gateway. Without `--url`/`--token` they use the
/// address the local gateway published in its state directory and the token of its
/// configuration.
#[derive(Debug, Args)]
pub struct ConnArgs {
    /// Gateway URL (default: the local gateway's, else ws://127.0.0.1:18789).
    #[arg(long, global = true, env = "SWITCHBOARD_GATEWAY_URL")]
    pub url: Option<String>,
    /// Gateway token (else SWITCHBOARD_GATEWAY_TOKEN, CLAWDBOT_GATEWAY_TOKEN,
    /// OPENCLAW_GATEWAY_TOKEN, else gateway.auth.token in the config).
    #[arg(long, global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Gateway password, if it uses one instead of a token.
    #[arg(long, global = true, hide_env_values = true)]
    pub password: Option<String>,
    /// Print the gateway's JSON answer.
    #[arg(long, global = true)]
    pub json: bool,
    /// For wss:// URLs: accept only the certificate with this SHA-256 fingerprint
    /// (any spelling: `AB:CD:…`, hex, `sha256:…`).
    #[arg(long, global = true)]
    pub tls_fingerprint: Option<String>,
    #[command(flatten)]
    pub locate: LocateArgs,
}

#[derive(Debug, Args)]
pub struct LocalArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub locate: LocateArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Lines to show first.
    #[arg(short = 'n', long, default_value_t = 200)]
    pub lines: usize,
    /// Keep printing new lines as they are written (follows rotation).
    #[arg(short, long)]
    pub follow: bool,
    /// Read the log file of the state directory directly instead of asking the gateway.
    #[arg(long)]
    pub local: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub locate: LocateArgs,
    /// Write the service file only; do not load or start it (or, for uninstall, do not
    /// stop it first).
    #[arg(long)]
    pub no_start: bool,
    /// Print the service file instead of writing it.
    #[arg(long)]
    pub print: bool,
    /// The service manager to write for (default: systemd on Linux, launchd on macOS).
    #[arg(long, value_enum)]
    pub manager: Option<ManagerArg>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ManagerArg {
    Systemd,
    Launchd,
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
    /// Config file (JSON5). Default: $SWITCHBOARD_CONFIG, else config.json5 in the state
    /// directory; without one, every default applies.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// WebSocket port [default: 18789, or gateway.port].
    #[arg(long)]
    pub port: Option<u16>,
    /// Where to listen: `loopback` (default), `lan` (all interfaces), or an IP address.
    /// Anything beyond loopback requires a token or password.
    #[arg(long)]
    pub bind: Option<String>,
    /// Shared token clients must present. Also read from SWITCHBOARD_GATEWAY_TOKEN,
    /// CLAWDBOT_GATEWAY_TOKEN or OPENCLAW_GATEWAY_TOKEN, or gateway.auth.token.
    #[arg(long, hide_env_values = true)]
    pub token: Option<String>,
    /// Shared password (alternative to a token). Also read from SWITCHBOARD_GATEWAY_PASSWORD,
    /// CLAWDBOT_GATEWAY_PASSWORD or OPENCLAW_GATEWAY_PASSWORD, or gateway.auth.password.
    #[arg(long, hide_env_values = true)]
    pub password: Option<String>,
    /// State directory (database, locks, sockets, logs). Default: $SWITCHBOARD_STATE_DIR,
    /// else ~/.switchboard.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Interval of `tick` events, in milliseconds (testing aid).
    #[arg(long, hide = true)]
    pub tick_interval_ms: Option<u64>,
    /// Time from socket open to a valid `connect`, in milliseconds (testing aid).
    #[arg(long, hide = true)]
    pub handshake_timeout_ms: Option<u64>,
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
    #[arg(long, hide = true)]
    pub worker_health_interval_ms: Option<u64>,
}

impl RunArgs {
    pub fn flags(self) -> Flags {
        Flags {
            config: self.config,
            state_dir: self.state_dir,
            port: self.port,
            bind: self.bind,
            token: self.token,
            password: self.password,
            tls: self.tls,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            tick_interval_ms: self.tick_interval_ms,
            handshake_timeout_ms: self.handshake_timeout_ms,
            worker_health_interval_ms: self.worker_health_interval_ms,
            no_agent: self.no_agent,
            workers: self.workers,
        }
    }
}

/// What a running gateway publishes in its state directory (`gateway.json`).
fn runtime_info(state_dir: &std::path::Path) -> Option<Value> {
    let text = std::fs::read_to_string(state_dir.join(crate::server::RUNTIME_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

fn pid_alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

/// The URL and credentials a client command uses.
struct Target {
    url: String,
    auth: Credentials,
    pin: Option<String>,
    json: bool,
    state_dir: Option<PathBuf>,
}

fn target(conn: ConnArgs) -> Target {
    let env = ProcessEnv;
    let located = config::locate(&conn.locate.flags(), &env).ok();
    let file = located
        .as_ref()
        .and_then(|(_, path, _)| config::file::load(path).ok().flatten());
    let url = conn.url.clone().unwrap_or_else(|| {
        located
            .as_ref()
            .and_then(|(dir, _, _)| runtime_info(dir))
            .and_then(|i| i["url"].as_str().map(str::to_owned))
            .unwrap_or_else(|| {
                let port = file
                    .as_ref()
                    .and_then(|f| f.gateway.port)
                    .unwrap_or(config::DEFAULT_PORT);
                format!("ws://127.0.0.1:{port}")
            })
    });
    let token = conn
        .token
        .and_then(Secret::new)
        .or_else(|| config::secret_from_env(TOKEN_ENV))
        .or_else(|| file.as_ref().and_then(|f| f.gateway.auth.token.clone()));
    let password = conn
        .password
        .and_then(Secret::new)
        .or_else(|| config::secret_from_env(PASSWORD_ENV))
        .or_else(|| file.as_ref().and_then(|f| f.gateway.auth.password.clone()));
    Target {
        url,
        auth: Credentials { token, password },
        pin: conn.tls_fingerprint,
        json: conn.json,
        state_dir: located.map(|(d, _, _)| d),
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

async fn connect(t: &Target) -> Result<Client, crate::cli::client::ClientError> {
    Client::connect(
        &t.url,
        &t.auth,
        t.pin.as_deref(),
        &[crate::auth::access::ADMIN],
    )
    .await
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Runs one request against the running gateway and prints the answer.
fn call_gateway(conn: ConnArgs, method: &str, params: Value) -> ExitCode {
    let t = target(conn);
    let Some(rt) = runtime() else {
        return ExitCode::Failure;
    };
    let result = rt.block_on(async { connect(&t).await?.call(method, params).await });
    match result {
        Ok(payload) => {
            if t.json {
                print_json(&payload);
            } else if method == "device.pair.list" {
                print_devices(&payload);
            } else if method == "pairing.list" {
                print_pairing(&payload);
            } else if method == "channels.status" {
                print_channels(&payload);
            } else if method == "channels.logout" {
                println!("{}", payload["message"].as_str().unwrap_or("logged out"));
            } else if method == "pairing.approve" {
                let a = &payload["approved"];
                println!(
                    "approved {} sender {} ({}){}",
                    a["channel"].as_str().unwrap_or("?"),
                    a["id"].as_str().unwrap_or("?"),
                    a["name"].as_str().unwrap_or(""),
                    if payload["notified"] == true {
                        "; they were told"
                    } else {
                        ""
                    }
                );
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
                print_json(&payload);
            }
            ExitCode::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::Unreachable
        }
    }
}

fn print_workers(list: &Value) {
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

fn print_devices(list: &Value) {
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

fn print_channels(status: &Value) {
    let order = status["channelOrder"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if order.is_empty() {
        println!(
            "no channels configured (see channels.telegram / channels.whatsapp in config.json5)"
        );
    }
    for c in order {
        let name = c.as_str().unwrap_or("?");
        let s = &status["channels"][name];
        println!(
            "{:<10} {:<14} {}",
            name,
            s["state"].as_str().unwrap_or("?"),
            s["lastError"].as_str().unwrap_or("")
        );
    }
}

/// `channels login`: QR codes until one is scanned (the code rotates; each is shown).
fn channels_login(conn: ConnArgs, channel: &str, force: bool, timeout: u64) -> ExitCode {
    if channel != "whatsapp" {
        eprintln!("error: only whatsapp links by QR code; {channel} is configured in config.json5");
        return ExitCode::Config;
    }
    let t = target(conn);
    let Some(rt) = runtime() else {
        return ExitCode::Failure;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(timeout.max(5));
    let result: Result<Result<String, String>, crate::cli::client::ClientError> = rt.block_on(async {
        let mut c = connect(&t).await?;
        c.set_timeout(Duration::from_secs(330));
        let mut last_qr = String::new();
        let mut force = force;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(Err("gave up waiting for the QR code to be scanned".to_owned()));
            }
            let start = c
                .call(
                    "web.login.start",
                    json!({"force": force, "timeoutMs": left.min(Duration::from_secs(30)).as_millis() as u64}),
                )
                .await?;
            force = false;
            let message = start["message"].as_str().unwrap_or("").to_owned();
            if start["linkedAs"].is_string() {
                return Ok(Ok(message));
            }
            match start["qrCode"].as_str() {
                Some(qr) if qr != last_qr => {
                    if t.json {
                        println!("{}", json!({"qrCode": qr, "qrDataUrl": start["qrDataUrl"], "message": message}));
                    } else {
                        println!("{}", crate::channels::qr::terminal(qr).unwrap_or_default());
                        println!("{message} (the code changes every ~20 s; this command keeps up)");
                    }
                    last_qr = qr.to_owned();
                }
                Some(_) => {}
                None => return Ok(Err(message)),
            }
            let valid = start["qrValidMs"].as_u64().unwrap_or(20_000).max(1_000);
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let wait_ms = (valid as u128).min(left.as_millis()).max(1_000) as u64;
            let w = c.call("web.login.wait", json!({"timeoutMs": wait_ms})).await?;
            let message = w["message"].as_str().unwrap_or("").to_owned();
            if w["connected"] == true {
                return Ok(Ok(message));
            }
            if !message.starts_with("Still waiting") {
                return Ok(Err(message));
            }
        }
    });
    match result {
        Ok(Ok(message)) => {
            if t.json {
                println!("{}", json!({"linked": true, "message": message}));
            } else {
                println!("{message}");
            }
            ExitCode::Ok
        }
        Ok(Err(message)) => {
            if t.json {
                println!("{}", json!({"linked": false, "message": message}));
            }
            eprintln!("error: {message}");
            ExitCode::Unreachable
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::Unreachable
        }
    }
}

fn print_pairing(list: &Value) {
    println!("PENDING");
    for r in list["requests"].as_array().into_iter().flatten() {
        println!(
            "  {:<9} {}  {} {}  (expires in {} min)",
            r["channel"].as_str().unwrap_or("?"),
            r["code"].as_str().unwrap_or("?"),
            r["id"].as_str().unwrap_or("?"),
            r["name"].as_str().unwrap_or(""),
            r["expiresAt"]
                .as_u64()
                .map(|t| t.saturating_sub(crate::clock::now_ms()) / 60_000)
                .unwrap_or(0),
        );
    }
    println!("APPROVED");
    for a in list["allowed"].as_array().into_iter().flatten() {
        println!(
            "  {:<9} {}  {}",
            a["channel"].as_str().unwrap_or("?"),
            a["id"].as_str().unwrap_or("?"),
            a["name"].as_str().unwrap_or(""),
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
    let (cert, key) = crate::net::tls::paths(
        &state_dir,
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
    );
    let result = crate::net::tls::ensure_certificate(&cert, &key)
        .and_then(|_| crate::net::tls::file_fingerprint(&cert));
    match result {
        Ok(fp) => {
            if args.json {
                println!(
                    "{}",
                    json!({"sha256": crate::net::tls::normalize_fingerprint(&fp), "fingerprint256": fp, "certificate": cert})
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

fn config_command(command: ConfigCommand) -> ExitCode {
    let (args, show) = match command {
        ConfigCommand::Validate(a) => (a, false),
        ConfigCommand::Show(a) => (a, true),
    };
    let flags = args.locate.flags();
    match config::resolve(&flags, &ProcessEnv) {
        Ok(cfg) => {
            if show {
                print_json(&cfg.masked());
            } else if args.json {
                println!(
                    "{}",
                    json!({"ok": true, "configFile": cfg.config_file, "problems": []})
                );
            } else {
                match &cfg.config_file {
                    Some(p) => println!("configuration OK: {}", p.display()),
                    None => println!("configuration OK (no config file: every default applies)"),
                }
            }
            ExitCode::Ok
        }
        Err(e) => {
            if args.json {
                let problems: Vec<String> = match &e {
                    config::ConfigError::Invalid { problems, .. } => problems.clone(),
                    other => vec![other.to_string()],
                };
                println!("{}", json!({"ok": false, "problems": problems}));
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::Config
        }
    }
}

/// `gateway status`: the runtime file, the process, then the gateway itself.
fn gateway_status(args: LocalArgs) -> ExitCode {
    let t = target(args.conn);
    let report = |running: bool, v: Value, text: String| {
        if t.json {
            let mut v = v;
            v["running"] = json!(running);
            print_json(&v);
        } else {
            println!("{text}");
        }
        if running {
            ExitCode::Ok
        } else {
            ExitCode::Unreachable
        }
    };
    let Some(dir) = &t.state_dir else {
        return report(
            false,
            json!({"reason": "no state directory"}),
            "not running (no state directory)".into(),
        );
    };
    let Some(info) = runtime_info(dir) else {
        return report(
            false,
            json!({"stateDir": dir}),
            format!("not running (no gateway for {})", dir.display()),
        );
    };
    let pid = info["pid"].as_u64().unwrap_or(0) as u32;
    if pid == 0 || !pid_alive(pid) {
        return report(
            false,
            json!({"stateDir": dir, "stalePid": pid}),
            format!("not running (the last gateway, pid {pid}, is gone)"),
        );
    }
    let Some(rt) = runtime() else {
        return ExitCode::Failure;
    };
    let url = info["url"].as_str().unwrap_or(&t.url).to_owned();
    let t2 = Target {
        url: url.clone(),
        auth: t.auth.clone(),
        pin: t.pin.clone(),
        json: t.json,
        state_dir: None,
    };
    let status = rt.block_on(async {
        let mut c = connect(&t2).await?;
        let workers = c.call("workers.list", json!({})).await?;
        let health = c.call("health", json!({})).await?;
        Ok::<_, crate::cli::client::ClientError>((workers, health))
    });
    match status {
        Ok((workers, health)) => {
            let uptime = health["gateway"]["uptimeMs"].as_u64();
            let v = json!({"pid": pid, "url": url, "stateDir": dir, "version": info["version"],
                           "uptimeMs": uptime, "workers": workers["workers"],
                           "configFile": info["configFile"], "logFile": info["logFile"]});
            if !t.json {
                println!(
                    "running: pid {pid}, {url}, up {}, version {}",
                    uptime
                        .map(|ms| human_duration(Duration::from_millis(ms)))
                        .unwrap_or_else(|| "?".into()),
                    info["version"].as_str().unwrap_or("?")
                );
                println!("state directory: {}", dir.display());
                print_workers(&workers);
            }
            if t.json {
                let mut v = v;
                v["running"] = json!(true);
                print_json(&v);
            }
            ExitCode::Ok
        }
        Err(e) => report(
            false,
            json!({"pid": pid, "url": url, "error": e.to_string()}),
            format!("process {pid} runs but the gateway does not answer at {url}: {e}"),
        ),
    }
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// `gateway restart`: SIGUSR1 to the local gateway, then wait until it serves again.
fn gateway_restart(args: LocalArgs) -> ExitCode {
    let t = target(args.conn);
    let Some(dir) = t.state_dir.clone() else {
        eprintln!("error: no state directory");
        return ExitCode::Config;
    };
    let Some(info) = runtime_info(&dir) else {
        eprintln!("error: no gateway runs for {}", dir.display());
        return ExitCode::Unreachable;
    };
    let pid = info["pid"].as_u64().unwrap_or(0) as u32;
    if pid == 0 || !pid_alive(pid) {
        eprintln!(
            "error: no gateway runs for {} (pid {pid} is gone)",
            dir.display()
        );
        return ExitCode::Unreachable;
    }
    let before = info["startedAtMs"].as_u64().unwrap_or(0);
    let started = std::time::Instant::now();
    if let Err(e) = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGUSR1,
    ) {
        eprintln!("error: cannot signal pid {pid}: {e}");
        return ExitCode::Failure;
    }
    let Some(rt) = runtime() else {
        return ExitCode::Failure;
    };
    let deadline = started + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Some(now) = runtime_info(&dir)
            && now["startedAtMs"].as_u64().unwrap_or(0) > before
        {
            let url = now["url"].as_str().unwrap_or(&t.url).to_owned();
            let t2 = Target {
                url,
                auth: t.auth.clone(),
                pin: t.pin.clone(),
                json: t.json,
                state_dir: None,
            };
            if rt
                .block_on(async { connect(&t2).await?.call("health", json!({})).await })
                .is_ok()
            {
                let ms = started.elapsed().as_millis() as u64;
                if t.json {
                    println!("{}", json!({"restarted": true, "pid": pid, "ms": ms}));
                } else {
                    println!("restarted (pid {pid}) and serving again after {ms} ms");
                }
                return ExitCode::Ok;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("error: the gateway did not come back within 60 s; see `switchboard logs --local`");
    ExitCode::Unreachable
}

fn install_command(args: InstallArgs, uninstall: bool) -> ExitCode {
    use crate::ops::service::{self, Manager, Program};
    let m = match args.manager {
        Some(ManagerArg::Systemd) => Manager::Systemd,
        Some(ManagerArg::Launchd) => Manager::Launchd,
        None => Manager::native(),
    };
    let home = match service::home() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::Config;
        }
    };
    if uninstall {
        return match service::uninstall(m, &home, !args.no_start) {
            Ok(Some(p)) => {
                if args.json {
                    println!("{}", json!({"removed": p}));
                } else {
                    println!("removed {}", p.display());
                }
                ExitCode::Ok
            }
            Ok(None) => {
                if args.json {
                    println!("{}", json!({"removed": null}));
                } else {
                    println!("not installed");
                }
                ExitCode::Ok
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::Failure
            }
        };
    }
    // The unit runs this very binary; a relative state dir would depend on systemd's cwd.
    let absolute = |p: Option<PathBuf>| p.map(|p| std::path::absolute(&p).unwrap_or(p));
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot find this executable: {e}");
            return ExitCode::Failure;
        }
    };
    let program = Program {
        exe,
        state_dir: absolute(args.locate.state_dir.clone()),
        config: absolute(args.locate.config.clone()),
    };
    // Refuse to install a service that would fail on its first start.
    if let Err(e) = config::resolve(&args.locate.flags(), &ProcessEnv) {
        eprintln!("error: {e}");
        return ExitCode::Config;
    }
    if args.print {
        match m {
            Manager::Systemd => print!("{}", service::render_systemd(&program)),
            Manager::Launchd => print!(
                "{}",
                service::render_launchd(&program, &home.join("Library/Logs/switchboard"))
            ),
        }
        return ExitCode::Ok;
    }
    match service::install(m, &program, &home, !args.no_start) {
        Ok(path) => {
            if args.json {
                println!("{}", json!({"installed": path, "started": !args.no_start}));
            } else {
                println!("installed {}", path.display());
                if args.no_start {
                    println!("not started (--no-start)");
                } else {
                    println!("started; `switchboard gateway status` shows it");
                }
            }
            ExitCode::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::Failure
        }
    }
}

/// `logs`: from the gateway (`logs.tail`), else the local file.
fn logs(args: LogsArgs) -> ExitCode {
    let t = target(args.conn);
    let local_file = t
        .state_dir
        .as_ref()
        .and_then(|d| runtime_info(d).and_then(|i| i["logFile"].as_str().map(PathBuf::from)))
        .or_else(|| {
            config::resolve(&Flags::default(), &ProcessEnv)
                .ok()
                .and_then(|c| c.logging.file)
        })
        .or_else(|| {
            t.state_dir
                .as_ref()
                .map(|d| d.join("logs").join("switchboard.log"))
        });
    let Some(rt) = runtime() else {
        return ExitCode::Failure;
    };
    let mut remote = if args.local {
        None
    } else {
        match rt.block_on(connect(&t)) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("note: {e}; reading the local log file instead");
                None
            }
        }
    };
    let limit = args.lines.clamp(1, crate::ops::logging::TAIL_MAX_LIMIT);
    let mut cursor: Option<u64> = None;
    loop {
        let slice = match remote.as_mut() {
            Some(c) => {
                let mut params =
                    json!({"limit": limit, "maxBytes": crate::ops::logging::TAIL_MAX_BYTES});
                if let Some(cur) = cursor {
                    params["cursor"] = json!(cur);
                }
                match rt.block_on(c.call("logs.tail", params)) {
                    Ok(v) => serde_json::from_value::<TailView>(v).ok(),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::Unreachable;
                    }
                }
            }
            None => {
                let Some(path) = &local_file else {
                    eprintln!("error: no log file is configured");
                    return ExitCode::Config;
                };
                match crate::ops::logging::tail(
                    path,
                    cursor,
                    limit,
                    crate::ops::logging::TAIL_MAX_BYTES,
                ) {
                    Ok(t) => Some(TailView {
                        cursor: t.cursor,
                        lines: t.lines,
                        reset: t.reset,
                    }),
                    Err(e) => {
                        eprintln!("error: cannot read {}: {e}", path.display());
                        return ExitCode::Failure;
                    }
                }
            }
        };
        let Some(slice) = slice else {
            eprintln!("error: unexpected logs.tail answer");
            return ExitCode::Failure;
        };
        if slice.reset && cursor.is_some() {
            if t.json {
                println!(
                    "{}",
                    json!({"type": "notice", "message": "log file rotated"})
                );
            } else {
                eprintln!("-- log file rotated --");
            }
        }
        for line in &slice.lines {
            if t.json {
                match serde_json::from_str::<Value>(line) {
                    Ok(Value::Object(mut m)) => {
                        m.insert("type".into(), json!("log"));
                        println!("{}", Value::Object(m));
                    }
                    _ => println!("{}", json!({"type": "raw", "line": line})),
                }
            } else {
                println!("{line}");
            }
        }
        cursor = Some(slice.cursor);
        if !args.follow {
            return ExitCode::Ok;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[derive(serde::Deserialize)]
struct TailView {
    cursor: u64,
    lines: Vec<String>,
    #[serde(default)]
    reset: bool,
}

fn gateway_run(args: RunArgs) -> ExitCode {
    // Captured first: after an upgrade replaced the binary, a restart executes the new one.
    let exe = std::env::current_exe().ok();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let config = match config::resolve(&args.flags(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            crate::ops::logging::init_stderr("info");
            tracing::error!("{e}");
            return ExitCode::Config;
        }
    };
    if let Some(warning) = crate::ops::logging::init(&config.logging) {
        tracing::warn!("{warning}");
    }
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
    let stopped = runtime.block_on(crate::server::run(config));
    runtime.shutdown_timeout(Duration::from_secs(2));
    match stopped {
        Ok(crate::server::Stopped::Exit) => ExitCode::Ok,
        Ok(crate::server::Stopped::Restart { port }) => {
            let Some(exe) = exe else {
                tracing::error!("cannot restart: the executable's path is unknown");
                return ExitCode::Failure;
            };
            use std::os::unix::process::CommandExt;
            tracing::info!(exe = %exe.display(), "executing the gateway again");
            // Only returns on failure; every descriptor is close-on-exec, so the lock,
            // the database and the sockets are released by the exec.
            let e = std::process::Command::new(&exe)
                .args(&argv)
                .env(config::RESTART_PORT_ENV, port.to_string())
                .exec();
            tracing::error!(error = %e, "cannot execute {}", exe.display());
            ExitCode::Failure
        }
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code()
        }
    }
}

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    crate::net::tls::provider();
    match cli.command {
        Command::Gateway { command } => match command {
            GatewayCommand::Run(args) => gateway_run(args),
            GatewayCommand::Status(args) => gateway_status(args),
            GatewayCommand::Restart(args) => gateway_restart(args),
            GatewayCommand::Install(args) => install_command(args, false),
            GatewayCommand::Uninstall(args) => install_command(args, true),
            GatewayCommand::Fingerprint(args) => fingerprint(args),
        },
        Command::Config { command } => config_command(command),
        Command::Workers { command, conn } => {
            let (method, params) = match command {
                WorkersCommand::List => ("workers.list", json!({})),
                WorkersCommand::Restart { name } => ("workers.restart", json!({ "name": name })),
                WorkersCommand::Stop { name } => ("workers.stop", json!({ "name": name })),
                WorkersCommand::Start { name } => ("workers.start", json!({ "name": name })),
            };
            call_gateway(conn, method, params)
        }
        Command::Devices { command, conn } => {
            let (method, params) = match command {
                DevicesCommand::List => ("device.pair.list", json!({})),
                DevicesCommand::Approve { request_id } => {
                    ("device.pair.approve", json!({ "requestId": request_id }))
                }
                DevicesCommand::Reject { request_id } => {
                    ("device.pair.reject", json!({ "requestId": request_id }))
                }
                DevicesCommand::Revoke { device_id, role } => (
                    "device.token.revoke",
                    json!({ "deviceId": device_id, "role": role }),
                ),
            };
            call_gateway(conn, method, params)
        }
        Command::Channels { command, conn } => match command {
            ChannelsCommand::Status => call_gateway(conn, "channels.status", json!({})),
            ChannelsCommand::Login {
                channel,
                force,
                timeout,
            } => channels_login(conn, &channel.to_ascii_lowercase(), force, timeout),
            ChannelsCommand::Logout { channel } => {
                call_gateway(conn, "channels.logout", json!({ "channel": channel }))
            }
        },
        Command::Pairing { command, conn } => {
            let (method, params) = match command {
                PairingCommand::List { channel } => ("pairing.list", json!({ "channel": channel })),
                PairingCommand::Approve {
                    channel,
                    code,
                    notify,
                } => (
                    "pairing.approve",
                    json!({ "channel": channel, "code": code, "notify": notify }),
                ),
                PairingCommand::Reject { channel, code } => (
                    "pairing.reject",
                    json!({ "channel": channel, "code": code }),
                ),
                PairingCommand::Revoke { channel, id } => {
                    ("pairing.revoke", json!({ "channel": channel, "id": id }))
                }
            };
            call_gateway(conn, method, params)
        }
        Command::Health { conn } => call_gateway(conn, "health", json!({})),
        Command::Status { conn } => call_gateway(conn, "status", json!({})),
        Command::Logs(args) => logs(args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "switchboard",
                &mut std::io::stdout(),
            );
            ExitCode::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_documents_the_exit_codes() {
        fn walk(c: &clap::Command, path: &str) {
            let name = format!("{path} {}", c.get_name());
            if c.get_subcommands().next().is_none() && c.get_name() != "completions" {
                let help = c
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                assert!(
                    help.contains("Exit codes"),
                    "{name} --help has no exit codes"
                );
            }
            for s in c.get_subcommands() {
                if s.get_name() != "help" {
                    walk(s, &name);
                }
            }
        }
        walk(&Cli::command(), "");
    }
}
