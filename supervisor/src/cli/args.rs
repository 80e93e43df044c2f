//! The command line's shape: every command, its flags and its help (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Flags;
use crate::ops::exit::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about = "Switchboard: a personal messaging gateway", after_help = ExitCode::HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What `switchboard` alone prints: the commands people use most, first.
pub const SHORT_HELP: &str = "\
Switchboard: a personal messaging gateway

Most used:
  switchboard gateway run          run the gateway here (ws://127.0.0.1:18789, WebChat at http://127.0.0.1:18789/)
  switchboard status               what the running gateway is doing
  switchboard health               its health snapshot
  switchboard channels status      messaging channels: running, connected, last error
  switchboard logs -f              follow its log
  switchboard events -f            follow its events (resumes after a blip)
  switchboard gateway token        the token other clients (openclaw, clawdbot, apps) need

More:
  switchboard workers list|restart|stop|start     the worker processes
  switchboard devices list|approve|reject|revoke  paired devices
  switchboard pairing list|approve|reject|revoke  who may message the agent on a channel
  switchboard channels login|logout CHANNEL       link a channel that logs in as a device
  switchboard config validate|show                the configuration (config.json5)
  switchboard gateway status|restart|install|uninstall|fingerprint

Every command has --help; `switchboard help` lists them all.
";

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
    /// Messaging channels: their state, and linking the ones that log in as a device.
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
    /// Print the gateway's events as they happen (`-f`: follow across reconnects,
    /// resuming where it stopped).
    #[command(after_help = ExitCode::HELP)]
    Events(EventsArgs),
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
    /// Print the gateway token, for clients that need it (the real openclaw and clawdbot
    /// CLIs, an app on another host). Without a configured one it is the token the
    /// gateway generated at first start in its state directory.
    #[command(after_help = ExitCode::HELP)]
    Token(TokenArgs),
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
    /// Link a channel that logs in as a device: shows a QR code to scan with the phone
    /// (the app's Linked Devices screen), and waits until it is linked.
    #[command(after_help = ExitCode::HELP)]
    Login {
        /// The channel (one that links by QR code: `channels status` lists what each can do).
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
    pub fn flags(&self) -> Flags {
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
pub struct EventsArgs {
    /// Keep following across gateway restarts and network blips: the stream resumes
    /// where it stopped, or says plainly that events were missed.
    #[arg(short, long)]
    pub follow: bool,
    /// Only print events with this name (repeatable), e.g. `--event chat`.
    #[arg(long = "event", value_name = "NAME")]
    pub event: Vec<String>,
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
pub struct TokenArgs {
    #[command(flatten)]
    pub locate: LocateArgs,
    /// Print shell `export` lines for the environment variables clients read
    /// (SWITCHBOARD_, OPENCLAW_ and CLAWDBOT_GATEWAY_TOKEN).
    #[arg(long)]
    pub env: bool,
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
    /// Bytes queued for all clients together before the longest queues are cut
    /// (testing aid; default 256 MiB).
    #[arg(long, hide = true)]
    pub max_queued_bytes: Option<usize>,
    /// Start even though the state directory was used before and its database is
    /// missing, empty or unreadable: an unreadable database is moved aside
    /// (`switchboard.sqlite.damaged-<time>`) and an empty one is created. History, paired
    /// devices and delivery records start afresh. Use once, not in a service unit.
    #[arg(long)]
    pub reset_state: bool,
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
            max_queued_bytes: self.max_queued_bytes,
            no_agent: self.no_agent,
            reset_state: self.reset_state,
            workers: self.workers,
        }
    }
}
