//! The Discord worker: a bot application on Discord's gateway (v10, JSON) and REST API.
//!
//! * Inbound ([`gateway`]): one shard of `twilight-gateway`, which keeps the session
//!   alive the documented way: heartbeats on `HELLO`'s interval (a heartbeat not
//!   acknowledged before the next one is due marks a zombie connection, which is
//!   dropped and resumed), `RESUME` with the session id and last sequence at
//!   `READY.resume_gateway_url` after op 7 `RECONNECT`, a dropped socket or a resumable
//!   close, a fresh `IDENTIFY` after `INVALID_SESSION` `d:false`, and no reconnect after
//!   a fatal close code (4004, 4010–4014). Its events are read here as raw JSON, so this
//!   worker sees every opcode and close code and reports them in `health`; message
//!   dispatches become the contract's events ([`inbound`]) and are kept (bounded) until
//!   the supervisor acknowledged them. Discord replays the dispatches a resumed session
//!   missed, and the supervisor drops the ones it already stored (by message id).
//! * Outbound ([`send`], [`rest`]): `POST /channels/{id}/messages` (a DM to a user opens
//!   the DM channel first, `POST /users/@me/channels`), texts split at 2,000 characters,
//!   each part with a `nonce` Discord enforces, so a retried part is not posted twice.
//!   REST is plain HTTP here, not `twilight-http`: its response future retries every 429
//!   internally and without a bound (without its rate limiter, at once, in a loop) and
//!   cannot hand `retry_after` back; here a 429's `retry_after` is honoured up to
//!   [`rest::RETRY_AFTER_BOUND`], and a longer one becomes the outbox's retry verdict.
//! * Health: `connecting`, `connected` (after `READY`/`RESUMED`, while heartbeats are
//!   acknowledged), `reconnecting`, `backoff`, and the states only an operator ends:
//!   `unauthorized` (4004 or a REST 401) and `intents-not-allowed` (4014).
//!
//! The bot token is a secret: never logged, never part of an error text.

pub mod gateway;
pub mod inbound;
pub mod rest;
pub mod send;

use std::sync::atomic::{AtomicU64, Ordering};
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

/// The worker's configuration, as the supervisor passes it (`channels.discord`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    pub token: String,
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// The gateway's URL; `None`: ask `GET /gateway/bot`.
    #[serde(default)]
    pub gateway_url: Option<String>,
    /// Whether to ask for the privileged `MESSAGE_CONTENT` intent.
    #[serde(default)]
    pub message_content: bool,
}

fn default_api_url() -> String {
    "https://discord.com".into()
}

/// The bot's own user, from `READY`.
#[derive(Debug, Clone, Default)]
pub struct Me {
    pub id: String,
    pub username: String,
}

/// What the gateway loop, the sender and the gRPC service share.
pub struct Shared {
    pub cfg: Config,
    pub http: reqwest::Client,
    pub state: StatusCell,
    pub events: EventHub,
    pub me: Mutex<Option<Me>>,
    /// When the session last showed it is alive (`READY`, `RESUMED`, a heartbeat ACK),
    /// in ms since `started`; 0: not connected.
    pub alive_at_ms: AtomicU64,
    /// The heartbeat interval `HELLO` gave, in ms.
    pub heartbeat_ms: AtomicU64,
    pub started: Instant,
    pub shutdown: CancellationToken,
}

impl Shared {
    /// Sleeps unless shut down first; `false` when shut down.
    pub async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    /// Removes the token from a text meant for a log or an error.
    pub fn redact(&self, text: &str) -> String {
        if self.cfg.token.is_empty() {
            text.to_owned()
        } else {
            text.replace(&self.cfg.token, "<bot-token>")
        }
    }

    pub fn mark_alive(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.alive_at_ms.store(now.max(1), Ordering::SeqCst);
    }

    pub fn mark_down(&self) {
        self.alive_at_ms.store(0, Ordering::SeqCst);
    }

    /// Whether the session is up and its heartbeats are acknowledged in time (within
    /// two intervals and a second of slack).
    pub fn alive(&self) -> bool {
        alive(
            self.alive_at_ms.load(Ordering::SeqCst),
            self.heartbeat_ms.load(Ordering::SeqCst),
            self.started.elapsed().as_millis() as u64,
        )
    }

