//! Inbound: the gateway session, through one `twilight-gateway` shard, and the hand-off
//! of its messages to the supervisor.
//!
//! The shard implements the session's life as Discord documents it (heartbeats and
//! zombie detection, `RESUME` at `resume_gateway_url`, re-`IDENTIFY` after a
//! non-resumable `INVALID_SESSION` through its identify queue, which spaces identifies
//! 5 s apart, and no reconnect after a fatal close code). This loop drives it and reads
//! every message it yields as raw JSON or a close frame, so the opcodes and close codes
//! set the worker's state; nothing of the session's protocol is done twice here.
//!
//! Messages go to a forwarder task through a bounded queue. The forwarder keeps each one
//! until the supervisor acknowledged it and sends the unacknowledged ones again to a new
//! subscriber. When both are full (no supervisor listens for a long while), this loop
//! stops reading the shard: Discord then drops the idle connection, and the resume that
//! follows replays what was not read. Nothing is lost on the way.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use switchboard_proto::v1::{InboundMessage, WorkerEvent, worker_event};
use tokio::sync::mpsc;
use twilight_gateway::error::ReceiveMessageErrorType;
use twilight_gateway::{CloseFrame, ConfigBuilder, Intents, Message, Shard, ShardId};
use worker_runtime::backoff::Backoff;
use worker_runtime::events::EventSender;

use crate::rest::{self, RestError};
use crate::{Me, Shared, inbound};

/// Messages queued from the gateway loop to the forwarder.
const QUEUE: usize = 64;
/// Messages handed to the supervisor but not yet acknowledged, at most.
const MAX_PENDING: usize = 256;
/// How long to wait for an acknowledgement before handing the messages over again.
const ACK_WAIT: Duration = Duration::from_secs(60);

/// The intents this worker identifies with.
pub fn intents(message_content: bool) -> Intents {
    let base = Intents::DIRECT_MESSAGES | Intents::GUILD_MESSAGES;
    if message_content {
        base | Intents::MESSAGE_CONTENT
    } else {
        base
    }
}

pub async fn run(shared: Arc<Shared>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let forwarder = tokio::spawn(forward(Arc::clone(&shared), rx));
    if let Some(url) = gateway_url(&shared).await {
        session(&shared, url, tx).await;
    }
    // Until the worker stops: a fatal close leaves the state for an operator to read.
    shared.shutdown.cancelled().await;
    let _ = forwarder.await;
}

/// The configured gateway URL, else `GET /gateway/bot`'s; `None` when the worker must
/// stop calling Discord (or stops).
async fn gateway_url(shared: &Shared) -> Option<String> {
    if let Some(u) = &shared.cfg.gateway_url {
        return Some(u.clone());
    }
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        let r = tokio::select! {
            _ = shared.shutdown.cancelled() => return None,
            r = rest::gateway_bot(shared) => r,
        };
        let wait =
            match r {
                Ok(g) => {
                    if g.remaining == 0 {
                        // The daily session-start budget is spent: identifying now would fail.
                        let d = g.reset_after;
                        shared.set_state("backoff", format!(
                            "Discord's session start limit is used up; identifying again in {} s",
                            d.as_secs()
                        ));
                        d
                    } else {
                        return Some(g.url.trim_end_matches('/').to_owned());
                    }
                }
                Err(RestError::Unauthorized) => {
                    shared.unauthorized("401 Unauthorized from GET /gateway/bot");
                    return None;
                }
                Err(RestError::RateLimited(d)) => d,
                Err(e) => {
                    let d = backoff.next_delay();
                    shared.set_state("backoff", format!("GET /gateway/bot: {e}"));
                    d
                }
            };
        if !shared.pause(wait).await {
            return None;
        }
    }
}

