//! The WhatsApp worker: WhatsApp Web (multi-device) through `whatsapp-rust`, with
//! exactly one session per host.
//!
//! * `lock.rs` — the session lock, taken before the session is opened, held for life.
//! * `session.rs` — the client's lifecycle, linking by QR code, health, delivery, and the
//!   durability hook: WhatsApp gets its acknowledgement only after the supervisor stored
//!   the message.
//! * `mapping.rs` — WhatsApp messages as the contract's events; targets as JIDs.
//!
//! There is no stand-in for WhatsApp's own protocol; the connection code here is the
//! real one, and tests exercise everything around it (lock, linking without a server,
//! logged-out and unreachable behaviour, mapping).

pub mod lock;
pub mod mapping;
pub mod session;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use switchboard_proto::capability;
use switchboard_proto::v1::{LoginStartReply, LoginWaitReply, LogoutReply, SendRequest};
use worker_runtime::channel::{Channel, Delivery, Health, Link};
use worker_runtime::events::EventHub;
use worker_runtime::{RuntimeError, WorkerContext};

use crate::lock::{LockError, SessionLock};
use crate::session::{Session, Settings};

/// The worker's configuration, as the supervisor passes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The session directory (lock, credentials).
    pub session_dir: PathBuf,
    #[serde(default)]
    pub server_url: Option<String>,
    #[serde(default)]
    pub client_version: Option<(u32, u32, u32)>,
}

#[derive(Debug, thiserror::Error)]
pub enum WhatsAppError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("invalid whatsapp worker config: {0}")]
    Config(String),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{0}")]
    Session(String),
}

impl worker_runtime::WorkerExit for WhatsAppError {
    fn exit_code(&self) -> u8 {
        match self {
            WhatsAppError::Runtime(e) => e.exit_code(),
            WhatsAppError::Config(_) => worker_runtime::exit::CONFIG,
            // Another session owns the account: restarting cannot help.
            WhatsAppError::Lock(LockError::Held { .. }) => worker_runtime::exit::LOCKED,
            WhatsAppError::Lock(_) | WhatsAppError::Session(_) => worker_runtime::exit::FAILURE,
        }
    }
}

/// The worker's entry point.
pub async fn serve(ctx: WorkerContext) -> Result<(), WhatsAppError> {
    let cfg: Config = serde_json::from_value(ctx.config.clone())
        .map_err(|e| WhatsAppError::Config(e.to_string()))?;
    // Before anything touches the session: the one-session-per-host lock.
    let lock = SessionLock::acquire(&cfg.session_dir)?;
    tracing::info!(lock = %lock.path().display(), "WhatsApp session lock held");
    let session = Session::new(
        Settings {
            dir: cfg.session_dir,
            server_url: cfg.server_url,
            client_version: cfg.client_version,
        },
        ctx.shutdown.clone(),
    );
    let served = worker_runtime::channel::serve(&ctx, Arc::new(WhatsApp(session))).await;
    drop(lock);
    served.map_err(|e| match e {
        RuntimeError::Connect(why) => WhatsAppError::Session(why),
        other => WhatsAppError::Runtime(other),
    })
}

/// The linked WhatsApp account as a [`Channel`] (and its QR linking as a [`Link`]).
struct WhatsApp(Arc<Session>);

#[tonic::async_trait]
impl Channel for WhatsApp {
    fn id(&self) -> &'static str {
        "whatsapp"
    }

    fn version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    fn capabilities(&self) -> Vec<&'static str> {
        vec![
            capability::SEND,
            capability::EVENTS,
            capability::GROUPS,
            capability::LOGIN_QR,
        ]
    }

    fn events(&self) -> &EventHub {
        &self.0.events
    }

    /// Opens the stored session (if linked) before the worker serves.
    async fn connect(&self) -> Result<(), String> {
        self.0.start().await
    }

    /// The client delivers through the durability hook set up by `connect`; nothing to
    /// poll here.
    async fn receive(self: Arc<Self>) {}

    async fn send(&self, r: SendRequest) -> Delivery {
        self.0.send(&r.delivery_id, &r.to, &r.text).await
    }

    async fn health(&self) -> Health {
        let (state, detail) = self.0.health();
        Health {
            connected: Some(state == "connected"),
            state: state.into(),
            detail,
            restartable: true,
            labels: self.0.labels().into_iter().collect(),
        }
    }

    fn link(&self) -> Option<&dyn Link> {
        Some(self)
    }

    async fn close(&self) {
        self.0.close().await;
    }
}

#[tonic::async_trait]
impl Link for WhatsApp {
    async fn login_start(&self, force: bool, timeout: Duration) -> LoginStartReply {
        self.0.login_start(force, timeout).await
    }

    async fn login_wait(&self, timeout: Duration) -> LoginWaitReply {
        self.0.login_wait(timeout).await
    }

    async fn logout(&self) -> LogoutReply {
        self.0.logout().await
    }
}