    /// Sets a passing state, unless only an operator can end the current one.
    pub fn set_state(&self, state: &'static str, detail: impl Into<String>) {
        if !self.state.needs_operator() {
            self.state.set(state, detail, true);
        }
    }

    pub fn unauthorized(&self, why: &str) {
        self.mark_down();
        self.state.set(
            "unauthorized",
            format!(
                "Discord refused the bot token ({why}): fix channels.discord.token (developer portal → your application → Bot → Reset Token), then `switchboard workers restart discord`"
            ),
            false,
        );
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("invalid discord worker config: {0}")]
    Config(String),
}

impl worker_runtime::WorkerExit for DiscordError {
    fn exit_code(&self) -> u8 {
        match self {
            DiscordError::Runtime(e) => e.exit_code(),
            DiscordError::Config(_) => worker_runtime::exit::CONFIG,
        }
    }
}

/// The worker's entry point.
pub async fn serve(ctx: WorkerContext) -> Result<(), DiscordError> {
    let cfg: Config = serde_json::from_value(ctx.config.clone())
        // The error names a field, never the token's value.
        .map_err(|e| DiscordError::Config(e.to_string()))?;
    if cfg.token.trim().is_empty() {
        return Err(DiscordError::Config("token is empty".into()));
    }
    reqwest::Url::parse(&cfg.api_url).map_err(|e| DiscordError::Config(format!("apiUrl: {e}")))?;
    if let Some(g) = &cfg.gateway_url {
        reqwest::Url::parse(g).map_err(|e| DiscordError::Config(format!("gatewayUrl: {e}")))?;
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!(
            "DiscordBot (https://github.com/switchboard, ",
            env!("CARGO_PKG_VERSION"),
            ")"
        ))
        .build()
        .map_err(|e| DiscordError::Config(format!("http client: {e}")))?;
    let shared = Arc::new(Shared {
        cfg,
        http,
        state: StatusCell::new("discord", "connecting"),
        events: EventHub::default(),
        me: Mutex::new(None),
        alive_at_ms: AtomicU64::new(0),
        heartbeat_ms: AtomicU64::new(41_250),
        started: Instant::now(),
        shutdown: ctx.shutdown.clone(),
    });
    worker_runtime::channel::serve(&ctx, Arc::new(Discord(shared)))
        .await
        .map_err(DiscordError::from)
}

/// The Discord bot as a [`Channel`].
struct Discord(Arc<Shared>);

#[tonic::async_trait]
impl Channel for Discord {
    fn id(&self) -> &'static str {
        "discord"
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
        gateway::run(Arc::clone(&self.0)).await;
    }

    async fn send(&self, request: SendRequest) -> Delivery {
        send::deliver(&self.0, request).await
    }

    async fn health(&self) -> Health {
        health(&self.0)
    }

    async fn close(&self) {
        self.0.shutdown.cancel();
    }
}

/// A session last seen alive at `at` ms (0: down) is alive at `now` while no more than two
/// heartbeat intervals and a second of slack have passed.
fn alive(at: u64, interval: u64, now: u64) -> bool {
    at != 0 && now.saturating_sub(at) <= interval.max(1) * 2 + 1000
}

fn health(shared: &Shared) -> Health {
    let s = shared.state.get();
    let mut h = if s.state == "connected" && !shared.alive() {
        Health::down(
            "reconnecting",
            "no heartbeat acknowledgement from Discord in time; replacing the connection",
        )
    } else {
        shared.state.health("connected")
    };
    if let Some(me) = shared.me.lock().unwrap_or_else(|p| p.into_inner()).clone() {
        h.labels.insert("bot".into(), me.username);
        h.labels.insert("botId".into(), me.id);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_alive_until_two_heartbeats_go_unacknowledged() {
        assert!(!alive(0, 41_250, 5), "down until READY");
        assert!(alive(1_000, 1_000, 3_900));
        assert!(alive(1_000, 1_000, 4_000));
        assert!(
            !alive(1_000, 1_000, 4_001),
            "two intervals and the slack passed"
        );
    }

    #[test]
    fn intents_ask_for_message_content_only_when_told() {
        use twilight_gateway::Intents;
        let base = gateway::intents(false);
        assert_eq!(base, Intents::DIRECT_MESSAGES | Intents::GUILD_MESSAGES);
        assert_eq!(base.bits(), (1 << 9) | (1 << 12));
        assert!(gateway::intents(true).contains(Intents::MESSAGE_CONTENT));
    }
}
