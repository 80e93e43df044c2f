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
use switchboard_proto::v1::linker_server::{Linker, LinkerServer};
use switchboard_proto::v1::worker_server::{Worker, WorkerServer};
use switchboard_proto::v1::{
    AckReply, AckRequest, EventsRequest, HealthReply, HealthRequest, HelloReply, HelloRequest,
    LoginStartReply, LoginStartRequest, LoginWaitReply, LoginWaitRequest, LogoutReply,
    LogoutRequest, SendReply, SendRequest, ShutdownReply, ShutdownRequest,
};
use tonic::{Request, Response, Status};
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
    session.start().await.map_err(WhatsAppError::Session)?;
    let service = Service {
        name: ctx.name.clone(),
        session: Arc::clone(&session),
    };
    let router = tonic::transport::Server::builder()
        .add_service(WorkerServer::new(service.clone()))
        .add_service(LinkerServer::new(service));
    let served = worker_runtime::serve(&ctx, router).await;
    session.close().await;
    drop(lock);
    served.map_err(WhatsAppError::from)
}

#[derive(Clone)]
struct Service {
    name: String,
    session: Arc<Session>,
}

#[tonic::async_trait]
impl Worker for Service {
    async fn hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(worker_runtime::hello_reply(
            &self.name,
            "whatsapp",
            env!("CARGO_PKG_VERSION"),
            &["send", "events", "login"],
        )))
    }

    async fn health(&self, _: Request<HealthRequest>) -> Result<Response<HealthReply>, Status> {
        let (state, detail) = self.session.health();
        Ok(Response::new(HealthReply {
            state: state.into(),
            detail,
            restartable: true,
            labels: self.session.labels().into_iter().collect(),
        }))
    }

    type EventsStream = worker_runtime::events::EventStream;

    async fn events(
        &self,
        _: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        // A new subscriber replaces the old one; unacknowledged events come again.
        Ok(Response::new(self.session.events.subscribe()))
    }

    async fn ack(&self, req: Request<AckRequest>) -> Result<Response<AckReply>, Status> {
        self.session.events.ack(req.into_inner().event_id);
        Ok(Response::new(AckReply {}))
    }

    async fn send(&self, req: Request<SendRequest>) -> Result<Response<SendReply>, Status> {
        let r = req.into_inner();
        Ok(Response::new(self.session.send(&r.to, &r.text).await))
    }

    async fn shutdown(
        &self,
        _: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownReply>, Status> {
        self.session.shutdown.cancel();
        Ok(Response::new(ShutdownReply {}))
    }
}

#[tonic::async_trait]
impl Linker for Service {
    async fn login_start(
        &self,
        req: Request<LoginStartRequest>,
    ) -> Result<Response<LoginStartReply>, Status> {
        let r = req.into_inner();
        Ok(Response::new(
            self.session
                .login_start(r.force, Duration::from_millis(r.timeout_ms))
                .await,
        ))
    }

    async fn login_wait(
        &self,
        req: Request<LoginWaitRequest>,
    ) -> Result<Response<LoginWaitReply>, Status> {
        let r = req.into_inner();
        Ok(Response::new(
            self.session
                .login_wait(Duration::from_millis(r.timeout_ms))
                .await,
        ))
    }

    async fn logout(&self, _: Request<LogoutRequest>) -> Result<Response<LogoutReply>, Status> {
        Ok(Response::new(self.session.logout().await))
    }
}
