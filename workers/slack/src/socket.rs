//! Inbound: `auth.test`, then Socket Mode, one connection at a time, for the worker's life.
//!
//! Each round asks `apps.connections.open` for a fresh URL (they are single-use), opens
//! the WebSocket, waits for `hello`, and reads envelopes. An `events_api` envelope whose
//! message the supervisor must store is handed over as an event and acknowledged to Slack
//! (`{"envelope_id":…}`) only once the supervisor has acknowledged that event; anything
//! else is acknowledged at once. A connection ends on a `disconnect` envelope, a close, an
//! error, or silence: no frame and no pong for `socket_timeout` (a ping goes out every
//! third of it). It is closed before the next one is opened, so there is never more than
//! one. The next one follows after a backoff (0.5 s after a healthy connection, doubling
//! to 30 s while connections keep failing).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_proto::v1::{WorkerEvent, worker_event};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use worker_runtime::backoff::Backoff;
use worker_runtime::events::EventSender;

use crate::api::Verdict;
use crate::inbound::{self, Inbound};
use crate::{Me, Shared};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Sink = SplitSink<Ws, Message>;

/// How long the supervisor may take to store a message before Slack is left to
/// redeliver it (Slack itself retries an envelope not acknowledged within seconds).
const ACK_WAIT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that lasted this long was healthy: the backoff starts over after it.
const HEALTHY: Duration = Duration::from_secs(60);
/// Envelopes handed to the supervisor and not yet stored, at most; beyond it envelopes
/// are left unacknowledged for Slack to redeliver.
const MAX_PENDING: usize = 512;

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// Slack asked for a new connection (`disconnect`, `refresh_requested`).
    Refresh,
    /// Anything else: the reason, for health.
    Lost(String),
    /// The supervisor stopped listening: reconnect once it listens again.
    SupervisorGone,
    /// The worker stops, or an operator must act first.
    Stop,
}

/// An envelope whose message was handed to the supervisor as event `event_id`.
struct Pending {
    event_id: u64,
    envelope_id: String,
    key: String,
    since: Instant,
}

pub async fn run(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX);
    let me = loop {
        let r = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            r = shared.api.auth_test() => r,
        };
        match r {
            Ok(me) => break me,
            Err(v) => {
                if !failed(&shared, "auth.test", "bot token", v, &mut backoff).await {
                    return;
                }
            }
        }
    };
    backoff.reset();
    tracing::info!(bot_user = %me.user_id, team = %me.team, "slack bot token accepted");
    *shared.me.lock().unwrap_or_else(|p| p.into_inner()) = Some(me.clone());
    loop {
        if shared.state.needs_operator() {
            return;
        }
        // Nothing is opened while no supervisor listens: Slack keeps the events.
        let Some(tx) = shared.events.listener(&shared.shutdown).await else {
            return;
        };
        let r = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            r = shared.api.connections_open() => r,
        };
        let url = match r {
            Ok(u) => u,
            Err(v) => {
                if !failed(
                    &shared,
                    "apps.connections.open",
                    "app-level token",
                    v,
                    &mut backoff,
                )
                .await
                {
                    return;
                }
                continue;
            }
        };
        let started = Instant::now();
        let end = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        {
            Ok(Ok((ws, _))) => {
                shared.connections.fetch_add(1, Ordering::Relaxed);
                connection(&shared, &me, ws, &tx).await
            }
            // The URL carries a ticket: it is never shown.
            Ok(Err(e)) => End::Lost(format!(
                "cannot open the Socket Mode connection: {}",
                shared
                    .api
                    .redact(&e.to_string())
                    .replace(&url, "<socket url>")
            )),
            Err(_) => End::Lost("opening the Socket Mode connection timed out".into()),
        };
        *shared.last_frame.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let why = match end {
            End::Stop => return,
            End::SupervisorGone => {
                set_state(&shared, "reconnecting", "waiting for the supervisor");
                continue;
            }
            End::Refresh => {
                tracing::info!("slack asked for a new Socket Mode connection");
                "slack refreshed the connection".to_owned()
            }
            End::Lost(why) => {
                tracing::warn!("socket mode connection lost: {why}");
                why
            }
        };
        // Even Slack's own refreshes wait a little (half a second after a healthy
        // connection), so a flapping link never turns into a tight loop.
        if started.elapsed() >= HEALTHY {
            backoff.reset();
        }
        let d = backoff.next_delay();
        set_state(
            &shared,
            "reconnecting",
            format!("{why}; reconnecting in {} ms", d.as_millis()),
        );
        if !pause(&shared, d).await {
            return;
        }
    }
}

