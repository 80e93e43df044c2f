//! The iMessage worker: Messages.app on a signed-in Mac through the `imsg` CLI.
//!
//! * The worker runs `imsg rpc --json` as its child — here, or on the Mac through
//!   `ssh -T <remoteHost>` — and speaks JSON-RPC 2.0 with it, one object per line
//!   ([`rpc`]). A child that exits is started again with back-off; one that stops
//!   answering is killed and started again; none outlives the worker.
//! * Inbound ([`watch`]): `watch.subscribe` with `since_rowid` = the cursor the
//!   supervisor stored with the last message it kept (`EventsRequest.cursor`); every
//!   event carries its row id as the cursor, so a restart of imsg, the worker or the
//!   gateway loses and repeats nothing. Messages from this Mac (`is_from_me`) are ignored.
//! * Outbound ([`send`]): one `send` per delivery; imsg's answer is the verdict.
//! * Health: `connected` only while imsg answers. Full Disk Access or Automation
//!   missing is reported in those words with what to grant, and nothing is retried until
//!   an operator acts (`switchboard workers restart imessage`).

pub mod rpc;
mod send;
pub mod watch;

use std::sync::{Arc, Mutex};

use serde::Deserialize;
use switchboard_proto::capability;
use switchboard_proto::v1::SendRequest;
use tokio_util::sync::CancellationToken;
use worker_runtime::channel::{Channel, Delivery, Health};
use worker_runtime::events::EventHub;
use worker_runtime::status::StatusCell;
use worker_runtime::{RuntimeError, WorkerContext};

/// The worker's configuration, as the supervisor passes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_cli")]
    pub cli_path: String,
    #[serde(default)]
    pub db_path: Option<String>,
    #[serde(default)]
    pub remote_host: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
}

fn default_cli() -> String {
    "imsg".into()
}

/// What the watcher, the sender and the gRPC service share.
pub struct Shared {
    pub cfg: Config,
    pub state: StatusCell,
    /// The imsg that answers now (`None` while it is (re)starting).
    imsg: Mutex<Option<Arc<rpc::Imsg>>>,
    pub events: EventHub,
    pub shutdown: CancellationToken,
}

impl Shared {
    pub fn new(cfg: Config, shutdown: CancellationToken) -> Shared {
        Shared {
            cfg,
            state: StatusCell::new("imessage", "starting"),
            imsg: Mutex::new(None),
            events: EventHub::default(),
            shutdown,
        }
    }

    pub fn imsg(&self) -> Option<Arc<rpc::Imsg>> {
        self.imsg.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_imsg(&self, i: Option<Arc<rpc::Imsg>>) {
        *self.imsg.lock().unwrap_or_else(|p| p.into_inner()) = i;
    }

    /// Where imsg runs, for messages: `this computer` or the SSH host.
    pub fn place(&self) -> String {
        match &self.cfg.remote_host {
            Some(h) => format!("on {h} (through ssh)"),
            None => "on this computer".into(),
        }
    }
}

/// A macOS privacy permission imsg reported missing: the state, and what to grant.
pub fn permission_problem(cfg: &Config, imsg_said: &str) -> Option<String> {
    let lower = imsg_said.to_lowercase();
    let launcher = if cfg.remote_host.is_some() {
        "the SSH server (System Settings → General → Sharing → Remote Login → (i) → \"Allow full disk access for remote users\"; on older macOS add /usr/libexec/sshd-keygen-wrapper)"
    } else {
        "the app that starts the gateway (your terminal, or the launcher that runs `switchboard`), and the built-in Terminal.app"
    };
    let first_line = imsg_said
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    if lower.contains("full disk access")
        || lower.contains("unable to open database")
        || lower.contains("authorization denied")
    {
        return Some(format!(
            "Full Disk Access is missing: imsg cannot read the Messages database. Grant Full Disk Access in System Settings → Privacy & Security → Full Disk Access to {launcher}, quit and relaunch it, then run `switchboard workers restart imessage`. imsg said: {first_line}"
        ));
    }
    if lower.contains("automation")
        || lower.contains("not authorized to send apple events")
        || lower.contains("-1743")
    {
        let who = if cfg.remote_host.is_some() {
            "sshd-keygen-wrapper (or the SSH session's shell)"
        } else {
            "the app that starts the gateway"
        };
        return Some(format!(
            "Automation permission is missing: imsg may not control Messages. Allow it in System Settings → Privacy & Security → Automation → enable Messages under {who} (run `imsg send` once in a terminal on the Mac to get the prompt), then run `switchboard workers restart imessage`. imsg said: {first_line}"
        ));
    }
    None
}

#[derive(Debug, thiserror::Error)]
pub enum IMessageError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("invalid imessage worker config: {0}")]
    Config(String),
}

impl worker_runtime::WorkerExit for IMessageError {
    fn exit_code(&self) -> u8 {
        match self {
            IMessageError::Runtime(e) => e.exit_code(),
            IMessageError::Config(_) => worker_runtime::exit::CONFIG,
        }
    }
}

/// The worker's entry point.
pub async fn serve(ctx: WorkerContext) -> Result<(), IMessageError> {
    let cfg: Config = serde_json::from_value(ctx.config.clone())
        .map_err(|e| IMessageError::Config(e.to_string()))?;
    if cfg.cli_path.trim().is_empty() {
        return Err(IMessageError::Config("cliPath must not be blank".into()));
    }
    let shared = Arc::new(Shared::new(cfg, ctx.shutdown.clone()));
    worker_runtime::channel::serve(&ctx, Arc::new(IMessage(shared)))
        .await
        .map_err(IMessageError::from)
}

/// iMessage through imsg, as a [`Channel`].
struct IMessage(Arc<Shared>);

#[tonic::async_trait]
impl Channel for IMessage {
    fn id(&self) -> &'static str {
        "imessage"
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
        watch::run(Arc::clone(&self.0)).await;
    }

    async fn send(&self, request: SendRequest) -> Delivery {
        send::deliver(&self.0, request).await
    }

    async fn health(&self) -> Health {
        let mut h = self.0.state.health("connected");
        if let Some(i) = self.0.imsg() {
            h.labels.insert("imsgPid".into(), i.pid.to_string());
        }
        if let Some(host) = &self.0.cfg.remote_host {
            h.labels.insert("remoteHost".into(), host.clone());
        }
        h
    }

    async fn close(&self) {
        if let Some(i) = self.0.imsg() {
            i.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_errors_name_what_to_grant() {
        let cfg = Config {
            cli_path: "imsg".into(),
            db_path: None,
            remote_host: None,
            service: None,
        };
        let fda = permission_problem(
            &cfg,
            "authorization denied (code: 23)\n\n⚠️  Permission Error: Cannot access Messages database\n\nThe Messages database at /Users/me/Library/Messages/chat.db requires Full Disk Access permission.",
        )
        .unwrap();
        assert!(fda.starts_with("Full Disk Access is missing"), "{fda}");
        assert!(fda.contains("Privacy & Security → Full Disk Access"));
        let auto = permission_problem(
            &cfg,
            "AppleScript failed: Not authorized to send Apple events to Messages. (-1743)",
        )
        .unwrap();
        assert!(
            auto.starts_with("Automation permission is missing"),
            "{auto}"
        );
        assert!(permission_problem(&cfg, "Chat not found: 7").is_none());
    }
}
