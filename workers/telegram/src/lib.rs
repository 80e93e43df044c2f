//! The Telegram worker: a Telegram bot driven through the Bot API (`teloxide-core`),
//! pointed at `https://api.telegram.org` unless configured otherwise.
//!
//! * Inbound: long polling (`getUpdates`). Messages become the contract's
//!   `InboundMessage` events; the `getUpdates` offset only moves past an update once the
//!   supervisor has acknowledged it (`Ack`), so a crash anywhere never loses a message —
//!   Telegram redelivers what was not confirmed, and the supervisor drops what it already
//!   has. Nothing is polled while no supervisor listens.
//! * Outbound: `Send` delivers one text (split at Telegram's length limit) and reports
//!   the provider's verdict: delivered, retry after N (429), or refused for good.
//! * Health: `connecting`, `polling`, `backoff` (with the last error) or `unauthorized`
//!   (the token was refused: the worker stops calling Telegram and asks for an operator).
//!
//! The bot token is a secret: it is never logged and never part of an error text (the
//! request URL that contains it is never printed).

mod poll;
mod send;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use switchboard_proto::capability;
use switchboard_proto::v1::SendRequest;
use teloxide_core::Bot;
use tokio_util::sync::CancellationToken;
use worker_runtime::channel::{Channel, Delivery, Health};
use worker_runtime::events::EventHub;
use worker_runtime::status::StatusCell;
use worker_runtime::{RuntimeError, WorkerContext};

/// The worker's configuration, as the supervisor passes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    pub bot_token: String,
    #[serde(default = "default_api_url")]
    pub api_url: String,
    #[serde(default = "default_poll_timeout")]
    pub poll_timeout_seconds: u32,
}

fn default_api_url() -> String {
    "https://api.telegram.org".into()
}

fn default_poll_timeout() -> u32 {
    30
}

/// What the poller, the sender and the gRPC service share.
pub struct Shared {
    pub bot: Bot,
    pub state: StatusCell,
    /// `@username` of the bot, once `getMe` answered.
    pub username: Mutex<Option<String>>,
    /// The `Events` stream to the supervisor and its acknowledgements.
    pub events: EventHub,
    pub poll_timeout: u32,
    pub shutdown: CancellationToken,
}

impl Shared {}

#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("invalid telegram worker config: {0}")]
    Config(String),
}

impl worker_runtime::WorkerExit for TelegramError {
    fn exit_code(&self) -> u8 {
        match self {
            TelegramError::Runtime(e) => e.exit_code(),
            TelegramError::Config(_) => worker_runtime::exit::CONFIG,
        }
    }
}

/// The worker's entry point.
pub async fn serve(ctx: WorkerContext) -> Result<(), TelegramError> {
    let cfg: Config = serde_json::from_value(ctx.config.clone())
        // The error names a field, never the token's value.
        .map_err(|e| TelegramError::Config(e.to_string()))?;
    let api = reqwest::Url::parse(&cfg.api_url)
        .map_err(|e| TelegramError::Config(format!("apiUrl: {e}")))?;
    // A client timeout longer than the long poll, so a quiet poll is not an error.
    let client = teloxide_core::net::default_reqwest_settings()
        .timeout(Duration::from_secs(
            u64::from(cfg.poll_timeout_seconds) + 15,
        ))
        .build()
        .map_err(|e| TelegramError::Config(format!("http client: {e}")))?;
    let bot = Bot::with_client(cfg.bot_token, client).set_api_url(api);
    let shared = Arc::new(Shared {
        bot,
        state: StatusCell::new("telegram", "connecting"),
        username: Mutex::new(None),
        events: Default::default(),
        poll_timeout: cfg.poll_timeout_seconds,
        shutdown: ctx.shutdown.clone(),
    });
    worker_runtime::channel::serve(&ctx, Arc::new(Telegram(shared)))
        .await
        .map_err(TelegramError::from)
}

/// The Telegram bot as a [`Channel`].
struct Telegram(Arc<Shared>);

#[tonic::async_trait]
impl Channel for Telegram {
    fn id(&self) -> &'static str {
        "telegram"
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
        poll::run(Arc::clone(&self.0)).await;
    }

    async fn send(&self, request: SendRequest) -> Delivery {
        send::deliver(&self.0, request).await
    }

    async fn health(&self) -> Health {
        let mut h = self.0.state.health("polling");
        if let Some(u) = self
            .0
            .username
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            h.labels.insert("bot".into(), format!("@{u}"));
        }
        h
    }
}