/// Sets the state, unless an operator must act first (that state stays).
fn set_state(shared: &Shared, state: &'static str, detail: impl Into<String>) {
    if !shared.state.needs_operator() {
        shared.state.set(state, detail, true);
    }
}

/// Sleeps unless shut down first; `false` when shut down.
async fn pause(shared: &Shared, d: Duration) -> bool {
    tokio::select! {
        _ = shared.shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Handles a failed call's verdict; `false` when the loop must stop.
async fn failed(
    shared: &Shared,
    what: &str,
    token: &str,
    v: Verdict,
    backoff: &mut Backoff,
) -> bool {
    match v {
        Verdict::Unauthorized(code) => {
            shared.token_refused(&code, token);
            false
        }
        Verdict::RetryAfter(d) => {
            set_state(
                shared,
                "backoff",
                format!("{what}: rate limited, retrying after {} ms", d.as_millis()),
            );
            pause(shared, d).await
        }
        Verdict::Transient(msg) | Verdict::Permanent(msg) => {
            let d = backoff.next_delay();
            tracing::warn!(delay_ms = d.as_millis() as u64, "{what} failed: {msg}");
            set_state(shared, "backoff", format!("{what}: {msg}"));
            pause(shared, d).await
        }
    }
}

/// Reads one connection until it ends, then closes it.
async fn connection(shared: &Shared, me: &Me, ws: Ws, tx: &EventSender) -> End {
    let (mut sink, mut stream) = ws.split();
    let end = read(shared, me, &mut sink, &mut stream, tx).await;
    // Closed before the next one opens: one connection at a time.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
    })
    .await;
    end
}

async fn read(
    shared: &Shared,
    me: &Me,
    sink: &mut Sink,
    stream: &mut SplitStream<Ws>,
    tx: &EventSender,
) -> End {
    let timeout = shared.socket_timeout;
    let mut last = tokio::time::Instant::now();
    let mut ping = tokio::time::interval(timeout / 3);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut pings = 0u64;
    // A `disconnect` warning came: the close that follows is Slack's refresh.
    let mut warned = false;
    loop {
        let (front, left) = pending
            .front()
            .map(|p| (p.event_id, ACK_WAIT.saturating_sub(p.since.elapsed())))
            .unwrap_or((0, ACK_WAIT));
        tokio::select! {
            _ = shared.shutdown.cancelled() => return End::Stop,
            _ = shared.refused.cancelled() => return End::Stop,
            _ = tokio::time::sleep_until(last + timeout) => {
                return End::Lost(format!(
                    "no frame and no pong for {} ms (a half-open socket)",
                    timeout.as_millis()
                ));
            }
            _ = ping.tick() => {
                pings += 1;
                let payload = pings.to_string().into_bytes();
                if !write(sink, Message::Ping(payload.into())).await {
                    return End::Lost("cannot write a ping".into());
                }
            }
            stored = shared.events.acked(front, tx, left, &shared.shutdown), if front > 0 => {
                if !stored {
                    if tx.is_closed() {
                        return End::SupervisorGone;
                    }
                    if let Some(p) = pending.pop_front() {
                        tracing::warn!(envelope = %p.envelope_id, "the supervisor did not store a message in time; slack will deliver it again");
                    }
                    continue;
                }
                let acked = shared.events.last_acked();
                while pending.front().is_some_and(|p| p.event_id <= acked) {
                    let Some(p) = pending.pop_front() else { break };
                    shared.stored.insert(p.key);
                    if !ack(sink, &p.envelope_id).await {
                        return End::Lost("cannot write an acknowledgement".into());
                    }
                }
            }
            frame = stream.next() => {
                let msg = match frame {
                    None if warned => return End::Refresh,
                    None => return End::Lost("slack closed the socket".into()),
                    Some(Err(e)) => return End::Lost(format!("socket error: {}", shared.api.redact(&e.to_string()))),
                    Some(Ok(m)) => m,
                };
                last = tokio::time::Instant::now();
                *shared.last_frame.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                match msg {
                    Message::Text(t) => {
                        let r = frame_text(shared, me, t.as_str(), sink, tx, &mut pending, &mut warned).await;
                        if let Some(end) = r {
                            return end;
                        }
                    }
                    Message::Close(_) if warned => return End::Refresh,
                    Message::Close(f) => {
                        let why = f.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_default();
                        return End::Lost(format!("slack closed the socket ({})", why.trim()));
                    }
                    // Pings are answered by tungstenite; pongs and the rest only prove life.
                    _ => {}
                }
            }
        }
    }
}

