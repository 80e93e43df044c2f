//! The `Channel` trait: what a messaging provider's worker implements, and the one place
//! that serves the whole `Worker` (and `Linker`) gRPC service from it.
//!
//! As containerd's shim crate serves its task service from a `Shim`, a provider worker is
//! an implementation of [`Channel`] and nothing else: identity and capabilities, a
//! `connect` step before it serves, a `receive` loop for its life (inbound messages go
//! through its [`EventHub`], which the runtime connects to the supervisor's `Events` and
//! `Ack` calls), `send`, `health`, and optionally linking ([`Link`]). [`serve`] does the
//! rest: `Hello`, `Health`, `Events`, `Ack`, `Send`, `Shutdown`, `Login*`, readiness,
//! graceful stop.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use worker_runtime::channel::{Channel, Delivery, Health, serve};
//! # use worker_runtime::events::EventHub;
//! # use switchboard_proto::v1::SendRequest;
//! struct Echo { events: EventHub }
//!
//! #[tonic::async_trait]
//! impl Channel for Echo {
//!     fn id(&self) -> &'static str { "echo" }
//!     fn version(&self) -> &'static str { env!("CARGO_PKG_VERSION") }
//!     fn capabilities(&self) -> Vec<&'static str> { vec!["send", "events"] }
//!     fn events(&self) -> &EventHub { &self.events }
//!     async fn receive(self: Arc<Self>) {}
//!     async fn send(&self, _: SendRequest) -> Delivery { Delivery::Delivered("1".into()) }
//!     async fn health(&self) -> Health { Health::up("connected") }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     worker_runtime::run(|ctx| async move {
//!         serve(&ctx, Arc::new(Echo { events: EventHub::default() })).await
//!     })
//! }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchboard_proto::v1::linker_server::{Linker, LinkerServer};
use switchboard_proto::v1::worker_server::{Worker, WorkerServer};
use switchboard_proto::v1::{
    AckReply, AckRequest, EventsRequest, HealthReply, HealthRequest, HelloReply, HelloRequest,
    LoginStartReply, LoginStartRequest, LoginWaitReply, LoginWaitRequest, LogoutReply,
    LogoutRequest, SendReply, SendRequest, ShutdownReply, ShutdownRequest,
};
use tonic::{Request, Response, Status};

use crate::events::{EventHub, EventStream};
use crate::{RuntimeError, WorkerContext};

/// The provider connection as `Health` reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    /// The provider state in a word: `connected`, `polling`, `backoff`, `unauthorized`, …
    pub state: String,
    /// What is wrong and what to do about it (never secrets).
    pub detail: String,
    /// `false` for states only an operator can fix: the supervisor stops restarting.
    pub restartable: bool,
    /// Whether the connection carries data right now; `None` lets the supervisor decide
    /// from the state word.
    pub connected: Option<bool>,
    pub labels: HashMap<String, String>,
}

impl Health {
    /// A working connection in state `state`.
    pub fn up(state: &str) -> Health {
        Health {
            state: state.to_owned(),
            restartable: true,
            connected: Some(true),
            ..Health::default()
        }
    }

    /// Not connected, for a passing reason (`detail` says which).
    pub fn down(state: &str, detail: impl Into<String>) -> Health {
        Health {
            state: state.to_owned(),
            detail: detail.into(),
            restartable: true,
            connected: Some(false),
            ..Health::default()
        }
    }

    /// Not connected until an operator acts (bad credentials, missing permission).
    pub fn needs_operator(state: &str, detail: impl Into<String>) -> Health {
        Health {
            restartable: false,
            ..Health::down(state, detail)
        }
    }

    pub fn label(mut self, key: &str, value: impl Into<String>) -> Health {
        self.labels.insert(key.to_owned(), value.into());
        self
    }
}

/// The provider's verdict on one delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Delivered; the provider's message id.
    Delivered(String),
    /// Not delivered now; the provider asked to wait this long.
    RetryAfter { after: Duration, error: String },
    /// Not delivered now for a passing reason (network, server error): retry with backoff.
    Retry(String),
    /// Refused for good (unknown chat, blocked, not allowed): retrying cannot help.
    Refused(String),
}

impl From<Delivery> for SendReply {
    fn from(d: Delivery) -> SendReply {
        match d {
            Delivery::Delivered(id) => SendReply {
                provider_message_id: id,
                ..SendReply::default()
            },
            Delivery::RetryAfter { after, error } => SendReply {
                error,
                retry_after_ms: (after.as_millis() as u64).max(1),
                ..SendReply::default()
            },
            Delivery::Retry(error) => SendReply {
                error,
                ..SendReply::default()
            },
            Delivery::Refused(error) => SendReply {
                error,
                permanent: true,
                ..SendReply::default()
            },
        }
    }
}

