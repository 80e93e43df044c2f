//! The Signal worker: the user's Signal account through signal-cli's JSON-RPC daemon
//! (`signal-cli -a ACCOUNT daemon --http HOST:PORT`, see its `signal-cli-jsonrpc(5)` man
//! page): JSON-RPC 2.0 at `POST /api/v1/rpc`, received messages as Server-Sent Events at
//! `GET /api/v1/events`, liveness at `GET /api/v1/check`.
//!
//! * The daemon: either one that already runs (`httpUrl`), or one this worker starts
//!   from `cliPath` as its own child ([`daemon`]): waited for, restarted with backoff when
//!   it dies, killed when the worker stops or dies (`PR_SET_PDEATHSIG`).
//! * Inbound ([`stream`]): the event stream is opened only while the supervisor listens,
//!   watched (no keep-alive or event for `eventStreamTimeoutSeconds` means it is dead and
//!   is reopened), and every message is kept until the supervisor acknowledged it.
//! * Outbound ([`send`]): one `send` per message part; the per-recipient results decide
//!   the verdict.
//! * Health: `connected` only while the event stream is open and `version` answers;
//!   `not-found` (no signal-cli) and `unregistered` (the account is not known to
//!   signal-cli) wait for an operator.

pub mod daemon;
pub mod rpc;
pub mod send;
pub mod stream;

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use switchboard_proto::capability;
use switchboard_proto::v1::SendRequest;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use worker_runtime::channel::{Channel, Delivery, Health};
use worker_runtime::events::EventHub;
use worker_runtime::status::StatusCell;
use worker_runtime::{RuntimeError, WorkerContext};

/// The worker's configuration, as the supervisor passes it (`channels.signal`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    pub account: String,
    /// A running daemon's base URL.
    #[serde(default)]
    pub http_url: Option<String>,
    /// The executable to start when there is no `httpUrl`.
    #[serde(default)]
    pub cli_path: Option<String>,
    #[serde(default = "default_stream_timeout")]
    pub event_stream_timeout_seconds: u32,
    #[serde(default = "default_startup_timeout")]
    pub startup_timeout_seconds: u32,
}

fn default_stream_timeout() -> u32 {
    45
}

fn default_startup_timeout() -> u32 {
    120
}

/// What the daemon watcher, the event reader, the sender and the gRPC service share.
pub struct Shared {
    pub cfg: Config,
    pub http: reqwest::Client,
    /// The daemon's base URL while it is up (`None` while it is being started).
    pub daemon: watch::Sender<Option<String>>,
    pub state: StatusCell,
    pub events: EventHub,
    /// Whether the event stream is open now.
    pub stream_open: AtomicBool,
    /// The last event id handed out.
    pub next_event: AtomicU64,
    /// When `version` last answered (health caches it briefly).
    pub version_ok: Mutex<Option<(Instant, String)>>,
    pub shutdown: CancellationToken,
}

impl Shared {
    /// The daemon's base URL, if it is up.
    pub fn base_url(&self) -> Option<String> {
        self.daemon.borrow().clone()
    }

    /// Sleeps unless shut down first; `false` when shut down.
    pub async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("invalid signal worker config: {0}")]
    Config(String),
}

impl worker_runtime::WorkerExit for SignalError {
    fn exit_code(&self) -> u8 {
        match self {
            SignalError::Runtime(e) => e.exit_code(),
            SignalError::Config(_) => worker_runtime::exit::CONFIG,
        }
    }
}

/// The worker's entry point.
pub async fn serve(ctx: WorkerContext) -> Result<(), SignalError> {
    let cfg: Config = serde_json::from_value(ctx.config.clone())
        .map_err(|e| SignalError::Config(e.to_string()))?;
    if cfg.http_url.is_none() && cfg.cli_path.is_none() {
        return Err(SignalError::Config(
            "either httpUrl or cliPath is required".into(),
        ));
    }
    if let Some(u) = &cfg.http_url {
        reqwest::Url::parse(u).map_err(|e| SignalError::Config(format!("httpUrl: {e}")))?;
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| SignalError::Config(format!("http client: {e}")))?;
    let (daemon, _) = watch::channel(cfg.http_url.clone());
    let initial = if cfg.http_url.is_some() {
        "connecting"
    } else {
        "starting"
    };
    let shared = Arc::new(Shared {
        cfg,
        http,
        daemon,
        state: StatusCell::new("signal", initial),
        events: EventHub::default(),
        stream_open: AtomicBool::new(false),
        next_event: AtomicU64::new(0),
        version_ok: Mutex::new(None),
        shutdown: ctx.shutdown.clone(),
    });
    worker_runtime::channel::serve(&ctx, Arc::new(Signal(shared)))
        .await
        .map_err(SignalError::from)
}

/// The Signal account as a [`Channel`].
struct Signal(Arc<Shared>);

#[tonic::async_trait]
impl Channel for Signal {
    fn id(&self) -> &'static str {
        "signal"
    }

    fn version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    fn capabilities(&self) -> Vec<&'static str> {
        vec![capability::SEND, capability::EVENTS, capability::GROUPS]
    }

    fn events(&self) -> &EventHub {
        &self.0.events
    }

    async fn receive(self: Arc<Self>) {
        let daemon = self
            .0
            .cfg
            .http_url
            .is_none()
            .then(|| tokio::spawn(daemon::supervise(Arc::clone(&self.0))));
        stream::run(Arc::clone(&self.0)).await;
        if let Some(d) = daemon {
            // The watcher kills its child when it sees the shutdown; give it the moment.
            let _ = tokio::time::timeout(Duration::from_secs(5), d).await;
        }
    }

    async fn send(&self, request: SendRequest) -> Delivery {
        send::deliver(&self.0, request).await
    }

    async fn health(&self) -> Health {
        health(&self.0).await
    }

    async fn close(&self) {
        self.0.shutdown.cancel();
        daemon::wait_stopped(&self.0).await;
    }
}

/// How long a `version` answer counts for health.
const VERSION_FRESH: Duration = Duration::from_secs(2);

async fn health(shared: &Shared) -> Health {
    let s = shared.state.get();
    let label = |h: Health| h.label("account", shared.cfg.account.clone());
    if s.state != "connected" || !shared.stream_open.load(std::sync::atomic::Ordering::SeqCst) {
        let mut h = Health::down(s.state, s.detail);
        h.restartable = s.restartable;
        return label(h);
    }
    let cached = shared
        .version_ok
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .filter(|(at, _)| at.elapsed() < VERSION_FRESH);
    let version = match cached {
        Some((_, v)) => Ok(v),
        None => match rpc::call(
            shared,
            "version",
            serde_json::json!({}),
            Duration::from_secs(2),
        )
        .await
        {
            Ok(v) => {
                let v = v["version"].as_str().unwrap_or("?").to_owned();
                *shared.version_ok.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), v.clone()));
                Ok(v)
            }
            Err(e) => Err(e),
        },
    };
    match version {
        Ok(v) => label(Health::up("connected").label("signalCliVersion", v)),
        Err(e) => label(Health::down(
            "unresponsive",
            format!("the event stream is open but signal-cli does not answer `version`: {e}"),
        )),
    }
}