/// Runs the shard until a fatal close or shutdown.
async fn session(shared: &Shared, url: String, tx: mpsc::Sender<InboundMessage>) {
    let config = ConfigBuilder::new(
        shared.cfg.token.clone(),
        intents(shared.cfg.message_content),
    )
    .proxy_url(url)
    .build();
    let mut shard = Shard::with_config(ShardId::ONE, config);
    tracing::info!(
        message_content = shared.cfg.message_content,
        "connecting to the Discord gateway"
    );
    loop {
        let next = tokio::select! {
            _ = shared.shutdown.cancelled() => {
                shard.close(CloseFrame::NORMAL);
                // Give the close frame its moment on the wire.
                let _ = tokio::time::timeout(Duration::from_secs(2), shard.next()).await;
                return;
            }
            n = shard.next() => n,
        };
        match next {
            None => return, // fatally closed; the close frame set the state
            Some(Err(e)) => {
                shared.mark_down();
                let text = shared.redact(&error_chain(&e));
                match e.kind() {
                    ReceiveMessageErrorType::Reconnect => {
                        tracing::warn!("gateway: {text}");
                        shared
                            .set_state("backoff", format!("cannot connect to the gateway: {text}"));
                    }
                    _ => tracing::warn!("gateway message not understood: {text}"),
                }
            }
            Some(Ok(Message::Close(frame))) => {
                shared.mark_down();
                closed(shared, frame.as_ref().map(|f| (f.code, f.reason.as_ref())));
            }
            Some(Ok(Message::Text(json))) => {
                let Some(m) = handle(shared, &json) else {
                    continue;
                };
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return,
                    r = tx.send(m) => if r.is_err() { return },
                }
            }
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// A close frame from the gateway (or the shard's own 1006 for a dead socket).
fn closed(shared: &Shared, frame: Option<(u16, &str)>) {
    let code = frame.map(|f| f.0);
    let reason = frame.map(|f| f.1).unwrap_or_default();
    match code {
        Some(4004) => shared.unauthorized("gateway close 4004, authentication failed"),
        Some(4014) => shared.state.set(
            "intents-not-allowed",
            "intents not allowed: enable Message Content in the developer portal (your application → Bot → Privileged Gateway Intents → Message Content Intent), or require mentions in every channel; then `switchboard workers restart discord`",
            false,
        ),
        Some(4013) => shared.state.set(
            "intents-invalid",
            "the gateway refused the intents as invalid (close 4013); this is a bug in the worker",
            false,
        ),
        Some(c @ (4010..=4012)) => shared.state.set(
            "gateway-refused",
            format!("the gateway closed the session for good (close {c}: {reason}); restart the worker after fixing it"),
            false,
        ),
        _ => {
            let what = match code {
                Some(1006) | None => "the connection dropped".to_owned(),
                Some(c) => format!("the gateway closed the connection (close {c})"),
            };
            tracing::info!("{what}; resuming");
            shared.set_state("reconnecting", format!("{what}; resuming"));
        }
    }
}

/// One gateway payload: sets the state; a message for the supervisor, if any.
fn handle(shared: &Shared, json: &str) -> Option<InboundMessage> {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        tracing::warn!("gateway sent something that is not JSON");
        return None;
    };
    match v["op"].as_u64() {
        Some(10) => {
            if let Some(ms) = v["d"]["heartbeat_interval"].as_u64() {
                shared.heartbeat_ms.store(ms.max(1), Ordering::SeqCst);
            }
            None
        }
        Some(11) => {
            shared.mark_alive();
            None
        }
        Some(7) => {
            shared.mark_down();
            tracing::info!("Discord asked to reconnect (op 7); resuming");
            shared.set_state(
                "reconnecting",
                "Discord asked to reconnect (op 7); resuming",
            );
            None
        }
        Some(9) => {
            shared.mark_down();
            let what = if v["d"].as_bool() == Some(true) {
                "the session was invalidated; resuming"
            } else {
                "the session was invalidated; identifying anew"
            };
            tracing::info!("{what}");
            shared.set_state("reconnecting", what);
            None
        }
        Some(0) => dispatch(shared, v["t"].as_str().unwrap_or_default(), &v["d"]),
        _ => None,
    }
}

fn dispatch(shared: &Shared, t: &str, d: &Value) -> Option<InboundMessage> {
    match t {
        "READY" => {
            let me = Me {
                id: d["user"]["id"].as_str().unwrap_or_default().to_owned(),
                username: d["user"]["username"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            };
            tracing::info!(bot = %me.username, "gateway session ready");
            *shared.me.lock().unwrap_or_else(|p| p.into_inner()) = Some(me);
            shared.mark_alive();
            shared.set_state("connected", "");
            None
        }
        "RESUMED" => {
            tracing::info!("gateway session resumed");
            shared.mark_alive();
            shared.set_state("connected", "");
            None
        }
        "MESSAGE_CREATE" => {
            let me = shared
                .me
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()?;
            inbound::message(d, &me)
        }
        _ => None,
    }
}

/// Hands messages to the supervisor and keeps them until acknowledged.
async fn forward(shared: Arc<Shared>, mut rx: mpsc::Receiver<InboundMessage>) {
    let mut pending: VecDeque<WorkerEvent> = VecDeque::new();
    let mut next_id = 0u64;
    loop {
        let Some(tx) = shared.events.listener(&shared.shutdown).await else {
            return;
        };
        prune(&shared, &mut pending);
        let mut resent = true;
        for ev in &pending {
            if tx.send(Ok(ev.clone())).await.is_err() {
                resent = false;
                break;
            }
        }
        if !resent {
            continue;
        }
        loop {
            let room = pending.len() < MAX_PENDING;
            let front = pending.front().map(|e| e.event_id);
            tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                _ = tx.closed() => break,
                m = rx.recv(), if room => {
                    let Some(m) = m else { return };
                    next_id += 1;
                    let ev = WorkerEvent {
                        event_id: next_id,
                        cursor: String::new(),
                        event: Some(worker_event::Event::Message(m)),
                    };
                    pending.push_back(ev.clone());
                    if tx.send(Ok(ev)).await.is_err() {
                        break;
                    }
                }
                acked = wait_acked(&shared, front, &tx), if front.is_some() => {
                    if acked {
                        prune(&shared, &mut pending);
                    } else {
                        tracing::warn!("the supervisor did not acknowledge; handing the messages over again");
                        break;
                    }
                }
            }
        }
    }
}

async fn wait_acked(shared: &Shared, id: Option<u64>, tx: &EventSender) -> bool {
    match id {
        Some(id) => {
            shared
                .events
                .acked(id, tx, ACK_WAIT, &shared.shutdown)
                .await
        }
        None => std::future::pending().await,
    }
}

/// Drops the pending messages the supervisor acknowledged (event ids are in order, and
/// an acknowledgement covers everything up to its id).
fn prune(shared: &Shared, pending: &mut VecDeque<WorkerEvent>) {
    let acked = shared.events.last_acked();
    while pending.front().is_some_and(|e| e.event_id <= acked) {
        pending.pop_front();
    }
}
