//! The WhatsApp session: the whatsapp-rust client's lifecycle, linking by QR code, health
//! as it really is, inbound messages handed over durably, and delivery.
//!
//! Phases: `NotLinked` (no session: idle, no connection at all, until an operator links
//! it) → `Linking` (the client is up and showing QR codes) → `Linked` (a session exists:
//! the client keeps it connected, reconnecting with WhatsApp Web's own backoff, Fibonacci
//! 1 s … 15 min with jitter) → `LoggedOut` (WhatsApp ended the session: the session is
//! deleted, nothing reconnects, an operator must link again).
//!
//! Health is tied to the socket actually receiving: `connected` only while the client
//! is connected, logged in, and has received data within [`FRESH`]; a linked client that
//! cannot reach WhatsApp is `backoff` with the number of failed attempts.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use switchboard_proto::v1::{
    LoginStartReply, LoginWaitReply, LogoutReply, WorkerEvent, worker_event,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use whatsapp_rust::InboundDurabilityHook;
use whatsapp_rust::prelude::{Bot, BotHandle, Client, Event, EventKind, SqliteStore};
use whatsapp_rust::send::SendOptions;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;
use whatsapp_rust::types::events::InboundMessage as WaInbound;
use worker_runtime::channel::Delivery;

use crate::mapping::{self, Own};

/// No data for this long from a "connected" socket: not healthy (WhatsApp's keepalive
/// pings every 20–30 s, so a live socket always has something newer).
pub const FRESH: Duration = Duration::from_secs(75);
/// How long the durability hook waits for the supervisor to acknowledge a batch; after
/// that the batch is refused and WhatsApp redelivers it later.
const ACK_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_QR_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_LOGIN_WAIT: Duration = Duration::from_secs(120);
pub const DB_FILE: &str = "session.db";

/// Where the session lives and how to reach WhatsApp.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    /// The WhatsApp Web socket URL (default: WhatsApp's own).
    pub server_url: Option<String>,
    /// Pin the client version instead of asking WhatsApp's servers for the latest.
    pub client_version: Option<(u32, u32, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    NotLinked,
    Linking,
    Linked,
    LoggedOut(String),
}

/// How the current link attempt ended (for `LoginWait`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    None,
    Running,
    Done { connected: bool, message: String },
}

struct Inner {
    phase: Phase,
    bot: Option<BotHandle>,
    client: Option<Arc<Client>>,
    /// The current QR code, and until when it is valid.
    qr: Option<(String, Instant, Duration)>,
    attempt: Attempt,
    /// A passing condition worth showing (stream replaced, temporary ban, …).
    note: Option<String>,
    /// Stopping and deleting a logged-out session (spawned from the client's callback);
    /// awaited before anything opens the session again.
    cleanup: Option<tokio::task::JoinHandle<()>>,
}

/// Shared by the gRPC services, the client's callbacks and the durability hook.
pub struct Session {
    settings: Settings,
    inner: Mutex<Inner>,
    /// Bumped on every change a waiter may care about.
    changed: watch::Sender<u64>,
    /// The `Events` stream to the supervisor and its acknowledgements.
    pub events: worker_runtime::events::EventHub,
    next_event: AtomicU64,
    pub shutdown: CancellationToken,
}