/// Writes a frame, bounded in time; `false` when the socket cannot take it.
async fn write(sink: &mut Sink, m: Message) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, sink.send(m)).await,
        Ok(Ok(()))
    )
}

async fn ack(sink: &mut Sink, envelope_id: &str) -> bool {
    let body = json!({ "envelope_id": envelope_id }).to_string();
    write(sink, Message::Text(body.into())).await
}

/// Handles one text frame; `Some` when the connection must end.
async fn frame_text(
    shared: &Shared,
    me: &Me,
    text: &str,
    sink: &mut Sink,
    tx: &EventSender,
    pending: &mut VecDeque<Pending>,
    warned: &mut bool,
) -> Option<End> {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        tracing::warn!(
            bytes = text.len(),
            "a Socket Mode frame that is not JSON; ignored"
        );
        return None;
    };
    match v["type"].as_str().unwrap_or_default() {
        "hello" => {
            tracing::info!(
                num_connections = v["num_connections"].as_u64().unwrap_or(0),
                "socket mode connected"
            );
            set_state(shared, "connected", "");
            None
        }
        "disconnect" => match v["reason"].as_str().unwrap_or("unknown") {
            // About ten seconds' notice of a refresh: keep reading until it comes.
            "warning" => {
                *warned = true;
                None
            }
            "refresh_requested" => Some(End::Refresh),
            other => Some(End::Lost(format!(
                "slack disconnected the socket ({other})"
            ))),
        },
        "events_api" => {
            let Some(envelope_id) = v["envelope_id"].as_str() else {
                tracing::warn!("an events_api envelope without envelope_id; ignored");
                return None;
            };
            let retry = v["retry_attempt"].as_u64().unwrap_or(0);
            match inbound::parse(&v["payload"], me) {
                Inbound::Skip(why) => {
                    tracing::debug!(
                        envelope = envelope_id,
                        why,
                        "envelope acknowledged without a message"
                    );
                    (!ack(sink, envelope_id).await)
                        .then(|| End::Lost("cannot write an acknowledgement".into()))
                }
                Inbound::Message { key, .. } if shared.stored.contains(&key) => {
                    tracing::debug!(
                        envelope = envelope_id,
                        retry,
                        "a message already stored; acknowledged"
                    );
                    (!ack(sink, envelope_id).await)
                        .then(|| End::Lost("cannot write an acknowledgement".into()))
                }
                Inbound::Message { key, msg } => {
                    if pending.len() >= MAX_PENDING {
                        tracing::warn!(
                            envelope = envelope_id,
                            "too many messages waiting to be stored; slack will deliver this one again"
                        );
                        return None;
                    }
                    let event_id = shared.next_event.fetch_add(1, Ordering::Relaxed) + 1;
                    let ev = WorkerEvent {
                        event_id,
                        cursor: String::new(),
                        event: Some(worker_event::Event::Message(*msg)),
                    };
                    match tokio::time::timeout(ACK_WAIT, tx.send(Ok(ev))).await {
                        Ok(Ok(())) => {
                            pending.push_back(Pending {
                                event_id,
                                envelope_id: envelope_id.to_owned(),
                                key,
                                since: Instant::now(),
                            });
                            None
                        }
                        Ok(Err(_)) => Some(End::SupervisorGone),
                        Err(_) => {
                            tracing::warn!(
                                envelope = envelope_id,
                                "the supervisor is not taking events; slack will deliver this one again"
                            );
                            None
                        }
                    }
                }
            }
        }
        // Slash commands and interactivity are not subscribed to: confirmed, not handled.
        other => match v["envelope_id"].as_str() {
            Some(id) => {
                tracing::debug!(
                    kind = other,
                    "an envelope the worker does not handle; acknowledged"
                );
                (!ack(sink, id).await).then(|| End::Lost("cannot write an acknowledgement".into()))
            }
            None => None,
        },
    }
}
