//! The Slack worker: a Slack app's bot user, Socket Mode in and the Web API out, pointed
//! at `https://slack.com/api` unless configured otherwise.
//!
//! * Web API ([`api`]): `auth.test`, `apps.connections.open` and `chat.postMessage`
//!   through slack-morphism's client, on a connector built here (rustls with ring,
//!   webpki roots, `https` or loopback `http`, HTTP/1.1 and HTTP/2) with the base URL set
//!   by `with_slack_api_url`. slack-morphism's rate controller is not used: a 429 is
//!   reported to the supervisor's outbox with its `Retry-After` (bounded), which waits
//!   durably instead of inside a request.
//! * Socket Mode ([`socket`]): our own WebSocket loop on tokio-tungstenite, not
//!   slack-morphism's listener. Its listener acknowledges an envelope when the callback
//!   returns and keeps its connections (two by default, a fixed 30 s reconnect wait, its
//!   own ping schedule) out of sight, so it cannot promise what this worker must: exactly
//!   one connection at a time, opened only after the last one is closed; an envelope
//!   acknowledged (`{"envelope_id":…}`) only after the supervisor has stored its message;
//!   a socket with no frame and no pong for `socketTimeoutSeconds` (default 30) replaced;
//!   `health` saying `connected` only while frames arrive.
//! * Inbound ([`inbound`]): `message` events in DMs and channels and `app_mention`
//!   events become the contract's `InboundMessage` (chat = the Slack channel id, message
//!   id = the message's `ts`, thread = its `thread_ts`). Slack retries an envelope that
//!   was not acknowledged and sends both `message` and `app_mention` for one mention:
//!   the supervisor stores a (chat, ts) once, and the worker remembers what was stored.
//! * Outbound ([`send`]): one `chat.postMessage` per part of a text split at 4000
//!   characters, into the thread the reply belongs to; `ok:false` errors and 429s become
//!   the provider's verdict.
//! * Health: `connecting`, `connected`, `reconnecting`/`backoff` (with the reason) or
//!   `unauthorized` (`invalid_auth`, `account_inactive`, …: every call stops until an
//!   operator restarts the worker).
//!
//! Both tokens are secrets: they travel only in `Authorization` headers, are never
//! logged, and are removed from any error text before it is shown.

pub mod api;
pub mod inbound;
pub mod send;
pub mod socket;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use switchboard_proto::capability;
use switchboard_proto::v1::SendRequest;
use tokio_util::sync::CancellationToken;
use worker_runtime::channel::{Channel, Delivery, Health};
use worker_runtime::events::EventHub;
use worker_runtime::status::StatusCell;
use worker_runtime::{RuntimeError, WorkerContext};

/// The worker's configuration, as the supervisor passes it (`channels.slack`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    pub bot_token: String,
    pub app_token: String,
    #[serde(default = "default_api_url")]
    pub api_url: String,
    #[serde(default = "default_socket_timeout")]
    pub socket_timeout_seconds: f64,
}

fn default_api_url() -> String {
    "https://slack.com/api".into()
}

fn default_socket_timeout() -> f64 {
    30.0
}

/// The bot's identity, from `auth.test`.
#[derive(Debug, Clone, Default)]
pub struct Me {
    pub user_id: String,
    pub bot_id: String,
    pub name: String,
    pub team: String,
}

/// What the socket loop, the sender and the gRPC service share.
pub struct Shared {
    pub api: api::Api,
    pub state: StatusCell,
    pub me: Mutex<Option<Me>>,
    pub events: EventHub,
    /// The last event id handed to the supervisor.
    pub next_event: AtomicU64,
    /// Messages the supervisor has stored, so a redelivery is acknowledged at once.
    pub stored: inbound::Seen,
    /// When the open socket last carried a frame (`None`: no socket).
    pub last_frame: Mutex<Option<Instant>>,
    /// No frame and no pong for this long: the socket is dead.
    pub socket_timeout: Duration,
    /// Socket Mode connections opened so far (for health and the tests).
    pub connections: AtomicU64,
    /// Cancelled when a token is refused: the open socket closes and no call is made
    /// until an operator restarts the worker.
    pub refused: CancellationToken,
    pub shutdown: CancellationToken,
}

impl Shared {
    /// A token was refused (`code`): report it, close the socket, stop calling Slack.
    pub fn token_refused(&self, code: &str, which: &str) {
        self.state
            .set("unauthorized", api::unauthorized_detail(code, which), false);
        self.refused.cancel();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("invalid slack worker config: {0}")]
    Config(String),
}

impl worker_runtime::WorkerExit for SlackError {
    fn exit_code(&self) -> u8 {
        match self {
            SlackError::Runtime(e) => e.exit_code(),
            SlackError::Config(_) => worker_runtime::exit::CONFIG,
        }
    }
}

/// The worker's entry point.
pub async fn serve(ctx: WorkerContext) -> Result<(), SlackError> {
    let cfg: Config = serde_json::from_value(ctx.config.clone())
        // serde names the field, never a token's value.
        .map_err(|e| SlackError::Config(e.to_string()))?;
    if !(0.2..=3600.0).contains(&cfg.socket_timeout_seconds) {
        return Err(SlackError::Config(
            "socketTimeoutSeconds must be between 0.2 and 3600".into(),
        ));
    }
    let api =
        api::Api::new(&cfg.api_url, &cfg.bot_token, &cfg.app_token).map_err(SlackError::Config)?;
    let shared = Arc::new(Shared {
        api,
        state: StatusCell::new("slack", "connecting"),
        me: Mutex::new(None),
        events: EventHub::default(),
        next_event: AtomicU64::new(0),
        stored: inbound::Seen::new(4096),
        last_frame: Mutex::new(None),
        socket_timeout: Duration::from_secs_f64(cfg.socket_timeout_seconds),
        connections: AtomicU64::new(0),
        refused: CancellationToken::new(),
        shutdown: ctx.shutdown.clone(),
    });
    worker_runtime::channel::serve(&ctx, Arc::new(Slack(shared)))
        .await
        .map_err(SlackError::from)
}

/// The Slack app as a [`Channel`].
struct Slack(Arc<Shared>);

#[tonic::async_trait]
impl Channel for Slack {
    fn id(&self) -> &'static str {
        "slack"
    }

    fn version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    fn capabilities(&self) -> Vec<&'static str> {
        vec![
            capability::SEND,
            capability::EVENTS,
            capability::GROUPS,
            capability::THREADS,
        ]
    }

    fn events(&self) -> &EventHub {
        &self.0.events
    }

    async fn receive(self: Arc<Self>) {
        socket::run(Arc::clone(&self.0)).await;
    }

    async fn send(&self, request: SendRequest) -> Delivery {
        send::deliver(&self.0, request).await
    }

    async fn health(&self) -> Health {
        let s = &self.0;
        let mut h = s.state.health("connected");
        // Connected only while frames arrive: a socket quiet for longer than the
        // timeout is not connected, even before the loop has replaced it.
        let fresh = s
            .last_frame
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() <= s.socket_timeout);
        if h.connected == Some(true) && !fresh {
            h.connected = Some(false);
            h.state = "reconnecting".into();
            h.detail = "the Socket Mode connection went quiet".into();
        }
        if let Some(me) = s.me.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            h.labels.insert("bot".into(), format!("@{}", me.name));
            h.labels.insert("botUserId".into(), me.user_id);
            h.labels.insert("team".into(), me.team);
        }
        h.labels.insert(
            "connectionsOpened".into(),
            s.connections
                .load(std::sync::atomic::Ordering::Relaxed)
                .to_string(),
        );
        h
    }
}