impl Session {
    pub fn new(settings: Settings, shutdown: CancellationToken) -> Arc<Session> {
        Arc::new(Session {
            settings,
            inner: Mutex::new(Inner {
                phase: Phase::NotLinked,
                bot: None,
                client: None,
                qr: None,
                attempt: Attempt::None,
                note: None,
                cleanup: None,
            }),
            changed: watch::channel(0).0,
            events: Default::default(),
            next_event: AtomicU64::new(1),
            shutdown,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.lock());
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn phase(&self) -> Phase {
        self.lock().phase.clone()
    }

    fn db_path(&self) -> PathBuf {
        self.settings.dir.join(DB_FILE)
    }

    /// At start: a stored, linked session is connected; otherwise nothing happens until
    /// an operator links one.
    pub async fn start(self: &Arc<Self>) -> Result<(), String> {
        if !self.db_path().exists() {
            tracing::info!(
                "no WhatsApp session yet: link one with `switchboard channels login whatsapp`"
            );
            return Ok(());
        }
        let bot = self.build().await?;
        let client = bot.client();
        if client.pn().is_none() {
            // A link attempt that never finished: nothing to connect.
            tracing::info!("the stored WhatsApp session was never linked; waiting for a login");
            return Ok(());
        }
        tracing::info!(account = %Own::of(&client).describe(), "connecting the linked WhatsApp session");
        self.update(|i| {
            i.phase = Phase::Linked;
            i.client = Some(client);
            i.bot = Some(bot.spawn());
        });
        Ok(())
    }

    /// Builds a client over the session store, with our callbacks.
    async fn build(self: &Arc<Self>) -> Result<Bot, String> {
        let db = self.db_path();
        let store = SqliteStore::new(&db.to_string_lossy()).await.map_err(|e| {
            format!(
                "cannot open the WhatsApp session store {}: {e}",
                db.display()
            )
        })?;
        restrict(&self.settings.dir);
        let mut transport = TokioWebSocketTransportFactory::new();
        if let Some(url) = &self.settings.server_url {
            transport = transport.with_url(url.clone());
        }
        let (on_qr, on_connected, on_logged_out, on_event) = (
            Arc::clone(self),
            Arc::clone(self),
            Arc::clone(self),
            Arc::clone(self),
        );
        let mut builder = Bot::builder()
            .with_backend(store)
            .with_transport_factory(transport)
            .with_inbound_durability_hook(Hook(Arc::clone(self)))
            .with_push_name("Switchboard")
            .on_qr_code(move |code, valid| {
                let s = Arc::clone(&on_qr);
                async move { s.on_qr(code, valid) }
            })
            .on_connected(move |client| {
                let s = Arc::clone(&on_connected);
                async move { s.on_connected(client) }
            })
            .on_logged_out(move |info| {
                let s = Arc::clone(&on_logged_out);
                async move {
                    s.logged_out(format!("WhatsApp ended the session ({:?})", info.reason))
                        .await
                }
            })
            .on_event_for(
                &[
                    EventKind::PairingQrCodesExhausted,
                    EventKind::PairError,
                    EventKind::StreamReplaced,
                    EventKind::TemporaryBan,
                    EventKind::ClientOutdated,
                ],
                move |event, _client| {
                    let s = Arc::clone(&on_event);
                    async move { s.on_event(&event).await }
                },
            );
        if let Some(v) = self.settings.client_version {
            builder = builder.with_version(v);
        }
        let bot = builder
            .build()
            .await
            .map_err(|e| format!("cannot start the WhatsApp client: {e}"))?;
        restrict(&self.settings.dir);
        Ok(bot)
    }

    fn on_qr(&self, code: String, valid: Duration) {
        tracing::info!(
            valid_s = valid.as_secs(),
            "a new QR code is ready to be scanned"
        );
        self.update(|i| i.qr = Some((code, Instant::now() + valid, valid)));
    }

    fn on_connected(&self, client: Arc<Client>) {
        tracing::info!(account = %Own::of(&client).describe(), "WhatsApp connected");
        self.update(|i| {
            if i.attempt == Attempt::Running {
                i.attempt = Attempt::Done {
                    connected: true,
                    message: "✅ Linked! WhatsApp is ready.".into(),
                };
            }
            i.phase = Phase::Linked;
            i.qr = None;
            i.note = None;
        });
    }

    async fn on_event(self: &Arc<Self>, event: &Event) {
        match event {
            Event::PairingQrCodesExhausted(_) => {
                tracing::warn!("no QR code was scanned in time; the link attempt ended");
                self.end_attempt("The login QR expired. Ask me to generate a new one.")
                    .await;
            }
            Event::PairError(e) => {
                tracing::warn!(error = ?e, "linking failed");
                self.end_attempt(&format!("WhatsApp login failed: {e:?}"))
                    .await;
            }
            Event::StreamReplaced(_) => {
                tracing::error!("another client took over this WhatsApp session (stream replaced)");
                self.update(|i| {
                    i.note = Some("another client took over this session (stream replaced); only one may drive it".into())
                });
            }
            Event::TemporaryBan(b) => {
                tracing::error!(ban = ?b, "WhatsApp banned this account temporarily");
                self.update(|i| i.note = Some(format!("temporarily banned by WhatsApp: {b:?}")));
            }
            Event::ClientOutdated(_) => {
                tracing::error!(
                    "WhatsApp says this client version is outdated; upgrade switchboard"
                );
                self.update(|i| {
                    i.note =
                        Some("WhatsApp says this client is outdated: upgrade switchboard".into())
                });
            }
            _ => {}
        }
    }

    /// A link attempt that ended without a link: back to not linked, session deleted.
    async fn end_attempt(self: &Arc<Self>, message: &str) {
        let bot = {
            let mut i = self.lock();
            if i.phase != Phase::Linking {
                return;
            }
            i.phase = Phase::NotLinked;
            i.qr = None;
            i.client = None;
            i.attempt = Attempt::Done {
                connected: false,
                message: message.to_owned(),
            };
            i.bot.take()
        };
        self.changed.send_modify(|n| *n += 1);
        self.stop(bot).await;
        self.delete_session();
    }

    /// WhatsApp ended the session: stop reconnecting, delete it, wait for an operator.
    async fn logged_out(self: &Arc<Self>, why: String) {
        tracing::error!(
            "{why}; an operator must link WhatsApp again (`switchboard channels login whatsapp`)"
        );
        let bot = {
            let mut i = self.lock();
            i.phase = Phase::LoggedOut(why.clone());
            i.client = None;
            i.qr = None;
            if i.attempt == Attempt::Running {
                i.attempt = Attempt::Done {
                    connected: false,
                    message: "WhatsApp reported the session is logged out. Cleared cached web session; please scan a new QR.".into(),
                };
            }
            i.bot.take()
        };
        self.changed.send_modify(|n| *n += 1);
        // Not from inside the client's own callback: its task is the one being stopped.
        let me = Arc::clone(self);
        let cleanup = tokio::spawn(async move {
            me.stop(bot).await;
            me.delete_session();
        });
        self.lock().cleanup = Some(cleanup);
    }

    /// Waits for a logged-out session's cleanup, if one is going on.
    async fn settle(&self) {
        let cleanup = self.lock().cleanup.take();
        if let Some(c) = cleanup {
            let _ = c.await;
        }
    }

    async fn stop(&self, bot: Option<BotHandle>) {
        if let Some(b) = bot
            && tokio::time::timeout(Duration::from_secs(5), b.shutdown())
                .await
                .is_err()
        {
            tracing::warn!("the WhatsApp client did not stop within 5 s");
        }
    }

    fn delete_session(&self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let p = PathBuf::from(format!("{}{suffix}", self.db_path().display()));
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %p.display(), error = %e, "cannot delete a session file");
            }
        }
    }

    /// Stops the client (on shutdown).
    pub async fn close(&self) {
        self.settle().await;
        let bot = self.lock().bot.take();
        self.stop(bot).await;
    }

    /// `state`, `detail` for `Health`.
    pub fn health(&self) -> (&'static str, String) {
        let i = self.lock();
        let note = i.note.clone();
        let with_note = |s: String| match &note {
            Some(n) if s.is_empty() => n.clone(),
            Some(n) => format!("{s}; {n}"),
            None => s,
        };
        match &i.phase {
            Phase::NotLinked => (
                "logged_out",
                "not linked: run `switchboard channels login whatsapp`".into(),
            ),
            Phase::LoggedOut(why) => (
                "logged_out",
                format!("{why}: link again with `switchboard channels login whatsapp`"),
            ),
            Phase::Linking | Phase::Linked => {
                let Some(client) = &i.client else {
                    return ("connecting", with_note(String::new()));
                };
                let stats = client.stats();
                let linking = i.phase == Phase::Linking;
                if client.is_connected() && (client.is_logged_in() || linking) {
                    let now = now_ms();
                    let silent = now.saturating_sub(stats.last_data_received_ms);
                    if linking {
                        let waiting = if i.qr.is_some() {
                            "waiting for the QR code to be scanned"
                        } else {
                            "waiting for a QR code"
                        };
                        ("connecting", with_note(waiting.into()))
                    } else if stats.last_data_received_ms > 0
                        && Duration::from_millis(silent) <= FRESH
                    {
                        ("connected", with_note(String::new()))
                    } else {
                        (
                            "connecting",
                            with_note(format!(
                                "connected but nothing received for {} s: the connection is being checked",
                                silent / 1000
                            )),
                        )
                    }
                } else if stats.reconnect_errors > 0 {
                    (
                        "backoff",
                        with_note(format!(
                            "cannot reach WhatsApp: {} attempts in a row failed; retrying with backoff",
                            stats.reconnect_errors
                        )),
                    )
                } else {
                    ("connecting", with_note(String::new()))
                }
            }
        }
    }

    pub fn labels(&self) -> Vec<(String, String)> {
        let i = self.lock();
        let mut out = Vec::new();
        if let Some(c) = &i.client {
            let own = Own::of(c);
            if own.pn.is_some() {
                out.push(("account".into(), own.describe()));
            }
            out.push(("reconnects".into(), c.stats().reconnects.to_string()));
        }
        out
    }

    /// `LoginStart`: the reference's behaviour and wording.
    pub async fn login_start(self: &Arc<Self>, force: bool, timeout: Duration) -> LoginStartReply {
        let timeout = if timeout.is_zero() {
            DEFAULT_QR_WAIT
        } else {
            timeout
        };
        if force {
            self.unlink().await;
        }
        {
            let i = self.lock();
            if i.phase == Phase::Linked
                && let Some(c) = &i.client
            {
                let who = Own::of(c).describe();
                return LoginStartReply {
                    message: format!(
                        "WhatsApp is already linked ({who}). Say “relink” if you want a fresh QR."
                    ),
                    linked_as: who,
                    ..Default::default()
                };
            }
            if let Some((code, until, valid)) = &i.qr
                && *until > Instant::now()
            {
                return LoginStartReply {
                    qr_code: code.clone(),
                    message: "QR already active. Scan it in WhatsApp → Linked Devices.".into(),
                    qr_valid_ms: valid.as_millis() as u64,
                    ..Default::default()
                };
            }
        }
        if self.phase() != Phase::Linking {
            let bot = match self.build().await {
                Ok(b) => b,
                Err(e) => {
                    return LoginStartReply {
                        message: format!("Failed to start WhatsApp login: {e}"),
                        ..Default::default()
                    };
                }
            };
            let client = bot.client();
            self.update(|i| {
                i.phase = Phase::Linking;
                i.attempt = Attempt::Running;
                i.qr = None;
                i.note = None;
                i.client = Some(client);
                i.bot = Some(bot.spawn());
            });
            tracing::info!("WhatsApp link attempt started");
        }
        let mut changed = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let i = self.lock();
                if let Some((code, _, valid)) = &i.qr {
                    return LoginStartReply {
                        qr_code: code.clone(),
                        message: "Scan this QR in WhatsApp → Linked Devices.".into(),
                        qr_valid_ms: valid.as_millis() as u64,
                        ..Default::default()
                    };
                }
                if let Attempt::Done { message, .. } = &i.attempt {
                    return LoginStartReply {
                        message: message.clone(),
                        ..Default::default()
                    };
                }
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    let (_, detail) = self.health();
                    return LoginStartReply {
                        message: format!("Failed to get QR: {detail}. The attempt goes on in the background; ask again later."),
                        ..Default::default()
                    };
                }
                _ = self.shutdown.cancelled() => {
                    return LoginStartReply { message: "The WhatsApp worker is stopping.".into(), ..Default::default() };
                }
            }
        }
    }

    /// `LoginWait`: the reference's behaviour and wording.
    pub async fn login_wait(&self, timeout: Duration) -> LoginWaitReply {
        let timeout = if timeout.is_zero() {
            DEFAULT_LOGIN_WAIT
        } else {
            timeout.max(Duration::from_secs(1))
        };
        let mut changed = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let mut i = self.lock();
                match &i.attempt {
                    Attempt::None if i.phase == Phase::Linked => {
                        return LoginWaitReply {
                            connected: true,
                            message: "WhatsApp is linked.".into(),
                        };
                    }
                    Attempt::None => {
                        return LoginWaitReply {
                            connected: false,
                            message: "No active WhatsApp login in progress.".into(),
                        };
                    }
                    Attempt::Done { connected, message } => {
                        let reply = LoginWaitReply {
                            connected: *connected,
                            message: message.clone(),
                        };
                        i.attempt = Attempt::None;
                        return reply;
                    }
                    // The library rotates QR codes itself until one is scanned or
                    // they run out (then the attempt ends as Done).
                    Attempt::Running => {}
                }
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return LoginWaitReply {
                        connected: false,
                        message: "Still waiting for the QR scan. Let me know when you’ve scanned it.".into(),
                    };
                }
                _ = self.shutdown.cancelled() => {
                    return LoginWaitReply { connected: false, message: "The WhatsApp worker is stopping.".into() };
                }
            }
        }
    }

    /// Tells WhatsApp to forget this device (when a linked client can reach it within
    /// 10 s), stops the client, deletes the session and leaves the phase `NotLinked`.
    /// False when WhatsApp could not be told in time.
    async fn unlink(&self) -> bool {
        let (bot, client) = {
            let mut i = self.lock();
            (i.bot.take(), i.client.take())
        };
        let mut told = true;
        if let Some(c) = client
            && c.pn().is_some()
        {
            told = tokio::time::timeout(Duration::from_secs(10), c.logout())
                .await
                .is_ok();
        }
        self.stop(bot).await;
        self.delete_session();
        self.update(|i| {
            i.phase = Phase::NotLinked;
            i.qr = None;
            i.attempt = Attempt::None;
        });
        told
    }

    /// `Logout`: unlink at WhatsApp (if we can reach it) and delete the session.
    pub async fn logout(&self) -> LogoutReply {
        self.settle().await;
        let was_linked = self.lock().phase == Phase::Linked;
        let told = self.unlink().await;
        self.update(|i| i.note = None);
        let message = if !was_linked {
            "WhatsApp was not linked; nothing to log out."
        } else if told {
            "Logged out of WhatsApp; the session was deleted."
        } else {
            "The session was deleted here, but WhatsApp could not be told; remove the device in WhatsApp → Linked Devices."
        }
        .to_owned();
        tracing::info!(was_linked, "WhatsApp logout");
        LogoutReply {
            was_linked,
            message,
        }
    }

    /// `Send`: one text to one chat.
    pub async fn send(&self, delivery_id: &str, to: &str, text: &str) -> Delivery {
        let refused = Delivery::Refused;
        let (phase, client) = {
            let i = self.lock();
            (i.phase.clone(), i.client.clone())
        };
        match phase {
            Phase::NotLinked | Phase::Linking => {
                return refused(
                    "WhatsApp is not linked: run `switchboard channels login whatsapp`".into(),
                );
            }
            Phase::LoggedOut(why) => {
                return refused(format!("WhatsApp is logged out ({why}): link it again"));
            }
            Phase::Linked => {}
        }
        let Some(jid) = mapping::parse_target(to) else {
            return refused(format!(
                "invalid WhatsApp target {to:?}: expected a phone number (+15551234567) or a JID (…@s.whatsapp.net, …@g.us)"
            ));
        };
        if text.trim().is_empty() {
            return refused("the message is empty".into());
        }
        let Some(client) = client.filter(|c| c.is_connected()) else {
            return Delivery::Retry("WhatsApp is not connected right now".into());
        };
        // The message id is the delivery's, so a repeat after a lost outcome is the same
        // message to WhatsApp (see `message_id_for`).
        let message = whatsapp_rust::waproto::whatsapp::Message {
            conversation: Some(text.to_owned()),
            ..Default::default()
        };
        let options = SendOptions::default().with_message_id(message_id_for(delivery_id));
        let sending = client.send_message_with_options(jid, message, options);
        match tokio::time::timeout(Duration::from_secs(60), sending).await {
            Ok(Ok(r)) => Delivery::Delivered(r.message_id),
            Ok(Err(e)) => Delivery::Retry(format!("WhatsApp did not take the message: {e}")),
            Err(_) => Delivery::Retry("WhatsApp did not confirm the message within 60 s".into()),
        }
    }

    /// Hands a batch to the supervisor and waits until it stored it.
    async fn hand_over(&self, client: &Client, batch: &[WaInbound]) -> Result<(), String> {
        let own = Own::of(client);
        let mut events = Vec::new();
        for m in batch {
            match mapping::inbound(m, &own) {
                Ok(msg) => events.push(msg),
                Err(mapping::Skip::FromMe) => {}
                Err(skip) => tracing::info!(?skip, id = %m.info.id, "skipping a WhatsApp message"),
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        let Some(tx) = self.events.current() else {
            return Err(
                "no supervisor is listening; WhatsApp will deliver the messages again".into(),
            );
        };
        let mut last = 0;
        for msg in events {
            let id = self.next_event.fetch_add(1, Ordering::Relaxed);
            let ev = WorkerEvent {
                event_id: id,
                cursor: String::new(),
                event: Some(worker_event::Event::Message(msg)),
            };
            tx.send(Ok(ev))
                .await
                .map_err(|_| "the supervisor went away".to_owned())?;
            last = id;
        }
        if self.events.acked(last, &tx, ACK_WAIT, &self.shutdown).await {
            Ok(())
        } else {
            Err(
                "the supervisor did not confirm in time; WhatsApp will deliver the messages again"
                    .into(),
            )
        }
    }
}

impl Own {
    pub fn of(client: &Client) -> Own {
        Own {
            pn: client.pn(),
            lid: client.lid(),
        }
    }

    pub fn describe(&self) -> String {
        match &self.pn {
            Some(pn) => format!("+{}", pn.user),
            None => "unknown".into(),
        }
    }
}

/// whatsapp-rust acknowledges messages to WhatsApp only after this returns `Ok`: so a
/// message is acknowledged only once the supervisor has stored it.
struct Hook(Arc<Session>);

#[whatsapp_rust::async_trait]
impl InboundDurabilityHook for Hook {
    async fn on_messages(
        &self,
        client: Arc<Client>,
        batch: &[WaInbound],
    ) -> whatsapp_rust::anyhow::Result<()> {
        self.0
            .hand_over(&client, batch)
            .await
            .map_err(|e| whatsapp_rust::anyhow::anyhow!(e))
    }
}

/// Owner-only session files: the directory and everything in it.
fn restrict(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o600));
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's callbacks are driven by hand (there is no WhatsApp server here); the
    /// client itself is real and fails to reach the closed port it is pointed at.
    #[tokio::test]
    async fn linking_goes_from_not_linked_through_a_qr_to_linked_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let session_dir = dir.path().join("wa");
        std::fs::create_dir_all(&session_dir).unwrap();
        let s = Session::new(
            Settings {
                dir: session_dir.clone(),
                server_url: Some("ws://127.0.0.1:9/ws/chat".into()),
                client_version: Some((2, 3000, 1_023_456_789)),
            },
            CancellationToken::new(),
        );
        assert_eq!(s.health().0, "logged_out");
        assert_eq!(
            s.login_wait(Duration::from_secs(1)).await.message,
            "No active WhatsApp login in progress."
        );
        // No server: no QR code in time, but the attempt goes on.
        let r = s.login_start(false, Duration::from_millis(300)).await;
        assert!(r.message.starts_with("Failed to get QR"), "{}", r.message);
        assert_eq!(s.phase(), Phase::Linking);
        assert!(session_dir.join(DB_FILE).exists());
        // A QR code arrives; asking again shows it instead of starting over.
        s.on_qr("2@abc,def".into(), Duration::from_secs(20));
        let r = s.login_start(false, Duration::from_millis(300)).await;
        assert_eq!(r.qr_code, "2@abc,def");
        assert_eq!(
            r.message,
            "QR already active. Scan it in WhatsApp → Linked Devices."
        );
        assert_eq!(r.qr_valid_ms, 20_000);
        // The phone scanned it.
        let client = s.lock().client.clone().unwrap();
        s.on_connected(client);
        let w = s.login_wait(Duration::from_secs(1)).await;
        assert!(w.connected);
        assert_eq!(w.message, "✅ Linked! WhatsApp is ready.");
        assert_eq!(s.phase(), Phase::Linked);
        // WhatsApp ends the session: nothing reconnects, the session is deleted.
        s.logged_out("WhatsApp ended the session (LoggedOut)".into())
            .await;
        let (state, detail) = s.health();
        assert_eq!(state, "logged_out");
        assert!(detail.contains("link again"), "{detail}");
        s.settle().await;
        assert!(
            !session_dir.join(DB_FILE).exists(),
            "the session was not deleted"
        );
        // A QR nobody scans ends the next attempt.
        s.login_start(false, Duration::from_millis(200)).await;
        assert_eq!(s.phase(), Phase::Linking);
        s.end_attempt("The login QR expired. Ask me to generate a new one.")
            .await;
        let w = s.login_wait(Duration::from_secs(1)).await;
        assert!(!w.connected);
        assert_eq!(
            w.message,
            "The login QR expired. Ask me to generate a new one."
        );
        assert_eq!(s.phase(), Phase::NotLinked);
        assert_eq!(
            s.send("d1", "+15551234567", "hi").await,
            Delivery::Refused(
                "WhatsApp is not linked: run `switchboard channels login whatsapp`".into()
            )
        );
        s.close().await;
    }
}

