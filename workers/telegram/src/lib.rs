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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use switchboard_proto::v1::worker_server::{Worker, WorkerServer};
use switchboard_proto::v1::{
    AckReply, AckRequest, EventsRequest, HealthReply, HealthRequest, HelloReply, HelloRequest,
    SendReply, SendRequest, ShutdownReply, ShutdownRequest,
};
use teloxide_core::Bot;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
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

/// The provider state reported by `Health`.
#[derive(Debug, Clone)]
pub struct ProviderState {
    pub state: &'static str,
    pub detail: String,
    pub restartable: bool,
}

/// What the poller, the sender and the gRPC service share.
pub struct Shared {
    pub bot: Bot,
    pub state: Mutex<ProviderState>,
    /// `@username` of the bot, once `getMe` answered.
    pub username: Mutex<Option<String>>,
    /// The `Events` stream to the supervisor and its acknowledgements.
    pub events: worker_runtime::events::EventHub,
    pub poll_timeout: u32,
    pub shutdown: CancellationToken,
}

impl Shared {
    pub fn set_state(&self, state: &'static str, detail: impl Into<String>, restartable: bool) {
        let detail = detail.into();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.state != state {
            tracing::info!(state, detail = %detail, "telegram state");
        }
        *s = ProviderState {
            state,
            detail,
            restartable,
        };
    }

    pub fn state(&self) -> ProviderState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

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
        state: Mutex::new(ProviderState {
            state: "connecting",
            detail: String::new(),
            restartable: true,
        }),
        username: Mutex::new(None),
        events: Default::default(),
        poll_timeout: cfg.poll_timeout_seconds,
        shutdown: ctx.shutdown.clone(),
    });
    let poller = tokio::spawn(poll::run(Arc::clone(&shared)));
    let service = Service {
        name: ctx.name.clone(),
        shared,
    };
    let router = tonic::transport::Server::builder().add_service(WorkerServer::new(service));
    let served = worker_runtime::serve(&ctx, router).await;
    poller.abort();
    served.map_err(TelegramError::from)
}

struct Service {
    name: String,
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl Worker for Service {
    async fn hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(worker_runtime::hello_reply(
            &self.name,
            "telegram",
            env!("CARGO_PKG_VERSION"),
            &["send", "events"],
        )))
    }

    async fn health(&self, _: Request<HealthRequest>) -> Result<Response<HealthReply>, Status> {
        let s = self.shared.state();
        let mut labels = HashMap::new();
        if let Some(u) = self
            .shared
            .username
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            labels.insert("bot".into(), format!("@{u}"));
        }
        Ok(Response::new(HealthReply {
            state: s.state.into(),
            detail: s.detail,
            restartable: s.restartable,
            labels,
        }))
    }

    type EventsStream = worker_runtime::events::EventStream;

    async fn events(
        &self,
        _: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        // A new subscriber replaces the old one; unacknowledged events come again.
        Ok(Response::new(self.shared.events.subscribe()))
    }

    async fn ack(&self, req: Request<AckRequest>) -> Result<Response<AckReply>, Status> {
        self.shared.events.ack(req.into_inner().event_id);
        Ok(Response::new(AckReply {}))
    }

    async fn send(&self, req: Request<SendRequest>) -> Result<Response<SendReply>, Status> {
        Ok(Response::new(
            send::deliver(&self.shared, req.into_inner()).await,
        ))
    }

    async fn shutdown(
        &self,
        _: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownReply>, Status> {
        self.shared.shutdown.cancel();
        Ok(Response::new(ShutdownReply {}))
    }
}