/// A messaging provider, as its worker implements it.
#[tonic::async_trait]
pub trait Channel: Send + Sync + 'static {
    /// The provider's id, as in the supervisor's registry (`telegram`).
    fn id(&self) -> &'static str;
    /// The worker's version (`env!("CARGO_PKG_VERSION")` of its crate).
    fn version(&self) -> &'static str;
    /// What it can do (`switchboard_proto::capability`).
    fn capabilities(&self) -> Vec<&'static str>;
    /// Its inbound events: what it hands to the supervisor, and the acknowledgements.
    fn events(&self) -> &EventHub;
    /// Set-up that must succeed before the worker serves (a session opened, a lock
    /// taken); an error ends the worker with that reason.
    async fn connect(&self) -> Result<(), String> {
        Ok(())
    }
    /// Connects to the provider and receives for the worker's life, through reconnects;
    /// returns when the worker stops (`WorkerContext::shutdown`).
    async fn receive(self: Arc<Self>);
    /// Delivers one message.
    async fn send(&self, request: SendRequest) -> Delivery;
    async fn health(&self) -> Health;
    /// Linking the account as a device, for channels that announce `login.qr`.
    fn link(&self) -> Option<&dyn Link> {
        None
    }
    /// The worker is stopping: close the provider session cleanly.
    async fn close(&self) {}
}

/// Linking an account by QR code (or phone code): `web.login.*` and `channels.logout`.
#[tonic::async_trait]
pub trait Link: Send + Sync {
    async fn login_start(&self, force: bool, timeout: Duration) -> LoginStartReply;
    async fn login_wait(&self, timeout: Duration) -> LoginWaitReply;
    async fn logout(&self) -> LogoutReply;
}

/// Serves the `Worker` and `Linker` services from `channel` until shutdown; its
/// `receive` loop runs meanwhile.
pub async fn serve<C: Channel>(ctx: &WorkerContext, channel: Arc<C>) -> Result<(), RuntimeError> {
    channel.connect().await.map_err(RuntimeError::Connect)?;
    let receiver = tokio::spawn(Arc::clone(&channel).receive());
    let service = Service {
        name: ctx.name.clone(),
        channel: Arc::clone(&channel),
        shutdown: ctx.shutdown.clone(),
    };
    let router = ctx
        .server()
        .add_service(WorkerServer::new(service.clone()))
        .add_service(LinkerServer::new(service));
    let served = crate::serve(ctx, router).await;
    receiver.abort();
    channel.close().await;
    served
}

struct Service<C> {
    name: String,
    channel: Arc<C>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl<C> Clone for Service<C> {
    fn clone(&self) -> Self {
        Service {
            name: self.name.clone(),
            channel: Arc::clone(&self.channel),
            shutdown: self.shutdown.clone(),
        }
    }
}

#[tonic::async_trait]
impl<C: Channel> Worker for Service<C> {
    async fn hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(crate::hello_reply(
            &self.name,
            self.channel.id(),
            self.channel.version(),
            &self.channel.capabilities(),
        )))
    }

    async fn health(&self, _: Request<HealthRequest>) -> Result<Response<HealthReply>, Status> {
        let h = self.channel.health().await;
        Ok(Response::new(HealthReply {
            state: h.state,
            detail: h.detail,
            restartable: h.restartable,
            labels: h.labels,
            connected: h.connected,
        }))
    }

    type EventsStream = EventStream;

    async fn events(
        &self,
        req: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        // A new subscriber replaces the old one; unacknowledged events come again.
        let cursor = req.into_inner().cursor;
        Ok(Response::new(self.channel.events().subscribe_from(cursor)))
    }

    async fn ack(&self, req: Request<AckRequest>) -> Result<Response<AckReply>, Status> {
        self.channel.events().ack(req.into_inner().event_id);
        Ok(Response::new(AckReply {}))
    }

    async fn send(&self, req: Request<SendRequest>) -> Result<Response<SendReply>, Status> {
        Ok(Response::new(
            self.channel.send(req.into_inner()).await.into(),
        ))
    }

    async fn shutdown(
        &self,
        _: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownReply>, Status> {
        self.shutdown.cancel();
        Ok(Response::new(ShutdownReply {}))
    }
}

fn no_link(id: &str) -> Status {
    Status::unimplemented(format!("the {id} channel does not link by QR code"))
}

#[tonic::async_trait]
impl<C: Channel> Linker for Service<C> {
    async fn login_start(
        &self,
        req: Request<LoginStartRequest>,
    ) -> Result<Response<LoginStartReply>, Status> {
        let link = self
            .channel
            .link()
            .ok_or_else(|| no_link(self.channel.id()))?;
        let r = req.into_inner();
        Ok(Response::new(
            link.login_start(r.force, Duration::from_millis(r.timeout_ms))
                .await,
        ))
    }

    async fn login_wait(
        &self,
        req: Request<LoginWaitRequest>,
    ) -> Result<Response<LoginWaitReply>, Status> {
        let link = self
            .channel
            .link()
            .ok_or_else(|| no_link(self.channel.id()))?;
        let r = req.into_inner();
        Ok(Response::new(
            link.login_wait(Duration::from_millis(r.timeout_ms)).await,
        ))
    }

    async fn logout(&self, _: Request<LogoutRequest>) -> Result<Response<LogoutReply>, Status> {
        let link = self
            .channel
            .link()
            .ok_or_else(|| no_link(self.channel.id()))?;
        Ok(Response::new(link.logout().await))
    }
}