/// The WhatsApp message id of an outbox delivery: WhatsApp Web's shape (`3EB0` and 18
/// upper-case hex digits) from a hash of the delivery id. Every attempt of one delivery
/// carries the same id, so an attempt repeated after its outcome was lost (the worker or
/// the gateway died while it was in flight) is the same message to WhatsApp, which
/// identifies a message by its chat, sender and id; different deliveries never share one.
pub fn message_id_for(delivery_id: &str) -> String {
    let hash = Sha256::new()
        .chain_update(b"switchboard-outbox:")
        .chain_update(delivery_id.as_bytes())
        .finalize();
    let mut id = String::from("3EB0");
    for b in &hash[..9] {
        id.push_str(&format!("{b:02X}"));
    }
    id
}

#[cfg(test)]
mod message_id_tests {
    use super::message_id_for;

    #[test]
    fn every_attempt_of_a_delivery_carries_one_whatsapp_message_id() {
        let a = message_id_for("0193a7c2-delivery-1");
        assert_eq!(a, message_id_for("0193a7c2-delivery-1"));
        assert_ne!(a, message_id_for("0193a7c2-delivery-2"));
        assert_eq!(a.len(), 22);
        assert!(a.starts_with("3EB0"));
        assert!(
            a[4..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
    }
}
